#!/usr/bin/env bash
# Builds the C++ core and its ctest executables (native/test/test_*.cpp) in two sanitizer trees
# and runs them:
#   build-native-asan  SAGE_SANITIZE=address  ASan + UBSan, every test
#   build-native-tsan  SAGE_SANITIZE=thread   TSan, only the test_*_threads* tests
# Plain CMake, no cmake-js, no downloads. Both trees always run; the script fails if either did.
#
# Then, when clang++ with libFuzzer is installed, a short run of the fuzz target (scripts/fuzz.sh).
#
# Environment: SAGE_JOBS (build parallelism, default 2), SAGE_SKIP_TSAN=1 (skip the TSan tree,
# e.g. on a kernel where TSan cannot map its shadow memory even with ASLR disabled),
# SAGE_FUZZ_SECONDS (length of the fuzz run, default 20), SAGE_SKIP_FUZZ=1 (skip it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
JOBS="${SAGE_JOBS:-2}"
export npm_config_nodedir=/usr

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:print_summary=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

command -v cmake >/dev/null || { echo "test-native: cmake not found" >&2; exit 1; }
command -v ctest >/dev/null || { echo "test-native: ctest not found" >&2; exit 1; }

total_passed=0
total_failed=0
summary=()

log() { printf '\n=== test-native: %s\n' "$*"; }

# Configures and builds one tree. A tree configured from another checkout (a copied work tree)
# or with another generator is thrown away rather than half-reused.
build_tree() {
  local dir="$1" sanitize="$2"
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    local home
    home="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$dir/CMakeCache.txt")"
    if [[ "$home" != "$ROOT" ]]; then
      echo "test-native: $dir was configured for '$home'; reconfiguring from scratch"
      rm -rf "$dir"
    fi
  fi
  if ! cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAGE_SANITIZE="$sanitize" \
      -DSAGE_BUILD_TESTS=ON; then
    echo "test-native: configure of $dir failed; retrying from an empty directory"
    rm -rf "$dir"
    cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSAGE_SANITIZE="$sanitize" \
      -DSAGE_BUILD_TESTS=ON
  fi
  cmake --build "$dir" --parallel "$JOBS"
}

# TSan needs its fixed shadow-memory layout; with high-entropy ASLR (vm.mmap_rnd_bits > 28 on
# newer kernels) an older libtsan dies with "FATAL: ThreadSanitizer: unexpected memory mapping".
# Probe with a tiny threaded program and pick how to run the tests: plainly, or under
# `setarch -R` (ASLR off for that process tree only). Sets TSAN_WRAPPER to the command prefix.
TSAN_WRAPPER=()
choose_tsan_wrapper() {
  local dir="$1" cxx probe out
  cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")"
  probe="$dir/tsan-probe"
  cat >"$probe.cpp" <<'EOF'
#include <atomic>
#include <thread>
int main() {
  std::atomic<int> n{0};
  std::thread t([&] { n.fetch_add(1, std::memory_order_relaxed); });
  n.fetch_add(1, std::memory_order_relaxed);
  t.join();
  return n.load(std::memory_order_relaxed) == 2 ? 0 : 1;
}
EOF
  if ! "${cxx:-c++}" -std=c++17 -O1 -g -fsanitize=thread -pthread "$probe.cpp" -o "$probe"; then
    echo "test-native: could not compile the TSan probe with ${cxx:-c++}" >&2
    return 1
  fi
  if out="$("$probe" 2>&1)"; then
    echo "test-native: TSan works here as is"
    return 0
  fi
  echo "test-native: TSan probe failed when run plainly:"
  printf '%s\n' "$out" | head -n 5
  if command -v setarch >/dev/null && out="$(setarch "$(uname -m)" -R "$probe" 2>&1)"; then
    echo "test-native: TSan works with ASLR disabled: running the TSan tests under setarch -R"
    TSAN_WRAPPER=(setarch "$(uname -m)" -R)
    return 0
  fi
  printf '%s\n' "$out" | head -n 5
  echo "test-native: TSan cannot run on this kernel (vm.mmap_rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo '?'))." >&2
  echo "test-native: try 'sysctl -w vm.mmap_rnd_bits=28', or set SAGE_SKIP_TSAN=1 to skip the TSan tree." >&2
  return 1
}

