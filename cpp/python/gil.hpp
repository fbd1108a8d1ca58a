// Releasing the GIL while the core computes, in a way that survives the interpreter exiting meanwhile.
//
// When a thread re-takes the GIL after finalization has begun (a daemon thread still inside a call when
// the main thread exits), CPython before 3.14 ends it inside PyEval_RestoreThread with pthread_exit: on glibc a
// forced unwind (abi::__forced_unwind) that runs every C++ destructor up the stack and std::terminate()s at
// the first noexcept frame -- pybind11's gil_scoped_release re-takes the GIL in its (noexcept) destructor.
// Unwinding further would not be safe either: the destructors of the call's py::objects would Py_DECREF
// without the GIL while the main thread tears the interpreter down. So such a thread is parked where it
// tried to re-take the GIL, touching nothing, until the process exits -- what CPython 3.14 does itself
// (gh-87135).
#pragma once

#include <pybind11/pybind11.h>

#include <chrono>
#include <cstddef>
#include <thread>

namespace mlpgrad_python {

// Below this many multiply-adds a call is cheaper than releasing and re-taking the GIL.
constexpr std::size_t gil_release_threshold = 4096;

[[noreturn]] inline void park_thread_until_exit() noexcept {
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

// PyEval_RestoreThread(state), or never returns if the interpreter is ending this thread.
inline void restore_thread(PyThreadState* state) noexcept {
    try {
        PyEval_RestoreThread(state);
    } catch (...) {  // C code throws no C++ exception: this is CPython ending the thread (pthread_exit)
        // Never leaves the handler: the forced unwind must be neither swallowed (glibc aborts) nor resumed.
        park_thread_until_exit();
    }
}

// Releases the GIL for the lifetime of the object when `work` multiply-adds make it worth it.
class MaybeReleaseGil {
  public:
    explicit MaybeReleaseGil(std::size_t work)
        : state_(work >= gil_release_threshold ? PyEval_SaveThread() : nullptr) {}
    MaybeReleaseGil(const MaybeReleaseGil&) = delete;
    MaybeReleaseGil& operator=(const MaybeReleaseGil&) = delete;
    ~MaybeReleaseGil() {
        if (state_) restore_thread(state_);
    }

  private:
    PyThreadState* state_;
};

}  // namespace mlpgrad_python
