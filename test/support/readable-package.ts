/**
 * A copy of the built package that any user can read, for child processes that run as another
 * user (e.g. `setpriv --reuid=65534`, user nobody). The checkout itself may live where that user
 * cannot go (a `mktemp -d` folder, mode 0700; a home directory), so such a child must not load
 * anything from it. The copy holds what `require(dist/index.js)` loads: package.json, dist/, the
 * addon that node-gyp-build picks (build/Release/*.node, else prebuilds/), and the production
 * dependencies (`dependencies` and `optionalDependencies`, followed transitively, resolved as Node
 * resolves them). It lives in a fresh directory under a temp folder every user can traverse, made
 * world-readable; `dispose()` removes it.
 */
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';

export interface ReadablePackage {
  /** The copy's root (mode 0755). */
  readonly dir: string;
  /** The copy's dist/index.js, to `require` from the child. */
  readonly dist: string;
  /** Removes the copy. Safe to call twice. */
  dispose(): void;
}

/** True when every directory from / down to dir can be searched by "others" (o+x). */
function traversableByOthers(dir: string): boolean {
  let d = resolve(dir);
  for (;;) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const up = dirname(d);
    if (up === d) return true;
    d = up;
  }
}

/** The directory of package `name` as Node resolves it from package directory `from` (within root). */
function resolvePackage(name: string, from: string, root: string): string | undefined {
  // Node's lookup: <dir>/node_modules/<name> for dir = from and each ancestor, skipping
  // directories that are themselves called node_modules.
  for (let d = from; ; d = dirname(d)) {
    if (basename(d) !== 'node_modules') {
      const candidate = join(d, 'node_modules', name);
      if (existsSync(join(candidate, 'package.json'))) return candidate;
    }
    if (d === root || !d.startsWith(root + sep)) return undefined;
  }
}

/** Package directories (under root/node_modules) of root's production dependencies, transitively. */
function productionDependencies(root: string): string[] {
  const seen = new Set<string>();
  const queue = [root];
  while (queue.length > 0) {
    const dir = queue.shift() as string;
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    for (const name of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      const found = resolvePackage(name, dir, root);
      if (found === undefined) continue; // an optional dependency for another platform
      if (seen.has(found)) continue;
      seen.add(found);
      queue.push(found);
    }
  }
  return [...seen];
}

/** Directories 0755, files readable by all (execute bits kept), symlinks left alone. */
function makeWorldReadable(path: string): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return;
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const entry of readdirSync(path)) makeWorldReadable(join(path, entry));
  } else {
    chmodSync(path, (st.mode & 0o777) | 0o444);
  }
}

/**
 * A fresh directory (mode 0755) under a temp folder that every user can traverse ($TMPDIR if it
 * is such a folder, else /tmp or /var/tmp). The caller removes it.
 */
export function worldReadableTempDir(prefix: string): string {
  const parent = [tmpdir(), '/tmp', '/var/tmp'].find((d) => existsSync(d) && traversableByOthers(d));
  if (parent === undefined) throw new Error('no temp folder that other users can traverse (tried $TMPDIR, /tmp, /var/tmp)');
  const dir = mkdtempSync(join(parent, prefix));
  chmodSync(dir, 0o755);
  return dir;
}

export function readablePackageCopy(repo: string): ReadablePackage {
  const dir = worldReadableTempDir('sageq-readable-');
  const dispose = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    cpSync(join(repo, 'package.json'), join(dir, 'package.json'));
    cpSync(join(repo, 'dist'), join(dir, 'dist'), { recursive: true });
    const release = join(repo, 'build', 'Release');
    const addons = existsSync(release) ? readdirSync(release).filter((f) => f.endsWith('.node')) : [];
    if (addons.length > 0) {
      mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
      for (const f of addons) cpSync(join(release, f), join(dir, 'build', 'Release', f));
    } else if (existsSync(join(repo, 'prebuilds'))) {
      cpSync(join(repo, 'prebuilds'), join(dir, 'prebuilds'), { recursive: true });
    } else {
      throw new Error(`no addon to copy: neither ${release}/*.node nor ${join(repo, 'prebuilds')} exists`);
    }
    for (const dep of productionDependencies(repo)) {
      cpSync(dep, join(dir, relative(repo, dep)), { recursive: true, dereference: true });
    }
    makeWorldReadable(dir);
  } catch (err) {
    dispose();
    throw err;
  }
  return { dir, dist: join(dir, 'dist', 'index.js'), dispose };
}
