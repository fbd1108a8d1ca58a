"""The binding's objects under attack (issue 9, part A): classes that derive from both MLP and Gradients,
pickling under every protocol, __init__ re-entered from the constructor's own callbacks or called twice,
ill-formed text in names and keywords, user exceptions wrapped in ours, and constructor mistakes.

Whatever could crash runs in a child interpreter (``conftest.run_in_child``), so that a crash is a failure of
that test and not of the whole run.
"""
from __future__ import annotations

import inspect
import os
import pickle

import numpy as np
import pytest

import mlpgrad
from conftest import run_in_child

HERE = os.path.dirname(os.path.abspath(__file__))


def small_net(dtype=np.float64):
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal((3, 2)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)]
    return weights, rng.standard_normal(4).astype(dtype)


# ----------------------------------------------------------------------------- 1. mixed bases
@pytest.mark.parametrize("bases", ["mlpgrad.Gradients, mlpgrad.MLP", "mlpgrad.MLP, mlpgrad.Gradients"])
def test_a_class_deriving_from_mlp_and_gradients_is_refused_when_created(bases):
    lines = run_in_child(f'''
    def make():
        class C({bases}):
            pass
    print(outcome(make))
    print(outcome(lambda: type("D", ({bases},), {{}})))
    class Sub(mlpgrad.MLP):
        pass
    print(outcome(lambda: type("E", (Sub, mlpgrad.Gradients), {{}})))
    ''')
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("TypeError: class ") and "mlpgrad.MLP and mlpgrad.Gradients" in line, line


# Every use of an instance of such a class, had it been created anyway: a mixin whose __init_subclass__
# does not call super() hides mlpgrad's check.
MIXED_USES = {
    "Gradients.__init__": "mlpgrad.Gradients.__init__(c, [np.ones((3, 2))], np.ones(3), np.ones(2))",
    "MLP.__init__": "mlpgrad.MLP.__init__(c, [np.ones((3, 2))], np.ones(3))",
    "forward": "c.forward(np.ones(2))",
    "value_and_grad_batch": "c.value_and_grad_batch(np.ones((2, 2)))",
    "repr": "repr(c)",
    "MLP property": "c.widths",
    "Gradients property": "c.x",
    "pickle": "pickle.dumps(c)",
    "pickle protocol 0": "pickle.dumps(c, protocol=0)",
    "as out=": "mlpgrad.MLP([np.ones((3, 2))], np.ones(3)).value_and_grad(np.ones(2), out=c)",
    "as batch out=": "mlpgrad.MLP([np.ones((3, 2))], np.ones(3)).value_and_grad_batch(np.ones((1, 2)), out=c)",
}


@pytest.mark.parametrize("order", ["Gradients, MLP", "MLP, Gradients"])
def test_a_mixed_instance_is_refused_on_every_use(order):
    first, second = order.split(", ")
    lines = run_in_child(f'''
    class HidesInitSubclass:
        def __init_subclass__(cls, **kwargs):
            pass
    class C(HidesInitSubclass, mlpgrad.{first}, mlpgrad.{second}):
        pass
    uses = {MIXED_USES!r}
    for name, expr in uses.items():
        c = C.__new__(C)
        # first one base's __init__ (when it is accepted, the other's is the use), then the use
        outcome(lambda: mlpgrad.{first}.__init__(c, *([[np.ones((3, 2))], np.ones(3)] +
                                                   ([np.ones(2)] if "{first}" == "Gradients" else []))))
        print(name, "->", outcome(lambda: eval(expr)))
    ''')
    assert len(lines) == len(MIXED_USES)
    for line in lines:
        name, result = line.split(" -> ", 1)
        assert result.startswith("TypeError: "), line
        assert "derives from more than one compiled" in result or "cannot pickle" in result, line


