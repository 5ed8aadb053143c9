/**
 * The native surface, declared once. Everything else imports its types from here.
 * The addon is located by node-gyp-build: `build/Release` when built from source, else the
 * matching binary in `prebuilds/` (set PREBUILDS_ONLY=1 to insist on the shipped one).
 *
 * For tests only: `SAGE_QUEUE_NATIVE_ADDON=/abs/path/to/sage_queue.node` loads that file instead.
 * The crash and torture tests point it at the hooks-enabled build (`npm run build:test-addon` ->
 * build-hooks/Release/sage_queue.node), whose setTestHook() can park a process mid-operation.
 */
import * as path from 'node:path';

/** What the native addon reports about itself. */
export interface NativeCapabilities {
  version: string;
  /** Version of the shared-memory layout; segments of another layout are refused. */
  layoutVersion: number;
  napiVersion: number;
  platform: 'linux';
  futex: boolean;
  robustLocks: boolean;
  sharedMemory: boolean;
  /** Handles that can be attached to one queue at once (across all processes). */
  maxHandlesPerQueue: number;
  /** Every segment is `/dev/shm/<shmPrefix><name>`. */
  shmPrefix: string;
  /** Segments being created live under `/dev/shm/<shmTempPrefix><16 hex>.<name>` until linked into place. */
  shmTempPrefix: string;
  /** True only in the hooks-enabled test build (setTestHook works); false in every production build. */
  testHooks: boolean;
}

/**
 * Numeric statuses returned (negated) by the hot-path methods; mirrors sage::Status. A plain enum
 * (not `const`) so test/native/contract.test.ts can check it against the addon's constants().
 */
export enum NativeStatus {
  Ok = 0,
  Empty = 1,
  Full = 2,
  Closed = 3,
  TooLarge = 4,
  BufferTooSmall = 5,
  TimedOut = 6,
  Cancelled = 7,
  InvalidName = 8,
  InvalidArgument = 9,
  Exists = 10,
  NotFound = 11,
  NotOurs = 12,
  VersionMismatch = 13,
  NotInitialised = 14,
  NoSpace = 15,
  NoSlots = 16,
  PermissionDenied = 17,
  Corrupt = 18,
  SystemError = 19,
  Initialising = 20,
  /** The handle was attached by the parent of this forked process (C++ core only: Node cannot fork). */
  Forked = 21,
  /** The segment's owner is not the caller, root, or a uid in `trustedUids`. */
  UntrustedOwner = 22,
  /** The segment is writable by group/other and the caller did not pass `allowSharedMode`. */
  SharedMode = 23,
  /** The name now refers to another segment than the one this handle opened (not removed). */
  Replaced = 24,
  /** A blocking call returned because the process received a signal it has a JS handler for. */
  Interrupted = 25,
  /** The segment was truncated under this process; the handle is unusable. */
  Truncated = 26,
  /** Explicit ack: this handle no longer holds that lease (settled, or expired and taken back). */
  LeaseLost = 27,
}

/** How a lease is settled (NativeQueue.settle). */
export enum SettleOp {
  Ack = 0,
  Nack = 1,
  Extend = 2,
}

/** Kinds passed to the notify callback (bit flags). Checked against the addon like NativeStatus. */
export enum NotifyKind {
  Readable = 1,
  Writable = 2,
  /** The loop poller (pollReadable) saw the queue readable (or closed or damaged). */
  Polled = 4,
  /** The loop poller's budget ran out. */
  PollExpired = 8,
}

export interface NativeCreateOptions {
  capacity?: number;
  maxMessageSize?: number;
  maxsize?: number;
  mode?: number;
  codec?: number;
  /** 0 = auto (default), 1 = explicit acks (recorded in the segment at creation). */
  ackMode?: number;
  ackTimeoutMs?: number;
  maxDeliveries?: number;
  /** Owners trusted besides the caller's effective uid and root (checked with fstat on open). */
  trustedUids?: number[];
  /** Accept a segment that group/other may write. */
  allowSharedMode?: boolean;
}

export interface NativeProcessInfo {
  slot: number;
  pid: number;
  roles: Array<'creator' | 'producer' | 'consumer'>;
  alive: boolean;
  attachedMs: number;
  /** Waits this handle has registered right now. */
  waiting: number;
}

