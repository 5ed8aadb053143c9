/**
 * The exported union of error codes covers what the native addon can report: every code in the
 * addon's status table is one of SHARED_MEMORY_ERROR_CODES (SharedMemoryErrorCode), so a
 * SharedMemoryError built from the table never carries a code outside SageQueueErrorCode.
 */
import { describe, expect, it } from 'vitest';

import { SHARED_MEMORY_ERROR_CODES } from '../../lib/index';
import { native } from '../../lib/native';
import { statusError } from '../../lib/native/errors';

describe('error codes', () => {
  it('every code of the addon status table (except Ok) is listed in SHARED_MEMORY_ERROR_CODES', () => {
    const table = native().statuses();
    expect(table.length).toBeGreaterThan(5);
    const codes = table.filter((s) => s.status !== 0).map((s) => s.code);
    const known: readonly string[] = SHARED_MEMORY_ERROR_CODES;
    expect(codes.filter((c) => !known.includes(c))).toEqual([]);
  });

  it('statusError() of each status carries a listed code', () => {
    const known: readonly string[] = SHARED_MEMORY_ERROR_CODES;
    for (const s of native().statuses()) {
      if (s.status === 0) continue;
      const e = statusError(s.status, 'q', false) as Error & { code: string };
      expect([...known, 'ERR_QUEUE_RELEASED'], `status ${s.status}`).toContain(e.code);
    }
  });
});
