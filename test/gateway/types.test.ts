/**
 * The gateway API's types: test/types/gateway.types.ts (assignments that compile only with the
 * right types, and @ts-expect-error lines that must fail) compiles cleanly under strict.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');

describe('gateway types', () => {
  it('tsc --noEmit over test/types/gateway.types.ts (strict) exits 0', () => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'test', 'types', 'tsconfig.gateway.json')], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(r.error).toBeUndefined();
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  }, 130_000);
});
