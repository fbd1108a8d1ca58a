"""mlpgrad.DAG's contract beyond its values (issue 12): weights, alpha and biases viewed, never copied; gradient
arrays on cache lines; malformed graphs and bad calls refused with the promised error and nothing written
(fuzzed too, in a child interpreter); out and dy aliasing; pickling; objects that refuse to be mixed or
re-initialised; threads sharing one DAG, and the same bits for any thread count."""
from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from conftest import DTYPES, run_in_child

import mlpgrad
from dag_cases import CASES, RandomDag, make_case


# ----------------------------------------------------------------------------- zero copy
def test_weights_alpha_and_biases_are_viewed_not_copied():
    rng = np.random.default_rng(5)
    g = RandomDag(rng, biases=True)
    d = g.dag()
    assert d.weights is g.weights and d.alpha is g.alpha and d.biases is g.biases
    x = rng.standard_normal(g.n_inputs)
    before = d.forward(x)
    g.weights *= 2.0
    g.alpha[0] += 1.0
    g.biases += 0.5
    assert d.forward(x) == pytest.approx(g.oracle(x)[0], rel=1e-12) and d.forward(x) != before
    out = d.new_gradients()
    arrays = [out.weights, out.alpha, out.x, out.biases, out.z, out.u]
    assert d.value_and_grad(x, out=out)[1] is out
    assert all(a is b for a, b in zip(arrays, [out.weights, out.alpha, out.x, out.biases, out.z, out.u]))
    mine = mlpgrad.DAGGradients(np.zeros(len(g.weights)), np.zeros(3), np.zeros(3), np.zeros(g.n_nodes),
                                np.zeros(g.n_nodes), np.zeros(g.n_nodes))
    d.value_and_grad(x, out=mine)
    np.testing.assert_array_equal(mine.weights, out.weights)
    assert mine.biases is not None and np.any(mine.weights != 0)


@pytest.mark.parametrize("batch", [None, 5])
def test_new_gradients_arrays_start_on_a_cache_line(batch):
    """As MLP.new_gradients: the kernels' vector stores into ∂w would otherwise straddle cache lines."""
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    rng = np.random.default_rng(6)
    for dtype in DTYPES:
        d = RandomDag(rng, n_hidden=30, biases=True, dtype=dtype).dag()
        for _ in range(4):
            out = d.new_gradients(batch=batch)
            arrays = [a for a in (out.weights, out.alpha, out.x, out.biases, out.z, out.u) if a is not None]
            assert len(arrays) >= 4
            for a in arrays:
                assert a.ctypes.data % 64 == 0 and a.flags.owndata and not a.any(), (a.shape, a.ctypes.data % 64)
                assert multiarray.get_handler_name(a) == "mlpgrad_aligned_64"
    assert multiarray.get_handler_name() != "mlpgrad_aligned_64"


@pytest.mark.parametrize("field, value, error, match", [
    ("weights", [1.0, 2.0], TypeError, "weights must be a numpy.ndarray"),
    ("weights", np.ones(4)[::2], ValueError, "weights of shape .* is not a C-contiguous"),
    ("weights", np.ones(2, dtype=np.int64), TypeError, "weights has dtype int64"),
    ("weights", np.ones((2, 1)), ValueError, "weights must be 1-D"),
    ("alpha", np.ones(1, dtype=np.float32), TypeError, "alpha has dtype float32 but weights has float64"),
    ("alpha", np.ones((1, 1, 1)), ValueError, "alpha must be 1-D .* or 2-D"),
    ("biases", np.ones(2), ValueError, r"biases has shape \(2,\) but the graph has 3 nodes"),
    ("biases", [0.0, 0.0, 0.0], TypeError, "biases must be a numpy.ndarray"),
])
def test_arrays_are_never_copied_silently(field, value, error, match):
    args = dict(n_inputs=2, src=[0, 1], dst=[2, 2], weights=np.ones(2), outputs=[2], alpha=np.ones(1))
    args[field] = value
    with pytest.raises(error, match=match):
        mlpgrad.DAG(**args)


