// Allocation failure followed by a retry: Tape::reset() and BatchTape::reset() give the strong guarantee,
// so a tape whose allocation failed is exactly as it was, and the next call on it gives the right answer.
//
// A separate executable, because it replaces the global aligned operator new (the one aligned_allocator,
// hence every tape, uses) with one that fails on request.
#include <cstdlib>
#include <new>

#include "test_support.hpp"

namespace {
// Aligned allocations fail while this is set.
thread_local bool fail_aligned_allocations = false;
}  // namespace

void* operator new(std::size_t n, std::align_val_t alignment) {
    if (fail_aligned_allocations) throw std::bad_alloc();
    const auto a = static_cast<std::size_t>(alignment);
    void* p = std::aligned_alloc(a, (n + a - 1) / a * a);  // aligned_alloc wants a multiple of the alignment
    if (p == nullptr) throw std::bad_alloc();
    return p;
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace mlpgrad_test {
namespace {

struct FailingAllocations {
    FailingAllocations() { fail_aligned_allocations = true; }
    ~FailingAllocations() { fail_aligned_allocations = false; }
};

template <class T>
class AllocationFailure : public ::testing::Test {};
TYPED_TEST_SUITE(AllocationFailure, Dtypes, DtypeNames);

// The regression: the failed reset used to record the widths before allocating, so the retry (same
// widths) skipped the allocation and wrote through a null pointer.
TYPED_TEST(AllocationFailure, SingleExampleRetryOnTheSameTapeGivesTheRightAnswer) {
    using T = TypeParam;
    const auto onet = random_net<T>({5, 7, 3}, Activation::tanh, 1);
    const auto net = onet.network();
    Random rng(2);
    const auto x = random_vector<T>(rng, 5);
    mlpgrad::Tape<T> reference_tape;
    mlpgrad::Gradients<T> expected(net.widths()), got(net.widths());
    const T y_expected = mlpgrad::value_and_grad(net, cview(x), reference_tape, T(1), expected.view());

    mlpgrad::Tape<T> tape;
    {
        FailingAllocations failing;
        EXPECT_THROW(mlpgrad::forward(net, cview(x), tape), std::bad_alloc);
    }
    EXPECT_FALSE(tape.recorded());
    EXPECT_THROW(mlpgrad::backward(net, tape, T(1), got.view()), std::logic_error);
    const T y = mlpgrad::value_and_grad(net, cview(x), tape, T(1), got.view());
    EXPECT_EQ(y, y_expected);
    for (std::size_t t = 0; t < net.depth(); ++t)
        EXPECT_EQ(to_vector(got.weights(t)), to_vector(expected.weights(t))) << "t = " << t;
    EXPECT_EQ(to_vector(got.x()), to_vector(expected.x()));
}

// A failed reset for another network leaves the previous record usable.
TYPED_TEST(AllocationFailure, SingleExampleFailureKeepsThePreviousRecord) {
    using T = TypeParam;
    const auto onet = random_net<T>({4, 6, 2}, Activation::sigmoid, 3), other = random_net<T>({9, 9}, Activation::relu, 4);
    const auto net = onet.network(), net2 = other.network();
    Random rng(5);
    const auto x = random_vector<T>(rng, 4), x2 = random_vector<T>(rng, 9);
    mlpgrad::Tape<T> tape;
    const T y = mlpgrad::forward(net, cview(x), tape);
    {
        FailingAllocations failing;
        EXPECT_THROW(mlpgrad::forward(net2, cview(x2), tape), std::bad_alloc);
    }
    EXPECT_TRUE(tape.recorded());
    EXPECT_EQ(tape.widths(), net.widths());
    mlpgrad::Gradients<T> got(net.widths()), expected(net.widths());
    mlpgrad::backward(net, tape, T(1), got.view());
    mlpgrad::Tape<T> reference_tape;
    EXPECT_EQ(mlpgrad::value_and_grad(net, cview(x), reference_tape, T(1), expected.view()), y);
    EXPECT_EQ(to_vector(got.weights(0)), to_vector(expected.weights(0)));
    // and the other network works on the same tape once memory is back
    mlpgrad::Tape<T> tape2;
    EXPECT_EQ(mlpgrad::forward(net2, cview(x2), tape), mlpgrad::forward(net2, cview(x2), tape2));
}

TYPED_TEST(AllocationFailure, BatchRetryOnTheSameTapeGivesTheRightAnswer) {
    using T = TypeParam;
    const auto onet = random_net<T>({3, 5, 2}, Activation::softplus, 6);
    const auto net = onet.network();
    Random rng(7);
    const std::size_t B = 40, small_B = 4;
    const auto X = random_vector<T>(rng, B * 3), dy = random_vector<T>(rng, B);
    const auto run = [&](mlpgrad::BatchTape<T>& tape, std::vector<T>& yhat, std::vector<T>& dW0) {
        yhat.assign(B, T(0));
        dW0.assign(net.weight(0).size(), T(0));
        std::vector<T> dW1(net.weight(1).size()), dalpha(2), dX(B * 3);
        mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), B, 3), tape, mview(yhat));
        mlpgrad::BatchGradientsView<T> out{{{dW0.data(), 5, 3}, {dW1.data(), 2, 5}}, mview(dalpha), {dX.data(), B, 3}};
        mlpgrad::backward_batch(net, tape, cview(dy), out);
    };
    mlpgrad::BatchTape<T> reference_tape;
    std::vector<T> y_expected, dW0_expected, y, dW0;
    run(reference_tape, y_expected, dW0_expected);

    mlpgrad::BatchTape<T> tape;
    std::vector<T> y_small(small_B);
    mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), small_B, 3), tape, mview(y_small));
    {
        FailingAllocations failing;  // B = 40 needs more room than B = 4: reset must allocate, and fails
        std::vector<T> yhat(B);
        EXPECT_THROW(mlpgrad::forward_batch(net, mlpgrad::MatrixView<const T>(X.data(), B, 3), tape, mview(yhat)),
                     std::bad_alloc);
    }
    EXPECT_TRUE(tape.recorded());  // the B = 4 pass is still there
    EXPECT_EQ(tape.batch(), small_B);
    run(tape, y, dW0);
    EXPECT_EQ(y, y_expected);
    EXPECT_EQ(dW0, dW0_expected);
}

}  // namespace
}  // namespace mlpgrad_test
