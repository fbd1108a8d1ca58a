// Software prefetch of the batch passes' gathers and scatters: the Z row (forward), the Z and ∂Z rows
// (backward) of the source s of the slot prefetch_distance edges ahead. Their addresses hang off the slot
// stream, which the hardware prefetchers follow, but the rows they name are random: once the tape outgrows L2
// each is a miss the out-of-order window overlaps only a few at a time. Prefetching them a fixed number of
// edges ahead keeps that many in flight. Prefetch never changes a value, only when a line arrives.
//
// The single-example passes do not prefetch: the same prefetches of z[s] and ∂z[s] measured 0.86-1.09x
// there (E = 1e6, 1e7, uniform and local, distances 8-128), and huge pages (glibc.malloc.hugetlb=1) did not
// change their time either. Each of their gathers moves a 64-byte line for one 8-byte value; that is
// consistent with passes limited by the lines they move rather than by the latency of each.
#pragma once

#include <cstddef>

#include "../gemm/blocking.hpp"
#include "../simd.hpp"
#include "graph.hpp"

// Edges between a slot and the one whose rows are prefetched (overridable, for a sweep with bench_dag). It
// must cover a DRAM miss (~100 ns on such machines; not measured here) with the work of the edges in between
// (8 ns per edge at B = 16 in cache, measured): at least 13 edges, so 16. Measured (E = 1e6 and 1e7, uniform and local, B = 16, double): the gain is flat
// from 16 to 128 (1.02-1.41x, within the machine's noise of each other) and a little lower at 8.
#if !defined(MLPGRAD_DAG_PREFETCH_DISTANCE)
#define MLPGRAD_DAG_PREFETCH_DISTANCE 16
#endif

namespace mlpgrad {
namespace dag {
namespace detail {

constexpr std::size_t prefetch_distance = MLPGRAD_DAG_PREFETCH_DISTANCE;
constexpr std::size_t cache_line = 64;

// Whether the batch passes, which gather rows of `row_bytes` (B examples) from tapes of n_nodes rows, should
// prefetch them: when one tape block (Z) is more than twice L2. Then most gathers, Z forward and Z and ∂Z
// backward, miss L2, and keeping prefetch_distance edges of them in flight pays; below, most still hit L2
// (the sources of a uniform DAG crowd towards the low ids, those of a local one sit in a window) or L3 at a
// latency the out-of-order window nearly hides, and the prefetch instructions only cost issue slots.
// Measured with mlpgrad_bench_dag (B = 16, double, prefetch forced on against a build without, alternated):
// 0.82-0.90x at E = 1e4 to 5e4 (a Z tape of 0.16-0.8 MB), 0.83-1.05x at 1e5 (1.6 MB, six runs), 1.15-1.17x
// at 2e5 (3.2 MB) and 1.16-1.28x at 3e5 and 5e5.
inline bool prefetch_pays(std::size_t n_nodes, std::size_t row_bytes, const gemm::CacheSizes& caches = {}) {
    return n_nodes * row_bytes > 2 * caches.l2;
}

// Every cache line of [p, p + bytes).
inline void prefetch_row_for_read(const void* p, std::size_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (std::size_t off = 0; off < bytes; off += cache_line) simd::prefetch_for_read(c + off);
    if (bytes % cache_line) simd::prefetch_for_read(c + bytes - 1);
}
inline void prefetch_row_for_write(const void* p, std::size_t bytes) {
    const char* c = static_cast<const char*>(p);
    for (std::size_t off = 0; off < bytes; off += cache_line) simd::prefetch_for_write(c + off);
    if (bytes % cache_line) simd::prefetch_for_write(c + bytes - 1);
}

// The slots in the order the backward passes visit them -- levels from the last to the first, each level's
// slots in order -- kept `prefetch_distance` slots ahead of the pass: call next() once per edge the pass
// handles, in that order, and it yields the source position of the slot that far ahead (or `none` near the
// end). A pass that skips levels (dense ones, or ones split over threads) calls restart(l) before level l.
template <class T>
class BackwardLookahead {
  public:
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    explicit BackwardLookahead(const Graph<T>& g) : g_(g) { restart(g.n_levels() - 1); }
    // Ahead of the first slot of `level`.
    void restart(std::size_t level) {
        level_ = level + 1;
        enter_previous_level();
        for (std::size_t i = 0; i < prefetch_distance && slot_ != end_; ++i) advance();
    }
    std::size_t next() {
        if (slot_ == end_) return none;
        const std::size_t s = g_.slot_source(slot_);
        advance();
        return s;
    }

  private:
    void advance() {
        if (++slot_ == end_) enter_previous_level();
    }
    // Into the previous level with any slots; slot_ == end_ once none is left (levels 1.. hold every slot).
    void enter_previous_level() {
        while (level_ > 1) {
            --level_;
            slot_ = g_.in_begin(g_.level_begin(level_));
            end_ = g_.in_begin(g_.level_begin(level_ + 1));
            if (slot_ != end_) return;
        }
        slot_ = end_ = 0;
    }

    const Graph<T>& g_;
    std::size_t level_ = 0, slot_ = 0, end_ = 0;
};

}  // namespace detail
}  // namespace dag
}  // namespace mlpgrad
