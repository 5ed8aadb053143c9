#!/usr/bin/env bash
# Builds the prebuilt binary that the npm tarball ships: prebuildify (N-API, stripped, libc-tagged)
# into prebuilds/<platform>-<arch>/, emptied first so that no stale binary is packed beside it.
# `npm run prebuild`, and `prepack` (so `npm pack` / `npm publish` always ship a fresh one).
#
# The addon is compiled against local Node headers: npm_config_nodedir as set by the caller (or
# .npmrc), else /usr when /usr/include/node holds Node's headers (Debian's nodejs package).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${npm_config_nodedir:-}" && -f /usr/include/node/node_api.h ]]; then
  export npm_config_nodedir=/usr
fi
rm -rf "prebuilds/$(node -p 'process.platform + "-" + process.arch')"
exec prebuildify --napi --strip --tag-libc
