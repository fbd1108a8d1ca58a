"""Type stubs for mlpgrad's compiled core (mlpgrad._core)."""

import os
from collections.abc import Sequence
from typing import Any, BinaryIO, NoReturn, Optional, TypeVar, Union

import numpy as np
import numpy.typing as npt

__version__: str
ACTIVATIONS: tuple[str, ...]

_FloatArray = npt.NDArray[Union[np.float32, np.float64]]
_M = TypeVar("_M", bound="MLP")
_ArrayLike = npt.ArrayLike

class Gradients:
    """Gradient buffers that the backward pass writes into (see ``MLP.new_gradients``).

    A subclass may not also derive from ``MLP`` (TypeError); a second ``__init__`` raises TypeError;
    pickling raises TypeError under every protocol.
    """

    def __init__(
        self,
        weights: Sequence[_FloatArray],
        alpha: _FloatArray,
        x: Optional[_FloatArray] = None,
        z: Optional[Sequence[_FloatArray]] = None,
        u: Optional[Sequence[_FloatArray]] = None,
        *,
        biases: Optional[Sequence[_FloatArray]] = None,
        output_bias: Optional[_FloatArray] = None,
    ) -> None: ...
    def __init_subclass__(cls, **kwargs: Any) -> None: ...
    def __reduce__(self) -> NoReturn: ...
    def __reduce_ex__(self, protocol: int, /) -> NoReturn: ...
    @property
    def weights(self) -> list[_FloatArray]:
        """d/dW[t] for each layer, shaped like the weights."""
    @property
    def alpha(self) -> _FloatArray:
        """d/d alpha = z^T dyᵀ, shaped like alpha: (K_T,) for one output, (K_T, m) for m."""
    @property
    def biases(self) -> Optional[list[_FloatArray]]:
        """d/db^t = d/du^t for each layer (a batch: summed), or None when the network has no biases."""
    @property
    def output_bias(self) -> Optional[_FloatArray]:
        """d/d beta = dy (a batch: summed), shaped like ŷ; None when the network has no output bias."""
    @property
    def x(self) -> Optional[_FloatArray]:
        """d/dx, shape (K_0,); for a batch (B, K_0), row b is dy_b * dŷ_b/dx_b; None for parameter-only gradients."""
    @property
    def z(self) -> Optional[list[_FloatArray]]:
        """d/dz^t for t = 0..T, or None for a batch."""
    @property
    def u(self) -> Optional[list[_FloatArray]]:
        """d/du^t for t = 1..T (at index t-1), or None for a batch."""
    @property
    def batch(self) -> Optional[int]:
        """B for batch gradients; None for single-example and for parameter-only gradients (any B)."""
    @property
    def dtype(self) -> np.dtype[Any]:
        """The arrays' dtype."""

_State = Union[
    tuple[int, tuple[_FloatArray, ...], _FloatArray, tuple[str, ...]],  # format version 1
    tuple[int, tuple[_FloatArray, ...], _FloatArray, tuple[str, ...], Optional[tuple[_FloatArray, ...]],
          Optional[_FloatArray]],  # format version 2: biases, output bias, 2-D alpha
]
_Output = Union[float, _FloatArray]  # a float for one output (1-D alpha), an (m,) array for m