def test_methods_and_properties_refuse_the_other_class():
    # pybind11 hands `self` over unchecked to functions that take a handle: a property's __get__ or an
    # unbound method applied to the other class read one C++ object as the other (SIGSEGV).
    lines = run_in_child("""
    weights, alpha = [np.ones((3, 2))], np.ones(3)
    net = mlpgrad.MLP(weights, alpha)
    g = net.new_gradients()
    for case in ["mlpgrad.MLP.__repr__(g)", "mlpgrad.Gradients.x.__get__(net)", "mlpgrad.Gradients.__repr__(net)",
                 "mlpgrad.MLP.widths.__get__(g)", "mlpgrad.MLP.z.__get__(g)", "mlpgrad.Gradients.batch.__get__(net)",
                 "mlpgrad.Gradients.dtype.__get__(net)", "mlpgrad.MLP.forward(g, np.ones(2))",
                 "mlpgrad.MLP.new_gradients(g)", "mlpgrad.MLP.__getstate__(g)", "mlpgrad.MLP.__init__(g, weights, alpha)",
                 "mlpgrad.Gradients.__init__(net, [], np.ones(3), np.ones(3))", "mlpgrad.MLP.__reduce_ex__(g, 2)"]:
        print(case, "->", outcome(lambda: eval(case)))
    print(net.widths, g.batch)
    """)
    assert lines[-1] == "(2, 3) None"
    for line in lines[:-1]:
        assert line.split(" -> ")[1].startswith("TypeError: "), line


def test_class_assignment_cannot_move_an_instance_to_the_other_class():
    # net.__class__ = mlpgrad.Gradients made Gradients' methods read the MLP (SIGSEGV, double free)
    lines = run_in_child("""
    class SlottedMLP(mlpgrad.MLP):
        __slots__ = ()
    class SlottedGradients(mlpgrad.Gradients):
        __slots__ = ()
    class SubMLP(mlpgrad.MLP):
        pass
    class SubGradients(mlpgrad.Gradients):
        pass
    class OtherSubMLP(mlpgrad.MLP):
        pass
    nets = [lambda c=c: c([np.ones((3, 2))], np.ones(3)) for c in (mlpgrad.MLP, SlottedMLP, SubMLP)]
    grads = [lambda c=c: c([], np.ones(3), np.ones(3)) for c in (mlpgrad.Gradients, SlottedGradients, SubGradients)]
    for make, targets in [(n, (mlpgrad.Gradients, SlottedGradients, SubGradients)) for n in nets] + \\
                         [(g, (mlpgrad.MLP, SlottedMLP, SubMLP)) for g in grads]:
        for target in targets:
            obj = make()
            print(type(obj).__name__, "->", target.__name__, outcome(lambda: setattr(obj, "__class__", target)))
            print(type(obj).__name__, "still works:", outcome(lambda: repr(obj)))
    net = SubMLP([np.ones((3, 2))], np.ones(3))
    net.__class__ = OtherSubMLP  # within the MLP family: the same C++ object, allowed
    print(type(net).__name__, net.forward(np.ones(2)))
    """)
    assert lines[-1] == "OtherSubMLP 6.0"
    moves, checks = lines[:-1:2], lines[1:-1:2]
    assert len(moves) == 18
    for line in moves:
        assert "TypeError: __class__ assignment:" in line, line
    for line in checks:
        assert line.endswith("still works: returned"), line


def test_single_inheritance_still_works_and_passes_class_keywords_on():
    class Tagged:
        def __init_subclass__(cls, tag=None, **kwargs):
            super().__init_subclass__(**kwargs)
            cls.tag = tag

    class Net(mlpgrad.MLP, Tagged, tag="net"):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.note = "mine"

    class Grads(mlpgrad.Gradients):
        pass

    weights, alpha = small_net()
    net = Net(weights, alpha, activation="tanh")
    assert Net.tag == "net" and net.note == "mine" and net.widths == (2, 3, 4)
    ref = mlpgrad.MLP(weights, alpha, "tanh")
    x = np.ones(2)
    out = Grads(**{"weights": [np.zeros_like(w) for w in weights], "alpha": np.zeros(4), "x": np.zeros(2)})
    y, g = net.value_and_grad(x, out=out)
    y_ref, g_ref = ref.value_and_grad(x)
    assert y == y_ref and g is out and all(np.array_equal(a, b) for a, b in zip(g.weights, g_ref.weights))
    with pytest.raises(TypeError, match="keyword"):
        class Bad(mlpgrad.MLP, unknown=1):  # noqa: F841 - object.__init_subclass__ refuses it, as for any class
            pass


