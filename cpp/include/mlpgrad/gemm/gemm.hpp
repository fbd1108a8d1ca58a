// Packed GEMM for the batch layers: C = A B or C += A B, then an epilogue on each final tile.
//
// Design (Goto's algorithm, BLIS's split of blocking and kernel):
//   for jc over N in steps of nc:                      a kc × nc panel of B, packed, lives in L3
//     for pc over the depth blocks (≤ kc each):
//       pack B(pc, jc) into kc × nr micro-panels
//       for ic over M in steps of mc:                   an mc × kc block of A, packed, lives in L2
//         pack A(ic, pc) into mr × kc micro-panels     (or read A in place, below)
//         for jr over the panel in steps of nr:         the kc × nr micro-panel of B stays in L1
//           for ir over the block in steps of mr:       mr × kc micro-panels of A stream from L2
//             micro-kernel: the mr × nr tile of C in registers, kc rank-1 updates, added to C
//             after the last depth block: the epilogue on the tile (bias, σ, σ'), still in L1
//             (epilogue.hpp; ReLU's in the micro-kernel, on the tile's registers before they are stored)
// Block sizes come from the cache sizes (blocking.hpp: kc = L1/2 / (nr·sizeof T), mc = L2/2 / (kc·sizeof T),
// nc = L3 share/2 / (kc·sizeof T)); the register block from the vector width (6 × 2 vectors: 12 accumulators
// hide the FMA latency of two ports with 15 of 16 registers).
//
// Operands are strided views (pack.hpp), so the three products of a batch layer on feature-major tapes,
// U = W Z, ∂W = ∂U Zᵀ and ∂Z = Wᵀ ∂U, read W, Zᵀ and Wᵀ where they lie; the packing does the transposing.
// Edge tiles: packing zero-pads B to whole nr-column panels (and A to mr rows); a tile with fewer than nr
// columns (or, A packed, fewer than mr rows) left is computed into a small buffer and its valid part added
// to C: only tiles on the right and bottom edges take that path, one small copy each.
//
// A is packed only when its block is reused enough: packing reads and writes each element of A once, the
// micro-kernels then read it N / nr times. For few columns (a batch of 32) the packing costs more than the
// faster access saves, and the micro-kernel reads A in place with its strides instead (mr-row variants for
// the last rows). The thresholds (Settings::pack_a_min_columns, pack_a_transposed_min_columns) are measured
// with cpp/bench/bench_gemm.cpp --pack-a.
//
// Accuracy: each element of C is one accumulator lane summing at most kc products in order, then the
// partial sums of the ⌈K / kc⌉ depth blocks are added to C in order, so a float32 sum of K products has a
// first-order error bound (kc + ⌈K / kc⌉) · u · Σ|a b|: 2 · √K · u · Σ|a b| for K = kc² = 65,536, where a
// single running sum would be K · u · Σ|a b|.
//
// Threads: the output tiles are split into a grid of parts (over M and N, never over K), one task each,
// on tile boundaries, so each element of C is computed by exactly one thread with the same blocking and
// order: results are bit-for-bit the same for any number of threads. Each part packs the operand blocks it
// needs itself (no barriers); the grid shape minimises the largest part's work plus its packing. Products
// smaller than Settings::min_flops_per_thread per thread run on fewer threads (derived from measurements,
// see Settings). One part per thread balances well on idle cores; when another process holds a core, the
// part its worker took waits for it (finer parts, or one packed B panel shared by all threads, would fix
// that at the price of more packing or of barriers).
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../parallel/thread_pool.hpp"
#include "../views.hpp"
#include "blocking.hpp"
#include "epilogue.hpp"
#include "microkernel.hpp"
#include "pack.hpp"

namespace mlpgrad {
namespace gemm {

enum class Update { overwrite, accumulate };  // C = A B, or C += A B (before the epilogue)

// Reusable packing buffers: a caller that multiplies often keeps one, so that no call allocates.
template <class T>
class Workspace {
  public:
    // At least n elements; keeps what it has when that is enough. Throws std::bad_alloc before any C is written.
    T* reserve(std::size_t n) {
        if (storage_.size() < n) {
            aligned_vector<T> bigger(n);
            storage_.swap(bigger);
        }
        return storage_.data();
    }

