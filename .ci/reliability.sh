#!/usr/bin/env bash
# Reliability checks, called by .ci/run (also runs on its own: bash .ci/reliability.sh). On a fresh
# Debian/Ubuntu machine it installs what it needs (apt: g++, cmake, ninja, valgrind, GoogleTest; PyPI, into
# its own virtual environment: the build and test dependencies), then:
#   1. builds mlpgrad._core as the wheel is built (Release, plus -g for readable reports) and runs the long
#      versions of the Python reliability tests: 100,000 calls per case in tests/test_leaks.py (RSS and
#      tracemalloc flat), 600 calls per thread in tests/test_stress.py;
#   2. runs a representative workload (every entry point, error paths, threads, pickle) under Valgrind
#      memcheck: it must report no error and no definitely-lost block with mlpgrad._core in its stack;
#   3. rebuilds mlpgrad._core with AddressSanitizer + UndefinedBehaviorSanitizer (Debug, -fno-sanitize-recover)
#      and runs the whole Python test suite, plus 4x the fuzz examples, with the ASan runtime preloaded;
#   4. builds the C++ tests (cpp/tests) with ThreadSanitizer and runs the threaded ones with ctest.
# Work trees go to a temporary directory (MLPGRAD_RELIABILITY_DIR to choose it and keep it, which also makes
# re-runs incremental). MLPGRAD_RELIABILITY_SKIP="valgrind tsan ..." skips steps (.ci/run skips tsan: cpp.sh covers it).
#
# Leak detection under ASan: ASAN_OPTIONS=detect_leaks=0. CPython does not free everything at exit (interned
# strings, static types, module state) and LeakSanitizer cannot tell those from mlpgrad's: a suppression
# would have to name the interpreter, which is on every stack, mlpgrad's included. Leaks are covered instead
# by step 1 (memory flat over 100,000 calls of every kind) and step 2 (Valgrind's definitely-lost blocks,
# filtered to stacks that go through mlpgrad._core). PYTHONMALLOC=malloc sends Python's own small objects
# through malloc too, so that ASan and Valgrind see every object the binding creates.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS
JOBS=${MLPGRAD_CI_JOBS:-2}
PY=${PYTHON:-python3}
SKIP=" ${MLPGRAD_RELIABILITY_SKIP:-} "

section() { echo; echo "== reliability.sh [$((SECONDS - START))s] $*"; }
skipped() { [[ "$SKIP" == *" $1 "* ]]; }

# ---- 0. Tools, installed only if missing.
missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v cmake >/dev/null || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja-build)
command -v valgrind >/dev/null || missing+=(valgrind)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
"$PY" -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
"$PY" -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" ||
  missing+=(python3-dev)