# ----------------------------------------------------------------------------- 3. pickle protocols
def test_mlp_round_trips_under_every_protocol():
    lines = run_in_child('''
    rng = np.random.default_rng(5)
    class Sub(mlpgrad.MLP):
        pass
    import __main__
    __main__.Sub = Sub
    for dtype in (np.float32, np.float64):
        for widths, act in [((3, 4, 2), ["tanh", "relu"]), ((3,), "relu"), ((2, 5), "softplus")]:
            ws = [rng.standard_normal((widths[t + 1], widths[t])).astype(dtype) for t in range(len(widths) - 1)]
            a = rng.standard_normal(widths[-1]).astype(dtype)
            x = rng.standard_normal(widths[0]).astype(dtype)
            for cls in (mlpgrad.MLP, Sub):
                net = cls(ws, a, act)
                for p in range(pickle.HIGHEST_PROTOCOL + 1):
                    again = pickle.loads(pickle.dumps(net, protocol=p))
                    same = (type(again) is cls and again.widths == net.widths and again.activations == net.activations
                            and again.dtype == net.dtype and again.forward(x) == net.forward(x)
                            and all(np.array_equal(u, v) for u, v in zip(again.weights, net.weights)))
                    print(cls.__name__, np.dtype(dtype).name, widths, p, same)
    print("copies", copy.copy(net).forward(x) == net.forward(x), copy.deepcopy(net).forward(x) == net.forward(x))
    ''')
    assert lines and lines[-1] == "copies True True"
    assert len(lines) == 2 * 3 * 2 * (pickle.HIGHEST_PROTOCOL + 1) + 1
    assert all(line.endswith(" True") for line in lines), [line for line in lines if not line.endswith(" True")]


def test_gradients_refuses_pickling_under_every_protocol_with_one_type_error():
    lines = run_in_child('''
    net = mlpgrad.MLP([np.ones((3, 2))], np.ones(3))
    for g in (net.new_gradients(), net.new_gradients(batch=2), mlpgrad.Gradients([], np.ones(3), np.ones(3))):
        for p in range(pickle.HIGHEST_PROTOCOL + 1):
            print(outcome(lambda: pickle.dumps(g, protocol=p)))
        print(outcome(lambda: copy.copy(g)))
        print(outcome(lambda: g.__reduce__()))
    ''')
    assert set(lines) == {"TypeError: cannot pickle 'mlpgrad._core.Gradients' object"}, set(lines)


def test_no_cpp_exception_escapes_through_pybind11s_base_type():
    # copyreg's protocol-0 reduction calls the base type pybind11 gives every bound class: its tp_new threw
    # a C++ exception through CPython (std::terminate).
    lines = run_in_child('''
    net = mlpgrad.MLP([np.ones((3, 2))], np.ones(3))
    print(outcome(lambda: mlpgrad.MLP.__base__()))
    print(outcome(lambda: mlpgrad.MLP.__base__.__new__(mlpgrad.MLP.__base__)))
    print(outcome(lambda: copyreg._reduce_ex(net, 0)))
    print(outcome(lambda: object.__reduce__(net)))
    print(outcome(lambda: object.__reduce_ex__(net, 0)))
    ''')
    assert all(line.startswith("TypeError: cannot create") for line in lines[:4]), lines
    assert lines[4] == "returned"


def test_reduction_is_what_protocol_2_always_gave():
    # (protocols 0 and 1 used to abort in object.__reduce_ex__: in a child)
    lines = run_in_child("""
    weights, alpha = [np.ones((3, 2)), np.ones((4, 3))], np.ones(4)
    net = mlpgrad.MLP(weights, alpha, ["tanh", "relu"])
    for p in range(pickle.HIGHEST_PROTOCOL + 1):
        f, args, state = net.__reduce_ex__(p)
        print(f is copyreg.__newobj__, args == (mlpgrad.MLP,), state[0] == 1, state[1][0] is weights[0],
              state[2] is alpha, state[3] == ("tanh", "relu"))
    print(outcome(lambda: net.__reduce_ex__("2")))

    class OwnReduce(mlpgrad.MLP):  # a subclass's own __reduce__ wins, as with object.__reduce_ex__
        def __reduce__(self):
            return (mlpgrad.MLP, (list(self.weights), self.alpha, self.activations))

    again = pickle.loads(pickle.dumps(OwnReduce(weights, alpha, "tanh"), protocol=0))
    print(type(again) is mlpgrad.MLP, again.activations)
    """)
    n = pickle.HIGHEST_PROTOCOL + 1
    assert lines[:n] == ["True True True True True True"] * n, lines
    assert lines[n] == "TypeError: __reduce_ex__() argument protocol must be an int, got str"
    assert lines[n + 1] == "True ('tanh', 'tanh')"


