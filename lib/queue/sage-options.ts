/** The options of SageQueue and their validation (what is created, how a handle waits). */
import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import { native } from '../native';
import type { NativeCreateOptions, NativeQueueInfo, NativeStats } from '../native';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { DEFAULT_CODEC, codecById, codecByName } from './codecs';
import { openRecordCodec } from './record-codec';
import { structureTablePath } from './structure-log';
import type { Codec, CodecName } from './codecs';
import type { AsyncQueueLike } from './queue-like';
import type { SageDeadLetter } from './sage-leases';

/** Options used when the queue is created (ignored when an existing queue is opened). */
export interface SageQueueOptions {
  /** Ring size in bytes, rounded up to a power of two (4 KiB .. 4 GiB). Default 1 MiB. */
  capacity?: number;
  /** Largest encoded message in bytes. Default capacity/4 - 16; at most capacity/2 - 16. */
  maxMessageSize?: number;
  /** Most messages the queue holds (0 = bounded by bytes only). Default 0. */
  maxsize?: number;
  /** File mode of the segment. Default 0o600 (owner only). A mode that lets group or others write (0o020, 0o002) needs `allowSharedMode`. */
  mode?: number;
  /** Message codec, recorded in the segment. Default 'records' (queues created before it keep
   * theirs, e.g. 'v8'). When opening, must match if given. */
  codec?: CodecName;
  /** Spin this long (microseconds) before sleeping in a wait. Default 50; 0 = sleep at once. */
  spinUs?: number;
  /** How long to wait for a segment that its creator is still initialising. Default 1000 ms. */
  initWaitMs?: number;
  /**
   * Users (uids) whose segments this handle may open, besides the caller's own effective uid and
   * root. Default none: a queue another user created under this name is refused with
   * ERR_QUEUE_UNTRUSTED_OWNER (that user could read every message and forge new ones). Checked on
   * the open file (fstat), never on the path. Never taken from a descriptor.
   */
  trustedUids?: readonly number[];
  /**
   * Accept a segment that its group or others may write (mode & 0o022), and allow creating one.
   * Default false: such a segment is refused with ERR_QUEUE_SHARED_MODE, since every user it lets
   * write can read and forge messages and corrupt the queue. Never taken from a descriptor.
   */
  allowSharedMode?: boolean;
  /**
   * 'auto' (default): a get removes the message (a consumer killed while holding it loses it).
   * 'explicit': gets return SageMessage objects, and a message stays in the queue, leased to its
   * consumer, until acked; nacked, expired or dead consumers' messages are delivered again
   * (at least once). Recorded in the segment at creation; when opening, must match if given.
   */
  ackMode?: SageAckMode;
  /** Explicit mode, at creation: how long a lease lasts before the message is delivered again (ms). Default 30 000. */
  ackTimeoutMs?: number;
  /** Explicit mode, at creation: deliveries after which a message goes to the dead-letter queue. Default 5. */
  maxDeliveries?: number;
  /**
   * Explicit mode, this handle: most unsettled messages it may hold (like JetStream's
   * MaxAckPending). At the limit, synchronous gets throw MaxUnackedError and async gets wait for
   * an ack. Default 1000.
   */
  maxUnacked?: number;
  /**
   * Explicit mode, this handle: where a message delivered more than maxDeliveries times goes
   * (SageDeadLetter entries), instead of to a consumer. Without it such messages are delivered
   * anyway (their `deliveries` tells), never dropped.
   */
  deadLetter?: AsyncQueueLike<SageDeadLetter>;
}

/** Options of SageQueue.open / create for a queue with explicit acks. */
export type SageExplicitOptions = SageQueueOptions & { ackMode: 'explicit' };

/** SageQueueOptions of an auto-ack queue (what SageQueue.create / open without ackMode: 'explicit' take). */
export type SageAutoOptions = Omit<SageQueueOptions, 'ackMode' | 'ackTimeoutMs' | 'maxDeliveries' | 'maxUnacked' | 'deadLetter'> & {
  ackMode?: 'auto';
};

/** What SageQueue.open accepts (creation options are ignored when opening, so not taken). */
export type SageOpenOptions = Pick<
  SageQueueOptions,
  'codec' | 'spinUs' | 'initWaitMs' | 'trustedUids' | 'allowSharedMode' | 'ackMode' | 'maxUnacked' | 'deadLetter'
