"""Benchmarks: mlpgrad against its peers, timed side by side in one process.

``timing`` holds the measuring tools (medians of auto-sized runs, BLAS pinned to one thread, a copy-
bandwidth probe); ``targets`` the performance floors the core is held to. The comparison grid of
``python -m mlpgrad bench``: ``peers`` (one adapter per implementation: mlpgrad, NumPy, the oracle, PyTorch,
JAX), ``grid`` (the cells, the gradient check, the timing loop, the scaling fit), ``report`` (tables, JSON,
Markdown), ``plot`` (matplotlib) and ``command`` (the command line glue). ``bench --training-step``: one
training step of mini-batch networks against the same peers, at their default threads and on one thread, in
GFLOP/s and as a fraction of a measured peak (``training_step`` measures, ``training_report`` shows). Timings
are never asserted in tests: they are reported, with the machine they came from.
"""

from .timing import copy_bandwidth, one_blas_thread, time_per_call, time_ratio, time_side_by_side

__all__ = ["copy_bandwidth", "one_blas_thread", "time_per_call", "time_ratio", "time_side_by_side"]