# ----------------------------------------------------------------------------- malformed graphs
BAD_GRAPHS = [
    (dict(src=[0, 2, 3], dst=[2, 3, 2]), ValueError, r"cycle \(2 -> 3 -> 2\)"),
    (dict(src=[0, 2, 3, 4], dst=[2, 3, 4, 2]), ValueError, r"cycle \((2 -> 3 -> 4 -> 2|3 -> 4 -> 2 -> 3|4 -> 2 -> 3 -> 4)\)"),
    (dict(src=[0, 2], dst=[2, 2]), ValueError, r"cycle \(2 -> 2\)"),
    (dict(src=[0, -1], dst=[2, 2]), ValueError, r"src\[1\] is node -1 but nodes are numbered 0..2"),
    (dict(src=[0, 1], dst=[2, -3]), ValueError, r"dst\[1\] is node -3"),
    (dict(src=[0, 2], dst=[2, 1]), ValueError, r"dst\[1\] is input node 1 .*take no incoming edges"),
    (dict(outputs=[2, 2], alpha=np.ones(2)), ValueError, r"outputs\[1\] repeats node 2"),
    (dict(outputs=[-1]), ValueError, r"outputs\[0\] is node -1"),
    (dict(src=[0]), ValueError, "src has 1 entries and dst 2 but weights has 2"),
    (dict(outputs=[2, 1]), ValueError, r"outputs has 2 nodes but alpha has shape \(1,\)"),
    (dict(src=[0.0, 1.0]), TypeError, "src has dtype float64; expected integer node ids"),
    (dict(src=[True, False]), TypeError, "src has dtype bool"),
    (dict(dst=[[2, 2]]), ValueError, "dst must be 1-D"),
    (dict(src=np.array([0, 2**40], dtype=np.uint64)), ValueError, "at most 4294967295 nodes"),
    (dict(src=[0, 2**40]), ValueError, "at most 4294967295 nodes"),
    (dict(src=[0, object()]), TypeError, "src has dtype object"),
    (dict(n_inputs=-1), ValueError, "n_inputs must be between 0 and"),
    (dict(n_inputs=2.0), TypeError, "n_inputs must be an int, got float"),
    (dict(n_inputs=True), TypeError, "n_inputs must be an int, got bool"),
    (dict(activation="swish"), ValueError, "activation: .*swish"),
    (dict(activation=["relu"] * 2), ValueError, "activation has 2 names but the network has 3 nodes"),
    (dict(activation=b"relu"), TypeError, "one name per node"),
    (dict(alpha=np.ones((1, 0))), ValueError, "alpha has no columns"),
]


@pytest.mark.parametrize("bad, error, match", BAD_GRAPHS)
def test_malformed_graphs_are_refused(bad, error, match):
    args = dict(n_inputs=2, src=[0, 1], dst=[2, 2], weights=np.ones(2), outputs=[2], alpha=np.ones(1))
    args.update(bad)
    if "src" in bad and "dst" in bad:
        args["weights"] = np.ones(len(bad["src"]))
    with pytest.raises(error, match=match):
        mlpgrad.DAG(**args)


