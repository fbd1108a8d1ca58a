// Re-entrancy: one Network shared by two std::threads, each with its own Tape/BatchTape and gradient
// buffers, gives the serial results bit for bit. Also: one tape reused across networks of other widths.
#include "test_support.hpp"

#include <atomic>
#include <cstring>
#include <thread>

namespace mlpgrad_test {
namespace {

// Everything one pass over the examples produces, flattened, so runs compare with memcmp.
template <class T>
std::vector<T> run_all(const mlpgrad::Network<T>& net, const std::vector<T>& X, std::size_t B, bool reverse) {
    const std::size_t K0 = net.width(0);
    mlpgrad::Tape<T> tape;
    mlpgrad::Gradients<T> g(net.widths());
    std::vector<std::vector<T>> per_example(B);
    for (std::size_t i = 0; i < B; ++i) {
        const std::size_t b = reverse ? B - 1 - i : i;
        auto& out = per_example[b];
        out.push_back(mlpgrad::value_and_grad(net, {X.data() + b * K0, K0}, tape, T(1) + T(b) / T(8), g.view()));
        for (std::size_t t = 0; t < net.depth(); ++t)
            out.insert(out.end(), g.weights(t).data, g.weights(t).data + g.weights(t).size());
        out.insert(out.end(), g.alpha().begin(), g.alpha().end());
        for (const auto& z : g.view().z) out.insert(out.end(), z.begin(), z.end());
        for (const auto& u : g.view().u) out.insert(out.end(), u.begin(), u.end());
    }
    std::vector<T> all;
    for (const auto& v : per_example) all.insert(all.end(), v.begin(), v.end());

    // And the whole set as one batch.
    mlpgrad::BatchTape<T> btape;
    std::vector<T> yhat(B), dy(B, T(0.5)), dalpha(net.width(net.depth())), dX(B * K0);
    std::vector<std::vector<T>> dW;
    mlpgrad::BatchGradientsView<T> bout;
    for (std::size_t t = 0; t < net.depth(); ++t) dW.emplace_back(net.weight(t).size());
    for (std::size_t t = 0; t < net.depth(); ++t) bout.weights.push_back({dW[t].data(), net.width(t + 1), net.width(t)});
    bout.alpha = mview(dalpha);
    bout.x = {dX.data(), B, K0};
    mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), B, K0), btape, mview(yhat));
    mlpgrad::backward_batch(net, btape, cview(dy), bout);
    for (const auto* v : {&yhat, &dalpha, &dX}) all.insert(all.end(), v->begin(), v->end());
    for (const auto& w : dW) all.insert(all.end(), w.begin(), w.end());
    return all;
}

template <class T>
void check_two_threads_match_serial() {
    const std::vector<std::size_t> widths = {8, 33, 17, 1};
    const OwnedNet<T> onet = random_net<T>(widths, {Activation::tanh, Activation::relu, Activation::softplus}, 51);
    const mlpgrad::Network<T> net = onet.network();
    const std::size_t B = 48;
    Random rng(52);
    const std::vector<T> X = random_vector<T>(rng, B * widths[0]);

    const std::vector<T> serial = run_all(net, X, B, false);
    constexpr int rounds = 4;
    std::atomic<int> ready{0};
    std::vector<T> results[2][rounds];
    auto worker = [&](int id) {
        ready.fetch_add(1);
        while (ready.load() < 2) std::this_thread::yield();  // start together, so the passes overlap
        for (int r = 0; r < rounds; ++r) results[id][r] = run_all(net, X, B, id == 1);
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    for (int id = 0; id < 2; ++id)
        for (int r = 0; r < rounds; ++r) {
            ASSERT_EQ(results[id][r].size(), serial.size());
            EXPECT_EQ(std::memcmp(results[id][r].data(), serial.data(), serial.size() * sizeof(T)), 0)
                << "thread " << id << ", round " << r << " differs from the serial run";
        }
}

TEST(Reentrancy, TwoThreadsOnOneNetworkMatchSerialDouble) { check_two_threads_match_serial<double>(); }
TEST(Reentrancy, TwoThreadsOnOneNetworkMatchSerialFloat) { check_two_threads_match_serial<float>(); }

TEST(Reentrancy, OneTapeReusedAcrossNetworksOfOtherWidths) {
    const OwnedNet<double> small = random_net<double>({3, 4, 2}, Activation::tanh, 53);
    const OwnedNet<double> large = random_net<double>({6, 20, 9, 4}, Activation::sigmoid, 54);
    const OwnedNet<double> same_depth = random_net<double>({3, 9, 2}, Activation::relu, 56);  // only K_1 differs
    Random rng(55);
    const std::vector<double> xs = random_vector<double>(rng, 3), xl = random_vector<double>(rng, 6);
    auto grads = [](const OwnedNet<double>& n, const std::vector<double>& x, mlpgrad::Tape<double>& tape) {
        const auto net = n.network();
        mlpgrad::Gradients<double> g(net.widths());
        std::vector<double> r = {mlpgrad::value_and_grad(net, cview(x), tape, 1.0, g.view())};
        for (std::size_t t = 0; t < net.depth(); ++t) {
            const auto w = to_vector(g.weights(t));
            r.insert(r.end(), w.begin(), w.end());
        }
        r.insert(r.end(), g.x().begin(), g.x().end());
        return r;
    };
    mlpgrad::Tape<double> fresh_small, fresh_large, fresh_same_depth, shared;
    const auto expect_small = grads(small, xs, fresh_small), expect_large = grads(large, xl, fresh_large);
    const auto expect_same_depth = grads(same_depth, xs, fresh_same_depth);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(grads(small, xs, shared), expect_small);
        EXPECT_EQ(grads(same_depth, xs, shared), expect_same_depth);
        EXPECT_EQ(grads(large, xl, shared), expect_large);
        EXPECT_EQ(grads(same_depth, xs, shared), expect_same_depth);
    }
    // backward() refuses a tape that recorded another network, even one of the same depth.
    mlpgrad::forward(small.network(), cview(xs), shared);
    mlpgrad::Gradients<double> g(same_depth.network().widths());
    EXPECT_TRUE(throws_exactly<std::logic_error>([&] { mlpgrad::backward(same_depth.network(), shared, 1.0, g.view()); }));
}

}  // namespace
}  // namespace mlpgrad_test