# ----------------------------------------------------------------------------- 5. re-entrant __init__
def test_init_reentered_from_the_activation_sequence_neither_leaks_nor_aborts():
    lines = run_in_child('''
    W, a = np.ones((3, 2)), np.ones(3)
    class Reenters:
        def __init__(self, where):
            self.where = where
        def __len__(self):
            if self.where == "len":
                net.__init__([W], a, "tanh")
            return 1
        def __getitem__(self, i):
            if self.where == "getitem":
                net.__init__([W], a, "tanh")
            if i:
                raise IndexError(i)
            return "relu"
    before = sys.getrefcount(W)
    for where in ("len", "getitem"):
        net = mlpgrad.MLP.__new__(mlpgrad.MLP)
        print(outcome(lambda: net.__init__([W], a, Reenters(where))))
        print(net.activations, net.forward(np.ones(2)) == mlpgrad.MLP([W], a, "tanh").forward(np.ones(2)))
        state = (1, (W,), a, Reenters(where))
        net = mlpgrad.MLP.__new__(mlpgrad.MLP)
        print(outcome(lambda: net.__setstate__(state)))
        print(net.activations)
        del net, state
        gc.collect()
    print("refcount of W unchanged:", sys.getrefcount(W) == before)
    ''')
    assert lines[-1] == "refcount of W unchanged: True", lines
    for i in (0, 4):  # the outer call is refused; the network keeps what the inner call made
        assert lines[i].startswith("TypeError: MLP.__init__() was called on") and "already initialised" in lines[i]
        assert lines[i + 1] == "('tanh',) True"
        assert lines[i + 2].startswith("TypeError: MLP.__setstate__() was called on")
        assert lines[i + 3] == "('tanh',)"


def test_a_forward_whose_input_reenters_init_leaves_the_network_as_it_was():
    weights, alpha = small_net()
    net = mlpgrad.MLP(weights, alpha, "tanh")
    y = net.forward(np.ones(2))

    class Input:
        def __array__(self, dtype=None, copy=None):
            net.__init__([np.ones((1, 2))], np.ones(1))
            return np.ones(2)

    with pytest.raises(TypeError, match="x could not be read") as info:
        net.forward(Input())
    assert isinstance(info.value.__cause__, TypeError) and "already initialised" in str(info.value.__cause__)
    assert net.widths == (2, 3, 4) and net.forward(np.ones(2)) == y


# ----------------------------------------------------------------------------- 10. ill-formed text
LONE = "\udc80"


@pytest.mark.parametrize("activation, name, shown", [(LONE, "activation", r"\udc80"),
                                                    (["relu", "tan" + LONE], "activation[1]", r"tan\udc80"),
                                                    ("tanh\0", "activation", r"tanh\x00")])
def test_ill_formed_activation_names_are_unknown_names_shown_escaped(activation, name, shown):
    weights, alpha = small_net()
    with pytest.raises(ValueError) as info:
        mlpgrad.MLP(weights, alpha, activation)
    assert str(info.value).startswith(f"{name}: unknown activation '{shown}'; expected one of 'relu'"), info.value


