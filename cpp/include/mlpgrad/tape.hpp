// Tape<T>: the caller-owned record of a forward pass (u^t, z^t) plus the backward pass's scratch space.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "views.hpp"

namespace mlpgrad {

// One tape per concurrent computation: the Network is shared and read-only, the tape is not.
template <class T>
class Tape {
  public:
    Tape() = default;
    explicit Tape(const std::vector<std::size_t>& widths) { reset(widths); }

    // Sizes the tape for widths K_0..K_T (allocating only when they change) and marks it empty.
    // Strong guarantee: if the allocation throws (std::bad_alloc, or std::length_error for sizes that do
    // not fit in size_t), the tape is exactly as it was, its previous record included.
    void reset(const std::vector<std::size_t>& widths) {
        if (widths == widths_) {
            recorded_ = false;
            return;
        }
        std::vector<std::size_t> new_widths = widths;
        std::vector<std::size_t> offsets(widths.size() + 1, 0);
        std::size_t max_width = 0;
        for (std::size_t t = 0; t < widths.size(); ++t) {
            offsets[t + 1] = detail::checked_sum(offsets[t], widths[t]);
            max_width = widths[t] > max_width ? widths[t] : max_width;
        }
        const std::size_t n = offsets.back();
        // z^0..z^T, then u^1..u^T (stored at the offsets of z^1..z^T, shifted by n), then three scratch
        // vectors (∂ŷ/∂z, ∂ŷ/∂u and the blocked transpose-matvec's partial sums).
        aligned_vector<T> storage(detail::checked_sum(detail::checked_product(2, n), detail::checked_product(3, max_width)),
                                  T(0));
        // Everything that can throw is done: commit.
        widths_.swap(new_widths);
        offsets_.swap(offsets);
        storage_.swap(storage);
        max_width_ = max_width;
        recorded_ = false;
    }

    const std::vector<std::size_t>& widths() const { return widths_; }
    std::size_t depth() const { return widths_.empty() ? 0 : widths_.size() - 1; }
    bool recorded() const { return recorded_; }
    void mark_recorded() { recorded_ = true; }

    VectorView<T> z(std::size_t t) { return {storage_.data() + offsets_[t], widths_[t]}; }  // z^t, t = 0..T
    VectorView<const T> z(std::size_t t) const { return {storage_.data() + offsets_[t], widths_[t]}; }
    // u^t in the notes' numbering, t = 1..T.
    VectorView<T> u(std::size_t t) { return {storage_.data() + offsets_.back() + offsets_[t], widths_[t]}; }
    VectorView<const T> u(std::size_t t) const {
        return {storage_.data() + offsets_.back() + offsets_[t], widths_[t]};
    }
    T yhat() const { return yhat_; }  // ŷ of the recorded pass, for a network with one output
    void set_yhat(T y) { yhat_ = y; }

    // Three vectors of the largest width: ∂ŷ/∂z and ∂ŷ/∂u when the caller does not keep them, and the
    // partial sums of the blocked transpose-matvec.
    T* scratch(std::size_t which) { return storage_.data() + 2 * offsets_.back() + which * max_width_; }

    // True if [p, p + n) shares memory with the tape: such an input must be copied before the tape is
    // reset, and such an output is refused.
    bool overlaps(const T* p, std::size_t n) const {
        return detail::overlaps(p, n, storage_.data(), storage_.size());
    }

  private:
    std::vector<std::size_t> widths_;
    std::vector<std::size_t> offsets_;
    aligned_vector<T> storage_;
    std::size_t max_width_ = 0;
    T yhat_ = T(0);
    bool recorded_ = false;
};

}  // namespace mlpgrad
