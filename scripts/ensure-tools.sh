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
#              SAGE_ARM64_SYSROOT=DIR: where the arm64 Node is unpacked (default below).
set -euo pipefail

# The arm64 Node that test/arm64.test.ts runs the linux-arm64 prebuild with, under
# qemu-aarch64-static. Debian's nodejs:arm64 (Node 18) cannot be installed beside this machine's
# amd64 nodejs (Node 20): apt would remove the amd64 one (nodejs is Multi-Arch: allowed, not
# same, and libnode108:arm64 pulls it in). So its .debs are fetched with `apt-get download`
# (after `dpkg --add-architecture arm64`) and unpacked with `dpkg-deb -x` into a sysroot, run as
#   qemu-aarch64-static -L SYSROOT SYSROOT/usr/bin/node
# Nothing is installed into the system by this row, and nothing else is touched. Delete the
# folder to fetch it again. The list is nodejs:arm64's dependency closure in Debian 12.
ARM64_SYSROOT="${SAGE_ARM64_SYSROOT:-/var/cache/sage-queue/arm64-node}"
ARM64_NODE_DEBS=(
  nodejs:arm64 libnode108:arm64 libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 libbrotli1:arm64
  libc-ares2:arm64 libicu72:arm64 libnghttp2-14:arm64 libssl3:arm64 libuv1:arm64 zlib1g:arm64
  node-acorn node-cjs-module-lexer node-undici node-busboy node-xtend
)

# The one table: what is needed -> how to tell it is there -> the Debian (12) package providing it.
#   command       `command -v NAME` finds it on PATH
#   file:GLOB     a file matching GLOB exists (a library, not a command)
# A package starting with @ is not an apt package but a step of this script:
#   @arm64-sysroot  unpack ARM64_NODE_DEBS into ARM64_SYSROOT (above); SYSROOT/.complete marks it done
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
  "aarch64-linux-gnu-g++    command                                                        g++-aarch64-linux-gnu"
  "aarch64-linux-gnu-strip  command                                                        binutils-aarch64-linux-gnu"
  "qemu-aarch64-static      command                                                        qemu-user-static"
  "node-arm64               file:${ARM64_SYSROOT}/.complete                                @arm64-sysroot"
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
# Split the missing packages into apt packages and this script's own steps (@...).
apt_pkgs=()
steps=()
for p in "${missing_pkgs[@]}"; do
  if [[ "$p" == @* ]]; then steps+=("$p"); else apt_pkgs+=("$p"); fi
done

# The command a user must run, for the messages below (prefix: "" or "sudo ").
to_run() {
  local cmds=()
  ((${#apt_pkgs[@]})) && cmds+=("$1apt-get update && $1apt-get install -y --no-install-recommends ${apt_pkgs[*]}")
  ((${#steps[@]})) && cmds+=("$1bash scripts/ensure-tools.sh node-arm64")
  local out="${cmds[0]}" c
  for c in "${cmds[@]:1}"; do out+=" && $c"; done
  printf '%s' "$out"
}

if ! command -v apt-get >/dev/null 2>&1; then
  echo "$me: $what; install the Debian packages ${missing_pkgs[*]} (or their equivalents) with your system's package manager" >&2
  exit 1
fi

if [[ "${SAGE_NO_INSTALL:-}" == "1" ]]; then
  prefix=""
  [[ "$(id -u)" -ne 0 ]] && prefix="sudo "
  echo "$me: $what (SAGE_NO_INSTALL=1); run: $(to_run "$prefix")" >&2
  exit 1
fi
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "$me: $what; run: $(to_run "sudo ")" >&2
    exit 1
  fi
fi

# The arm64 sysroot needs apt's arm64 package lists: add the architecture before apt-get update.
# (This lets apt see arm64 packages; it installs nothing.)
if [[ " ${steps[*]} " == *" @arm64-sysroot "* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "$me: dpkg --add-architecture arm64 (apt-get then also reads arm64 package lists)"
  "${sudo[@]}" dpkg --add-architecture arm64
fi

installing=("${missing_pkgs[@]}")
echo "$me: $what; installing: ${sudo[*]}${sudo:+ }apt-get install ${installing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
if ((${#apt_pkgs[@]})); then
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_pkgs[@]}"
fi

if [[ " ${steps[*]} " == *" @arm64-sysroot "* ]]; then
  # Download and unpack next to the target, then rename: a half-done sysroot is never .complete.
  parent="$(dirname "$ARM64_SYSROOT")"
  "${sudo[@]}" mkdir -p "$parent"
  work="$("${sudo[@]}" mktemp -d "$parent/.arm64-node.XXXXXX")"
  trap '"${sudo[@]}" rm -rf "$work"' EXIT
  "${sudo[@]}" mkdir "$work/debs" "$work/root"
  echo "$me: apt-get download ${ARM64_NODE_DEBS[*]} -> dpkg-deb -x into $ARM64_SYSROOT"
  (cd "$work/debs" && "${sudo[@]}" apt-get download -q -o APT::Sandbox::User=root "${ARM64_NODE_DEBS[@]}")
  for deb in "$work"/debs/*.deb; do
    "${sudo[@]}" dpkg-deb -x "$deb" "$work/root"
  done
  (cd "$work/debs" && ls) | "${sudo[@]}" tee "$work/root/.complete" >/dev/null
  "${sudo[@]}" chmod 755 "$work/root"
  "${sudo[@]}" rm -rf "$ARM64_SYSROOT"
  "${sudo[@]}" mv "$work/root" "$ARM64_SYSROOT"
fi

scan
if ((${#missing_names[@]})); then
  echo "$me: apt-get installed ${installing[*]}, but ${missing_names[*]} is still not found (PATH=$PATH)" >&2
  exit 1
fi
echo "$me: installed ${what#missing }"