if ((${#missing[@]})); then
  section "apt-get install ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ -n "${MLPGRAD_RELIABILITY_DIR:-}" ]; then
  WORK=$MLPGRAD_RELIABILITY_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/mlpgrad-reliability.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi

section "virtual environment $WORK/venv"
[ -x "$WORK/venv/bin/python" ] || "$PY" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
"$VPY" -m pip install -q --upgrade pip
"$VPY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=3.0" "numpy>=1.23" "rich>=13" "threadpoolctl>=3" \
  "pytest>=7" "hypothesis>=6"

# build <name> <build type> <CXXFLAGS>: installs mlpgrad into the venv, from a kept build tree.
build() {
  section "build mlpgrad._core: $1 ($2, CXXFLAGS=$3)"
  "$VPY" -m pip install -q --no-build-isolation --no-deps --force-reinstall "$ROOT" \
    -C build-dir="$WORK/build-$1" -C cmake.build-type="$2" -C cmake.define.CMAKE_CXX_FLAGS="$3" \
    -C cmake.define.CMAKE_BUILD_PARALLEL_LEVEL="$JOBS"
  echo "installed $(core_path)"
}
# The extension's file, found without importing it (the ASan build loads only with the ASan runtime preloaded).
core_path() {
  "$VPY" -c "import glob, os, importlib.util as u; print(glob.glob(os.path.dirname(u.find_spec('mlpgrad').origin) + '/_core*')[0])"
}

# ---- 1. The wheel's build (Release) with symbols: the long leak and stress runs.
# Valgrind 3.19 cannot decode AVX-512 instructions (it stops at "unhandled instruction bytes 0x62 ..."), which
# -march=native emits on CPUs that have them; step 2 runs this build under valgrind, so it leaves them out.
NO_AVX512=""
if echo 'int main() {}' | g++ -x c++ -mno-avx512f -fsyntax-only - 2>/dev/null; then NO_AVX512="-mno-avx512f"; fi
build release Release "-g $NO_AVX512"
CORE_SO=$(core_path)
if ! skipped long; then
  section "100,000 calls per case: memory stays flat (tests/test_leaks.py)"
  MLPGRAD_LEAK_CALLS=100000 "$VPY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_leaks.py"
  section "8 threads x 600 calls (tests/test_stress.py)"
  MLPGRAD_STRESS_ROUNDS=600 "$VPY" -m pytest -q -p no:cacheprovider "$ROOT/tests/test_stress.py"
fi

# ---- 2. Valgrind memcheck of a representative workload.
if ! skipped valgrind; then
  section "valgrind memcheck"
  cat >"$WORK/workload.py" <<'EOF'
"""Every entry point once or a few times: success and error paths, threads, pickle, aliasing inputs."""
import pickle
import threading

import numpy as np

import mlpgrad

rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    widths = (7, 33, 9, 3)
    weights = [rng.standard_normal((widths[t + 1], widths[t])).astype(dtype) for t in range(3)]
    alpha = rng.standard_normal(3).astype(dtype)
    for acts in ("relu", ["tanh", "sigmoid", "softplus"], ["leaky_relu", "identity", "relu"]):
        net = mlpgrad.MLP(weights, alpha, acts)
        x = rng.standard_normal(7).astype(dtype)
        X = rng.standard_normal((5, 7)).astype(dtype)
        y, g = net.value_and_grad(x, 0.5)
        out = net.new_gradients()
        for _ in range(3):
            net.value_and_grad(x, out=out)
            net.forward(x.tolist())
            net.backward(2.0, out=out)
        net.z, net.u
        yb, gb = net.value_and_grad_batch(X, np.ones(5, dtype))
        outb = net.new_gradients(batch=5)
        net.value_and_grad_batch(X, out=outb)
        net.forward_batch(X[:0])
        wrapped = mlpgrad.Gradients([np.zeros_like(w) for w in weights], np.zeros_like(alpha), np.zeros_like(x))
        net.value_and_grad(x, out=wrapped)
        pickle.loads(pickle.dumps(net)).forward(x)
        repr(net), repr(g), net.widths, net.activations, net.weights, net.alpha
    net5 = mlpgrad.MLP([rng.standard_normal((5, 7)).astype(dtype)], rng.standard_normal(5).astype(dtype), "tanh")
    g5 = net5.new_gradients(batch=5)
    g5.alpha[:] = 1.0
    net5.value_and_grad_batch(rng.standard_normal((5, 7)).astype(dtype), g5.alpha, out=g5)  # dy aliases out.alpha
    errors = [
        lambda: net.value_and_grad(x[:-1]),
        lambda: net.value_and_grad(["a"] * 7),
        lambda: net.value_and_grad(x, "dy"),
        lambda: net.value_and_grad(x, 2**2000),
        lambda: net.value_and_grad(x, out=outb),
        lambda: net.value_and_grad_batch(X, np.ones(4)),
        lambda: mlpgrad.MLP(weights, alpha.astype(np.float16), "relu"),
        lambda: mlpgrad.MLP(weights[::-1], alpha, "relu"),
        lambda: mlpgrad.MLP(weights, alpha, "bogus"),
        lambda: mlpgrad.Gradients([np.zeros((3, 3))], np.zeros(3), np.zeros(4)),
        lambda: mlpgrad.MLP(weights, alpha).backward(),
        lambda: net.new_gradients(batch=2**64),
        lambda: net.new_gradients(batch=2**45),
    ]
    for f in errors:
        try:
            f()
        except (TypeError, ValueError, RuntimeError, MemoryError):
            pass
        else:
            raise SystemExit(f"no error from {f}")

# threads: one MLP, two threads, each with forward/backward pairs and batches; then the threads exit
net = mlpgrad.MLP(weights, alpha, ["tanh", "relu", "softplus"])
def work(seed):
    r = np.random.default_rng(seed)
    for _ in range(5):
        net.forward(r.standard_normal(7))
        net.backward()
        net.value_and_grad_batch(r.standard_normal((40, 7)))
threads = [threading.Thread(target=work, args=(s,)) for s in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("workload done")
EOF
  PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --num-callers=40 --xml=yes --xml-file="$WORK/valgrind.xml" \
    --log-file="$WORK/valgrind.log" "$VPY" "$WORK/workload.py"
  "$VPY" - "$WORK/valgrind.xml" "$(basename "$CORE_SO")" <<'EOF'
import sys
import xml.etree.ElementTree as ET

path, core = sys.argv[1], sys.argv[2]
ours, others = [], 0
for err in ET.parse(path).getroot().iter("error"):
    kind = err.findtext("kind")
    frames = [(f.findtext("obj") or "", f.findtext("fn") or "", f.findtext("file") or "", f.findtext("line") or "")
              for f in err.iter("frame")]
    if any(core in obj or "mlpgrad" in fn for obj, fn, _, _ in frames):
        what = err.findtext("what") or (err.find("xwhat").findtext("text") if err.find("xwhat") is not None else "")
        ours.append(f"{kind}: {what}\n" + "\n".join(f"    {fn} ({file}:{line}) [{obj}]" for obj, fn, file, line in frames[:15]))
    else:
        others += 1
print(f"valgrind: {len(ours)} error(s) involving {core}, {others} elsewhere (the interpreter, NumPy)")
for e in ours:
    print(e)
sys.exit(1 if ours else 0)
EOF
fi

# ---- 3. AddressSanitizer + UndefinedBehaviorSanitizer on the extension: the whole Python test suite.
if ! skipped asan; then
  build asan Debug "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
  section "pytest under ASan + UBSan (the ASan runtime preloaded into the uninstrumented interpreter)"
  LIBASAN=$(g++ -print-file-name=libasan.so)
  LIBSTDCXX=$(g++ -print-file-name=libstdc++.so)
  [ -f "$LIBASAN" ] || { echo "libasan.so not found ($LIBASAN)" >&2; exit 1; }
  rm -rf "$WORK/sanitizer-logs" && mkdir -p "$WORK/sanitizer-logs"
  # libstdc++ is preloaded too: ASan's __cxa_throw interceptor must find the real one at startup, before
  # the extension loads it (the interpreter itself does not link libstdc++).
  # allocator_may_return_null: a huge malloc returns null (NumPy raises MemoryError, as without ASan) instead
  # of aborting; the tests check exactly that. Reports go to files too: pytest captures the output of a test
  # that dies.
  if ! (
    export LD_PRELOAD="$LIBASAN $LIBSTDCXX"
    export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:strict_string_checks=1:check_initialization_order=1:log_path=$WORK/sanitizer-logs/asan
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$WORK/sanitizer-logs/ubsan
    export PYTHONMALLOC=malloc
    cd "$ROOT"
    "$VPY" -c "import mlpgrad._core" # fails here if the runtime does not load
    MLPGRAD_FUZZ_SCALE=4 "$VPY" -m pytest -q -p no:cacheprovider "$ROOT/tests"
  ); then
    for f in "$WORK"/sanitizer-logs/*; do [ -f "$f" ] && { echo "---- $f"; head -n 60 "$f"; }; done
    echo "the Python test suite failed under ASan + UBSan" >&2
    exit 1
  fi
fi
# Leave the release build installed in the venv (for anyone who keeps MLPGRAD_RELIABILITY_DIR).

# ---- 4. ThreadSanitizer on the C++ tests' threaded cases.
if ! skipped tsan; then
  section "C++ tests with ThreadSanitizer"
  cmake -S "$ROOT" -B "$WORK/tsan" -G Ninja -DMLPGRAD_BUILD_TESTS=ON -DMLPGRAD_INSTALL=OFF -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g" -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=3 \
    >"$WORK/tsan.configure.log" 2>&1 || { cat "$WORK/tsan.configure.log"; exit 1; }
  cmake --build "$WORK/tsan" -j "$JOBS"
  (
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
    cd "$WORK/tsan"
    ctest --output-on-failure --no-tests=error -R 'Reentrancy|Thread|Concurren'
  )
fi

section "all reliability checks passed"
