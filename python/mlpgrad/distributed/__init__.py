"""Data-parallel gradients and training on a Dask cluster (``pip install "mlpgrad[distributed]"``).

The gradient of a mean loss over all the data is a sum over row partitions, so it is computed where the data
lives:

* ``gradient(net, X, y, *, loss="mse", sample_weight=None, client=None) -> (loss, Gradients)``;
* ``fit(net, X, y, *, loss, optimizer="adam", epochs, batch_size, client=None, seed=None, progress=None)
  -> History``;
* ``NumThreads(n)``, a worker plugin: ``client.register_plugin(NumThreads(n))`` runs
  ``mlpgrad.set_num_threads(n)`` on every worker, present and future.

One gradient costs one scatter of the network's arrays to every worker (once per call, not per task), one
task per partition on the worker that holds it (batch passes through ``forward_batch``/``backward_batch``
over blocks of rows whose tape fits in half of a 1 MiB L2 cache, the GIL released), ⌈log_8 P⌉ levels of additions of partial sums
(float64, one array per parameter) on the workers, and one transfer of the total to the driver.
"""

try:
    import dask.distributed  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("mlpgrad.distributed needs Dask's distributed scheduler: "
                      "pip install \"mlpgrad[distributed]\" (or pip install \"dask[distributed]\")") from e

from ._fit import fit
from ._gradient import gradient
from ._threads import NumThreads

__all__ = ["gradient", "fit", "NumThreads"]
