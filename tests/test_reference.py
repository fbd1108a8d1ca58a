"""Tests for mlpgrad.reference, the pure-Python backprop oracle.

The module is loaded by file path (not via the mlpgrad package) so these tests run even
before the compiled core is built, and so that the package's own imports (NumPy, the
extension) cannot mask a NumPy import in reference.py.
"""

import ast
import importlib.util
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

REFERENCE_PATH = Path(__file__).resolve().parents[1] / "python" / "mlpgrad" / "reference.py"
SMOOTH = ("tanh", "sigmoid", "softplus", "identity")


def _load_reference():
    name = "_mlpgrad_reference_under_test"
    spec = importlib.util.spec_from_file_location(name, REFERENCE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref():
    return _load_reference()


class FakeArray:
    """Duck-typed array: anything with .tolist() must be accepted."""

    def __init__(self, data):
        self._data = data

    def tolist(self):
        return self._data


def random_network(rng, depth, activation_pool=None):
    widths = [rng.randint(1, 6) for _ in range(depth + 1)]
    weights = [
        [[rng.uniform(-1.5, 1.5) for _ in range(widths[t])] for _ in range(widths[t + 1])]
        for t in range(depth)
    ]
    alpha = [rng.uniform(-1.5, 1.5) for _ in range(widths[-1])]
    x = [rng.uniform(-2.0, 2.0) for _ in range(widths[0])]
    return weights, alpha, x


def assert_close(actual, expected, rel=1e-6, abs_=1e-7):
    """Recursive comparison of nested lists of floats."""
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (actual, expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, rel, abs_)
    else:
        assert actual == pytest.approx(expected, rel=rel, abs=abs_)


# ----------------------------------------------------------------------------- hand-worked example
# W1 = [[1, -1], [2, 0.5]], W2 = [[1, 2], [-1, 1]], alpha = [2, -1], x = [1, 2], relu.
# Forward:  u1 = W1 x = [1 - 2, 2 + 1] = [-1, 3]      z1 = relu(u1) = [0, 3]
#           u2 = W2 z1 = [0 + 6, 0 + 3] = [6, 3]       z2 = [6, 3]
#           y  = alpha . z2 = 12 - 3 = 9
# Backward: dz2 = alpha = [2, -1];  du2 = dz2 o relu'(u2) = [2, -1]
#           dW2 = du2 z1^T = [[0, 6], [0, -3]];  dz1 = W2^T du2 = [2 + 1, 4 - 1] = [3, 3]
#           du1 = dz1 o relu'(u1) = [3*0, 3*1] = [0, 3]
#           dW1 = du1 x^T = [[0, 0], [3, 6]];   dz0 = W1^T du1 = [0 + 6, 0 + 1.5] = [6, 1.5]
#           dalpha = z2 = [6, 3]
W1 = [[1.0, -1.0], [2.0, 0.5]]
W2 = [[1.0, 2.0], [-1.0, 1.0]]
ALPHA = [2.0, -1.0]
X = [1.0, 2.0]


def test_hand_worked_forward(ref):
    y, u, z = ref.forward([W1, W2], ALPHA, X, "relu")
    assert y == 9.0
    assert u == [[-1.0, 3.0], [6.0, 3.0]]
    assert z == [[1.0, 2.0], [0.0, 3.0], [6.0, 3.0]]


@pytest.mark.parametrize("dy", [1.0, 2.0, -0.5])
def test_hand_worked_gradients(ref, dy):
    y, g = ref.value_and_grad([W1, W2], ALPHA, X, "relu", dy=dy)
    assert y == 9.0  # y_hat is not scaled by dy
    assert g.weights == [[[0.0, 0.0], [3.0 * dy, 6.0 * dy]], [[0.0, 6.0 * dy], [0.0, -3.0 * dy]]]
    assert g.alpha == [6.0 * dy, 3.0 * dy]
    assert g.x == [6.0 * dy, 1.5 * dy]
    assert g.z == [[6.0 * dy, 1.5 * dy], [3.0 * dy, 3.0 * dy], [2.0 * dy, -1.0 * dy]]
    assert g.u == [[0.0, 3.0 * dy], [2.0 * dy, -1.0 * dy]]


def test_depth_zero_is_a_dot_product(ref):
    y, u, z = ref.forward([], [2.0, -3.0], [4.0, 1.0])
    assert (y, u, z) == (5.0, [], [[4.0, 1.0]])
    y, g = ref.value_and_grad([], [2.0, -3.0], [4.0, 1.0], dy=3.0)
    assert y == 5.0
    assert g.weights == [] and g.u == []
    assert g.alpha == [12.0, 3.0]
    assert g.x == [6.0, -9.0] and g.z == [[6.0, -9.0]]


def test_non_square_widths(ref):
    # K = (3, 1, 2): W1 is 1x3, W2 is 2x1, identity activation.
    # u1 = [1 + 2*2 + 3*(-1)] = [2]; u2 = [2*2, -1*2] = [4, -2]; y = 1*4 + 2*(-2) + ... alpha = [1, 3]
    # y = 4 - 6 = -2. dz2 = [1, 3]; dW2 = [[2], [6]]; dz1 = [2*1 + (-1)*3] = [-1];
    # dW1 = [[-1*1, -1*2, -1*(-1)]] = [[-1, -2, 1]]; dx = [-1, -2, -3].
    y, g = ref.value_and_grad([[[1.0, 2.0, 3.0]], [[2.0], [-1.0]]], [1.0, 3.0], [1.0, 2.0, -1.0], "identity")
    assert y == -2.0
    assert g.weights == [[[-1.0, -2.0, 1.0]], [[2.0], [6.0]]]
    assert g.x == [-1.0, -2.0, -3.0]
    assert g.alpha == [4.0, -2.0]


# ----------------------------------------------------------------------------- ReLU convention
def test_relu_derivative_is_one_at_zero(ref):
    # u1 = 1*2 + (-1)*2 = 0 exactly; the notes define relu'(0) = 1 (PyTorch would give 0).
    weights, alpha, x = [[[1.0, -1.0]]], [3.0], [2.0, 2.0]
    for act in ("relu", "leaky_relu"):
        y, g = ref.value_and_grad(weights, alpha, x, act)
        assert y == 0.0
        assert g.u == [[3.0]]
        assert g.weights == [[[6.0, 6.0]]]
        assert g.x == [3.0, -3.0]


def test_relu_zero_in_a_hidden_layer_passes_gradient(ref):
    # u1 = [0, -1] -> relu' = [1, 0]; z1 = [0, 0]; u2 = [0]; y = 0.
    # dz2 = [2]; du2 = [2] (relu'(0) = 1); dz1 = W2^T du2 = [2, 2]; du1 = [2, 0]
    # dW1 = du1 x^T = [[2, 2], [0, 0]]; dW2 = du2 z1^T = [[0, 0]]; dx = W1^T du1 = [2, -2]
    weights = [[[1.0, -1.0], [-1.0, 0.0]], [[1.0, 1.0]]]
    y, g = ref.value_and_grad(weights, [2.0], [1.0, 1.0], "relu")
    assert y == 0.0
    assert g.u == [[2.0, 0.0], [2.0]]
    assert g.weights == [[[2.0, 2.0], [0.0, 0.0]], [[0.0, 0.0]]]
    assert g.x == [2.0, -2.0]


def test_leaky_relu_negative_side(ref):
    # u1 = 1 - 2 = -1 -> z1 = -0.01, y = 3 * -0.01; du1 = 3 * 0.01
    y, g = ref.value_and_grad([[[1.0, -1.0]]], [3.0], [1.0, 2.0], "leaky_relu")
    assert y == pytest.approx(-0.03, rel=1e-15)
    assert g.u[0][0] == pytest.approx(0.03, rel=1e-15)
    y, g = ref.value_and_grad([[[1.0, -1.0]]], [3.0], [1.0, 2.0], "relu")
    assert y == 0.0 and g.u == [[0.0]] and g.x == [0.0, 0.0]


# ----------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize("seed", range(40))
def test_matches_finite_differences_smooth(ref, seed):
    rng = random.Random(seed)
    depth = seed % 5
    weights, alpha, x = random_network(rng, depth)
    activation = SMOOTH[seed % len(SMOOTH)] if seed % 3 else [rng.choice(SMOOTH) for _ in range(depth)]
    dy = rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)
    _, g = ref.value_and_grad(weights, alpha, x, activation, dy=dy)
    fd = ref.finite_difference(weights, alpha, x, activation, dy=dy)
    assert fd.z is None and fd.u is None
    assert_close(g.weights, fd.weights)
    assert_close(g.alpha, fd.alpha)
    assert_close(g.x, fd.x)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "mixed"])