class MLP:
    """A dense network over the caller's NumPy arrays (viewed, never copied).

    A subclass may not also derive from ``Gradients`` (TypeError); a second ``__init__`` or ``__setstate__``
    raises TypeError; pickling works under every protocol.
    """

    def __init__(
        self,
        weights: Sequence[_FloatArray],
        alpha: _FloatArray,
        activation: Union[str, Sequence[str]] = "relu",
        *,
        biases: Optional[Sequence[_FloatArray]] = None,
        output_bias: Optional[_FloatArray] = None,
    ) -> None: ...
    def __init_subclass__(cls, **kwargs: Any) -> None: ...
    @classmethod
    def random(
        cls: type[_M],
        widths: Sequence[int],
        activation: Union[str, Sequence[str]] = "relu",
        *,
        outputs: Optional[int] = None,
        biases: bool = True,
        dtype: npt.DTypeLike = np.float64,
        seed: Union[None, int, np.random.Generator, np.random.SeedSequence] = None,
    ) -> _M:
        """A new network: He-normal weights for relu/leaky_relu/softplus, Glorot-uniform for the others and
        alpha, zero biases (see mlpgrad.model_io)."""
    @classmethod
    def load(cls: type[_M], path: Union[str, "os.PathLike[str]", BinaryIO]) -> _M:
        """The network net.save(path) wrote; ValueError for anything else."""
    def save(self, path: Union[str, "os.PathLike[str]", BinaryIO]) -> None:
        """Writes the network as a plain .npz (numpy.load(path, allow_pickle=False) reads it)."""
    def __getstate__(self) -> _State:
        """(1, weights, alpha, activation names), format version 1, for a network without biases and with a
        1-D alpha; otherwise (2, weights, alpha, activation names, biases or None, output_bias or None)."""
    def __setstate__(self, state: _State, /) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __reduce_ex__(self, protocol: int, /) -> tuple[Any, ...]: ...
    @property
    def widths(self) -> tuple[int, ...]:
        """(K_0, ..., K_T)."""
    @property
    def depth(self) -> int:
        """T, the number of weight matrices."""
    @property
    def dtype(self) -> np.dtype[Any]:
        """float32 or float64: the weights' dtype."""
    @property
    def activations(self) -> tuple[str, ...]:
        """One activation name per layer."""
    @property
    def weights(self) -> list[_FloatArray]:
        """The very weight arrays passed in."""
    @property
    def alpha(self) -> _FloatArray:
        """The very alpha array passed in: (K_T,) for one output, (K_T, m) for m."""
    @property
    def biases(self) -> Optional[list[_FloatArray]]:
        """The very bias arrays passed in (b^1..b^T), or None."""
    @property
    def output_bias(self) -> Optional[_FloatArray]:
        """The very output-bias array passed in (beta, shaped like ŷ), or None."""
    @property
    def output_shape(self) -> tuple[int, ...]:
        """ŷ's shape for one example: () for one output, (m,) for m."""
    @property
    def z(self) -> list[_FloatArray]:
        """z^0..z^T of this thread's last forward pass (read-only snapshots)."""
    @property
    def u(self) -> list[_FloatArray]:
        """u^1..u^T of this thread's last forward pass (read-only snapshots)."""
    def forward(self, x: _ArrayLike) -> _Output:
        """ŷ for one example (a float, or (m,) for m outputs); records u^t and z^t (per thread) for backward()."""
    def backward(self, dy: Union[float, _ArrayLike] = 1.0, *, out: Optional[Gradients] = None) -> Gradients:
        """Gradients of dyᵀŷ at this thread's last forward() (dy shaped like ŷ)."""
    def value_and_grad(
        self, x: _ArrayLike, dy: Union[float, _ArrayLike] = 1.0, *, out: Optional[Gradients] = None
    ) -> tuple[_Output, Gradients]:
        """(ŷ, gradients of dyᵀŷ) for one example (dy shaped like ŷ)."""
    def new_gradients(self, batch: Optional[int] = None, *, x: bool = True) -> Gradients:
        """Zeroed Gradients for this network (batch=B for the batch calls; with x=False, parameter-only
        gradients that skip the input gradient and fit any batch size)."""
    def forward_batch(self, X: _ArrayLike) -> _FloatArray:
        """ŷ for each row of X (B, K_0): (B,), or (B, m) for m outputs; records the pass (per thread) for
        backward_batch()."""
    def value_and_grad_batch(
        self, X: _ArrayLike, dy: Optional[_ArrayLike] = None, *, out: Optional[Gradients] = None
    ) -> tuple[_FloatArray, Gradients]:
        """(ŷ of shape (B,) or (B, m), gradients of Σ_b dy_bᵀŷ_b); dy, shaped like ŷ, defaults to ones."""
    def backward_batch(self, dy: Optional[_ArrayLike] = None, *, out: Optional[Gradients] = None) -> Gradients:
        """Gradients of Σ_b dy_bᵀŷ_b at this thread's last batch forward pass, without a second one."""