# Runs ctest in one tree and adds its counts to the totals.
run_tree() {
  local name="$1" dir="$2" jobs="$3"
  shift 3
  local wrapper=("$@") logf="$dir/ctest-output.log" rc line failed total
  set +e
  (cd "$dir" && "${wrapper[@]}" ctest --output-on-failure --no-tests=error --timeout 300 -j "$jobs") 2>&1 | tee "$logf"
  rc=${PIPESTATUS[0]}
  set -e
  line="$(grep -Eo '[0-9]+ tests? failed out of [0-9]+' "$logf" | tail -n 1 || true)"
  if [[ -n "$line" ]]; then
    failed="$(awk '{print $1}' <<<"$line")"
    total="$(awk '{print $NF}' <<<"$line")"
  else
    # ctest itself failed (no tests, crash of the harness): count the tree as one failure.
    failed=1
    total=1
  fi
  if [[ "$rc" -ne 0 && "$failed" -eq 0 ]]; then failed=1; fi
  total_passed=$((total_passed + total - failed))
  total_failed=$((total_failed + failed))
  summary+=("$name $((total - failed))/$total passed")
}

# --- ASan + UBSan: every test --------------------------------------------------------------------
start=$SECONDS
log "ASan+UBSan tree (build-native-asan)"
if build_tree "$ROOT/build-native-asan" address; then
  run_tree asan "$ROOT/build-native-asan" "$JOBS"
else
  echo "test-native: ASan tree failed to build" >&2
  total_failed=$((total_failed + 1))
  summary+=("asan build FAILED")
fi
asan_time=$((SECONDS - start))

# --- TSan: the threaded tests only, one at a time (they are stress tests on 2 cores) --------------
start=$SECONDS
if [[ "${SAGE_SKIP_TSAN:-}" == "1" ]]; then
  log "TSan tree skipped (SAGE_SKIP_TSAN=1)"
  summary+=("tsan skipped")
else
  log "TSan tree (build-native-tsan)"
  if build_tree "$ROOT/build-native-tsan" thread; then
    if choose_tsan_wrapper "$ROOT/build-native-tsan"; then
      run_tree tsan "$ROOT/build-native-tsan" 1 "${TSAN_WRAPPER[@]}"
    else
      total_failed=$((total_failed + 1))
      summary+=("tsan UNAVAILABLE")
    fi
  else
    echo "test-native: TSan tree failed to build" >&2
    total_failed=$((total_failed + 1))
    summary+=("tsan build FAILED")
  fi
fi
tsan_time=$((SECONDS - start))

# --- libFuzzer: a short run of the fuzz target (native/fuzz, clang only) ---------------------------
# The kept corpus and crash inputs are replayed by test_fuzz_regressions in the ASan tree above;
# this also mutates them for SAGE_FUZZ_SECONDS (default 20) under ASan/UBSan. New crash inputs are
# printed (base64) and kept in build-fuzz/crashes/, not written into the repo.
start=$SECONDS
if [[ "${SAGE_SKIP_FUZZ:-}" == "1" ]]; then
  log "libFuzzer run skipped (SAGE_SKIP_FUZZ=1)"
  summary+=("fuzz skipped")
elif bash "$ROOT/scripts/ensure-tools.sh" --check clang++ libfuzzer >/dev/null; then
  log "libFuzzer run (scripts/fuzz.sh --seconds ${SAGE_FUZZ_SECONDS:-20})"
  if bash "$ROOT/scripts/fuzz.sh" --seconds "${SAGE_FUZZ_SECONDS:-20}" --no-install --no-keep; then
    total_passed=$((total_passed + 1))
    summary+=("fuzz passed")
  else
    total_failed=$((total_failed + 1))
    summary+=("fuzz FAILED")
  fi
else
  log "libFuzzer run skipped: no clang++ with the libFuzzer runtime (apt-get install clang libclang-rt-14-dev)"
  summary+=("fuzz skipped (no clang)")
fi
fuzz_time=$((SECONDS - start))

echo
echo "test-native: ${summary[*]} (asan ${asan_time}s, tsan ${tsan_time}s, fuzz ${fuzz_time}s)"
echo "native: ${total_passed} passed, ${total_failed} failed"
[[ "$total_failed" -eq 0 ]]