def test_bad_calls_write_nothing():
    rng = np.random.default_rng(9)
    g = RandomDag(rng, biases=True, m=2)
    d = g.dag()
    out = d.new_gradients()
    batch_out = d.new_gradients(batch=4)
    for a in (out.weights, out.alpha, out.x, out.biases, out.z, out.u, batch_out.weights, batch_out.x):
        a.fill(-777.25)
    x, X = np.ones(g.n_inputs), np.ones((4, g.n_inputs))
    calls = [
        (lambda: d.value_and_grad(np.ones(g.n_inputs + 1), np.ones(2), out=out), ValueError, "x has shape"),
        (lambda: d.value_and_grad(x, np.ones(3), out=out), ValueError, r"dy has shape \(3,\) but expected \(2,\)"),
        (lambda: d.value_and_grad(x, 1.0, out=out), ValueError, r"dy has shape \(\) but expected \(2,\)"),
        (lambda: d.value_and_grad(x, np.ones(2), out=batch_out), ValueError, "out holds batch gradients"),
        (lambda: d.value_and_grad_batch(X, np.ones((4, 2)), out=out), ValueError, "out holds single-example"),
        (lambda: d.value_and_grad_batch(X[:3], np.ones((3, 2)), out=batch_out), ValueError, "X holds 3 examples"),
        (lambda: d.value_and_grad_batch(X, np.ones(4), out=batch_out), ValueError, r"dy has shape \(4,\)"),
        (lambda: d.value_and_grad(x, np.ones(2), out=object()), TypeError, "out must be a mlpgrad.DAGGradients"),
        (lambda: d.value_and_grad(x, np.ones(2), out=mlpgrad.MLP([np.ones((1, 3))], np.ones(1)).new_gradients()),
         TypeError, "out must be a mlpgrad.DAGGradients"),
        (lambda: d.value_and_grad(x, np.ones(2), out=g32.new_gradients()), TypeError, "out holds float32 arrays"),
        (lambda: d.value_and_grad(x, np.ones(2), out=other.new_gradients()), ValueError, "out.weights has shape"),
        (lambda: d.value_and_grad(x, np.ones(2), out=no_bias.new_gradients()), ValueError, "out has no biases"),
        (lambda: d.forward_batch(np.ones(3)), ValueError, "X has shape"),
        (lambda: d.new_gradients(x=False), ValueError, "x=False needs batch=B"),
        (lambda: d.new_gradients(batch=-1), ValueError, "batch must be >= 0"),
    ]
    g32 = RandomDag(np.random.default_rng(9), biases=True, m=2, dtype=np.float32).dag()
    other = RandomDag(np.random.default_rng(10), biases=True, m=2).dag()
    no_bias = RandomDag(np.random.default_rng(9), m=2).dag()
    for call, error, match in calls:
        with pytest.raises(error, match=match):
            call()
        for a in (out.weights, out.alpha, out.x, out.biases, out.z, out.u, batch_out.weights, batch_out.x):
            assert np.all(a == -777.25)


