/**
 * Test hooks exist only in the hooks-enabled test build of the addon (SAGE_TEST_HOOKS,
 * `npm run build:test-addon`): the production build (node-gyp, what `npm install` builds and the
 * package loads) refuses setTestHook with a clear error, and SAGE_QUEUE_NATIVE_ADDON makes the
 * loader pick the test build.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NativeAddon } from '../../lib/native';
import { testAddonPath } from '../helpers/test-addon';

const REPO = path.join(__dirname, '..', '..');
const load = createRequire(__filename);

/** The addon the package loads when no override is set (node-gyp-build: build/Release, else prebuilds/). */
function productionAddon(): NativeAddon {
  const gypBuild = load('node-gyp-build') as (dir: string) => unknown;
  return gypBuild(REPO) as NativeAddon;
}

/** What the built package's loader (dist/native) reports in a fresh process with this environment. */
function loadedTestHooks(env: NodeJS.ProcessEnv): boolean {
  const script = `process.stdout.write(String(require(${JSON.stringify(path.join(REPO, 'dist', 'native', 'index.js'))}).native().capabilities().testHooks))`;
  return execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) === 'true';
}

describe('test hooks', () => {
  it('the production addon has no test hooks: setTestHook throws ERR_TEST_HOOKS_DISABLED and capabilities() says so', () => {
    const a = productionAddon();
    expect(a.capabilities().testHooks).toBe(false);
    let thrown: unknown;
    try {
      a.setTestHook('after-claim');
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect((thrown as { code?: string }).code).toBe('ERR_TEST_HOOKS_DISABLED');
    expect((thrown as Error).message).toMatch(/no test hooks.*build:test-addon.*SAGE_QUEUE_NATIVE_ADDON/s);
  });

  it('the hooks-enabled test addon accepts known hook points and rejects unknown ones', () => {
    const a = load(testAddonPath()) as NativeAddon;
    expect(a.capabilities().testHooks).toBe(true);
    expect(() => a.setTestHook('none')).not.toThrow(); // disarms: never arm a real point in the test runner
    expect(() => a.setTestHook('no-such-point')).toThrow(/unknown hook point/);
  });

  it('the loader honours SAGE_QUEUE_NATIVE_ADDON (tests only) and otherwise loads the production build', () => {
    const base = { ...process.env };
    delete base.SAGE_QUEUE_NATIVE_ADDON;
    expect(loadedTestHooks(base)).toBe(false);
    expect(loadedTestHooks({ ...base, SAGE_QUEUE_NATIVE_ADDON: testAddonPath() })).toBe(true);
    expect(() => loadedTestHooks({ ...base, SAGE_QUEUE_NATIVE_ADDON: 'relative/addon.node' })).toThrow();
  });
});
