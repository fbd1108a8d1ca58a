// Vec<T>: a short SIMD vector for the kernels. GCC and Clang get their portable vector extensions
// (one AVX register where the build targets AVX, else one SSE/NEON register); other compilers get a
// one-lane scalar fallback with the same interface. No intrinsics, no dependency.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#if !defined(MLPGRAD_SIMD_BYTES)
#if defined(__GNUC__) || defined(__clang__)
#if defined(__AVX__)
#define MLPGRAD_SIMD_BYTES 32
#else
#define MLPGRAD_SIMD_BYTES 16
#endif
#else
#define MLPGRAD_SIMD_BYTES 0
#endif
#endif

// The number of vector registers the compiler may allocate: AVX-512VL gives 32 ymm registers to code that
// uses 32-byte vectors, AArch64 has 32 SIMD registers.
#if !defined(MLPGRAD_SIMD_REGISTERS)
#if defined(__AVX512VL__) || defined(__aarch64__)
#define MLPGRAD_SIMD_REGISTERS 32
#else
#define MLPGRAD_SIMD_REGISTERS 16
#endif
#endif

// Micro-kernels are kept out of line: inlined into a caller, GCC re-allocates their registers around
// the caller's code and can lose half their speed (measured: backward_batch 1.7× slower when inlined).
#if defined(__GNUC__) || defined(__clang__)
#define MLPGRAD_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define MLPGRAD_NOINLINE __declspec(noinline)
#else
#define MLPGRAD_NOINLINE
#endif

// Fully unrolls a loop over register-blocked accumulators so that they live in registers: without it GCC
// may keep a small array of them on the stack, depending on what else is in the translation unit
// (measured: the batch kernels 2x slower in one build of the Python module).
#if defined(__clang__)
#define MLPGRAD_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define MLPGRAD_UNROLL _Pragma("GCC unroll 16")
#else
#define MLPGRAD_UNROLL
#endif

namespace mlpgrad {
namespace simd {

// One lane of Vec's relu_signed and sign_clear_step (below), for the elements a vector loop leaves over.
template <class T>
T relu_signed_scalar(T a) { return a >= T(0) ? a + T(0) : T(-0.0); }
template <class T>
T sign_clear_step_scalar(T a) { return std::signbit(a) ? T(0) : T(1); }

#if MLPGRAD_SIMD_BYTES > 0

// The attribute needs a concrete element type (GCC ignores it on a template parameter).
template <class T>
struct native_vector;
template <>
struct native_vector<float> {
    typedef float type __attribute__((vector_size(MLPGRAD_SIMD_BYTES)));
};
template <>
struct native_vector<double> {
    typedef double type __attribute__((vector_size(MLPGRAD_SIMD_BYTES)));
};

template <class T>
struct Vec {
    using native = typename native_vector<T>::type;
    static constexpr std::size_t size = MLPGRAD_SIMD_BYTES / sizeof(T);
    native v;

    static Vec zero() { return {native{}}; }
    // Built as {a, a, ..., a}: one vbroadcast from memory (a loop or `native{} + a` costs extra shuffles/adds).
    static Vec broadcast(T a) { return splat(a, std::make_index_sequence<size>{}); }
    // memcpy compiles to one unaligned load/store: NumPy buffers need not be vector-aligned.
    // GCC 12 at -O3 reports -Warray-bounds for loads in loops that never run on a short buffer (it inlines a
    // caller's small std::vector and warns before proving the trip count is 0); callers only load in range.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
    static Vec load(const T* p) {
        Vec r;
        std::memcpy(&r.v, p, sizeof(native));
        return r;
    }
    void store(T* p) const { std::memcpy(p, &v, sizeof(native)); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    T operator[](std::size_t k) const { return v[k]; }

    // Keeps the value in a register: without it GCC re-loads a vector that several FMAs share as a memory
    // operand of each one, and the micro-kernels become load-bound.
    void pin() {
#if defined(__x86_64__) || defined(__i386__)
        __asm__("" : "+x"(v));
#elif defined(__aarch64__)
        __asm__("" : "+w"(v));
#endif
    }

    friend Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
    friend Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }

    // a where a > 0, else +0 (NaN gives 0): ReLU as a > 0 ? a : 0, by masking a's bits with the comparison.
    friend Vec positive_part(Vec a) {
        using mask = decltype(a.v > a.v);
        return {(native)((mask)a.v & (a.v > native{}))};
    }

    // 1 where a >= 0, else 0 (NaN gives 0): the ReLU derivative with σ'(0) = 1, as the bits of 1 masked by
    // the comparison, so that d · step(u) is the scalar d · (u >= 0 ? 1 : 0) lane by lane.
    friend Vec nonnegative_step(Vec a) {
        using mask = decltype(a.v > a.v);
        return {(native)((mask)broadcast(T(1)).v & (a.v >= native{}))};
    }

