"""mlpgrad: backpropagation for dense neural networks.

A header-only C++ core (``cpp/include/mlpgrad``) bound to NumPy without copies: ``MLP`` views the caller's
weight arrays, writes gradients into caller arrays (``Gradients``) and releases the GIL while it computes.
``mlpgrad.reference`` is the pure-Python oracle the core is tested against. ``mlpgrad.losses`` holds the
training losses (each returns the mean loss and dy for the batch backward pass), ``mlpgrad.optim`` the
optimisers (SGD, Adam) that update a network's arrays in place, ``mlpgrad.fit`` (``mlpgrad.train``) the
mini-batch training loop that uses both. ``DAG`` is backpropagation on any directed acyclic graph (skip
connections, sparse or evolved topologies) with the same zero-copy rules. Batch calls run on
``get_num_threads()`` threads (``set_num_threads(n)``; at import ``MLPGRAD_NUM_THREADS``, else the CPUs this
process may run on), with results that do not depend on the thread count. ``mlpgrad.distributed`` (the
``mlpgrad[distributed]`` extra, imported on its own) computes gradients and trains on Dask partitions.
"""

# _core first: in a sub-interpreter it refuses to load (ImportError) before losses and optim import NumPy,
# which cannot be loaded twice in one process.
from ._core import (ACTIVATIONS, DAG, MLP, DAGGradients, Gradients, __version__, get_num_threads,  # noqa: I001
                    set_num_threads)
from . import _threads, losses, optim
from .train import fit

_threads.configure()

__all__ = ["ACTIVATIONS", "DAG", "DAGGradients", "MLP", "Gradients", "__version__", "fit", "get_num_threads",
           "losses", "optim", "set_num_threads"]
