// Non-owning views of caller memory, and the shape checks every entry point shares.
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace mlpgrad {

// A contiguous vector of `size` elements at `data` (not owned).
template <class T>
struct VectorView {
    T* data = nullptr;
    std::size_t size = 0;

    constexpr VectorView() = default;
    constexpr VectorView(T* d, std::size_t n) : data(d), size(n) {}
    // A mutable view converts to a read-only one, never the other way round.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr VectorView(const VectorView<U>& other) : data(other.data), size(other.size) {}

    constexpr T& operator[](std::size_t i) const { return data[i]; }
    constexpr T* begin() const { return data; }
    constexpr T* end() const { return data + size; }
};

// A row-major, C-contiguous matrix (row stride == cols) at `data` (not owned).
template <class T>
struct MatrixView {
    T* data = nullptr;
    std::size_t rows = 0;
    std::size_t cols = 0;

    constexpr MatrixView() = default;
    constexpr MatrixView(T* d, std::size_t r, std::size_t c) : data(d), rows(r), cols(c) {}
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    constexpr MatrixView(const MatrixView<U>& other) : data(other.data), rows(other.rows), cols(other.cols) {}

    constexpr T* row(std::size_t i) const { return data + i * cols; }
    constexpr std::size_t size() const { return rows * cols; }
};

// Cache-line-aligned storage for tapes, so that the kernels' vector loads never straddle two lines.
template <class T, std::size_t Alignment = 64>
struct aligned_allocator {
    using value_type = T;
    template <class U>
    struct rebind {
        using other = aligned_allocator<U, Alignment>;
    };
    aligned_allocator() noexcept = default;
    template <class U>
    aligned_allocator(const aligned_allocator<U, Alignment>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(Alignment))); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(Alignment)); }
    friend bool operator==(const aligned_allocator&, const aligned_allocator&) noexcept { return true; }
    friend bool operator!=(const aligned_allocator&, const aligned_allocator&) noexcept { return false; }
};

template <class T>
using aligned_vector = std::vector<T, aligned_allocator<T>>;

namespace detail {

// Keeps a parameter out of template deduction, so a MatrixView<T> argument converts to MatrixView<const T>.
template <class T>
struct type_identity {
    using type = T;
};
template <class T>
using nondeduced = typename type_identity<T>::type;

inline std::string shape_string(std::size_t n) { return "(" + std::to_string(n) + ",)"; }
inline std::string shape_string(std::size_t r, std::size_t c) {
    return "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}

// Buffer sizes, refused with std::length_error (as std::vector does) when they do not fit in size_t, so
// that a wrapped size never allocates a buffer that is too small.
inline std::size_t checked_sum(std::size_t a, std::size_t b) {
    if (a > std::numeric_limits<std::size_t>::max() - b) throw std::length_error("mlpgrad: buffer size overflows size_t");
    return a + b;
}
inline std::size_t checked_product(std::size_t a, std::size_t b) {
    if (b != 0 && a > std::numeric_limits<std::size_t>::max() / b)
        throw std::length_error("mlpgrad: buffer size overflows size_t");
    return a * b;
}

// True if [a, a + n) and [b, b + m) share an element. std::less gives a total order even for pointers
// into different objects, where the built-in < is unspecified.
template <class T, class U>
bool overlaps(const T* a, std::size_t n, const U* b, std::size_t m) {
    if (n == 0 || m == 0 || a == nullptr || b == nullptr) return false;
    const auto* a0 = reinterpret_cast<const unsigned char*>(a);
    const auto* b0 = reinterpret_cast<const unsigned char*>(b);
    const std::less<const unsigned char*> before;
    return before(a0, b0 + m * sizeof(U)) && before(b0, a0 + n * sizeof(T));
}

inline constexpr std::size_t no_index = static_cast<std::size_t>(-1);

// "what" or "what[index]"; built only when an error is reported, so checks cost no allocation.
inline std::string argument_name(const char* what, std::size_t index) {
    return index == no_index ? std::string(what) : std::string(what) + "[" + std::to_string(index) + "]";
}

// Throws std::invalid_argument naming the argument unless the view has `expected` elements.
template <class T>
void require_size(const VectorView<T>& v, std::size_t expected, const char* what, std::size_t index = no_index) {
    if (v.size != expected)
        throw std::invalid_argument(argument_name(what, index) + " has shape " + shape_string(v.size) +
                                    " but expected " + shape_string(expected));
    if (v.data == nullptr && expected != 0) throw std::invalid_argument(argument_name(what, index) + " is a null view");
}

template <class T>
void require_shape(const MatrixView<T>& m, std::size_t rows, std::size_t cols, const char* what,
                   std::size_t index = no_index) {
    if (m.rows != rows || m.cols != cols)
        throw std::invalid_argument(argument_name(what, index) + " has shape " + shape_string(m.rows, m.cols) +
                                    " but expected " + shape_string(rows, cols));
    if (m.data == nullptr && rows * cols != 0)
        throw std::invalid_argument(argument_name(what, index) + " is a null view");
}

}  // namespace detail
}  // namespace mlpgrad
