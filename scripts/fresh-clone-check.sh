#!/usr/bin/env bash
# Checks that the README's two commands work on a fresh clone, from where a fresh clone may land:
#
#   1. clones HEAD into a `mktemp -d` folder (mode 0700, as mktemp makes it: other users, e.g.
#      nobody, cannot read the checkout);
#   2. builds a PATH from which redis-server is hidden: a temp bin directory of symlinks to every
#      command in the system's bin directories except redis-server (and apt-get, see below);
#   3. runs there, with that PATH, `npm install && npm run demo`, then `npm test`;
#   4. reports each command's exit status and time and the test summaries, then removes the clone
#      and the bin directory (--keep keeps them, and the logs, and says where).
#
# redis-server is hidden, not uninstalled (others may be using it), so `npm test`'s first step,
# scripts/ensure-tools.sh, finds it missing and installs the package with apt-get. Installing a
# package that is already installed changes nothing on disk, so the hidden PATH's apt-get is a
# wrapper: it runs the real /usr/bin/apt-get with the same arguments and then, for each package it
# was asked to install, links the commands that package provides (dpkg -L) into the bin directory,
# as installing it on a fresh machine would have put them on PATH. Running as a user without root
# or passwordless sudo, ensure-tools stops instead, and this check reports that.
#
#   scripts/fresh-clone-check.sh [--keep]
#
# Environment: npm_config_nodedir (default /usr: the addon is built against the local Node
# headers, nothing is downloaded); SAGE_* variables (e.g. SAGE_SKIP_TSAN, SAGE_FUZZ_SECONDS) are
# passed through to npm test. Exit status 0 when every command succeeded.
set -euo pipefail
exec </dev/null

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh-clone-check: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '=== fresh-clone-check: %s\n' "$*"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sage-fresh-clone.XXXXXX")"
RUN_PID=""
cleanup() {
  if [[ -n "$RUN_PID" ]] && kill -0 "$RUN_PID" 2>/dev/null; then kill -KILL -- "-$RUN_PID" 2>/dev/null || true; fi
  if [[ "$KEEP" -eq 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. the clone ----------------------------------------------------------------------------------
HEAD_SHA="$(git -C "$REPO" rev-parse HEAD)"
CLONE="$WORK/sage-queue"
git clone --quiet --no-checkout "$REPO" "$CLONE"
git -C "$CLONE" checkout --quiet --detach "$HEAD_SHA"
say "cloned $HEAD_SHA into $CLONE (folder mode $(stat -c %a "$WORK"))"

# --- 2. a PATH without redis-server ------------------------------------------------------------------
BIN="$WORK/bin"
mkdir "$BIN"
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  [[ -d "$dir" ]] || continue
  for f in "$dir"/*; do
    name="${f##*/}"
    [[ "$name" == redis-server || "$name" == apt-get || -e "$BIN/$name" || -L "$BIN/$name" ]] && continue
    ln -s "$f" "$BIN/$name"
  done
done
cat >"$BIN/apt-get" <<WRAPPER
#!/usr/bin/env bash
# fresh-clone-check: the real apt-get, then the installed packages' commands onto this PATH.
# apt runs with the system PATH: its helpers (gpgv, run as user _apt) cannot enter this folder.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/apt-get "\$@" || exit
if [[ "\${1:-}" == install ]]; then
  for p in "\${@:2}"; do
    [[ "\$p" == -* ]] && continue
    dpkg -L "\$p" 2>/dev/null | grep -E '^(/usr)?(/local)?/s?bin/[^/]+\$' | while read -r f; do
      ln -sfn "\$f" "$BIN/\${f##*/}"
    done
  done
fi
WRAPPER
chmod 755 "$BIN/apt-get"
if PATH="$BIN" command -v redis-server >/dev/null; then
  echo "fresh-clone-check: redis-server is still on the hidden PATH" >&2
  exit 1
fi
say "PATH=$BIN (redis-server hidden; it is $(command -v redis-server || echo 'not installed') here)"

# --- 3. the README's commands --------------------------------------------------------------------
ENV=(env -i "HOME=$HOME" "PATH=$BIN" "LANG=${LANG:-C.UTF-8}" "TERM=dumb" "USER=$(id -un)"
  "npm_config_nodedir=${npm_config_nodedir:-/usr}" "npm_config_update_notifier=false" "npm_config_fund=false" "npm_config_audit=false")
while IFS='=' read -r name value; do
  [[ "$name" == SAGE_* ]] && ENV+=("$name=$value")
done < <(env)
[[ -n "${TMPDIR:-}" ]] && ENV+=("TMPDIR=$TMPDIR")

results=()
failed=0
# Runs one README command line in the clone, in its own process group, its output to a log.
step() {
  local label="$1" cmdline="$2" log="$WORK/$1.log" started=$SECONDS rc
  say "$cmdline (log: $log)"
  set +e
  setsid "${ENV[@]}" bash -c "cd '$CLONE' && $cmdline" >"$log" 2>&1 &
  RUN_PID=$!
  wait "$RUN_PID"
  rc=$?
  RUN_PID=""
  set -e
  local took=$((SECONDS - started))
  if [[ "$rc" -eq 0 ]]; then
    results+=("ok      ($(printf '%4s' "$took") s)  $cmdline")
  else
    results+=("FAILED  ($(printf '%4s' "$took") s)  $cmdline  [exit $rc]")
    failed=1
    echo "--- last 60 lines of $label.log:"
    tail -n 60 "$log"
  fi
  return "$rc"
}

if step install-demo 'npm install && npm run demo'; then
  step test 'npm test' || true
fi

# --- 4. report -------------------------------------------------------------------------------------
echo
say "report for $HEAD_SHA, cloned into a mode-$(stat -c %a "$WORK") mktemp -d folder, redis-server hidden from PATH"
printf '  %s\n' "${results[@]}"
if [[ -f "$WORK/test.log" ]]; then
  grep -E '^ensure-tools: ' "$WORK/test.log" | sed 's/^/  /' || true
  # vitest's line per test file, its totals and failures; test-native's summary.
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/test.log" |
    grep -E '^ (✓|×|❯|↓) test/|^ FAIL |^ +(Test Files|Tests) |^native: |^test-native: (asan|tsan|fuzz)' |
    sed -E 's/^ */  /; s/ [0-9]+ms$//' || true
fi
exit "$failed"
