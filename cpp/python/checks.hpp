// Argument checks for the Python binding: every bad input becomes a TypeError or ValueError that names the
// argument, what it got and what was expected, raised before anything is written.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mlpgrad_python {

namespace py = pybind11;

enum class DType { float32, float64 };

template <class T>
constexpr DType dtype_of() {
    return sizeof(T) == 4 ? DType::float32 : DType::float64;
}

inline const char* dtype_name(DType d) { return d == DType::float32 ? "float32" : "float64"; }

inline std::string type_name(py::handle h) { return Py_TYPE(h.ptr())->tp_name; }

inline std::string shape_string(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string shape_string(const std::vector<std::size_t>& shape) {
    std::string s = "(";
    for (std::size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::string dtype_string(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline constexpr int c_contiguous_and_aligned =
    py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

inline bool is_c_contiguous_and_aligned(const py::array& a) {
    return (a.flags() & c_contiguous_and_aligned) == c_contiguous_and_aligned;
}

// `obj` itself as an ndarray (never a converted copy), or TypeError.
inline py::array require_ndarray(py::handle obj, const std::string& what, const char* why_no_copy) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(what + " must be a numpy.ndarray of float32 or float64, got " + type_name(obj) + " (" +
                             why_no_copy + ")");
    return py::reinterpret_borrow<py::array>(obj);
}

// The items of a list or tuple (checked by the caller), read from its storage: no user code runs, so a
// subclass with a broken __len__ or __getitem__ cannot raise an arbitrary exception here.
inline std::vector<py::handle> items_of(py::handle list_or_tuple) {
    PyObject* seq = list_or_tuple.ptr();
    const bool is_list = PyList_Check(seq);
    const Py_ssize_t n = is_list ? PyList_GET_SIZE(seq) : PyTuple_GET_SIZE(seq);
    std::vector<py::handle> items;
    items.reserve(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) items.emplace_back(is_list ? PyList_GET_ITEM(seq, i) : PyTuple_GET_ITEM(seq, i));
    return items;
}

inline DType float_dtype(const py::array& a, const std::string& what) {
    if (a.dtype().is(py::dtype::of<double>()) || a.dtype().equal(py::dtype::of<double>())) return DType::float64;
    if (a.dtype().equal(py::dtype::of<float>())) return DType::float32;
    throw py::type_error(what + " has dtype " + dtype_string(a) +
                         "; expected float32 or float64 in native byte order");
}

inline void require_dtype(const py::array& a, DType expected, const std::string& what, const std::string& whose,
                          const char* rule = "every array of a network must share one dtype") {
    const DType got = float_dtype(a, what);
    if (got != expected)
        throw py::type_error(what + " has dtype " + dtype_name(got) + " but " + whose + " " + dtype_name(expected) +
                             "; " + rule);
}

inline void require_ndim(const py::array& a, py::ssize_t ndim, const std::string& what, const char* expected) {
    if (a.ndim() != ndim)
        throw py::value_error(what + " must be " + std::to_string(ndim) + "-D with shape " + expected + ", got a " +
                              std::to_string(a.ndim()) + "-D array of shape " + shape_string(a));
}

inline void require_layout(const py::array& a, const std::string& what) {
    if (!is_c_contiguous_and_aligned(a))
        throw py::value_error(what + " of shape " + shape_string(a) +
                              " is not a C-contiguous, aligned array; mlpgrad works in place on the caller's "
                              "memory and never copies it: pass np.ascontiguousarray(...) and keep that array");
}

inline void require_writeable(const py::array& a, const std::string& what) {
    if (!a.writeable()) throw py::value_error(what + " is read-only; gradients are written into it");
}

// Size arithmetic that refuses to wrap around: false when a·b or a + b does not fit in size_t.
inline bool checked_mul(std::size_t a, std::size_t b, std::size_t& out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    out = a * b;
    return true;
}
inline bool checked_add(std::size_t a, std::size_t b, std::size_t& out) {
    if (b > SIZE_MAX - a) return false;
    out = a + b;
    return true;
}
// The most bytes one buffer may span: NumPy's and std::vector's limit.
inline constexpr std::size_t max_buffer_bytes = static_cast<std::size_t>(PTRDIFF_MAX);

// Byte ranges of C-contiguous arrays, to refuse outputs that alias each other or the weights.
struct ByteRange {
    const char* begin;
    const char* end;
};

inline ByteRange byte_range(const py::array& a) {
    const char* p = static_cast<const char*>(a.data());
    return {p, p + a.nbytes()};
}

inline bool overlap(const ByteRange& a, const ByteRange& b) {
    return a.begin != a.end && b.begin != b.end && a.begin < b.end && b.begin < a.end;
}

struct NamedArray {
    std::string name;
    py::array array;
};

// ValueError naming the first pair of `outputs` that overlaps another output or one of `inputs`.
inline void require_disjoint(const std::vector<NamedArray>& outputs, const std::vector<NamedArray>& inputs) {
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        const ByteRange r = byte_range(outputs[i].array);
        for (std::size_t j = i + 1; j < outputs.size(); ++j)
            if (overlap(r, byte_range(outputs[j].array)))
                throw py::value_error(outputs[i].name + " overlaps " + outputs[j].name +
                                      " in memory; every gradient needs its own buffer");
        for (const auto& in : inputs)
            if (overlap(r, byte_range(in.array)))
                throw py::value_error(outputs[i].name + " overlaps " + in.name +
                                      " in memory; gradients must not be written over the network");
    }
}

// Per call, just before the core writes into out= arrays: refuses any that the caller has reallocated,
// reshaped or made read-only since `owner` (e.g. "this Gradients") was made, when the views point into
// their old buffers. guards[i] (ArrayGuard) watches named()[i]; named() runs only when one has changed, so the
// usual call allocates nothing.
template <class Guards, class Named>
void require_outputs_unchanged(const Guards& guards, const Named& named, const char* owner, const char* remedy) {
    for (std::size_t i = 0; i < guards.size(); ++i) {
        if (guards[i].unchanged()) continue;
        const NamedArray changed = named()[i];
        if (guards[i].only_made_read_only()) require_writeable(changed.array, changed.name);  // throws
        throw py::value_error(changed.name + " was resized or reallocated after " + owner +
                              " was made (its buffer, shape, dtype or layout changed); make new gradients with " +
                              remedy);
    }
}

}  // namespace mlpgrad_python
