/**
 * The shape of lib/, checked: one folder per concept, modules of at most ~500 lines, no import
 * cycle between modules, folder dependencies that only point down the layers, and a README
 * layout table that names exactly the folders that exist.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const lib = path.join(root, 'lib');
const MAX_LINES = 520; // "~500": a module past this holds two concepts

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return tsFiles(full);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [full] : [];
  });
}

const files = tsFiles(lib);
const rel = (file: string): string => path.relative(lib, file);

/** Every relative module a file imports or re-exports (type-only imports included). */
function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const specs = [...src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.{1,2}\/[^']+)'/g)].map((m) => m[1] as string);
  specs.push(...[...src.matchAll(/require\('(\.{1,2}\/[^']+)'\)/g)].map((m) => m[1] as string));
  return specs.map((spec) => {
    const base = path.resolve(path.dirname(file), spec);
    const found = [`${base}.ts`, path.join(base, 'index.ts')].find((f) => files.includes(f));
    if (found === undefined) throw new Error(`${rel(file)} imports ${spec}, which is not a module in lib/`);
    return found;
  });
}

const graph = new Map(files.map((f) => [f, importsOf(f)]));

/** Strongly connected components with more than one module (or a self-import): the cycles. */
function cycles(edges: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, idx.get(w) as number));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (edges.get(v) ?? []).includes(v)) out.push(scc);
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) visit(v);
  return out;
}

const folderOf = (file: string): string => {
  const parts = rel(file).split(path.sep);
  return parts.length > 1 ? (parts[0] as string) : `(top) ${parts[0]}`;
};

/** Which folders each folder may import from: the layers of ../shared/design/layout.md. */
const ALLOWED: Record<string, readonly string[]> = {
  native: [],
  queue: ['native'],
  router: ['queue'],
  cluster: ['queue', 'router'],
  redis: ['queue', 'router'],
  cli: ['queue', 'native'],
  gateway: ['queue', 'router', 'cluster'],
};
const FOUNDATION = new Set(['(top) errors.ts', '(top) validate.ts']);

describe('the architecture of lib/', () => {
  it('has one folder per concept, each library folder with an index.ts (cli/ has the command\'s main.ts), and nothing else at the top but the entry, errors, validation and the built-in registrations', () => {
    const folders = readdirSync(lib).filter((n) => statSync(path.join(lib, n)).isDirectory()).sort();
    expect(folders).toEqual(Object.keys(ALLOWED).sort());
    for (const f of folders.filter((n) => n !== 'cli')) expect(files, `lib/${f}/index.ts`).toContain(path.join(lib, f, 'index.ts'));
    const top = readdirSync(lib).filter((n) => n.endsWith('.ts')).sort();
    expect(top).toEqual(['builtins.ts', 'errors.ts', 'index.ts', 'validate.ts']);
  });

  it(`has no module over ${MAX_LINES} lines`, () => {
    const big = files
      .map((f) => ({ file: rel(f), lines: readFileSync(f, 'utf8').split('\n').length }))
      .filter((m) => m.lines > MAX_LINES);
    expect(big).toEqual([]);
  });

  it('has no import cycle between modules (type-only imports included)', () => {
    expect(cycles(graph).map((scc) => scc.map(rel).sort())).toEqual([]);
  });

  it('imports only down the layers: errors/validate <- native <- queue <- router <- cluster <- gateway; redis on queue and router; cli on queue and native', () => {
    const wrong: string[] = [];
    for (const [file, deps] of graph) {
      const from = folderOf(file);
      for (const dep of deps) {
        const to = folderOf(dep);
        if (to === from || FOUNDATION.has(to)) continue;
        if (from.startsWith('(top)') && !FOUNDATION.has(from)) continue; // the entry and builtins compose everything
        if (!(ALLOWED[from] ?? []).includes(to)) wrong.push(`${rel(file)} -> ${rel(dep)}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("the README's layout table names exactly the folders of lib/", () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Layout'));
    const named = [...section.matchAll(/^\| `lib\/([a-z-]+)\/` \|/gm)].map((m) => m[1]).sort();
    expect(named).toEqual(Object.keys(ALLOWED).sort());
  });
});