    // ReLU with its derivative in the sign bit, as the batch tape keeps it: a + 0 where a >= 0 (-0 becomes +0),
    // else -0 (NaN too). Numerically positive_part(a), and sign_clear_step() of it is nonnegative_step(a).
    friend Vec relu_signed(Vec a) {
        using mask = decltype(a.v > a.v);
        const mask keep = a.v >= native{};
        return {(native)(((mask)(a.v + native{}) & keep) | ((mask)broadcast(T(-0.0)).v & ~keep))};
    }

    // 1 where the sign bit of a is clear (+0 included), else 0: the bits as signed integers compared with 0.
    friend Vec sign_clear_step(Vec a) {
        using mask = decltype(a.v > a.v);
        return {(native)((mask)broadcast(T(1)).v & ((mask)a.v >= mask{}))};
    }

    // (a0, b0, a1, b1, ...) from the low halves of a and b, and the same from the high halves: the steps
    // of transpose() below.
    friend Vec interleave_low(Vec a, Vec b) { return interleave<0>(a, b, std::make_index_sequence<size>{}); }
    friend Vec interleave_high(Vec a, Vec b) { return interleave<size / 2>(a, b, std::make_index_sequence<size>{}); }

  private:
    template <std::size_t... I>
    static Vec splat(T a, std::index_sequence<I...>) {
        return {native{((void)I, a)...}};
    }
    // Lane I of the result: lane Offset + I/2 of a (I even) or of b (I odd).
    static constexpr int interleave_lane(std::size_t offset, std::size_t i) {
        return static_cast<int>((i % 2 ? size : 0) + offset + i / 2);
    }
    template <std::size_t Offset, std::size_t... I>
    static Vec interleave(Vec a, Vec b, std::index_sequence<I...>) {
#if defined(__clang__) || __GNUC__ >= 12
        return {__builtin_shufflevector(a.v, b.v, interleave_lane(Offset, I)...)};
#else
        using lane_index = std::conditional_t<sizeof(T) == 4, int, long long>;
        typedef lane_index mask __attribute__((vector_size(MLPGRAD_SIMD_BYTES)));
        return {__builtin_shuffle(a.v, b.v, mask{interleave_lane(Offset, I)...})};
#endif
    }
};

// rows[i] lane j ← rows[j] lane i, for a square block of size × size: log2(size) rounds of interleaving
// (a perfect-shuffle network), each lane moved by shuffles in registers.
template <class T>
inline void transpose(Vec<T> (&rows)[Vec<T>::size]) {
    constexpr std::size_t n = Vec<T>::size, half = n / 2;
    MLPGRAD_UNROLL
    for (std::size_t round = 1; round < n; round *= 2) {
        Vec<T> next[n];
        MLPGRAD_UNROLL
        for (std::size_t i = 0; i < half; ++i) {
            next[2 * i] = interleave_low(rows[i], rows[i + half]);
            next[2 * i + 1] = interleave_high(rows[i], rows[i + half]);
        }
        MLPGRAD_UNROLL
        for (std::size_t i = 0; i < n; ++i) rows[i] = next[i];
    }
}

#else

template <class T>
struct Vec {
    static constexpr std::size_t size = 1;
    T v;

    static Vec zero() { return {T(0)}; }
    static Vec broadcast(T a) { return {a}; }
    static Vec load(const T* p) { return {*p}; }
    void store(T* p) const { *p = v; }
    T operator[](std::size_t) const { return v; }
    void pin() {}

    friend Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
    friend Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
    friend Vec positive_part(Vec a) { return {a.v > T(0) ? a.v : T(0)}; }
    friend Vec nonnegative_step(Vec a) { return {a.v >= T(0) ? T(1) : T(0)}; }
    friend Vec relu_signed(Vec a) { return {relu_signed_scalar(a.v)}; }
    friend Vec sign_clear_step(Vec a) { return {sign_clear_step_scalar(a.v)}; }
};

// A 1 × 1 block is its own transpose.
template <class T>
inline void transpose(Vec<T> (&)[1]) {}

#endif

// Asks for the cache line at p ahead of a write that may also read it (a tile of C in the GEMM micro-kernel):
// the load of the line then overlaps the work before it. A hint only; nothing on compilers without it.
inline void prefetch_for_write(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 1, 3);
#else
    (void)p;
#endif
}

// Asks for the cache line at p ahead of a read (a gather the hardware prefetchers cannot predict, whose address
// is known some iterations early): a hint only, nothing on compilers without it.
inline void prefetch_for_read(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

// a·b + c; compilers contract it to one FMA where the target has one (no -ffast-math needed).
template <class T>
inline Vec<T> fma(Vec<T> a, Vec<T> b, Vec<T> c) {
    return a * b + c;
}

// Sum of the lanes, pairwise.
template <class T>
inline T horizontal_sum(Vec<T> a) {
    T lanes[Vec<T>::size];
    a.store(lanes);
    for (std::size_t half = Vec<T>::size / 2; half > 0; half /= 2)
        for (std::size_t k = 0; k < half; ++k) lanes[k] += lanes[k + half];
    return lanes[0];
}

}  // namespace simd
}  // namespace mlpgrad
