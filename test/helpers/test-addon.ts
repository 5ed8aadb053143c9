/**
 * The hooks-enabled test build of the addon (see test/fixtures/test-addon.cjs, shared with the
 * torture harness): its path, and an environment that makes child processes load it.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';

interface TestAddonModule {
  testAddonPath(): string;
  testAddonEnv(base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv;
  DEFAULT_PATH: string;
}

const load = createRequire(__filename);
const mod = load(path.join(__dirname, '..', 'fixtures', 'test-addon.cjs')) as TestAddonModule;

/** Absolute path of the hooks-enabled addon; throws (saying how to build it) if it is missing. */
export const testAddonPath = (): string => mod.testAddonPath();
/** process.env plus SAGE_QUEUE_NATIVE_ADDON pointing at the hooks-enabled addon. */
export const testAddonEnv = (base?: NodeJS.ProcessEnv): NodeJS.ProcessEnv => mod.testAddonEnv(base);