def entry_points():
    weights, alpha = small_net()
    net = mlpgrad.MLP(weights, alpha)
    net.forward(np.ones(2))
    return {
        "MLP": (lambda **kw: mlpgrad.MLP(weights, alpha, **kw)),
        "Gradients": (lambda **kw: mlpgrad.Gradients([], np.ones(3), np.ones(3), **kw)),
        "forward": (lambda **kw: net.forward(np.ones(2), **kw)),
        "backward": (lambda **kw: net.backward(**kw)),
        "value_and_grad": (lambda **kw: net.value_and_grad(np.ones(2), **kw)),
        "forward_batch": (lambda **kw: net.forward_batch(np.ones((1, 2)), **kw)),
        "value_and_grad_batch": (lambda **kw: net.value_and_grad_batch(np.ones((1, 2)), **kw)),
        "new_gradients": (lambda **kw: net.new_gradients(**kw)),
        "MLP.__setstate__": (lambda **kw: mlpgrad.MLP.__new__(mlpgrad.MLP).__setstate__(**kw)),
        "MLP.__getstate__": (lambda **kw: net.__getstate__(**kw)),
        "__reduce_ex__": (lambda **kw: net.__reduce_ex__(2, **kw)),
    }


@pytest.mark.parametrize("keyword", [LONE, "a" + LONE + "b", "a\0b", "activations", "outt", "é"])
def test_an_unknown_keyword_is_one_type_error_naming_it(keyword):
    # in a child: pybind11's overload error aborted on a keyword that is not valid UTF-8
    lines = run_in_child(f"""
    sys.path.insert(0, {HERE!r})
    from test_hardening_objects import entry_points
    for name, function in sorted(entry_points().items()):
        print(name, "->", outcome(lambda: function(**{{{keyword!r}: 1}})))
    """)
    assert len(lines) == len(entry_points())
    escaped = keyword.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", r"\x00")
    for line in lines:
        function, result = line.split(" -> ", 1)
        assert result.startswith(f"TypeError: {function}() got an unexpected keyword argument '{escaped}'"), line
        assert len(result) < 200, line


@pytest.mark.parametrize("version", [2**40, 2**80, -(2**70), 2**63, 0, 2])
def test_pickle_state_versions_beyond_any_c_integer_are_value_errors(version):
    fresh = mlpgrad.MLP.__new__(mlpgrad.MLP)
    with pytest.raises(ValueError, match=f"format version {version}; expected format version 1"):
        fresh.__setstate__((version, (), np.ones(1), ()))


# ----------------------------------------------------------------------------- 11. a second __init__
def test_a_second_init_or_setstate_raises_and_changes_nothing():
    weights, alpha = small_net()
    net = mlpgrad.MLP(weights, alpha, "tanh")
    y = net.forward(np.ones(2))
    attempts = [lambda: net.__init__(weights, alpha, "relu"), lambda: net.__init__([], np.ones(5)),
                lambda: net.__setstate__(net.__getstate__()), lambda: net.__setstate__((7,)),
                lambda: net.__setstate__((1, (), np.ones(5), ()))]
    for attempt in attempts:
        with pytest.raises(TypeError, match=r"already initialised; mlpgrad objects never change once made"):
            attempt()
    assert net.widths == (2, 3, 4) and net.activations == ("tanh", "tanh") and net.forward(np.ones(2)) == y
    g = net.new_gradients()
    with pytest.raises(TypeError, match=r"Gradients.__init__\(\) was called on .* already initialised"):
        g.__init__([], np.ones(3), np.ones(3))
    assert g.x.shape == (2,) and len(g.weights) == 2


def test_a_failed_init_leaves_an_instance_that_a_later_init_can_still_build():
    weights, alpha = small_net()
    net = mlpgrad.MLP.__new__(mlpgrad.MLP)
    with pytest.raises(ValueError):
        net.__init__(weights, alpha, "swish")
    with pytest.raises(TypeError, match="__init__ was never called"):
        net.widths
    net.__init__(weights, alpha, "relu")
    assert net.widths == (2, 3, 4)


# ----------------------------------------------------------------------------- 12. chained user exceptions
class BrokenLen:
    def __len__(self):
        raise ZeroDivisionError("broken __len__")

    def __getitem__(self, i):
        return "relu"


class BrokenArray:
    def __array__(self, *args, **kwargs):
        raise ZeroDivisionError("broken __array__")


class BrokenFloat:
    def __float__(self):
        raise ZeroDivisionError("broken __float__")


