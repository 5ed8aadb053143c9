/**
 * Opening a SageQueue's segment: the name (or the descriptor that names it) and options checked,
 * the native handle attached (create / open / either), and the codec recorded in the segment
 * checked against the one the caller asked for. Trust options come only from the caller: a
 * descriptor comes from another process and says what to create, never whom to trust.
 */
import { InvalidArgumentValueError, SharedMemoryError } from '../errors';
import { native } from '../native';
import type { NativeQueue, NativeQueueInfo, NotifyKind } from '../native';
import { nativeError } from '../native/errors';
import { checkKnownKeys, checkOptions } from '../validate';
import type { Codec } from './codecs';
import { QueueDescriptor } from './descriptor';
import { sageOpenArgs } from './sage-descriptors';
import { TRUST_OPTION_KEYS, checkName, codecOfQueue, parseSageOptions } from './sage-options';
import type { OpenMode, ParsedSageOptions, SageQueueOptions, TrustOptions } from './sage-options';

export interface OpenedSegment {
  name: string;
  q: NativeQueue;
  info: NativeQueueInfo;
  codec: Codec;
  /** The spin budget set on the handle (µs). */
  spinUs: number;
  /** Explicit-ack settings of this handle, when the segment is in explicit mode. */
  ack: Pick<ParsedSageOptions, 'maxUnacked' | 'deadLetter'> | undefined;
}

export function openSegment(
  nameOrDescriptor: string | QueueDescriptor,
  options: SageQueueOptions | TrustOptions | undefined,
  mode: OpenMode,
  notify: (kind: NotifyKind) => void,
): OpenedSegment {
  if (nameOrDescriptor instanceof QueueDescriptor) {
    const trust = checkOptions<TrustOptions>(options, 'trust');
    checkKnownKeys(trust, TRUST_OPTION_KEYS, 'trust (when opening a descriptor, whose metadata carries the other options)');
    const args = sageOpenArgs(nameOrDescriptor);
    ({ name: nameOrDescriptor, mode } = args);
    options = { ...args.options, ...trust };
  }
  const name = checkName(nameOrDescriptor);
  const { create, wanted, spinUs, initWaitMs, ackMode, maxUnacked, deadLetter, explicitOptions } = parseSageOptions(options);
  let q: NativeQueue;
  try {
    q = new (native().NativeQueue)(name, mode, create, notify, initWaitMs);
  } catch (e) {
    throw nativeError(e, name);
  }
  const info = q.info();
  try {
    if (info === null) throw new SharedMemoryError('ERR_QUEUE_CORRUPT', `queue ${name} reported no layout`, name);
    const explicit = info.ackMode === 1;
    if ((ackMode !== undefined && (ackMode === 'explicit') !== explicit) || (explicitOptions && !explicit)) {
      throw new InvalidArgumentValueError(
        `queue ${name} is in ${explicit ? 'explicit' : 'auto'}-ack mode${ackMode === undefined ? ', which the explicit-ack options given need' : `, not ${ackMode}`}; open it with ackMode '${explicit ? 'explicit' : 'auto'}' or without`,
        ackMode,
        'ERR_ACK_MODE_MISMATCH',
      );
    }
    const codec = codecOfQueue(name, info, wanted, () => q.stats()?.mode ?? 0o600);
    q.setSpinUs(spinUs);
    return { name, q, info, codec, spinUs, ack: explicit ? { maxUnacked, deadLetter } : undefined };
  } catch (e) {
    q.release();
    throw e;
  }
}