def test_matches_finite_differences_piecewise_linear(ref, activation):
    rng = random.Random(["relu", "leaky_relu", "mixed"].index(activation))
    checked = 0
    for _ in range(200):
        depth = rng.randint(0, 4)
        weights, alpha, x = random_network(rng, depth)
        act = [rng.choice(ref.ACTIVATIONS) for _ in range(depth)] if activation == "mixed" else activation
        _, u, _ = ref.forward(weights, alpha, x, act)
        if any(abs(a) < 1e-3 for layer in u for a in layer):
            continue  # too close to a kink for central differences
        dy = rng.uniform(-2.0, -0.5)
        _, g = ref.value_and_grad(weights, alpha, x, act, dy=dy)
        fd = ref.finite_difference(weights, alpha, x, act, dy=dy)
        assert_close(g.weights, fd.weights)
        assert_close(g.alpha, fd.alpha)
        assert_close(g.x, fd.x)
        checked += 1
    assert checked >= 100


@pytest.mark.parametrize("seed", range(20))
def test_gradient_bookkeeping(ref, seed):
    rng = random.Random(1000 + seed)
    depth = seed % 5
    weights, alpha, x = random_network(rng, depth)
    activation = ref.ACTIVATIONS[seed % len(ref.ACTIVATIONS)]
    dy = rng.uniform(0.5, 3.0)
    y, u, z = ref.forward(weights, alpha, x, activation)
    y2, g = ref.value_and_grad(weights, alpha, x, activation, dy=dy)
    assert y2 == y
    assert len(u) == depth and len(z) == depth + 1 and z[0] == x
    assert len(g.z) == depth + 1 and len(g.u) == depth
    assert g.z[0] == g.x  # d/dz^0 is d/dx
    assert g.z[depth] == [dy * a for a in alpha]  # base case: d/dz^T = dy * alpha
    assert g.alpha == [dy * v for v in z[depth]]  # d/dalpha = dy * z^T
    for t, w in enumerate(weights):  # gradient shapes equal weight shapes
        assert [len(r) for r in g.weights[t]] == [len(r) for r in w]
        assert len(g.u[t]) == len(w)