>;

/** 'auto' or 'explicit' (see SageQueueOptions.ackMode). */
export type SageAckMode = 'auto' | 'explicit';

/** The options that say whom a handle trusts: the caller's own, never a descriptor's. */
export const TRUST_OPTION_KEYS = ['trustedUids', 'allowSharedMode'] as const;
/** The options that say whom to trust when opening an existing segment (see SageQueueOptions). */
export type TrustOptions = Pick<SageQueueOptions, 'trustedUids' | 'allowSharedMode'>;

/** Options of the batch calls. */
export interface BatchOptions {
  /** Wait while the queue is full/empty (default true). */
  block?: boolean;
  timeoutMs?: number;
}

export interface IterateOptions {
  /** Messages taken from the shared queue per native call (default 64). Larger batches are
   * faster, but a consumer holds (and would lose, if killed) up to this many at once; the rest
   * of a batch not yielded when the loop is left stays with the handle for its next get.
   * 1 takes each message only when it is yielded. */
  batchSize?: number;
  signal?: AbortSignal;
}

export interface SageQueueStats extends NativeStats {
  codecName: CodecName | 'unknown';
}

/** How the constructor attaches: the queue must not exist, must exist, or either. */
export type OpenMode = 'create' | 'open' | 'openOrCreate';

export interface ParsedSageOptions {
  create: NativeCreateOptions & { codec: number };
  /** The ack mode the caller asked for, if any (an existing queue must have it). */
  ackMode: SageAckMode | undefined;
  maxUnacked: number;
  deadLetter: AsyncQueueLike<SageDeadLetter> | undefined;
  /** Whether an explicit-mode-only option was given (an auto-mode segment refuses them). */
  explicitOptions: boolean;
  /** The codec the caller asked for, if any (an existing queue must use it). */
  wanted: Codec | undefined;
  spinUs: number;
  initWaitMs: number;
}

const OPTION_KEYS = [
  'capacity', 'maxMessageSize', 'maxsize', 'mode', 'codec', 'spinUs', 'initWaitMs', 'ackMode', 'ackTimeoutMs', 'maxDeliveries',
  'maxUnacked', 'deadLetter', ...TRUST_OPTION_KEYS,
] as const;

function parseAckOptions(opts: SageQueueOptions, create: NativeCreateOptions): Pick<ParsedSageOptions, 'ackMode' | 'maxUnacked' | 'deadLetter' | 'explicitOptions'> {
  const mode = opts.ackMode;
  if (mode !== undefined && mode !== 'auto' && mode !== 'explicit') {
    throw new InvalidArgumentValueError(`options.ackMode must be 'auto' or 'explicit'; received ${describe(mode)}`, mode);
  }
  if (mode === 'explicit') create.ackMode = 1;
  // (Opening an existing queue without ackMode: checked against the segment once it is open.)
  let explicitOptions = false;
  for (const key of ['ackTimeoutMs', 'maxDeliveries', 'maxUnacked', 'deadLetter'] as const) {
    if (opts[key] === undefined) continue;
    explicitOptions = true;
    if (mode === 'auto') throw new InvalidArgumentValueError(`options.${key} needs ackMode: 'explicit'`, opts[key], 'ERR_UNSUPPORTED_OPTION');
  }
  if (opts.ackTimeoutMs !== undefined) create.ackTimeoutMs = checkInteger(opts.ackTimeoutMs, 'options.ackTimeoutMs', 1, 86_400_000);
  if (opts.maxDeliveries !== undefined) create.maxDeliveries = checkInteger(opts.maxDeliveries, 'options.maxDeliveries', 1, 1_000_000);
  const maxUnacked = opts.maxUnacked === undefined ? 1000 : checkInteger(opts.maxUnacked, 'options.maxUnacked', 1, 1_000_000);
  const dlq = opts.deadLetter;
  if (dlq !== undefined && (dlq === null || typeof dlq !== 'object' || typeof dlq.putAsync !== 'function')) {
    throw new InvalidArgumentTypeError('options.deadLetter', 'a queue with putAsync (an AsyncQueueLike)', dlq);
  }
  return { ackMode: mode, maxUnacked, deadLetter: dlq, explicitOptions };
}

