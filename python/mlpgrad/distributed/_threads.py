"""mlpgrad's batch threads on every worker: a Dask worker plugin, so that restarted and new workers follow."""

from __future__ import annotations

from dask.distributed import WorkerPlugin

from ..train import _positive_int


class NumThreads(WorkerPlugin):
    """``client.register_plugin(NumThreads(n))``: ``mlpgrad.set_num_threads(n)`` on every worker of the cluster.

    It runs on the workers running now and on every worker that joins later (a worker restarted after a crash,
    a scaled-up cluster). Without it each worker process uses ``MLPGRAD_NUM_THREADS`` from its environment, or
    the CPUs it may run on. Keep (Dask threads per worker) × n ≤ the cores of a worker's machine.
    """

    name = "mlpgrad-num-threads"  # one setting per cluster: registering again replaces it

    def __init__(self, n: int) -> None:
        self.n = _positive_int("n", n)

    def setup(self, worker) -> None:
        import mlpgrad

        mlpgrad.set_num_threads(self.n)