/** Statistics kept in the segment: the same from every attached process. */
export interface NativeStats {
  name: string;
  capacity: number;
  maxMessageSize: number;
  maxsize: number;
  /** Messages in the queue (claimed by producers and not yet taken by consumers). */
  depth: number;
  /** Bytes of records in the queue. */
  depthBytes: number;
  /** Bytes not yet reusable (includes records being read). */
  usedBytes: number;
  enqueued: number;
  dequeued: number;
  /** Claims of producers that died before committing, turned into padding. */
  abandonedClaims: number;
  /** Messages that consumers were reading when they died. */
  lostInRead: number;
  /** FUTEX_WAKE system calls issued. */
  wakeCalls: number;
  /** Futex sleeps entered. */
  waits: number;
  lockRecoveries: number;
  slotsReaped: number;
  waiterHeals: number;
  dataWaiters: number;
  spaceWaiters: number;
  codec: number;
  mode: number;
  createdMs: number;
  nonce: string;
  closed: boolean;
  /** Owner and permission bits of the segment file (from fstat, not from the segment). */
  fileUid: number;
  fileMode: number;
  /**
   * Null when the default trust policy accepts the segment; else why not
   * (ERR_QUEUE_UNTRUSTED_OWNER, ERR_QUEUE_SHARED_MODE). Only an inspection can see an untrusted
   * segment: it is mapped read-only and its processes are not probed (`alive` is false).
   */
  untrusted: string | null;
  /** Explicit-ack queues: lease counters; null in auto mode. */
  leases: NativeLeaseStats | null;
  processes: NativeProcessInfo[];
}

/** Lease counters of an explicit-ack queue (kept in the segment). */
export interface NativeLeaseStats {
  ackTimeoutMs: number;
  maxDeliveries: number;
  acks: number;
  nacks: number;
  /** Acks, nacks and extends refused: the lease was no longer held (ERR_QUEUE_LEASE_LOST). */
  staleSettles: number;
  /** Deliveries after the first. */
  redeliveries: number;
  /** Leases taken back at their deadline. */
  expiredLeases: number;
  /** Leases taken back from a consumer that died. */
  deadLeases: number;
  /** Messages waiting to be delivered again (nacked, expired or from a dead consumer). */
  redeliverable: number;
  /** Ring bytes from the oldest unacked message to the head: not reusable until it is acked. */
  unackedBytes: number;
}

export interface NativeQueueInfo {
  name: string;
  capacity: number;
  maxMessageSize: number;
  maxsize: number;
  codec: number;
  nonce: string;
  /** 0 auto, 1 explicit. */
  ackMode: number;
  ackTimeoutMs: number;
  maxDeliveries: number;
}