  private:
    aligned_vector<T> storage_;
};

template <class T>
struct Settings {
    parallel::ThreadPool* pool = nullptr;  // null: the calling thread alone
    Blocking blocking = blocking_for<T>();  // mr and nr are the micro-kernel's whatever is set here
    // A product of F floating-point operations (2 per multiply-add) runs on at most F / min_flops_per_thread
    // threads. Derived from two measurements (bench_gemm --dispatch and --sweep, one core ≈ 100 GFLOP/s
    // float): a pool run costs the caller 0.1-0.3 µs when a worker is awake (spinning after the previous
    // product) and 2.3 µs at best when it sleeps, so a split pays from 20-35 kflop per thread awake and
    // ~230 kflop asleep; and when no worker comes (its core busy: the caller then runs every part) the
    // split costs the caller its redundant packing and a second pass over the tiles: 10-36 % of a product
    // below 70 kflop, 5-14 % at 150 kflop, from 500 kflop up mostly 1-4 % (at most 11 %). 2¹⁸ = 262,144 per
    // thread (the asleep break-even) splits products from 524,288 flops (~5 µs), where the worst case loses a
    // few percent and the best halves the time; smaller ones (a 64-wide layer at B = 32) stay on one thread.
    std::size_t min_flops_per_thread = std::size_t(1) << 18;
    // Pack A only for products with at least this many columns, for A row-major (W in U = W Z; read in place
    // as mr row streams) and for A transposed (Wᵀ in ∂Z = Wᵀ ∂U; read in place one strided line per depth
    // step). Measured (bench_gemm --pack-a, A of 256 × 784, one core): row-major A in place is faster up to
    // N = 256 (float) / 128 (double) and as fast at 512; transposed A packed is faster from N = 128 (float)
    // / 64 (double).
    std::size_t pack_a_min_columns = sizeof(T) == 4 ? 512 : 256;
    std::size_t pack_a_transposed_min_columns = sizeof(T) == 4 ? 128 : 64;
    Workspace<T>* workspace = nullptr;  // null: buffers allocated for this call
};

namespace detail {

inline std::string shape(std::size_t r, std::size_t c) {
    return "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}

inline std::size_t ceil_div(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

// A rectangle of output tiles: rows [m0, m1), columns [n0, n1) of C.
struct Part {
    std::size_t m0, m1, n0, n1;
};

// The grid of parts: pm × pn parts over the tm × tn tiles.
struct Grid {
    std::size_t pm = 1, pn = 1;
    Part part(std::size_t index, std::size_t M, std::size_t N, const Blocking& b) const {
        const std::size_t tm = ceil_div(M, b.mr), tn = ceil_div(N, b.nr), i = index / pn, j = index % pn;
        return {std::min(M, i * tm / pm * b.mr), std::min(M, (i + 1) * tm / pm * b.mr),
                std::min(N, j * tn / pn * b.nr), std::min(N, (j + 1) * tn / pn * b.nr)};
    }
};

// The cheapest grid of at most `threads` parts: the largest part's multiply-adds plus its packing, at
// `pack_cost` multiply-adds per packed element (packing moves one element in about the time the
// micro-kernel does one vector FMA, 2·V multiply-adds with two FMA ports), and never more parts than the
// work per thread allows.
inline Grid choose_grid(std::size_t M, std::size_t N, std::size_t K, bool pack_a, std::size_t threads,
                        std::size_t min_flops_per_thread, const Blocking& b, std::size_t pack_cost) {
    const std::size_t tm = ceil_div(M, b.mr), tn = ceil_div(N, b.nr);
    const double flops = 2.0 * double(M) * double(N) * double(K);
    const double by_work = min_flops_per_thread ? flops / double(min_flops_per_thread) : double(threads);
    const std::size_t most = std::max<std::size_t>(1, std::min<double>(double(threads), by_work));
    Grid best;
    double best_cost = -1;
    for (std::size_t p = 1; p <= most; ++p)
        for (std::size_t pm = 1; pm <= p; ++pm) {
            if (p % pm || pm > tm || p / pm > tn) continue;
            const std::size_t pn = p / pm;
            const double rows = double(ceil_div(tm, pm) * b.mr), cols = double(ceil_div(tn, pn) * b.nr);
            const double packed = (pack_a ? rows * K : 0.0) + double(K) * cols;
            const double cost = rows * cols * double(K) + double(pack_cost) * packed;
            if (best_cost < 0 || cost < best_cost) {
                best_cost = cost;
                best = {pm, pn};
            }
        }
    return best;
}

// One part of C: Goto's loop nest (see the top of this file) over rows [m0, m1) and columns [n0, n1).
template <class T, class Epilogue>
void multiply_part(Operand<T> A, Operand<T> B, MatrixView<T> C, Update update, const Epilogue& epilogue,
                   const Blocking& b, bool pack_a, Part part, T* a_buffer, T* b_buffer) {
    constexpr std::size_t MR = RegisterBlock<T>::mr, NR = RegisterBlock<T>::nr;
    const DepthBlocks depth(A.cols, b.kc);
    alignas(64) T edge[MR * NR];
    // The micro-kernels' epilogue: this one when it works on registers, else none (it runs on C afterwards).
    using Fused = std::conditional_t<epilogue_in_registers<Epilogue>, Epilogue, Store>;
    const Fused* registers = nullptr;
    if constexpr (std::is_same_v<Fused, Epilogue>) registers = &epilogue;
    for (std::size_t jc = part.n0; jc < part.n1; jc += b.nc) {
        const std::size_t n = std::min(b.nc, part.n1 - jc);
        for (std::size_t p = 0; p < depth.count; ++p) {
            const std::size_t k0 = depth.begin(p), kc = depth.length(p);
            const bool add = p > 0 || update == Update::accumulate, last = p + 1 == depth.count;
            pack_b(B, k0, kc, jc, n, b_buffer);
            for (std::size_t ic = part.m0; ic < part.m1; ic += b.mc) {
                const std::size_t m = std::min(b.mc, part.m1 - ic);
                if (pack_a) gemm::pack_a(A, ic, m, k0, kc, a_buffer);
                for (std::size_t jr = 0; jr < n; jr += NR) {
                    const std::size_t w = std::min(NR, n - jr);
                    const T* b_panel = b_buffer + jr / NR * b_panel_stride<T>(kc);
                    for (std::size_t ir = 0; ir < m; ir += MR) {
                        const std::size_t h = std::min(MR, m - ir), row = ic + ir, col = jc + jr;
                        T* c = C.row(row) + col;
                        // A packed tile always has mr rows (zero-padded): only whole ones go straight to C.
                        const bool whole = w == NR && (h == MR || !pack_a);
                        T* out = whole ? c : edge;
                        const std::size_t ldc = whole ? C.cols : NR;
                        // A final whole tile takes a register epilogue in the micro-kernel itself.
                        const Fused* fused = last && whole ? registers : nullptr;
                        if (pack_a)
                            microkernel<T, MR, true, Fused>(kc, a_buffer + ir * kc, 1, MR, b_panel, out, ldc,
                                                            add && whole, fused, row, col);
                        else
                            unpacked_microkernel<T, Fused>(h)(kc, A.at(row, k0), A.row_stride, A.col_stride, b_panel,
                                                              out, ldc, add && whole, fused, row, col);
                        if (!whole)
                            for (std::size_t r = 0; r < h; ++r)
                                for (std::size_t j = 0; j < w; ++j)
                                    c[r * C.cols + j] = add ? c[r * C.cols + j] + edge[r * NR + j] : edge[r * NR + j];
                        if (last && !fused) epilogue(C, row, col, h, w);
                    }
                }
            }
        }
    }
}

// The blocking with the micro-kernel's register block and block sizes it can run: kc ≥ 1, mc and nc whole
// numbers of register blocks.
inline Blocking usable(Blocking b, std::size_t mr, std::size_t nr) {
    b.mr = mr;
    b.nr = nr;
    b.kc = std::max<std::size_t>(1, b.kc);
    b.mc = std::max(mr, b.mc - b.mc % mr);
    b.nc = std::max(nr, b.nc - b.nc % nr);
    return b;
}

template <class T>
void require_operands(const Operand<T>& A, const Operand<T>& B, const MatrixView<T>& C) {
    if (A.cols != B.rows)
        throw std::invalid_argument("B has " + std::to_string(B.rows) + " rows but A has " + std::to_string(A.cols) +
                                    " columns (A " + shape(A.rows, A.cols) + ", B " + shape(B.rows, B.cols) + ")");
    if (C.rows != A.rows || C.cols != B.cols)
        throw std::invalid_argument("C has shape " + shape(C.rows, C.cols) + " but expected " +
                                    shape(A.rows, B.cols) + " (the rows of A by the columns of B)");
    if (A.data == nullptr && A.rows * A.cols != 0) throw std::invalid_argument("A is a null view");
    if (B.data == nullptr && B.rows * B.cols != 0) throw std::invalid_argument("B is a null view");
    if (C.data == nullptr && C.rows * C.cols != 0) throw std::invalid_argument("C is a null view");
}

}  // namespace detail

namespace detail {

// What multiply() decides before it computes: the blocking, whether A is packed, the grid of parts, and the
// packing buffers of one part (each a whole number of cache lines; one slot per part).
struct Plan {
    Blocking b;
    bool pack_a = false;
    Grid grid;
    std::size_t a_size = 0, b_size = 0;
    std::size_t parts() const { return grid.pm * grid.pn; }
    std::size_t workspace() const { return parts() * (a_size + b_size); }
};

template <class T>
Plan plan(const Operand<T>& A, std::size_t N, const Settings<T>& settings) {
    const std::size_t M = A.rows, K = A.cols;
    Plan p;
    p.b = usable(settings.blocking, RegisterBlock<T>::mr, RegisterBlock<T>::nr);
    if (M == 0 || N == 0 || K == 0) return p;
    const Blocking& b = p.b;
    p.pack_a = N >= (A.row_stride == 1 && A.col_stride != 1 ? settings.pack_a_transposed_min_columns
                                                              : settings.pack_a_min_columns);
    const std::size_t threads = settings.pool ? settings.pool->size() : 1;
    p.grid = choose_grid(M, N, K, p.pack_a, threads, settings.min_flops_per_thread, b, 2 * RegisterBlock<T>::vector);
    const std::size_t kc = DepthBlocks(K, b.kc).length(0), line = std::max<std::size_t>(1, 64 / sizeof(T));
    const std::size_t rows = ceil_div(ceil_div(M, b.mr), p.grid.pm) * b.mr;
    const std::size_t cols = ceil_div(ceil_div(N, b.nr), p.grid.pn) * b.nr;
    p.a_size = p.pack_a ? ceil_div(std::min(b.mc, rows) * kc, line) * line : 0;
    // Room for the longest depth block's panels; a shorter block's stride is at most kc · nr + one line.
    p.b_size = ceil_div(std::min(b.nc, cols) / b.nr * (kc * b.nr + line), line) * line;
    return p;
}

}  // namespace detail

// Elements of Workspace that multiply(A, B, C, ..., settings) needs for A (M × K) and N columns of B: a
// caller that reserves them first knows that the product will not allocate (nor throw std::bad_alloc).
template <class T>
std::size_t workspace_size(const Operand<T>& A, std::size_t N, const Settings<T>& settings = {}) {
    return detail::plan(A, N, settings).workspace();
}

// C (M × N, row-major) = A B (update = overwrite) or C + A B (accumulate), A of M × K and B of K × N strided
// operands; then epilogue(C, row, col, m, n) on every final region of C. C must not overlap A or B.
// Throws std::invalid_argument (shapes, before any write), std::bad_alloc (buffers, before any write).
template <class T, class Epilogue = Store>
void multiply(Operand<T> A, Operand<T> B, MatrixView<T> C, Update update = Update::overwrite,
              const Epilogue& epilogue = {}, const Settings<T>& settings = {}) {
    detail::require_operands(A, B, C);
    const std::size_t M = C.rows, N = C.cols, K = A.cols;
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (update == Update::overwrite) std::fill(C.data, C.data + C.size(), T(0));
        epilogue(C, 0, 0, M, N);
        return;
    }
    const detail::Plan p = detail::plan(A, N, settings);
    Workspace<T> local;
    Workspace<T>& workspace = settings.workspace ? *settings.workspace : local;
    T* buffers = workspace.reserve(p.workspace());

    auto run_part = [&](std::size_t i) {
        T* slot = buffers + i * (p.a_size + p.b_size);
        detail::multiply_part(A, B, C, update, epilogue, p.b, p.pack_a, p.grid.part(i, M, N, p.b), slot,
                              slot + p.a_size);
    };
    if (p.parts() > 1)
        settings.pool->run(p.parts(), run_part);
    else
        run_part(0);
}

}  // namespace gemm
}  // namespace mlpgrad
