#!/usr/bin/env bash
# Builds the prebuilt binaries that the npm tarball ships: prebuildify (N-API, stripped,
# libc-tagged) into prebuilds/linux-<arch>/, each emptied first so that no stale binary is packed
# beside a fresh one. `npm run prebuild`, and `prepack` (so `npm pack` / `npm publish` always ship
# fresh ones).
#
#   scripts/prebuild.sh [--arch ARCH]... [--out DIR]
#
#   --arch ARCH   build for ARCH only (repeatable): x64 or arm64. Default: x64 and arm64.
#   --out DIR     write DIR/prebuilds/linux-<arch>/ instead of the package's prebuilds/
#
# x64 is built with the system's g++; arm64 is cross-compiled with Debian's g++-aarch64-linux-gnu
# (aarch64-linux-gnu-g++, stripped with aarch64-linux-gnu-strip; scripts/ensure-tools.sh installs
# them). Both use the local Node headers: N-API headers do not depend on the architecture, so
# nothing is downloaded. They come from npm_config_nodedir as set by the caller (or .npmrc), else
# /usr when /usr/include/node holds Node's headers (Debian's nodejs package).
#
# Each architecture is compiled in a temporary copy of the native sources (binding.gyp,
# native/core, native/binding, package.json; node_modules linked), so the working tree's build/
# is left alone: a development build there is never replaced by a stripped or foreign-arch one.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
me="prebuild"

arches=()
out="$repo"
while (($#)); do
  case "$1" in
    --arch) arches+=("${2:?--arch needs a value}"); shift 2 ;;
    --out) out="$(mkdir -p "${2:?--out needs a value}" && cd "$2" && pwd)"; shift 2 ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "$me: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
((${#arches[@]})) || arches=(x64 arm64)

if [[ -z "${npm_config_nodedir:-}" && -f /usr/include/node/node_api.h ]]; then
  export npm_config_nodedir=/usr
fi
[[ "$(uname -s)" == Linux ]] || { echo "$me: builds Linux binaries on Linux only" >&2; exit 1; }
host_arch="$(node -p 'process.arch')"
prebuildify="$repo/node_modules/.bin/prebuildify"
[[ -x "$prebuildify" ]] || { echo "$me: $prebuildify not found; run npm install first" >&2; exit 1; }

stage_root="$(mktemp -d "${TMPDIR:-/tmp}/sage-queue-prebuild.XXXXXX")"
trap 'rm -rf "$stage_root"' EXIT

for arch in "${arches[@]}"; do
  # The compilers for this architecture: the system's for the host, a cross compiler otherwise.
  cross=()
  strip_bin=strip
  if [[ "$arch" != "$host_arch" ]]; then
    case "$arch" in
      arm64) triplet=aarch64-linux-gnu ;;
      *) echo "$me: no cross compiler known for $arch (known: arm64)" >&2; exit 2 ;;
    esac
    for tool in gcc g++ strip; do
      command -v "$triplet-$tool" >/dev/null || {
        echo "$me: $triplet-$tool not found; run: bash scripts/ensure-tools.sh (Debian: g++-$triplet)" >&2
        exit 1
      }
    done
    # gyp's make generator compiles and links with $CC/$CXX; node-gyp's --arch sets target_arch.
    cross=(CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar")
    strip_bin="$triplet-strip"
  fi

  stage="$stage_root/$arch"
  mkdir -p "$stage/native"
  cp -R "$repo/binding.gyp" "$repo/package.json" "$stage/"
  cp -R "$repo/native/core" "$repo/native/binding" "$stage/native/"
  ln -s "$repo/node_modules" "$stage/node_modules"

  dest="$out/prebuilds/linux-$arch"
  rm -rf "$dest"
  echo "$me: linux-$arch -> $dest"
  (cd "$stage" && env "${cross[@]}" "$prebuildify" --napi --strip --strip-bin "$strip_bin" --tag-libc \
    --arch "$arch" --out "$out")
  ls "$dest"/*.node >/dev/null
done