/** One attached handle. Methods return a count/length, or a negated NativeStatus. */
export interface NativeQueue {
  tryPut(data: Uint8Array): number;
  /**
   * Writes `count` records: back to back from data[0], or, with `starts` (the gather form), record
   * i at data[starts[first + i]] with length lengths[first + i].
   */
  tryPutBatch(data: Uint8Array, lengths: Uint32Array, count: number, starts?: Uint32Array, first?: number): number;
  tryGet(slab: Uint8Array, offset: number): number;
  tryGetBatch(slab: Uint8Array, offset: number, lengths: Uint32Array, max: number): number;
  /**
   * Blocks the calling thread (sync API only). timeoutMs < 0 = forever. `signals` (bit n = signal
   * n, see interruptSignals()) makes it return -Interrupted when one of them arrives, so that a
   * JS listener of that signal can run. After an error status, lastWritten() says how many went in.
   */
  putBlocking(data: Uint8Array, lengths: Uint32Array, count: number, timeoutMs: number, signals?: number, starts?: Uint32Array, first?: number): number;
  /** Blocks the calling thread (sync API only). timeoutMs < 0 = forever. `signals`: see putBlocking. */
  getBlocking(slab: Uint8Array, offset: number, lengths: Uint32Array, max: number, timeoutMs: number, signals?: number): number;
  /** How many messages the last tryPutBatch/putBlocking wrote (also when it returned an error status). */
  lastWritten(): number;
  /**
   * Ask the notifier thread to report (through `notify`) when a get could progress. spin=false
   * makes it sleep at once (the caller already spun the queue's spin budget); default true.
   */
  armReadable(spin?: boolean): void;
  /** Ask the notifier thread to report when `bytes` could be put. */
  armWritable(bytes: number): void;
  /**
   * Polls for readability from the event loop for up to spinUs without entering JS per check,
   * then reports once through `notify` (Polled or PollExpired). Restarts a poll in progress.
   * False if the loop handle could not be set up.
   */
  pollReadable(spinUs: number): boolean;
  /** Stops a poll in progress without a report. */
  stopPoll(): void;
  /** kind: bit mask of NotifyKind; cancel=false when it already fired (just drops the ref). */
  disarm(kind: number, cancel?: boolean): void;
  close(): void;
  release(): void;
  qsize(): number;
  usedBytes(): number;
  isClosed(): boolean;
  isReleased(): boolean;
  stats(): NativeStats | null;
  info(): NativeQueueInfo | null;
  setSpinUs(us: number): void;
  /** Size of the message a BufferTooSmall result could not fit. */
  needed(): number;
  /** Removes the queue's name if it still refers to this handle's segment: 0, or -NotFound / -Replaced. */
  unlinkIfSame(): number;
  /** Explicit ack: settles one lease (position split in two uint32s); 0 or a negated status. */
  settle(positionLo: number, positionHi: number, deliveries: number, op: SettleOp, delayMs: number): number;
  /** Settles `count` leases given as (lo, hi, deliveries) triples; statuses[i] = each one's status. Returns how many succeeded. */
  settleMany(ids: Uint32Array, count: number, op: SettleOp, statuses: Uint8Array): number;
  /** Leases this handle holds (counted under the consumer lock), or a negated status. */
  heldLeases(timeoutMs: number): number;
}

export interface NativeQueueConstructor {
  new (
    name: string,
    /** 'inspect' maps an existing queue without attaching: only stats()/info() may be used. */
    mode: 'create' | 'open' | 'openOrCreate' | 'inspect',
    options: NativeCreateOptions,
    notify: (kind: NotifyKind) => void,
    initWaitMs?: number,
  ): NativeQueue;
}

export interface NativeStatusInfo {
  status: number;
  code: string;
  message: string;
}

/** The addon's enums, made from the C++ definitions: `{ status: { Ok: 0, ... }, notify: { Readable: 1, ... } }`. */
export interface NativeConstants {
  status: Record<string, number>;
  notify: Record<string, number>;
}

export interface NativeAddon {
  version(): string;
  capabilities(): NativeCapabilities;
  statuses(): NativeStatusInfo[];
  constants(): NativeConstants;
  validName(name: string): boolean;
  unlink(name: string): void;
  list(): string[];
  /**
   * Temporary names (file names in /dev/shm) that creators killed mid-creation left: those whose
   * creator's lock is free, only for the queues in `only` when given. Removed unless `dryRun`.
   */
  collectTemps(only: string[] | undefined, dryRun: boolean): string[];
  /**
   * Test-only: park this process at a named point of the data path. Works only in the
   * hooks-enabled test build (see SAGE_QUEUE_NATIVE_ADDON); every production build throws an
   * Error with code ERR_TEST_HOOKS_DISABLED.
   */
  setTestHook(point: string): void;
  NativeQueue: NativeQueueConstructor;
}

let cached: NativeAddon | undefined;

/** Loads the addon once per module instance (node-gyp-build caches by path as well). */
export function native(): NativeAddon {
  if (cached === undefined) {
    const override = process.env.SAGE_QUEUE_NATIVE_ADDON;
    if (override !== undefined && override !== '') {
      // Tests only (see the top of this file): an absolute path to a .node file.
      if (!path.isAbsolute(override)) {
        throw new Error(`SAGE_QUEUE_NATIVE_ADDON must be an absolute path to a .node file (got ${JSON.stringify(override)})`);
      }
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(override) as NativeAddon;
    } else {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const load = require('node-gyp-build') as (dir: string) => unknown;
      cached = load(path.join(__dirname, '..', '..')) as NativeAddon;
    }
  }
  return cached;
}
