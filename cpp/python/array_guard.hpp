// ArrayGuard: what the binding validated about an array whose buffer it keeps viewing (a weight, alpha, an
// out= array), so that every call can tell in a few loads whether the caller has changed it since.
// ndarray.resize(..., refcheck=False) frees the buffer and allocates another under the same object, and
// assigning a.shape, a.dtype or a.flags changes an array in place: the core's cached views would then read
// freed memory or write past the end of the new buffer.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <stdexcept>

namespace mlpgrad_python {

namespace py = pybind11;

class ArrayGuard {
  public:
    using api = py::detail::npy_api;
    static constexpr int layout_flags = api::NPY_ARRAY_C_CONTIGUOUS_ | api::NPY_ARRAY_ALIGNED_;
    static constexpr int output_flags = layout_flags | api::NPY_ARRAY_WRITEABLE_;

    // `a` as it is now, which must have every flag in `required_flags` (checked by the caller). The owner
    // keeps `a` alive for as long as the guard.
    ArrayGuard(const py::array& a, int required_flags)
        : array_(a.ptr()), data_(a.data()), descr_(a.dtype()), required_flags_(required_flags),
          ndim_(static_cast<int>(a.ndim())) {
        if (ndim_ > static_cast<int>(dims_.size())) throw std::logic_error("ArrayGuard: more than 2 dimensions");
        for (int d = 0; d < ndim_; ++d) dims_[static_cast<std::size_t>(d)] = a.shape(d);
    }

    // Same buffer, shape, dtype and required flags as at construction. No allocation.
    bool unchanged() const { return matches(required_flags_); }

    // When unchanged() is false: whether only the writeable flag was lost (a different message: nothing moved).
    bool only_made_read_only() const {
        constexpr int writeable = api::NPY_ARRAY_WRITEABLE_;
        return (required_flags_ & writeable) && !(py::detail::array_proxy(array_)->flags & writeable) &&
               matches(required_flags_ & ~writeable);
    }

  private:
    // The dtype is compared by identity first (NumPy's built-in dtypes are singletons), by equivalence only
    // when that differs.
    bool matches(int flags) const {
        const auto* p = py::detail::array_proxy(array_);
        if (p->data != data_ || p->nd != ndim_ || (p->flags & flags) != flags) return false;
        for (int d = 0; d < ndim_; ++d)
            if (p->dimensions[d] != dims_[static_cast<std::size_t>(d)]) return false;
        return p->descr == descr_.ptr() || api::get().PyArray_EquivTypes_(p->descr, descr_.ptr());
    }

    PyObject* array_;  // borrowed from the owner
    const void* data_;
    py::object descr_;  // kept alive, so that a new dtype cannot reuse its address
    int required_flags_;
    int ndim_;
    std::array<py::ssize_t, 2> dims_{};  // every array a network or a Gradients keeps is 0-D to 2-D
};

}  // namespace mlpgrad_python
