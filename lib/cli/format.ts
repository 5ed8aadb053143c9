/** Aligned tables (colour-aware), highlighting and human units for the CLI. */

const ANSI = /\x1b\[[0-9;]*m/g;
const COLORS = { red: '\x1b[1;31m', green: '\x1b[32m', yellow: '\x1b[33m' } as const;

/** `text` in `color` when `enabled` (see useColor in main.ts), else unchanged. */
export function paint(text: string, color: keyof typeof COLORS, enabled: boolean): string {
  return enabled ? `${COLORS[color]}${text}\x1b[0m` : text;
}

/** Length on screen (escape sequences take no room). */
function visible(text: string): number {
  return text.replace(ANSI, '').length;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ''))));
  const pad = (c: string, i: number): string => c + ' '.repeat(Math.max(0, (widths[i] as number) - visible(c)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : pad(c, i))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 10 ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}