def test_accepts_tuples_and_tolist_objects(ref):
    expected = ref.value_and_grad([W1, W2], ALPHA, X, ["relu", "tanh"], dy=2.0)
    got = ref.value_and_grad(
        FakeArray([W1, W2]), tuple(ALPHA), FakeArray(X), ("relu", "tanh"), dy=FakeArray(2.0)
    )
    assert got == expected
    got = ref.value_and_grad([FakeArray(W1), tuple(map(tuple, W2))], FakeArray(ALPHA), X, ["relu", "tanh"], 2.0)
    assert got == expected
    y, _, z = ref.forward([[[1, 2]]], [3], [True, 4], "identity")  # ints/bools become floats
    assert y == 27.0 and all(type(v) is float for v in z[0])


def test_accepts_numpy_arrays_if_available(ref):
    np = pytest.importorskip("numpy")
    expected = ref.value_and_grad([W1, W2], ALPHA, X, "tanh", dy=2.0)
    got = ref.value_and_grad(np.array([W1, W2]), np.array(ALPHA), np.array(X), "tanh", dy=np.float64(2.0))
    assert got == expected
    ys, g = ref.value_and_grad_batch([np.array(W1)], np.array(ALPHA), np.zeros((0, 2)))
    assert ys == [] and g.x == [] and g.alpha == [0.0, 0.0]


# ----------------------------------------------------------------------------- batches
@pytest.mark.parametrize("seed", range(10))
def test_batch_is_sum_of_single_examples(ref, seed):
    rng = random.Random(2000 + seed)
    depth = seed % 5
    weights, alpha, _ = random_network(rng, depth)
    k0 = len(weights[0][0]) if weights else len(alpha)
    B = rng.randint(1, 5)
    X_ = [[rng.uniform(-2, 2) for _ in range(k0)] for _ in range(B)]
    dys = [rng.uniform(-2, 2) for _ in range(B)]
    activation = ref.ACTIVATIONS[seed % len(ref.ACTIVATIONS)]
    ys, g = ref.value_and_grad_batch(weights, alpha, X_, activation, dy=dys)
    assert g.z is None and g.u is None
    singles = [ref.value_and_grad(weights, alpha, xb, activation, dy=d) for xb, d in zip(X_, dys)]
    assert ys == [y for y, _ in singles]
    assert g.x == [s.x for _, s in singles]
    summed_w = [
        [[sum(s.weights[t][i][j] for _, s in singles) for j in range(len(row))] for i, row in enumerate(w)]
        for t, w in enumerate(weights)
    ]
    assert_close(g.weights, summed_w, rel=1e-12, abs_=1e-12)
    assert_close(g.alpha, [sum(s.alpha[i] for _, s in singles) for i in range(len(alpha))], rel=1e-12, abs_=1e-12)


