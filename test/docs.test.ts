/**
 * The API reference: typedoc (typedoc.json, the same input as `npm run docs`) runs over the
 * public entry point with every warning treated as an error — an exported type that references
 * an unexported one, a broken {@link}, a bad comment tag — and emits nothing (validation only).
 * OpenMode (an @internal constructor parameter) and RedisQueueImpl (the class behind the
 * RedisQueue constructor type) are listed in typedoc.json as intentionally not exported.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..');

describe('API documentation', () => {
  it('typedoc --treatWarningsAsErrors over lib/index.ts reports no warning and exits 0', () => {
    const typedoc = join(root, 'node_modules', 'typedoc', 'bin', 'typedoc');
    const r = spawnSync(process.execPath, [typedoc, '--emit', 'none', '--treatWarningsAsErrors'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(r.error).toBeUndefined();
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/warning|error/i);
    expect(r.status).toBe(0);
  }, 70_000);
});