def test_out_may_not_overlap_the_dag():
    w = np.ones(2)
    d = mlpgrad.DAG(2, [0, 1], [2, 2], w, [2], np.ones(1))
    out = mlpgrad.DAGGradients(w, np.zeros(1), np.zeros(2), None, np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="out.weights overlaps weights"):
        d.value_and_grad(np.ones(2), out=out)
    np.testing.assert_array_equal(w, [1.0, 1.0])
    with pytest.raises(ValueError, match="out.z overlaps out.u"):
        z = np.zeros(6)
        mlpgrad.DAGGradients(np.zeros(2), np.zeros(1), np.zeros(2), None, z[:3], z[2:5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_dy_may_be_a_view_of_the_gradients_it_is_read_into(dtype):
    """A graph big enough (z and ∂z beyond L2) that value_and_grad's forward pass writes out.weights: a dy
    viewing out.weights must still be read as it was at the call."""
    rng = np.random.default_rng(3)
    n_inputs, n_hidden = 8, 140_000
    dst = np.repeat(np.arange(n_inputs, n_inputs + n_hidden), 2)
    src = (rng.random(dst.size) * dst).astype(np.int64)  # any earlier node
    w = rng.uniform(-1, 1, dst.size).astype(dtype)
    n_nodes = n_inputs + n_hidden
    d = mlpgrad.DAG(n_inputs, src, dst, w, [n_nodes - 1, n_nodes - 2], rng.standard_normal((2, 2)).astype(dtype),
                    "tanh")
    x = rng.standard_normal(n_inputs).astype(dtype)
    dy = np.array([0.5, -1.5], dtype=dtype)
    y_ref, ref = d.value_and_grad(x, dy)
    assert np.count_nonzero(ref.weights) > 1000 and np.all(ref.alpha != 0)  # gradients that can be wrong
    # The two in-edges of a node whose sources are not consecutive: not a dense node (those take a dot product
    # and gather nothing), so the forward pass writes their z_s into these very entries of out.weights.
    k = next(k for k in range(0, dst.size, 2) if src[k + 1] != src[k] + 1)
    out = d.new_gradients()
    out.weights[k:k + 2] = dy
    y, got = d.value_and_grad(x, out.weights[k:k + 2], out=out)
    assert got is out
    assert y.tolist() == y_ref.tolist()
    for name in ("weights", "alpha", "x", "z", "u"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)


def test_resized_weights_are_refused():
    w = np.ones(2)
    d = mlpgrad.DAG(2, [0, 1], [2, 2], w, [2], np.ones(1))
    w.resize(5, refcheck=False)
    with pytest.raises(ValueError, match="weights was resized or reallocated"):
        d.forward(np.ones(2))


def test_fuzzed_malformed_graphs_never_crash():
    # Random structures, many of them invalid (out-of-range and negative ids, inputs as targets, cycles,
    # repeated outputs, length mismatches): each is refused with ValueError or TypeError, or, when built,
    # matches the oracle. In a child process, so that a crash is this test's failure.
    lines = run_in_child("""
        import random
        from mlpgrad import dag as oracle_dag
        r = random.Random(4)
        built = refused = 0
        for trial in range(3000):
            n_in = r.randint(0, 4)
            n = n_in + r.randint(0, 6)
            E = r.randint(0, 10)
            lo, hi = -2 if r.random() < 0.1 else 0, n + (1 if r.random() < 0.2 else 0)
            src = [r.randint(lo, max(hi - 1, lo)) for _ in range(E)]
            dst = [r.randint(lo, max(hi - 1, lo)) for _ in range(E + (r.random() < 0.05))]
            outputs = [r.randint(lo, max(hi - 1, lo)) for _ in range(r.randint(0, 3))]
            w = np.array([r.gauss(0, 1) for _ in range(E)])
            alpha = np.ones(len(outputs) + (r.random() < 0.05))
            biases = np.ones(max([n_in, *[v + 1 for v in src + dst + outputs]])) if r.random() < 0.3 else None
            try:
                d = mlpgrad.DAG(n_in, src, dst, w, outputs, alpha, "tanh", biases=biases)
            except (ValueError, TypeError) as e:
                assert str(e), "an error without a message"
                refused += 1
                continue
            built += 1
            x = np.array([r.gauss(0, 1) for _ in range(n_in)])
            y, g = d.value_and_grad(x)
            edges = [oracle_dag.Edge(s, t, float(v)) for s, t, v in zip(src, dst, w)]
            if biases is not None:
                edges += [oracle_dag.Edge(d.n_nodes, v, 1.0) for v in range(n_in, d.n_nodes)]
            a = [0.0] * (d.n_nodes + 1)
            for o in outputs:
                a[o] = 1.0
            y_ref, ref = oracle_dag.value_and_grad(d.n_nodes + 1, list(range(n_in)) + [d.n_nodes], edges, a,
                                                   list(x) + [1.0 if biases is not None else 0.0], "tanh")
            assert abs(y - y_ref) <= 1e-12 * max(1, abs(y_ref)), (y, y_ref)
            assert np.allclose(g.weights, ref.edges[:len(src)], rtol=1e-12, atol=1e-14)
            Y, gb = d.value_and_grad_batch(np.array([x, x]))
            assert np.allclose(Y, [y, y], rtol=1e-12, atol=1e-14)
        print(built, refused)
    """)
    built, refused = map(int, lines[-1].split())
    assert built > 300 and refused > 300


# ----------------------------------------------------------------------------- objects, pickling, threads
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol):
    rng = np.random.default_rng(11)
    g = make_case(rng, CASES[7], np.float64)
    d = g.dag()
    e = pickle.loads(pickle.dumps(d, protocol=protocol))
    x = rng.standard_normal(g.n_inputs)
    assert e.forward(x) == d.forward(x)
    assert (e.n_nodes, e.n_edges, e.activation) == (d.n_nodes, d.n_edges, d.activation)
    with pytest.raises(TypeError, match="cannot pickle 'mlpgrad._core.DAGGradients'"):
        pickle.dumps(d.new_gradients(), protocol=protocol)


def test_pickle_loads_from_misaligned_out_of_band_buffers():
    """Dask hands out-of-band buffers (pickle protocol 5) at any offset of its frames; such arrays are copied."""
    rng = np.random.default_rng(12)
    g = make_case(rng, CASES[7], np.float64)
    d = g.dag()
    buffers = []
    data = pickle.dumps(d, protocol=5, buffer_callback=buffers.append)
    assert buffers
    moved = []
    for b in buffers:
        raw = bytearray(b.raw().nbytes + 1)
        raw[1:] = b.raw()
        moved.append(memoryview(raw)[1:])
    e = pickle.loads(data, buffers=moved)
    x = rng.standard_normal(g.n_inputs)
    assert e.forward(x) == d.forward(x) and e.weights.flags.aligned


def test_objects_refuse_to_be_mixed_or_reinitialised():
    lines = run_in_child("""
        d = mlpgrad.DAG(2, [0, 1], [2, 2], np.ones(2), [2], np.ones(1))
        g = d.new_gradients()
        net = mlpgrad.MLP([np.ones((1, 2))], np.ones(1))
        for obj, target in [(d, mlpgrad.Gradients), (d, mlpgrad.MLP), (d, mlpgrad.DAGGradients),
                            (g, mlpgrad.DAG), (g, mlpgrad.Gradients), (net, mlpgrad.DAG), (net.new_gradients(), mlpgrad.DAGGradients)]:
            print(outcome(lambda: setattr(obj, "__class__", target)))
        for bases in [(mlpgrad.DAG, mlpgrad.MLP), (mlpgrad.DAG, mlpgrad.DAGGradients), (mlpgrad.Gradients, mlpgrad.DAG)]:
            print(outcome(lambda: type("Mixed", bases, {})))
        print(outcome(lambda: d.__init__(2, [0, 1], [2, 2], np.ones(2), [2], np.ones(1))))
        print(outcome(lambda: mlpgrad.DAG.forward(mlpgrad.DAG.__new__(mlpgrad.DAG), np.ones(2))))
        print(outcome(lambda: mlpgrad.DAG.forward(net, np.ones(2))))
        print(outcome(lambda: mlpgrad.DAGGradients.x.__get__(d)))
        print(outcome(lambda: mlpgrad.DAG(2, [0, 1], [2, 2], np.ones(2), [2], np.ones(1), "relu", bias=None)))
    """)
    assert all(line.startswith("TypeError: __class__ assignment") for line in lines[:7]), lines
    assert all(line.startswith("TypeError:") for line in lines[7:]), lines
    assert "already initialised" in lines[10] and "__init__ was never called" in lines[11]
    assert "doesn't apply to a 'mlpgrad._core.MLP'" in lines[12] and "did you mean 'biases'" in lines[14]


def test_threads_share_one_dag_with_their_own_tapes():
    rng = np.random.default_rng(12)
    g = RandomDag(rng, n_hidden=200, max_in_degree=8, biases=True)
    d = g.dag()
    X = rng.standard_normal((64, g.n_inputs))
    expected = [d.value_and_grad_batch(X[i::4]) for i in range(4)]
    single = d.value_and_grad(X[0])
    results = [None] * 4

    def work(i):
        for _ in range(20):
            y, gb = d.value_and_grad_batch(X[i::4])
            ys, gs = d.value_and_grad(X[0])
            assert ys == single[0] and np.array_equal(gs.weights, single[1].weights)
        results[i] = (y, gb)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (y, gb), (y_ref, g_ref) in zip(results, expected):
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(gb.weights, g_ref.weights)
        np.testing.assert_array_equal(gb.x, g_ref.x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_results_are_the_same_bits_for_any_thread_count(dtype):
    # mlpgrad.set_num_threads: the batch passes split each level over the binding's pool, so that every
    # number is the same for 1, 2 and 3 threads (levels big enough to cross the work threshold for threads).
    rng = np.random.default_rng(13)
    layered = RandomDag.layered(rng, [20, 150, 150, 4], biases=True, dtype=dtype)
    graphs = [RandomDag(rng, n_inputs=8, n_hidden=3000, max_in_degree=8, biases=True, m=2, dtype=dtype),
              RandomDag(rng, n_inputs=8, n_hidden=3000, max_in_degree=8, topological_ids=True, dtype=dtype),
              layered]
    before = mlpgrad.get_num_threads()
    try:
        for g in graphs:
            d = g.dag()
            for B in (5, 64, 100):
                X = rng.standard_normal((B, g.n_inputs)).astype(dtype)
                results = []
                for n in (1, 2, 3):
                    mlpgrad.set_num_threads(n)
                    Y, gb = d.value_and_grad_batch(X)
                    results.append([Y, gb.weights, gb.alpha, gb.x, gb.biases if gb.biases is not None else Y])
                for other in results[1:]:
                    for a, b in zip(results[0], other):
                        np.testing.assert_array_equal(a, b)
    finally:
        mlpgrad.set_num_threads(before)