def test_batch_default_dy_is_ones(ref):
    ys, g = ref.value_and_grad_batch([W1, W2], ALPHA, [X, X])
    assert ys == [9.0, 9.0]
    assert g.alpha == [12.0, 6.0]
    assert g.x == [[6.0, 1.5], [6.0, 1.5]]
    assert g.weights == [[[0.0, 0.0], [6.0, 12.0]], [[0.0, 12.0], [0.0, -6.0]]]


def test_batch_of_zero_rows(ref):
    ys, g = ref.value_and_grad_batch([W1, [[1.0, 2.0]]], [5.0], [])
    assert ys == [] and g.x == []
    assert g.weights == [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0]]]
    assert g.alpha == [0.0]
    ys, g = ref.value_and_grad_batch([], [1.0, 2.0], FakeArray([]), dy=[])
    assert ys == [] and g.weights == [] and g.alpha == [0.0, 0.0] and g.x == []


# ----------------------------------------------------------------------------- stability
@pytest.mark.parametrize(
    "activation, a, value, slope",
    [
        ("sigmoid", 1000.0, 1.0, 0.0),
        ("sigmoid", -1000.0, 0.0, 0.0),
        ("softplus", 1000.0, 1000.0, 1.0),
        ("softplus", -1000.0, 0.0, 0.0),
        ("tanh", 1000.0, 1.0, 0.0),
        ("tanh", -1000.0, -1.0, 0.0),
    ],
)
def test_activations_are_stable_at_large_inputs(ref, activation, a, value, slope):
    y, g = ref.value_and_grad([[[1.0]]], [1.0], [a], activation)
    assert math.isfinite(y) and y == pytest.approx(value, abs=1e-300)
    assert g.u == [[pytest.approx(slope, abs=1e-300)]]
    assert all(math.isfinite(v) for v in g.x + g.weights[0][0])


def test_softplus_and_sigmoid_moderate_values(ref):
    for a in (-30.0, -2.0, 0.0, 0.5, 30.0):
        y, g = ref.value_and_grad([[[1.0]]], [1.0], [a], "softplus")
        assert y == pytest.approx(math.log1p(math.exp(a)), rel=1e-14, abs=1e-300)
        assert g.u[0][0] == pytest.approx(1.0 / (1.0 + math.exp(-a)), rel=1e-14)
        y, g = ref.value_and_grad([[[1.0]]], [1.0], [a], "sigmoid")
        s = 1.0 / (1.0 + math.exp(-a))
        assert y == pytest.approx(s, rel=1e-14) and g.u[0][0] == pytest.approx(s * (1 - s), rel=1e-12)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "weights, alpha, x, activation, pattern",
    [
        ([[[1.0, 2.0]] * 3, [[1.0] * 5] * 3], [1.0] * 3, [1.0, 1.0], "relu",
         r"weights\[1\] has shape \(3, 5\) but expected \(3, 3\) to chain with weights\[0\]"),
        ([[[1.0, 2.0], [3.0]]], [1.0, 1.0], [1.0, 1.0], "relu", r"weights\[0\] is ragged"),
        ([[[1.0, 2.0]]], [1.0], [1.0, 2.0, 3.0], "relu", r"x has length 3 but expected 2"),
        ([], [1.0, 2.0], [1.0], "relu", r"x has length 1 but expected 2"),
        ([[[1.0, 2.0]]], [1.0, 2.0], [1.0, 2.0], "relu", r"alpha has length 2 but expected 1"),
        ([[[1.0]], [[1.0]], [[1.0]]], [1.0], [1.0], ["relu", "tanh"], r"activation has 2 names but the network has 3 layers"),
        ([[[1.0]]], [1.0], [1.0], "foo", r"unknown activation 'foo'; expected one of .*'relu'"),
        ([[[1.0]]], [1.0], [1.0], ["gelu"], r"unknown activation 'gelu' at activation\[0\]"),
        ([], [1.0], [1.0], "foo", r"unknown activation 'foo'"),
        ([[]], [1.0], [1.0], "relu", r"weights\[0\] has shape \(0, 0\).*width must be >= 1"),
        ([[[], []]], [1.0, 1.0], [], "relu", r"weights\[0\] has shape \(2, 0\).*width must be >= 1"),
        ([], [], [], "relu", r"alpha has length 0"),
        ([[[1.0]]], [1.0], 3.0, "relu", r"^x must be a 1-D sequence"),
        ([[1.0]], [1.0], [1.0], "relu", r"weights\[0\]\[0\] must be a 1-D sequence"),
        ([[[1.0]]], [1.0], [1.0], 3, r"activation must be a name or a sequence"),
    ],
)
def test_errors_name_the_argument(ref, weights, alpha, x, activation, pattern):
    calls = [ref.forward, ref.value_and_grad, ref.finite_difference]
    for fn in calls:
        with pytest.raises(ValueError, match=pattern):
            fn(weights, alpha, x, activation)
    if not pattern.startswith(("x ", "^x ")):  # the batch API names its rows X[b] instead
        with pytest.raises(ValueError, match=pattern):
            ref.value_and_grad_batch(weights, alpha, [x], activation)


