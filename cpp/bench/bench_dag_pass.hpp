// value_and_grad on a DAG, for one example and for a batch, as an object the benchmark can time, built by
// bench_dag_pass.cpp. That file is compiled once against the current headers and, when
// MLPGRAD_BENCH_BASELINE_INCLUDE names the headers of an older build, once more against those (with the
// namespace mlpgrad renamed), so that mlpgrad_bench_dag can time both builds alternately in one process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace mlpgrad_bench {

// A DAG as mlpgrad.DAG takes it (ReLU everywhere), its weights and α in double (converted to the pass's type).
struct DagCase {
    std::size_t n_nodes = 0, n_inputs = 0, batch = 16;
    std::vector<std::int64_t> src, dst, outputs;
    std::vector<double> weights, alpha;
    bool is_double = true;
};

class DagPass {
  public:
    virtual ~DagPass() = default;
    virtual void single() = 0;  // value_and_grad of one example; writes ŷ to the sink
    virtual void batch() = 0;   // value_and_grad_batch of B examples, ∂X included; writes ŷ_0 to the sink
    // FNV-1a of the bits of ∂w and ∂x of one example and of ŷ, ∂w and ∂X of a batch, at fixed inputs: equal
    // in two builds whose arithmetic is the same.
    virtual std::uint64_t single_checksum() = 0;
    virtual std::uint64_t batch_checksum() = 0;
    virtual std::size_t n_levels() const = 0;
    virtual std::size_t n_edges() const = 0;
};

std::unique_ptr<DagPass> make_current_dag_pass(const DagCase& c);
// Null when the benchmark was built without MLPGRAD_BENCH_BASELINE_INCLUDE.
std::unique_ptr<DagPass> make_baseline_dag_pass(const DagCase& c);

}  // namespace mlpgrad_bench