function parseTrust(opts: SageQueueOptions): { trustedUids?: number[]; allowSharedMode?: boolean } {
  const out: { trustedUids?: number[]; allowSharedMode?: boolean } = {};
  if (opts.trustedUids !== undefined) {
    if (!Array.isArray(opts.trustedUids)) throw new InvalidArgumentTypeError('options.trustedUids', 'an array of uids', opts.trustedUids);
    out.trustedUids = opts.trustedUids.map((uid, i) => checkInteger(uid, `options.trustedUids[${i}]`, 0, 2 ** 32 - 1));
  }
  if (checkBoolean(opts.allowSharedMode, 'options.allowSharedMode', false)) out.allowSharedMode = true;
  return out;
}

export function parseSageOptions(options: SageQueueOptions | undefined): ParsedSageOptions {
  const opts = checkOptions<SageQueueOptions>(options);
  checkKnownKeys(opts, OPTION_KEYS);
  const create: NativeCreateOptions = {};
  if (opts.capacity !== undefined) create.capacity = checkInteger(opts.capacity, 'options.capacity', 4096, 2 ** 32);
  if (opts.maxMessageSize !== undefined) create.maxMessageSize = checkInteger(opts.maxMessageSize, 'options.maxMessageSize', 1, 2 ** 31);
  if (opts.maxsize !== undefined) create.maxsize = checkInteger(opts.maxsize, 'options.maxsize', 0, 2 ** 48);
  if (opts.mode !== undefined) {
    create.mode = checkInteger(opts.mode, 'options.mode', 0, 0o777);
    if ((create.mode & 0o600) !== 0o600) {
      throw new InvalidArgumentValueError('options.mode must give the owner read and write (0o600)', opts.mode, 'ERR_OUT_OF_RANGE');
    }
  }
  const trust = parseTrust(opts);
  if (create.mode !== undefined && (create.mode & 0o022) !== 0 && trust.allowSharedMode !== true) {
    throw new InvalidArgumentValueError(
      `options.mode 0o${create.mode.toString(8)} lets group or others write the queue (read and forge its messages); pass allowSharedMode: true to create or open such a queue`,
      opts.mode,
      'ERR_QUEUE_SHARED_MODE',
    );
  }
  const wanted = opts.codec === undefined ? undefined : codecByName(opts.codec);
  const codec = (wanted ?? codecByName(DEFAULT_CODEC)).id;
  const spinUs = opts.spinUs === undefined ? 50 : checkInteger(opts.spinUs, 'options.spinUs', 0, 1_000_000);
  const initWaitMs = opts.initWaitMs === undefined ? 1000 : checkInteger(opts.initWaitMs, 'options.initWaitMs', 0, 600_000);
  const ack = parseAckOptions(opts, create);
  return { create: { ...create, ...trust, codec }, wanted, spinUs, initWaitMs, ...ack };
}

/** A queue name the addon accepts (1-200 of [A-Za-z0-9._-], no '..'). */
export function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new InvalidArgumentTypeError('name', 'a string', name);
  if (!native().validName(name)) {
    throw new InvalidArgumentValueError(
      `invalid queue name ${describe(name)}: use 1-200 letters, digits, '.', '_' or '-', without '..'`,
      name,
      'ERR_INVALID_QUEUE_NAME',
    );
  }
  return name;
}

/**
 * The codec a handle uses for the queue `name`: the one recorded in its segment, which must be
 * `wanted` when the caller named one (ERR_CODEC_MISMATCH otherwise). A codec with a shared
 * structure table is bound to the table of this incarnation of the queue (its nonce).
 */
export function codecOfQueue(name: string, info: NativeQueueInfo, wanted: Codec | undefined, mode: () => number): Codec {
  const codec = codecById(info.codec);
  if (codec === undefined || (wanted !== undefined && wanted.id !== codec.id)) {
    throw new InvalidArgumentValueError(
      codec === undefined
        ? `queue ${name} uses codec id ${info.codec}, which this version of sage-queue does not know`
        : `queue ${name} uses the ${codec.name} codec, not ${wanted?.name}; open it without a codec option or with codec '${codec.name}'`,
      wanted?.name,
      'ERR_CODEC_MISMATCH',
    );
  }
  return codec.shared === true ? openRecordCodec(structureTablePath(name, info.nonce), mode()) : codec;
}
