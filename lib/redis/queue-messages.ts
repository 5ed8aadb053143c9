/**
 * Explicit-ack messages of a RedisQueue: the RedisMessage handed out by gets in
 * `ackMode: 'explicit'`, its ack / nack / deadLetter, and acknowledging many at once.
 */
import { InvalidArgumentTypeError } from '../errors';
import { RedisBackendError } from './connection';
import { CHUNK } from './queue-backend';
import type { QueueBackend, SettleOp } from './queue-backend';
import type { RawEntry } from './queue-entries';

/** An entry handed out in explicit-ack mode. */
export interface RedisMessage<T = unknown> {
  readonly value: T;
  /** The stream entry id. */
  readonly id: string;
  /** 1 on first delivery; more when reclaimed after a consumer failed to settle it. */
  readonly deliveries: number;
  /** Acknowledges (and deletes) the entry. False when it was no longer this consumer's (reclaimed or settled). */
  ack(): Promise<boolean>;
  /** Gives the entry back for redelivery at once (its delivery count grows when it is taken again). */
  nack(): Promise<boolean>;
  /** Moves the entry to the dead-letter stream with a reason. */
  deadLetter(reason?: string): Promise<boolean>;
}

/** The message for an entry this consumer holds; `onNack` runs after a nack went through. */
export function makeMessage(backend: QueueBackend, entry: RawEntry, value: unknown, onNack: () => void): RedisMessage<unknown> {
  // A call repeated after one that failed with an unknown outcome reuses its sequence number,
  // so it answers what the first one did (true if that ack went through).
  let unknown: { op: SettleOp; seq: number } | undefined;
  const settle = async (op: SettleOp, reason = ''): Promise<boolean> => {
    const seq = unknown?.op === op ? unknown.seq : backend.nextSeq();
    try {
      const flags = await backend.settle(op, [entry.id], reason, seq);
      unknown = undefined;
      return flags === '1';
    } catch (e) {
      if (e instanceof RedisBackendError && e.maybeApplied) unknown = { op, seq };
      throw e;
    }
  };
  return Object.freeze({
    value,
    id: entry.id,
    deliveries: entry.deliveries,
    ack: () => settle('ack'),
    nack: () =>
      settle('nack').then((ok) => {
        onNack();
        return ok;
      }),
    deadLetter: (reason?: string) => settle('dead', reason === undefined ? 'dead-lettered by the consumer' : String(reason)),
  });
}

/** Acknowledges several messages with one call per CHUNK; one boolean per message. */
export async function ackMessages(backend: QueueBackend, messages: readonly RedisMessage<unknown>[]): Promise<boolean[]> {
  if (!Array.isArray(messages)) throw new InvalidArgumentTypeError('messages', 'an array of RedisMessage', messages);
  const ids = messages.map((m, i) => {
    if (m === null || typeof m !== 'object' || typeof m.id !== 'string') throw new InvalidArgumentTypeError(`messages[${i}]`, 'a RedisMessage', m);
    return m.id;
  });
  const out: boolean[] = [];
  for (let at = 0; at < ids.length; at += CHUNK) {
    const flags = await backend.settle('ack', ids.slice(at, at + CHUNK), '');
    for (const f of flags) out.push(f === '1');
  }
  return out;
}
