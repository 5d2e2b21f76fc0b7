#!/usr/bin/env bash
# tests/fuzz/run.sh: builds the libFuzzer targets with clang
# (-fsanitize=fuzzer,address,undefined) in their own build directory and runs
# them.
#   run.sh smoke [TARGET...]  the corpus plus FUZZ_RUNS mutations (default
#                              10000, at most FUZZ_SMOKE_SECONDS, default 10 s)
#                              each: the ctest entries (label fuzz)
#   run.sh fuzz  [TARGET...]  FUZZ_SECONDS (default 60) each, new inputs kept in
#                              $FUZZ_BUILD/corpus/<target> (seeds stay untouched);
#                              crashes land in $FUZZ_BUILD/artifacts/
# FUZZ_BUILD (default build-fuzz) is the clang build directory.
set -euo pipefail

mode=${1:-smoke}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD:-$root/build-fuzz}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cache_key config artifact_urls bundle batch_split proxy_http fake_http)

cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
  for c in clang clang-14; do
    if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
  done
fi
if [ -z "$cc" ]; then
  echo "fuzz: FAIL: clang not found; the fuzzers need clang and libclang-rt-14-dev (run scripts/install-deps.sh)" >&2
  exit 1
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){(void)d;(void)n;return 0;}' |
    "$cc" -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; then
  echo "fuzz: FAIL: $cc cannot link -fsanitize=fuzzer (install libclang-rt-14-dev: scripts/install-deps.sh)" >&2
  exit 1
fi

# One configure+build at a time (ctest runs the targets in parallel).
mkdir -p "$build"
(
  flock 9
  if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=$cc cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCLORO_SANITIZE=ON \
      -DCLORO_FUZZ=ON -DCLORO_TESTS=OFF >/dev/null
  fi
  cmake --build "$build" -j "${JOBS:-$(nproc 2>/dev/null || echo 2)}" \
    --target fuzz_gen_bundle "${targets[@]/#/fuzz_}" >/dev/null
) 9>"$build/.lock"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
bin="$build/tests/fuzz"
mkdir -p "$build/artifacts"
status=0
for t in "${targets[@]}"; do
  seeds="$here/corpus/$t"
  gen="$build/gen/$t"
  mkdir -p "$gen"
  if [ "$t" = bundle ]; then
    "$bin/fuzz_gen_bundle" "$gen"
  fi
  dict=()
  [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
  if [ "$mode" = smoke ]; then
    echo "fuzz: $t: smoke (${FUZZ_RUNS:-10000} runs, ${FUZZ_SMOKE_SECONDS:-10} s at most)"
    work="$build/smoke/$t"
    rm -rf "$work"
    mkdir -p "$work"
    if ! "$bin/fuzz_$t" "${dict[@]}" -runs="${FUZZ_RUNS:-10000}" \
        -max_total_time="${FUZZ_SMOKE_SECONDS:-10}" -max_len=65536 -seed=1 \
        -artifact_prefix="$build/artifacts/$t-" "$work" "$seeds" "$gen" 2>"$work.log"; then
      tail -n 60 "$work.log" >&2
      echo "fuzz: $t: FAIL (log: $work.log)" >&2
      status=1
    else
      tail -n 1 "$work.log"
    fi
  else
    echo "fuzz: $t: ${FUZZ_SECONDS:-60} s"
    work="$build/corpus/$t"
    mkdir -p "$work"
    if ! "$bin/fuzz_$t" "${dict[@]}" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 \
        -artifact_prefix="$build/artifacts/$t-" "$work" "$seeds" "$gen"; then
      echo "fuzz: $t: FAIL (crash inputs: $build/artifacts/$t-*)" >&2
      status=1
    fi
  fi
done
exit $status
