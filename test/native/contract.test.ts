/**
 * The TypeScript copies of the addon's enums (NativeStatus, NotifyKind in lib/native) against the
 * table the addon builds from the C++ definitions (constants()): same names, same values, both
 * directions, so neither side can drift.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { NativeStatus, NotifyKind, native } from '../../lib/native';
import type { NativeAddon, NativeConstants } from '../../lib/native';
import { testAddonPath } from '../helpers/test-addon';

/** The members of a numeric TypeScript enum as { name: value } (without the reverse mapping). */
function members(e: Record<string, string | number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(e)) if (typeof v === 'number') out[k] = v;
  return out;
}

function checkAgainst(c: NativeConstants): void {
  const status = members(NativeStatus as unknown as Record<string, string | number>);
  const notify = members(NotifyKind as unknown as Record<string, string | number>);
  // TypeScript -> C++: every member exists in the addon with the same value.
  for (const [name, value] of Object.entries(status)) expect(c.status[name], `NativeStatus.${name}`).toBe(value);
  for (const [name, value] of Object.entries(notify)) expect(c.notify[name], `NotifyKind.${name}`).toBe(value);
  // C++ -> TypeScript: every enumerator of the addon is declared in TypeScript.
  for (const [name, value] of Object.entries(c.status)) expect(status[name], `sage::Status::${name}`).toBe(value);
  for (const [name, value] of Object.entries(c.notify)) expect(notify[name], `NotifyKind::k${name}`).toBe(value);
}

describe('the native contract', () => {
  it('NativeStatus and NotifyKind match the addon constants() table, member for member, both ways', () => {
    const c = native().constants();
    expect(Object.keys(c.status).length).toBeGreaterThan(0);
    expect(Object.keys(c.notify).length).toBeGreaterThan(0);
    checkAgainst(c);
  });

  it('the status values are 0..n-1 in the order statuses() reports them, with the codes it gives', () => {
    const a = native();
    const c = a.constants();
    const infos = a.statuses();
    expect(Object.values(c.status).sort((x, y) => x - y)).toEqual(infos.map((_, i) => i));
    expect(infos.map((s) => s.status)).toEqual(infos.map((_, i) => i));
    expect(c.status.Ok).toBe(0);
    expect(infos[c.status.Empty].code).toBe('ERR_QUEUE_EMPTY');
    expect(infos[c.status.Corrupt].code).toBe('ERR_QUEUE_CORRUPT');
  });

  it('the hooks-enabled test addon reports the same table', () => {
    const p = testAddonPath();
    expect(existsSync(p)).toBe(true);
    const hooks = createRequire(__filename)(p) as NativeAddon;
    checkAgainst(hooks.constants());
    expect(hooks.constants()).toEqual(native().constants());
  });
});