def test_batch_specific_errors(ref):
    with pytest.raises(ValueError, match=r"dy has length 1 but expected 2"):
        ref.value_and_grad_batch([W1], [1.0, 1.0], [X, X], dy=[1.0])
    with pytest.raises(ValueError, match=r"X\[1\] has length 3 but expected 2"):
        ref.value_and_grad_batch([W1], [1.0, 1.0], [X, [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"^X must be a sequence"):
        ref.value_and_grad_batch([W1], [1.0, 1.0], 5.0)


def test_non_numeric_entries_are_type_errors(ref):
    with pytest.raises(TypeError, match=r"x\[1\] must be a real number"):
        ref.forward([[[1.0, 1.0]]], [1.0], [1.0, "2"])
    with pytest.raises(TypeError, match=r"weights\[0\]\[0\]\[0\] must be a real number"):
        ref.forward([[[None]]], [1.0], [1.0])
    with pytest.raises(TypeError, match=r"dy must be a real number"):
        ref.value_and_grad([[[1.0]]], [1.0], [1.0], dy=[1.0])
    with pytest.raises(ValueError, match=r"eps must be > 0"):
        ref.finite_difference([[[1.0]]], [1.0], [1.0], eps=0.0)


# ----------------------------------------------------------------------------- no NumPy
def test_importing_reference_does_not_import_numpy():
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("ref_no_numpy", {str(REFERENCE_PATH)!r})
m = importlib.util.module_from_spec(spec)
sys.modules["ref_no_numpy"] = m
spec.loader.exec_module(m)
w, a, x = [[[1.0, -2.0], [0.5, 1.0]]], [1.0, 2.0], [0.3, -0.7]
for act in m.ACTIVATIONS:
    m.forward(w, a, x, act)
    m.value_and_grad(w, a, x, act, dy=2.0)
    m.value_and_grad_batch(w, a, [x, x], act, dy=[1.0, 2.0])
    m.finite_difference(w, a, x, act)
bad = sorted(k for k in sys.modules if k == "numpy" or k.startswith("numpy."))
assert not bad, bad
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_reference_source_has_no_numpy_import():
    tree = ast.parse(REFERENCE_PATH.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "numpy" not in imported and "importlib" not in imported
    assert "__import__" not in REFERENCE_PATH.read_text()


# ----------------------------------------------------------------------------- biases, output bias, vector outputs
# W = [[1, 2], [3, -1]], b = [0.1, -0.2], alpha (2 x 3) = [[1, 0.5, -1], [2, -1, 0.25]], beta = [1, 2, 3],
# x = [0.5, 1], identity, dy = [1, 2, 3].
# Forward:  u = W x + b = [0.5 + 2 + 0.1, 1.5 - 1 - 0.2] = [2.6, 0.3] = z
#           y = alpha^T z + beta = [2.6 + 0.6 + 1, 1.3 - 0.3 + 2, -2.6 + 0.075 + 3] = [4.2, 3.0, 0.475]
# Backward: dz = alpha dy = [1 + 1 - 3, 2 - 2 + 0.75] = [-1, 0.75] = du = db
#           dalpha = z dy^T = [[2.6, 5.2, 7.8], [0.3, 0.6, 0.9]],  dbeta = dy
#           dW = du x^T = [[-0.5, -1], [0.375, 0.75]],  dx = W^T du = [-1 + 2.25, -2 - 0.75] = [1.25, -2.75]
W_B = [[[1.0, 2.0], [3.0, -1.0]]]
B_B = [[0.1, -0.2]]
ALPHA_M = [[1.0, 0.5, -1.0], [2.0, -1.0, 0.25]]
BETA_M = [1.0, 2.0, 3.0]
X_B = [0.5, 1.0]
DY_M = [1.0, 2.0, 3.0]


def test_hand_worked_biases_and_vector_outputs(ref):
    y, u, z = ref.forward(W_B, ALPHA_M, X_B, "identity", biases=B_B, output_bias=BETA_M)
    assert_close(y, [4.2, 3.0, 0.475], rel=1e-15, abs_=1e-15)
    assert_close(u, [[2.6, 0.3]], rel=1e-15, abs_=1e-15)
    y, g = ref.value_and_grad(W_B, ALPHA_M, X_B, "identity", DY_M, biases=B_B, output_bias=BETA_M)
    assert_close(y, [4.2, 3.0, 0.475], rel=1e-15, abs_=1e-15)
    assert_close(g.alpha, [[2.6, 5.2, 7.8], [0.3, 0.6, 0.9]], rel=1e-15, abs_=1e-15)
    assert g.output_bias == DY_M
    assert_close(g.biases, [[-1.0, 0.75]], rel=1e-15, abs_=0)
    assert g.biases == g.u
    assert_close(g.weights, [[[-0.5, -1.0], [0.375, 0.75]]], rel=1e-15, abs_=0)
    assert_close(g.x, [1.25, -2.75], rel=1e-15, abs_=0)
    assert_close(g.z[-1], [-1.0, 0.75], rel=1e-15, abs_=0)


def test_one_output_with_biases_keeps_scalars(ref):
    # alpha 1-D: y_hat, dy and beta are floats. u = [2.6, 0.3], y = 2 * 2.6 - 0.3 + 0.5 = 5.4.
    y, g = ref.value_and_grad(W_B, [2.0, -1.0], X_B, "identity", 2.0, biases=B_B, output_bias=0.5)
    assert y == pytest.approx(5.4, rel=1e-15)
    assert g.output_bias == 2.0 and g.alpha == pytest.approx([5.2, 0.6], rel=1e-15)
    assert g.biases == [[4.0, -2.0]]
    y0, g0 = ref.value_and_grad(W_B, [2.0, -1.0], X_B, "identity", 2.0)
    assert y0 == pytest.approx(y - 0.5 - (2.0 * 0.1 + -1.0 * -0.2), rel=1e-15)  # 4.5: without b and beta
    assert g0.biases is None and g0.output_bias is None


def test_one_column_alpha_equals_a_vector_alpha(ref):
    rng = random.Random(5)
    weights, alpha, x = random_network(rng, 2)
    y, g = ref.value_and_grad(weights, alpha, x, "tanh", 1.5)
    ym, gm = ref.value_and_grad(weights, [[a] for a in alpha], x, "tanh", [1.5])
    assert ym == [y]
    assert gm.alpha == [[a] for a in g.alpha] and gm.weights == g.weights and gm.x == g.x


def random_general_network(rng, depth, outputs, biases, output_bias):
    weights, alpha, x = random_network(rng, depth)
    K_T = len(alpha)
    if outputs is not None:
        alpha = [[rng.uniform(-1.5, 1.5) for _ in range(outputs)] for _ in range(K_T)]
    b = [[rng.uniform(-1.0, 1.0) for _ in w] for w in weights] if biases else None
    m = 1 if outputs is None else outputs
    beta = None
    if output_bias:
        beta = rng.uniform(-1.0, 1.0) if outputs is None else [rng.uniform(-1.0, 1.0) for _ in range(m)]
    dy = rng.uniform(0.5, 2.0) if outputs is None else [rng.uniform(-2.0, 2.0) for _ in range(m)]
    return weights, alpha, x, b, beta, dy


@pytest.mark.parametrize("seed", range(30))
def test_biases_and_vector_outputs_match_finite_differences(ref, seed):
    rng = random.Random(3000 + seed)
    outputs = (None, 1, 3)[seed % 3]
    weights, alpha, x, b, beta, dy = random_general_network(rng, seed % 4, outputs, seed % 2 == 0, seed % 5 != 0)
    activation = SMOOTH[seed % len(SMOOTH)]
    kw = dict(biases=b, output_bias=beta)
    _, g = ref.value_and_grad(weights, alpha, x, activation, dy, **kw)
    fd = ref.finite_difference(weights, alpha, x, activation, dy, **kw)
    assert_close(g.weights, fd.weights)
    assert_close(g.alpha, fd.alpha)
    assert_close(g.x, fd.x)
    assert (g.biases is None) == (b is None) and (g.output_bias is None) == (beta is None)
    if b is not None:
        assert_close(g.biases, fd.biases)
    if beta is not None:
        assert_close(g.output_bias, fd.output_bias)


@pytest.mark.parametrize("seed", range(10))
def test_batch_with_biases_and_vector_outputs_is_sum_of_single_examples(ref, seed):
    rng = random.Random(4000 + seed)
    outputs = (None, 2, 4)[seed % 3]
    weights, alpha, x, b, beta, _ = random_general_network(rng, seed % 4, outputs, True, True)
    activation = ref.ACTIVATIONS[seed % len(ref.ACTIVATIONS)]
    B = 1 + seed % 4
    X = [[rng.uniform(-2, 2) for _ in x] for _ in range(B)]
    m = 1 if outputs is None else outputs
    dys = [rng.uniform(-1, 1) if outputs is None else [rng.uniform(-1, 1) for _ in range(m)] for _ in range(B)]
    kw = dict(biases=b, output_bias=beta)
    ys, gb = ref.value_and_grad_batch(weights, alpha, X, activation, dys, **kw)
    singles = [ref.value_and_grad(weights, alpha, xb, activation, d, **kw) for xb, d in zip(X, dys)]
    assert ys == [y for y, _ in singles]
    def total(get):
        acc = get(singles[0][1])
        for _, g in singles[1:]:
            acc = ref._add(acc, get(g))
        return acc
    assert_close(gb.weights, total(lambda g: g.weights), rel=1e-12, abs_=1e-12)
    assert_close(gb.alpha, total(lambda g: g.alpha), rel=1e-12, abs_=1e-12)
    assert_close(gb.biases, total(lambda g: g.biases), rel=1e-12, abs_=1e-12)
    assert_close(gb.output_bias, total(lambda g: g.output_bias), rel=1e-12, abs_=1e-12)
    assert gb.x == [g.x for _, g in singles]
    # default dy: ones
    _, g1 = ref.value_and_grad_batch(weights, alpha, X[:1], activation, **kw)
    _, s1 = ref.value_and_grad(weights, alpha, X[0], activation, 1.0 if outputs is None else [1.0] * m, **kw)
    assert g1.alpha == s1.alpha


def test_empty_batch_with_biases_and_vector_outputs(ref):
    ys, g = ref.value_and_grad_batch(W_B, ALPHA_M, [], "tanh", biases=B_B, output_bias=BETA_M)
    assert ys == [] and g.x == []
    assert g.alpha == [[0.0] * 3, [0.0] * 3] and g.biases == [[0.0, 0.0]] and g.output_bias == [0.0] * 3


@pytest.mark.parametrize("kwargs, dy, pattern", [
    (dict(biases=[[0.1]]), DY_M, r"biases\[0\] has length 1 but expected 2"),
    (dict(biases=[]), DY_M, r"biases must be None or a sequence of 1 vectors"),
    (dict(biases=[[0.1, 0.2], [0.3]]), DY_M, r"biases must be None or a sequence of 1 vectors \(one per layer\), got 2"),
    (dict(output_bias=[1.0, 2.0]), DY_M, r"output_bias has length 2 but expected 3"),
    (dict(), [1.0, 2.0], r"dy has length 2 but expected 3"),
    (dict(), 1.0, r"dy must be a 1-D sequence"),
    (dict(biases=[["a", 0.2]]), DY_M, r"biases\[0\]\[0\] must be a real number"),
])
def test_bias_and_output_errors_name_the_argument(ref, kwargs, dy, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        ref.value_and_grad(W_B, ALPHA_M, X_B, "tanh", dy, **kwargs)


def test_scalar_output_bias_must_be_a_number(ref):
    with pytest.raises(TypeError, match=r"output_bias must be a real number"):
        ref.forward(W_B, [1.0, 2.0], X_B, "tanh", output_bias=[1.0])
