/**
 * The native surface, declared once. Everything else imports its types from here.
 * The addon is located by node-gyp-build: `build/Release` when built from source, else the
 * matching binary in `prebuilds/` (set PREBUILDS_ONLY=1 to insist on the shipped one).
 */
import * as path from 'node:path';

/** What the native addon reports about itself. */
export interface NativeCapabilities {
  version: string;
  /** Version of the shared-memory layout; segments of another layout are refused. */
  layoutVersion: number;
  napiVersion: number;
  platform: 'linux';
  futex: boolean;
  robustLocks: boolean;
  sharedMemory: boolean;
}

export interface NativeAddon {
  version(): string;
  capabilities(): NativeCapabilities;
}

let cached: NativeAddon | undefined;

/** Loads the addon once per module instance (node-gyp-build caches by path as well). */
export function native(): NativeAddon {
  if (cached === undefined) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => unknown;
    cached = load(path.join(__dirname, '..')) as NativeAddon;
  }
  return cached;
}
