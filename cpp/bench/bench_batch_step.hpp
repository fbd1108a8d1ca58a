// One training step of a batch (forward_batch + backward_batch) as an object the benchmark can time, built
// by bench_batch_step.cpp. That file is compiled once against the current headers and, when
// MLPGRAD_BENCH_BASELINE_INCLUDE names the headers of an older build, once more against those (with the
// namespace mlpgrad renamed), so that mlpgrad_bench_batch can time both builds alternately in one process.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace mlpgrad_bench {

struct BatchCase {
    std::vector<std::size_t> widths;  // K_0..K_T
    std::size_t outputs = 1;          // m
    std::size_t batch = 1;            // B
    bool biases = false;              // b^t in every layer and β
    bool input_gradient = false;      // ∂X too (a training step needs only the parameters' gradients)
    bool is_double = false;
};

class Step {
  public:
    virtual ~Step() = default;
    virtual void run() = 0;  // forward_batch then backward_batch; writes a result to the sink
};

// The step on the current headers; threads > 1 passes a pool of that many threads to both calls.
std::unique_ptr<Step> make_current_step(const BatchCase& c, std::size_t threads);
// The step on the baseline headers (one thread: the old batch kernels take no pool), or null when the
// benchmark was built without MLPGRAD_BENCH_BASELINE_INCLUDE.
std::unique_ptr<Step> make_baseline_step(const BatchCase& c);

}  // namespace mlpgrad_bench
