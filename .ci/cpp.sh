#!/usr/bin/env bash
# C++ checks, called by .ci/run (also runs on its own: bash .ci/cpp.sh). On a fresh Debian/Ubuntu machine
# it installs what it needs, then:
#   1. checks that tests/data/oracle_vectors.txt is what python/mlpgrad/reference.py computes today;
#   2. builds the C++ tests and runs them with ctest: with g++ for the baseline ISA (-DMLPGRAD_PORTABLE=ON,
#      with the benchmark), with g++ under AddressSanitizer + UndefinedBehaviorSanitizer and with clang++
#      (Release) for the host's, always with -Wall -Wextra -Wpedantic -Werror; and the tests that run threads
#      once more under ThreadSanitizer (clang++);
#   3. installs mlpgrad into a temporary prefix, moves it (the package must be relocatable), then builds
#      and runs the example app (cpp/examples) against it through find_package(mlpgrad CONFIG REQUIRED);
#   4. builds and runs small consumers (cpp/tests/consumers) that get mlpgrad through add_subdirectory,
#      FetchContent with a local SOURCE_DIR, and FetchContent with a URL to a source archive.
# Build trees go to a temporary directory (MLPGRAD_CI_BUILD_DIR to choose it; it is removed at the end
# unless MLPGRAD_CI_KEEP=1). Nothing is downloaded at configure or build time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS
JOBS=${MLPGRAD_CI_JOBS:-2}

section() { echo; echo "== cpp.sh [$((SECONDS - START))s] $*"; }

