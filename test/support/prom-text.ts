/**
 * Parses the Prometheus text exposition format into `series → value`, the series written as
 * `name{label="value",...}` with the labels sorted (so tests can name a series exactly).
 */
export function parseProm(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (m === null) throw new Error(`not a sample line: ${line}`);
    const labels = m[2] === undefined || m[2] === '' ? [] : [...m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => `${l[1]}="${l[2]}"`);
    labels.sort();
    out.set(labels.length === 0 ? (m[1] as string) : `${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}

/** The series name{labels} as parseProm() writes it. */
export function series(name: string, labels: Record<string, string> = {}): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort();
  return parts.length === 0 ? name : `${name}{${parts.join(',')}}`;
}
