#!/usr/bin/env bash
# Builds the libFuzzer target over the native core (native/fuzz/, clang++ with
# -fsanitize=fuzzer,address,undefined, in build-fuzz/) and runs it for a bounded time, starting
# from the kept corpus (native/fuzz/corpus) and crash regressions (native/fuzz/crashes).
#
#   scripts/fuzz.sh [--seconds N] [--json FILE] [--coverage] [--update-corpus] [--no-install] [--no-keep]
#
#   --seconds N       how long to fuzz (default 30)
#   --json FILE       write the figures (executions, coverage, corpus, crashes) as JSON
#   --coverage        also measure line/function/region coverage of native/core by replaying the
#                     corpus through a clang source-coverage build (llvm-cov); implied by --json
#   --update-corpus   merge the inputs that found new coverage into native/fuzz/corpus
#   --no-install      do not apt-get clang when it is missing (fail instead)
#   --no-keep         do not copy new crash inputs into native/fuzz/crashes (CI: print them)
#
# New inputs are written to a temporary directory (never into the repo unless --update-corpus).
# Exit status: 0 when no crash, hang or invariant violation was found, 1 otherwise, 2 on a setup
# error. A crash input is kept in build-fuzz/crashes/ (and native/fuzz/crashes/ unless --no-keep)
# and printed in base64; test_fuzz_regressions then replays it in every ctest run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
SECONDS_TO_RUN=30
JSON=""
COVERAGE=0
UPDATE=0
INSTALL=1
KEEP=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) SECONDS_TO_RUN="$2"; shift 2 ;;
    --json) JSON="$2"; COVERAGE=1; shift 2 ;;
    --coverage) COVERAGE=1; shift ;;
    --update-corpus) UPDATE=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --no-keep) KEEP=0; shift ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$SECONDS_TO_RUN" =~ ^[0-9]+$ ]] || { echo "fuzz.sh: --seconds needs a whole number" >&2; exit 2; }

log() { printf '=== fuzz.sh: %s\n' "$*"; }

# --- clang with libFuzzer (scripts/ensure-tools.sh: clang + libclang-rt-14-dev) ------------------
if [[ "$INSTALL" -eq 0 ]]; then
  SAGE_NO_INSTALL=1 bash "$ROOT/scripts/ensure-tools.sh" clang++ libfuzzer || exit 2
else
  bash "$ROOT/scripts/ensure-tools.sh" clang++ libfuzzer || exit 2
fi