# ---- 0. Tools (Debian packages), installed only if missing. A tool counts only if it runs (a pyenv or
# pip shim on PATH may exist without working).
runs() { "$@" >/dev/null 2>&1; }
missing=()
runs cmake --version || runs /usr/bin/cmake --version || missing+=(cmake)
runs g++ --version || missing+=(g++)
runs clang++ --version || missing+=(clang)
runs python3 --version || missing+=(python3)
[ -f /usr/include/gtest/gtest.h ] || missing+=(libgtest-dev)
runs ninja --version || runs /usr/bin/ninja --version || runs make --version || missing+=(ninja-build)
if ((${#missing[@]})); then
  section "apt-get install ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if runs cmake --version; then CMAKE=cmake; else CMAKE=/usr/bin/cmake; fi
CTEST="$(dirname "$(command -v "$CMAKE")")/ctest"
if runs ninja --version; then
  GENERATOR=(-G Ninja)
elif runs /usr/bin/ninja --version; then
  GENERATOR=(-G Ninja -DCMAKE_MAKE_PROGRAM=/usr/bin/ninja)
else
  GENERATOR=(-G "Unix Makefiles")
fi
echo "$("$CMAKE" --version | head -1) ($(command -v "$CMAKE")), ${GENERATOR[*]}, $(g++ --version | head -1), $(clang++ --version | head -1)"

if [ -n "${MLPGRAD_CI_BUILD_DIR:-}" ]; then
  WORK=$MLPGRAD_CI_BUILD_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/mlpgrad-cpp-ci.XXXXXX)
fi
cleanup() { if [ "${MLPGRAD_CI_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "build trees kept in $WORK"; fi; }
trap cleanup EXIT

WARNINGS="-Wall -Wextra -Wpedantic -Werror"
SANITIZERS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
export ASAN_OPTIONS=${ASAN_OPTIONS:-strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# configure <build dir> <source dir> <cmake args...>
configure() {
  local dir=$1 src=$2
  shift 2
  "$CMAKE" -S "$src" -B "$dir" "${GENERATOR[@]}" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
}

# test_variant <name> <compiler> <build type> <CXXFLAGS> [extra cmake args...]: build the tests, run ctest.
test_variant() {
  local name=$1 cxx=$2 build_type=$3 flags=$4
  shift 4
  local dir=$WORK/tests-$name
  section "tests: $name ($cxx, $build_type, $flags $*)"
  configure "$dir" "$ROOT" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE="$build_type" \
    -DCMAKE_CXX_FLAGS="$flags" -DMLPGRAD_BUILD_TESTS=ON "$@"
  "$CMAKE" --build "$dir" -j "$JOBS"
  if (cd "$dir" && "$CTEST" --output-on-failure --no-tests=error -j "$JOBS" >"$dir.ctest.log" 2>&1); then
    tail -n 3 "$dir.ctest.log"
  else
    cat "$dir.ctest.log"
    return 1
  fi
}

# ---- 1. The oracle's test vectors are up to date.
section "oracle test vectors"
python3 tests/data/make_oracle_vectors.py --check

# ---- 2. Tests. Four builds, each for what it adds:
#   portable  g++ Release, -DMLPGRAD_PORTABLE=ON (the baseline ISA: no -march flag anywhere), with the
#             benchmarks (compiled, not run, so that they stay warning-free); each test file compiled on its
#             own, so that each includes what it uses;
#   g++-asan-ubsan  g++ Debug (-O0 -g: ASan misses nothing at -O0, and it builds 3x faster than at -O1) on the
#             host's ISA (-march=native, the default);
#   clang++   Release on the host's ISA: the tests optimised, and clang++'s warnings;
#   clang++-tsan  the threaded tests under ThreadSanitizer (below).
# The ASan and clang++ builds compile the test files in unity batches of 3 (every test file instantiates the
# kernels for all activations and both dtypes, so this halves the build time). There is no g++ Release build
# for the host's ISA: the Python tests run that build of the kernels (the extension), and g++-asan-ubsan and
# clang++ run the C++ tests on the host's ISA; it was the build compiled file by file, ~220 s of CI (a run of
# 4977041), while the portable one took another ~170 s in unity batches.
# One compiler's ASan + UBSan build, not both: they check the same code for the same classes of error, and
# clang++'s took 299 s of CI's 2,260 (a run of 4ace13b). MLPGRAD_CI_CLANG_ASAN=1 adds it back.
UNITY=(-DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=3)
BENCH=()
if [ -f "$ROOT/cpp/bench/CMakeLists.txt" ]; then BENCH=(-DMLPGRAD_BUILD_BENCHMARKS=ON); fi
test_variant portable g++ Release "$WARNINGS" -DMLPGRAD_PORTABLE=ON "${BENCH[@]}"
if ((${#BENCH[@]})) && [ ! -x "$WORK/tests-portable/cpp/bench/mlpgrad_bench" ]; then
  echo "mlpgrad_bench was not built" >&2
  exit 1
fi
if grep -q -- "-march=" "$WORK/tests-portable/compile_commands.json"; then
  echo "MLPGRAD_PORTABLE=ON build still uses -march" >&2
  exit 1
fi
test_variant g++-asan-ubsan g++ Debug "$WARNINGS $SANITIZERS" "${UNITY[@]}"
if grep -q "MLPGRAD_COMPILER_SUPPORTS_MARCH_NATIVE:INTERNAL=1" "$WORK/tests-g++-asan-ubsan/CMakeCache.txt" &&
  ! grep -q -- "-march=native" "$WORK/tests-g++-asan-ubsan/compile_commands.json"; then
  echo "the default build does not use -march=native" >&2
  exit 1
fi
test_variant clang++ clang++ Release "$WARNINGS" "${UNITY[@]}"
if [ "${MLPGRAD_CI_CLANG_ASAN:-0}" = 1 ]; then
  test_variant clang++-asan-ubsan clang++ Debug "$WARNINGS $SANITIZERS" "${UNITY[@]}"
fi

# ThreadSanitizer on the tests that run threads (the pool, the GEMM and the batch passes on it, concurrent
# callers). Only those: TSan slows everything 5-15x and the single-threaded tests tell it nothing. -O1, so the
# threads overlap in time as they do in a Release build. MLPGRAD_THREAD_TESTS_ONLY builds just the 6 test files
# that hold them (building all 20 took ~160 s of this step); the lists compared below make sure that no
# threaded test lives in a file left out.
section "tests: clang++-tsan (thread tests)"
TSAN_DIR=$WORK/tests-clang++-tsan
TSAN_FILTER='*Thread*:*Pool*:*Reentrancy*:*Concurrent*:BatchThreads*'
configure "$TSAN_DIR" "$ROOT" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$WARNINGS -fsanitize=thread -O1" -DMLPGRAD_BUILD_TESTS=ON -DMLPGRAD_THREAD_TESTS_ONLY=ON
"$CMAKE" --build "$TSAN_DIR" -j "$JOBS" --target mlpgrad_tests
# Suite.Test, sorted: the order of the listing follows the order of linking, which differs between the builds.
threaded_tests() {
  "$1" --gtest_list_tests --gtest_filter="$TSAN_FILTER" |
    awk '/^Running main\(\)/ { next } /^[^ ]/ { suite = $1; next } { print suite $1 }' | sort
}
if ! diff <(threaded_tests "$WORK/tests-clang++/cpp/tests/mlpgrad_tests") <(threaded_tests "$TSAN_DIR/cpp/tests/mlpgrad_tests"); then
  echo "threaded tests (< all test files, > the ThreadSanitizer build) differ: add their file to" \
    "MLPGRAD_THREAD_TESTS_ONLY's list in cpp/tests/CMakeLists.txt" >&2
  exit 1
fi
TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} "$TSAN_DIR/cpp/tests/mlpgrad_tests" \
  --gtest_brief=1 --gtest_filter="$TSAN_FILTER"

# ---- 3. Install into a temporary prefix, move it, build and run the example against it.
section "install + example app through find_package"
"$CMAKE" --install "$WORK/tests-clang++" --prefix "$WORK/prefix" >"$WORK/install.log"
for f in include/mlpgrad/mlpgrad.hpp share/cmake/mlpgrad/mlpgradConfig.cmake \
  share/cmake/mlpgrad/mlpgradConfigVersion.cmake share/cmake/mlpgrad/mlpgradTargets.cmake; do
  [ -f "$WORK/prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
mv "$WORK/prefix" "$WORK/prefix-moved"
for cxx in g++ clang++; do
  configure "$WORK/example-$cxx" "$ROOT/cpp/examples" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$WARNINGS" \
    -DCMAKE_PREFIX_PATH="$WORK/prefix-moved"
  grep -q "$WORK/prefix-moved/include" "$WORK/example-$cxx/compile_commands.json" ||
    { echo "the example did not use the installed headers" >&2; exit 1; }
  "$CMAKE" --build "$WORK/example-$cxx" -j "$JOBS"
  "$WORK/example-$cxx/fit_sine"
  "$WORK/example-$cxx/fit_regression"
done

# ---- 4. Consumers: add_subdirectory, FetchContent (SOURCE_DIR and URL).
section "consumers: add_subdirectory and FetchContent"
tar -czf "$WORK/mlpgrad-src.tar.gz" --exclude=./.git --exclude=./build --exclude=.venv --exclude=venv \
  --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis --exclude=.benchmarks \
  --exclude="./${WORK#"$ROOT"/}" -C "$ROOT" .
consumer() {
  local name=$1 project=$2 cxx=$3
  shift 3
  configure "$WORK/consumer-$name" "$ROOT/cpp/tests/consumers/$project" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="$WARNINGS" "$@"
  grep "mlpgrad embedded" "$WORK/consumer-$name.configure.log"
  "$CMAKE" --build "$WORK/consumer-$name" -j "$JOBS"
  "$WORK/consumer-$name/consumer"
}
consumer add_subdirectory add_subdirectory g++ -DMLPGRAD_SOURCE_DIR="$ROOT"
consumer fetchcontent-source-dir fetchcontent clang++ -DMLPGRAD_SOURCE_DIR="$ROOT"
consumer fetchcontent-url fetchcontent g++ -DMLPGRAD_URL="file://$WORK/mlpgrad-src.tar.gz"

section "all C++ checks passed"
