"""The batch calls' thread count at import: ``MLPGRAD_NUM_THREADS``, else the CPUs this process may run on.

``mlpgrad.set_num_threads(n)`` changes it later; ``mlpgrad.get_num_threads()`` reads it (both in ``_core``).
"""

import os
import warnings

from . import _core

ENVIRONMENT_VARIABLE = "MLPGRAD_NUM_THREADS"


def default_threads() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else all of them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_from_environment(environ=os.environ) -> int:
    """``MLPGRAD_NUM_THREADS`` when it is a whole number from 1 up (surrounding spaces allowed), else the
    default; a value that is set but unusable is reported with a RuntimeWarning, never an error at import."""
    value = environ.get(ENVIRONMENT_VARIABLE)
    default = default_threads()
    if value is None or value.strip() == "":
        return default
    try:
        n = int(value.strip(), 10)
    except ValueError:
        n = None
    if n is None or not 1 <= n <= _core._MAX_THREADS:
        warnings.warn(f"{ENVIRONMENT_VARIABLE}={value!r} is not a thread count from 1 to {_core._MAX_THREADS}; "
                      f"using the default, {default} (the CPUs this process may run on)", RuntimeWarning,
                      stacklevel=3)
        return default
    return n


def configure() -> None:
    _core.set_num_threads(threads_from_environment())