# --- build ---------------------------------------------------------------------------------------
BUILD="$ROOT/build-fuzz"
if [[ -f "$BUILD/CMakeCache.txt" ]] && [[ "$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")" != "$ROOT" ]]; then
  rm -rf "$BUILD"  # configured for another checkout
fi
log "building the fuzz target (build-fuzz)"
configure() {
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAGE_FUZZ=ON \
    -DSAGE_SANITIZE=address -DSAGE_BUILD_TESTS=OFF >"$BUILD.configure.log" 2>&1
}
if ! configure; then
  rm -rf "$BUILD"  # e.g. configured earlier with another compiler: start from an empty directory
  configure || { cat "$BUILD.configure.log"; exit 2; }
fi
cmake --build "$BUILD" --target fuzz_queue --parallel "${SAGE_JOBS:-2}" >"$BUILD.build.log" 2>&1 || { cat "$BUILD.build.log"; exit 2; }
rm -f "$BUILD.configure.log" "$BUILD.build.log"

# --- run -----------------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sage-fuzz.XXXXXX")"
FUZZ_PID=""
# The target removes its segments (/dev/shm/sageq.fuzz-<pid>-*) at exit; after a sanitizer abort,
# or in libFuzzer's -merge and -runs child processes that leave with _Exit, it cannot.
sweep_segments() {
  local f pid
  for f in /dev/shm/sageq.fuzz-*; do
    [[ -e "$f" ]] || continue
    pid="${f#/dev/shm/sageq.fuzz-}"
    pid="${pid%%-*}"
    [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null && rm -f "$f"
  done
  return 0
}
cleanup() {
  if [[ -n "$FUZZ_PID" ]] && kill -0 "$FUZZ_PID" 2>/dev/null; then kill -KILL "$FUZZ_PID" 2>/dev/null || true; fi
  sweep_segments
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/new" "$ROOT/native/fuzz/corpus" "$ROOT/native/fuzz/crashes"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:print_summary=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
log "fuzzing for ${SECONDS_TO_RUN} s from $(ls "$ROOT/native/fuzz/corpus" | wc -l) corpus inputs and $(ls "$ROOT/native/fuzz/crashes" | wc -l) crash regressions"
set +e
"$BUILD/fuzz_queue" -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$WORK/" "$WORK/new" "$ROOT/native/fuzz/corpus" "$ROOT/native/fuzz/crashes" \
  >"$WORK/fuzz.log" 2>&1 &
FUZZ_PID=$!
wait "$FUZZ_PID"
rc=$?
set -e
grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::|^Done ' "$WORK/fuzz.log" || true

executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/fuzz.log" | tail -n 1)"
per_second="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$WORK/fuzz.log" | tail -n 1)"
new_units="$(sed -n 's/^stat::new_units_added: *//p' "$WORK/fuzz.log" | tail -n 1)"
last="$(grep -E '^#[0-9]+[[:space:]]' "$WORK/fuzz.log" | tail -n 1 || true)"
edges="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
features="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"

crashes=()
while IFS= read -r -d '' f; do crashes+=("$f"); done < <(find "$WORK" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'leak-*' -o -name 'oom-*' \) -print0)
if [[ "$rc" -ne 0 || ${#crashes[@]} -gt 0 ]]; then
  echo "fuzz.sh: the fuzzer found a problem (exit $rc):" >&2
  grep -E 'invariant violated|ERROR: |runtime error|SUMMARY|deadly signal|Timeout|Test unit written' "$WORK/fuzz.log" | head -n 20 >&2 || true
  mkdir -p "$BUILD/crashes"
  for f in "${crashes[@]}"; do
    cp "$f" "$BUILD/crashes/"
    [[ "$KEEP" -eq 1 ]] && cp "$f" "$ROOT/native/fuzz/crashes/"
    echo "fuzz.sh: input $(basename "$f") (base64, keep it in native/fuzz/crashes/): $(base64 -w0 "$f")" >&2
  done
  tail -n 60 "$WORK/fuzz.log" >&2
fi

if [[ "$UPDATE" -eq 1 ]]; then
  log "merging new coverage into native/fuzz/corpus"
  "$BUILD/fuzz_queue" -merge=1 -timeout=10 -max_len=4096 "$ROOT/native/fuzz/corpus" "$WORK/new" 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
fi

# --- source coverage of native/core (replays the corpus; no fuzzing) ---------------------------------
cov_json="null"
if [[ "$COVERAGE" -eq 1 ]]; then
  profdata="$(command -v llvm-profdata || command -v llvm-profdata-14 || true)"
  llvmcov="$(command -v llvm-cov || command -v llvm-cov-14 || true)"
  if [[ -n "$profdata" && -n "$llvmcov" ]]; then
    log "measuring native/core coverage of the corpus"
    mkdir -p "$BUILD/cov"
    clang++ -std=c++17 -O1 -g -fprofile-instr-generate -fcoverage-mapping -fsanitize=fuzzer -I"$ROOT/native/core" \
      "$ROOT"/native/core/*.cpp "$ROOT/native/fuzz/fuzz_queue.cpp" "$ROOT/native/fuzz/fuzz_main.cpp" \
      -o "$BUILD/cov/fuzz_cov" -lpthread -lrt
    LLVM_PROFILE_FILE="$WORK/cov.profraw" "$BUILD/cov/fuzz_cov" -runs=0 "$ROOT/native/fuzz/corpus" "$ROOT/native/fuzz/crashes" "$WORK/new" >/dev/null 2>&1 || true
    "$profdata" merge -sparse "$WORK/cov.profraw" -o "$WORK/cov.profdata"
    "$llvmcov" report "$BUILD/cov/fuzz_cov" -instr-profile="$WORK/cov.profdata" "$ROOT"/native/core/*.cpp | tee "$WORK/cov.txt"
    # TOTAL  regions missed cover%  functions missed executed%  lines missed cover%  branches missed cover%
    read -r _ reg reg_miss _ fn fn_miss _ ln ln_miss _ br br_miss _ < <(grep '^TOTAL' "$WORK/cov.txt")
    cov_json="{\"lines\": {\"covered\": $((ln - ln_miss)), \"total\": $ln}, \"functions\": {\"covered\": $((fn - fn_miss)), \"total\": $fn}, \"regions\": {\"covered\": $((reg - reg_miss)), \"total\": $reg}, \"branches\": {\"covered\": $((br - br_miss)), \"total\": $br}}"
  else
    echo "fuzz.sh: llvm-profdata/llvm-cov not found: no source coverage figures" >&2
  fi
fi

if [[ -n "$JSON" ]]; then
  cat >"$JSON" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "seconds": $SECONDS_TO_RUN,
  "compiler": "$(clang++ --version | head -n 1)",
  "executions": ${executions:-0},
  "execsPerSecond": ${per_second:-0},
  "edges": ${edges:-0},
  "features": ${features:-0},
  "newUnits": ${new_units:-0},
  "corpusFiles": $(find "$ROOT/native/fuzz/corpus" -type f | wc -l),
  "crashRegressions": $(find "$ROOT/native/fuzz/crashes" -type f | wc -l),
  "crashes": ${#crashes[@]},
  "exitCode": $rc,
  "coreCoverage": $cov_json
}
EOF
  log "figures written to $JSON"
fi

if [[ "$rc" -ne 0 || ${#crashes[@]} -gt 0 ]]; then exit 1; fi
log "no crash, hang or invariant violation in ${executions:-0} executions (cov ${edges:-?} edges, ft ${features:-?})"
