// What the optimiser kernels share: the checks of their arguments, and the compiler settings under which
// each arithmetic operation is rounded on its own, so that an update is bit for bit the same as the
// textbook formula evaluated one NumPy operation at a time.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../views.hpp"

// MLPGRAD_SEPARATE_ROUNDING_BEGIN / _END enclose the kernels' definitions, and MLPGRAD_NO_CONTRACTION opens
// each kernel's body. -march=native targets have FMA, and GCC (-ffp-contract=fast, its default) and Clang
// (-ffp-contract=on) would fuse a·b + c into one rounding, which NumPy never does. GCC takes this per
// function (#pragma GCC optimize), Clang per block (#pragma clang fp).
#if defined(__clang__)
#define MLPGRAD_SEPARATE_ROUNDING_BEGIN
#define MLPGRAD_SEPARATE_ROUNDING_END
#define MLPGRAD_NO_CONTRACTION _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define MLPGRAD_SEPARATE_ROUNDING_BEGIN \
    _Pragma("GCC push_options") _Pragma("GCC optimize(\"fp-contract=off\")")
#define MLPGRAD_SEPARATE_ROUNDING_END _Pragma("GCC pop_options")
#define MLPGRAD_NO_CONTRACTION
#else  // other compilers do not contract without being asked to (MSVC: /fp:precise)
#define MLPGRAD_SEPARATE_ROUNDING_BEGIN
#define MLPGRAD_SEPARATE_ROUNDING_END
#define MLPGRAD_NO_CONTRACTION
#endif

namespace mlpgrad {
namespace optim {
namespace detail {

inline std::string number_string(double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.6g", v);
    return buffer;
}

inline constexpr double unbounded = std::numeric_limits<double>::infinity();

// Throws std::invalid_argument naming the hyperparameter unless it is finite, >= low, and below `high`
// (or at most `high` when `high_included`).
inline void require_in_range(double value, const char* what, double low, double high = unbounded,
                             bool high_included = false) {
    if (std::isfinite(value) && value >= low && (high_included ? value <= high : value < high)) return;
    const std::string range = "[" + number_string(low) + ", " + (std::isinf(high) ? std::string("inf)")
                                                                  : number_string(high) + (high_included ? "]" : ")"));
    throw std::invalid_argument(std::string(what) + " must be a finite number in " + range + ", got " +
                                number_string(value));
}

inline void require_step(std::size_t step) {
    if (step == 0) throw std::invalid_argument("step counts updates from 1; got 0");
}

// Throws std::invalid_argument unless `state` has the parameter's `size` elements.
template <class T>
void require_same_size(const VectorView<T>& state, std::size_t size, const char* what) {
    mlpgrad::detail::require_size(state, size, what);
}

// Throws std::invalid_argument if two of the views share memory: each element is read and written once, in
// place, so an update over aliased arrays would read values it has already written.
template <class T>
void require_disjoint(std::initializer_list<std::pair<const char*, VectorView<const T>>> views) {
    for (auto a = views.begin(); a != views.end(); ++a)
        for (auto b = a + 1; b != views.end(); ++b) {
            const VectorView<const T>& x = a->second;
            const VectorView<const T>& y = b->second;
            const std::less<const T*> before;
            if (x.size && y.size && before(x.data, y.data + y.size) && before(y.data, x.data + x.size))
                throw std::invalid_argument(std::string(a->first) + " and " + b->first +
                                            " overlap in memory; an update needs separate arrays");
        }
}

// One array of a whole-network step for require_disjoint_writes(): its memory, its name (for the
// message) and whether the step writes it.
template <class T>
struct StepArray {
    VectorView<const T> view;
    const char* name;
    std::size_t index;  // the parameter it belongs to: the message says name[index]
    bool written;
};

// The arrays of the last step on this thread that require_disjoint_writes() passed, in the caller's order.
// Training steps over the same arrays again and again: n comparisons with these replace the sort (n log n
// mispredicted comparisons, a fifth of a small network's whole SGD step in the Python binding). The check
// depends on nothing but the addresses, sizes and which arrays are written, so an equal list passes too.
template <class T>
std::vector<StepArray<T>>& passed_step_arrays() {
    thread_local std::vector<StepArray<T>> passed;
    return passed;
}

template <class T>
bool same_step_arrays(const std::vector<StepArray<T>>& a, const std::vector<StepArray<T>>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].view.data != b[i].view.data || a[i].view.size != b[i].view.size || a[i].written != b[i].written)
            return false;
    return true;
}

// Throws std::invalid_argument if an array that the step writes shares memory with any other array of the
// step (arrays that are only read, the gradients, may share memory with each other): each element is read
// and written once, so an update that wrote memory another update reads would depend on their order. One
// sweep over the arrays sorted by address: an array overlaps an earlier one iff it starts before the
// furthest end reached so far (by any array if it is written, by a written one if it is only read).
template <class T>
void require_disjoint_writes(std::vector<StepArray<T>> arrays) {
    std::vector<StepArray<T>>& passed = passed_step_arrays<T>();
    if (same_step_arrays(arrays, passed)) return;
    passed.clear();  // (until this list passes: nothing is remembered if it throws)
    std::vector<StepArray<T>> unsorted;
    try {
        unsorted = arrays;
    } catch (const std::bad_alloc&) {  // remembering is an optimisation; the check goes on without it
    }
    const std::less<const T*> before;
    // Ties (arrays at one address) in the order of their parameters, written before read: the message of
    // a given set of arrays does not depend on the sort.
    std::sort(arrays.begin(), arrays.end(), [&](const StepArray<T>& a, const StepArray<T>& b) {
        if (a.view.data != b.view.data) return before(a.view.data, b.view.data);
        if (a.index != b.index) return a.index < b.index;
        return a.written > b.written;
    });
    const StepArray<T>* furthest = nullptr;          // of every array so far, the one that ends last
    const StepArray<T>* furthest_written = nullptr;  // of the written ones
    const auto name = [](const StepArray<T>& a) { return mlpgrad::detail::argument_name(a.name, a.index); };
    const auto ends_after = [&](const StepArray<T>* a, const T* p) { return a && before(p, a->view.data + a->view.size); };
    for (const StepArray<T>& a : arrays) {
        if (a.view.size == 0) continue;
        const StepArray<T>* other = a.written ? furthest : furthest_written;
        if (ends_after(other, a.view.data))
            throw std::invalid_argument(name(*other) + " and " + name(a) +
                                        " overlap in memory; a step needs separate arrays");
        if (!furthest || before(furthest->view.data + furthest->view.size, a.view.data + a.view.size)) furthest = &a;
        if (a.written && (!furthest_written || before(furthest_written->view.data + furthest_written->view.size,
                                                      a.view.data + a.view.size)))
            furthest_written = &a;
    }
    passed.swap(unsorted);  // (empty if the copy failed)
}

}  // namespace detail
}  // namespace optim
}  // namespace mlpgrad