class DAGGradients:
    """Gradient buffers of a DAG (see ``DAG.new_gradients``); pickling raises TypeError."""

    def __init__(
        self,
        weights: _FloatArray,
        alpha: _FloatArray,
        x: Optional[_FloatArray] = None,
        biases: Optional[_FloatArray] = None,
        z: Optional[_FloatArray] = None,
        u: Optional[_FloatArray] = None,
    ) -> None: ...
    def __init_subclass__(cls, **kwargs: Any) -> None: ...
    def __reduce__(self) -> NoReturn: ...
    def __reduce_ex__(self, protocol: int, /) -> NoReturn: ...
    @property
    def weights(self) -> _FloatArray:
        """d/dw per edge, shape (n_edges,)."""
    @property
    def alpha(self) -> _FloatArray:
        """d/d alpha, shaped like alpha."""
    @property
    def x(self) -> Optional[_FloatArray]:
        """d/dx, (n_inputs,) or (B, n_inputs); None for parameter-only gradients."""
    @property
    def biases(self) -> Optional[_FloatArray]:
        """d/db per node (0 at inputs), or None when the DAG has no biases."""
    @property
    def z(self) -> Optional[_FloatArray]:
        """d/dz per node id (one example), or None."""
    @property
    def u(self) -> Optional[_FloatArray]:
        """d/du per node id (one example), or None."""
    @property
    def batch(self) -> Optional[int]: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...

_Output = Union[float, _FloatArray]

class DAG:
    """Backpropagation on any directed acyclic graph over the caller's arrays (weights, alpha, biases viewed)."""

    def __init__(
        self,
        n_inputs: int,
        src: _ArrayLike,
        dst: _ArrayLike,
        weights: _FloatArray,
        outputs: _ArrayLike,
        alpha: _FloatArray,
        activation: Union[str, Sequence[str]] = "relu",
        *,
        biases: Optional[_FloatArray] = None,
    ) -> None: ...
    @staticmethod
    def from_mlp(net: MLP, /) -> DAG: ...
    def __init_subclass__(cls, **kwargs: Any) -> None: ...
    def __getstate__(self) -> tuple[Any, ...]: ...
    def __setstate__(self, state: tuple[Any, ...], /) -> None: ...
    def __reduce__(self) -> tuple[Any, ...]: ...
    def __reduce_ex__(self, protocol: int, /) -> tuple[Any, ...]: ...
    @property
    def n_nodes(self) -> int: ...
    @property
    def n_edges(self) -> int: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def src(self) -> npt.NDArray[np.int64]: ...
    @property
    def dst(self) -> npt.NDArray[np.int64]: ...
    @property
    def outputs(self) -> npt.NDArray[np.int64]: ...
    @property
    def weights(self) -> _FloatArray:
        """The very weights array passed in."""
    @property
    def alpha(self) -> _FloatArray:
        """The very alpha array passed in."""
    @property
    def biases(self) -> Optional[_FloatArray]: ...
    @property
    def activation(self) -> Union[str, tuple[str, ...]]: ...
    @property
    def output_shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    def forward(self, x: _ArrayLike, /) -> _Output:
        """ŷ for one example: a float, or (m,) for a 2-D alpha."""
    def value_and_grad(
        self, x: _ArrayLike, dy: Union[float, _ArrayLike] = 1.0, *, out: Optional[DAGGradients] = None
    ) -> tuple[_Output, DAGGradients]: ...
    def forward_batch(self, X: _ArrayLike, /) -> _FloatArray: ...
    def value_and_grad_batch(
        self, X: _ArrayLike, dy: Optional[_ArrayLike] = None, *, out: Optional[DAGGradients] = None
    ) -> tuple[_FloatArray, DAGGradients]: ...
    def new_gradients(self, batch: Optional[int] = None, *, x: bool = True) -> DAGGradients: ...

# Private: the optimiser updates behind mlpgrad.optim (one parameter array, in place).
def _sgd_update(
    param: _FloatArray, grad: _FloatArray, velocity: Optional[_FloatArray], lr: float, momentum: float,
    nesterov: bool, weight_decay: float, step: int, /,
) -> None: ...
def _adam_update(
    param: _FloatArray, grad: _FloatArray, m: _FloatArray, v: _FloatArray, lr: float, beta1: float, beta2: float,
    eps: float, weight_decay: float, decoupled: bool, step: int, /,
) -> None: ...
def _sgd_check(lr: float, momentum: float, nesterov: bool, weight_decay: float, /) -> None: ...
def _adam_check(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool, /) -> None: ...

_MAX_THREADS: int

def set_num_threads(n: int) -> None:
    """Run the batch calls on n threads (1 to 1024), the calling one included; results do not depend on n.

    TypeError unless n is an int (bool refused), ValueError outside 1..1024. Single-example calls use them only
    for layers of at least 2 MiB of weights (memory-bound; smaller ones run on the calling thread)."""
def get_num_threads() -> int:
    """The number of threads the batch calls use."""
def _fma_peak_gflops(dtype: str, run_ms: float = 20.0, repeats: int = 7) -> float: ...
def _shut_down_threads() -> None: ...
