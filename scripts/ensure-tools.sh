#!/usr/bin/env bash
# Makes sure the system tools that `npm test` (and .ci/run, scripts/fuzz.sh) need are installed.
# The first step of `npm test`. When everything is present it costs a few `command -v` checks and
# prints nothing. When something is missing it installs the Debian packages with apt-get if it can
# (running as root, or with passwordless sudo: `sudo -n true` succeeds); otherwise it stops at once
# with one line naming the exact command to run.
#
#   scripts/ensure-tools.sh [--check] [NAME...]
#
#   NAME      check only these entries of the table below (default: all of them)
#   --check   install nothing: print the missing Debian packages on one line and exit 1 if any
#
# Environment: SAGE_NO_INSTALL=1 never installs (stops with the command to run instead).
set -euo pipefail

# The one table: what is needed -> how to tell it is there -> the Debian (12) package providing it.
#   command       `command -v NAME` finds it on PATH
#   file:GLOB     a file matching GLOB exists (a library, not a command)
TOOLS=(
  # name          check                                                                    package
  "g++            command                                                                  g++"
  "make           command                                                                  make"
  "python3        command                                                                  python3"
  "cmake          command                                                                  cmake"
  "ctest          command                                                                  cmake"
  "git            command                                                                  git"
  "tar            command                                                                  tar"
  "setarch        command                                                                  util-linux"
  "redis-server   command                                                                  redis-server"
  "clang++        command                                                                  clang"
  "libfuzzer      file:/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a  libclang-rt-14-dev"
)

me="ensure-tools"
check_only=0
wanted=()
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "$me: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) wanted+=("$arg") ;;
  esac
done

present() {
  case "$1" in
    command) command -v "$2" >/dev/null 2>&1 ;;
    file:*) compgen -G "${1#file:}" >/dev/null ;;
    *) echo "$me: bad check '$1' for $2 in the table" >&2; exit 2 ;;
  esac
}

# Fills missing_names / missing_pkgs (packages sorted, each once).
scan() {
  missing_names=()
  missing_pkgs=()
  local row name check pkg w found
  for row in "${TOOLS[@]}"; do
    read -r name check pkg <<<"$row"
    if ((${#wanted[@]})); then
      found=0
      for w in "${wanted[@]}"; do [[ "$w" == "$name" ]] && found=1; done
      ((found)) || continue
    fi
    present "$check" "$name" && continue
    missing_names+=("$name")
    [[ " ${missing_pkgs[*]} " == *" $pkg "* ]] || missing_pkgs+=("$pkg")
  done
  if ((${#missing_pkgs[@]})); then mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort); fi
}

if ((${#wanted[@]})); then
  for w in "${wanted[@]}"; do
    known=0
    for row in "${TOOLS[@]}"; do read -r name _ <<<"$row"; [[ "$name" == "$w" ]] && known=1; done
    ((known)) || { echo "$me: '$w' is not in the table" >&2; exit 2; }
  done
fi

scan
((${#missing_pkgs[@]})) || exit 0

if ((check_only)); then
  echo "${missing_pkgs[*]}"
  exit 1
fi

what="missing ${missing_names[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "$me: $what; install the Debian packages ${missing_pkgs[*]} (or their equivalents) with your system's package manager" >&2
  exit 1
fi

if [[ "${SAGE_NO_INSTALL:-}" == "1" ]]; then
  prefix=""
  [[ "$(id -u)" -ne 0 ]] && prefix="sudo "
  echo "$me: $what (SAGE_NO_INSTALL=1); run: ${prefix}apt-get update && ${prefix}apt-get install -y --no-install-recommends ${missing_pkgs[*]}" >&2
  exit 1
fi
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "$me: $what; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing_pkgs[*]}" >&2
    exit 1
  fi
fi

installing=("${missing_pkgs[@]}")
echo "$me: $what; installing: ${sudo[*]}${sudo:+ }apt-get install ${installing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${installing[@]}"

scan
if ((${#missing_names[@]})); then
  echo "$me: apt-get installed ${installing[*]}, but ${missing_names[*]} is still not found (PATH=$PATH)" >&2
  exit 1
fi
echo "$me: installed ${what#missing }"
