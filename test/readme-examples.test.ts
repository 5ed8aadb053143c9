import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

// Every ```js block of these documents is run with `node -e` from the repo root, where
// `require('sage-queue')` resolves to the package itself (dist/, built by `npm run build:ts`).
// A block whose first line is `// no-run` is skipped.
const root = path.resolve(__dirname, '..');
const documents = [
  { file: 'docs/api.md', required: true },
  { file: 'README.md', required: false },
];

interface Example {
  line: number;
  code: string;
}

function jsBlocks(markdown: string): Example[] {
  const blocks: Example[] = [];
  const fence = /^```js[ \t]*\r?\n([\s\S]*?)^```[ \t]*$/gm;
  for (let m = fence.exec(markdown); m !== null; m = fence.exec(markdown)) {
    const code = m[1];
    if (code.split('\n', 1)[0].trim() === '// no-run') continue;
    blocks.push({ line: markdown.slice(0, m.index).split('\n').length, code });
  }
  return blocks;
}

describe('documentation examples', () => {
  it('the package is built (run `npm run build:ts` first)', () => {
    expect(existsSync(path.join(root, 'dist', 'index.js'))).toBe(true);
  });

  for (const { file, required } of documents) {
    const full = path.join(root, file);
    if (!existsSync(full)) {
      it.skipIf(!required)(`${file} exists`, () => {
        expect(existsSync(full)).toBe(true);
      });
      continue;
    }
    const examples = jsBlocks(readFileSync(full, 'utf8'));
    if (required) {
      it(`${file} has runnable js examples`, () => {
        expect(examples.length).toBeGreaterThanOrEqual(3);
      });
    }
    for (const { line, code } of examples) {
      it(`${file} example at line ${line} runs with node -e and exits 0`, () => {
        const run = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', timeout: 20_000 });
        expect(run.error).toBeUndefined();
        expect(run.status, `exit ${run.status}; stderr:\n${run.stderr}`).toBe(0);
        expect(run.stdout.length).toBeGreaterThan(0); // examples print what they do
      });
    }
  }
});