def chained_cases():
    weights, alpha = small_net()
    net = mlpgrad.MLP(weights, alpha)
    return {
        "activation __len__": (lambda: mlpgrad.MLP(weights, alpha, BrokenLen()), TypeError, ZeroDivisionError,
                               "activation could not be read as a sequence of names (ZeroDivisionError: broken __len__)"),
        "x __array__": (lambda: net.forward(BrokenArray()), TypeError, ZeroDivisionError,
                        "x could not be read as an array of real numbers (ZeroDivisionError: broken __array__)"),
        "X __array__": (lambda: net.forward_batch(BrokenArray()), TypeError, ZeroDivisionError,
                        "X could not be read as an array of real numbers (ZeroDivisionError: broken __array__)"),
        "dy __float__": (lambda: net.value_and_grad(np.ones(2), BrokenFloat()), TypeError, ZeroDivisionError,
                         "dy could not be read as a real number (ZeroDivisionError: broken __float__)"),
        "dy overflow": (lambda: net.value_and_grad(np.ones(2), 2**2000), ValueError, OverflowError,
                        "dy is out of the range of a float (OverflowError: "),
    }


@pytest.mark.parametrize("case", sorted(chained_cases()))
def test_a_wrapped_user_exception_is_chained_not_pasted(case):
    call, exc_type, cause_type, start = chained_cases()[case]
    with pytest.raises(exc_type) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(start), msg
    assert "\n" not in msg and "At:" not in msg, msg
    assert isinstance(info.value.__cause__, cause_type)


# ----------------------------------------------------------------------------- 13. constructor mistakes
def test_a_wrong_keyword_to_mlp_is_one_line_naming_it():
    weights, alpha = small_net()
    with pytest.raises(TypeError) as info:
        mlpgrad.MLP(weights, alpha, activations="tanh")
    assert str(info.value) == "MLP() got an unexpected keyword argument 'activations'; did you mean 'activation'?"


def test_weights_passed_transposed_are_named_as_such():
    weights, alpha = small_net()  # (3, 2), (4, 3); alpha (4,)
    cases = {
        "one transposed": ([weights[0], weights[1].T], alpha,
                           "weights[1] has shape (3, 4) but expected 3 columns to chain with weights[0]",
                           "weights[1].T of shape (4, 3) would chain"),
        "all transposed": ([weights[0].T, weights[1].T], alpha,
                           "weights[1] has shape (3, 4) but expected 2 columns to chain with weights[0]",
                           "every weights[t].T would chain"),
        "depth 1": ([weights[1].T], alpha, "alpha", "weights[0].T of shape (4, 3) would chain"),
    }
    for name, (ws, a, start, hint) in cases.items():
        ws = [np.ascontiguousarray(w) for w in ws]
        with pytest.raises(ValueError) as info:
            mlpgrad.MLP(ws, a)
        msg = str(info.value)
        assert msg.startswith(start) and "did you pass W.T? mlpgrad expects each weight as (K_out, K_in)" in msg \
            and msg.endswith(hint), (name, msg)
    # shapes that do not chain either way get no hint
    with pytest.raises(ValueError) as info:
        mlpgrad.MLP([weights[0], np.ones((4, 5))], alpha)
    assert "W.T" not in str(info.value)
    # gradient buffers of a Gradients too
    with pytest.raises(ValueError, match=r"out\.weights\[1\] has shape \(3, 4\).*out\.weights\[1\]\.T of shape"):
        mlpgrad.Gradients([np.zeros((3, 2)), np.zeros((3, 4))], np.zeros(4), np.zeros(2))


def test_the_constructor_signatures_are_visible():
    assert str(inspect.signature(mlpgrad.MLP)) == "(weights, alpha, activation='relu', *, biases=None, output_bias=None)"
    assert str(inspect.signature(mlpgrad.Gradients)) == \
        "(weights, alpha, x=None, z=None, u=None, *, biases=None, output_bias=None)"
    assert str(inspect.signature(mlpgrad.MLP.new_gradients)) == "(self, /, batch=None, *, x=True)"
    assert str(inspect.signature(mlpgrad.MLP.backward_batch)) == "(self, /, dy=None, *, out=None)"
