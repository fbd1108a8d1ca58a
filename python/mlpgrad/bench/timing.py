"""Measuring tools shared by ``demo`` and ``bench``."""

from __future__ import annotations

import itertools
import statistics
import time

import numpy as np

REPEAT_NS = 10_000_000  # one timed run lasts about 10 ms
REPEATS = 7


def _run(f, n: int) -> int:
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in itertools.repeat(None, n):
        f()
    return clock() - t0


def _calls_per_run(f, run_ns: int) -> int:
    _run(f, 1)  # warm up: first touch of buffers, lazy imports
    n, elapsed = 1, _run(f, 1)
    while elapsed < run_ns:
        n = min(100 * n, max(2 * n, int(1.2 * n * run_ns / max(elapsed, 1))))
        elapsed = _run(f, n)
    return n


def time_side_by_side(calls: dict, repeats: int = REPEATS, run_ns: int = REPEAT_NS) -> dict:
    """Median ns per call of each zero-argument callable in ``calls``. Runs of the different callables are
    interleaved (A B C, A B C, ...) so that a slow spell of a shared machine hits all of them alike; each
    run makes ``n`` calls, ``n`` sized so that a run lasts about ``run_ns``. The callables write their
    results into buffers that outlive the timing (mlpgrad's ``out=``), so no work can be optimised away."""
    sizes = {name: _calls_per_run(f, run_ns) for name, f in calls.items()}
    samples: dict = {name: [] for name in calls}
    for _ in range(repeats):
        for name, f in calls.items():
            samples[name].append(_run(f, sizes[name]) / sizes[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def time_ratio(baseline, other, repeats: int = REPEATS, run_ns: int = REPEAT_NS) -> tuple[float, float, float]:
    """(ns per call of ``baseline``, of ``other``, ``other``'s time ÷ ``baseline``'s) for two zero-argument
    callables timed in pairs of runs, alternately baseline first and other first so that neither always
    runs in the other's wake. The times are medians over the ``repeats`` pairs; the ratio is the median of
    each pair's own ratio, so that a slow spell of a shared machine that spans a pair cancels out of it
    (the ratio of the medians would mix runs from different spells)."""
    n_a, n_b = _calls_per_run(baseline, run_ns), _calls_per_run(other, run_ns)
    a, b = [], []
    for r in range(repeats):
        if r % 2:
            b.append(_run(other, n_b) / n_b)
            a.append(_run(baseline, n_a) / n_a)
        else:
            a.append(_run(baseline, n_a) / n_a)
            b.append(_run(other, n_b) / n_b)
    return statistics.median(a), statistics.median(b), statistics.median(y / x for x, y in zip(a, b))


def time_per_call(f, *args, repeats: int = REPEATS, run_ns: int = REPEAT_NS, **kwargs) -> tuple[float, int]:
    """Median ns per call of ``f(*args, **kwargs)`` and the number of calls per timed run."""
    call = (lambda: f(*args, **kwargs)) if args or kwargs else f
    n = _calls_per_run(call, run_ns)
    return statistics.median(_run(call, n) / n for _ in range(repeats)), n


def one_blas_thread():
    """A context manager limiting NumPy's BLAS to one thread (threadpoolctl), so peers compare
    single-threaded."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def blas_description() -> str:
    """The BLAS NumPy uses, e.g. 'scipy-openblas 0.3.29 (Haswell kernels)'."""
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return f"{pool.get('internal_api', 'blas')} {pool.get('version', '')} ({pool.get('architecture', '?')} kernels)"
    return "no BLAS found by threadpoolctl"


def copy_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Single-core copy bandwidth in bytes/s: (bytes read + bytes written) / time of ``np.copyto`` over a
    buffer far larger than the caches. The memory bound of a pass that streams ``b`` bytes is
    ``b / copy_bandwidth()``."""
    src = np.ones(nbytes // 16, dtype=np.float64)
    dst = np.empty_like(src)
    ns, _ = time_per_call(np.copyto, dst, src, repeats=repeats, run_ns=50_000_000)
    return 2 * src.nbytes / (ns * 1e-9)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def core_count() -> int:
    """The number of cores this process may run on."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
