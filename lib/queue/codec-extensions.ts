/**
 * Codec extensions: a class that the MessagePack codecs (`records`, `msgpack`) write in a form of
 * its own, through msgpackr's extension mechanism (`addExtension` with `Class`, `type`, `write`
 * and `read`). msgpackr writes an instance as a one-byte tag (fixext 1 of the extension's type)
 * followed by whatever `write` returned, encoded by the same Packr: so a `records` queue encodes
 * the objects inside it with its shared structure table like any other value. On decoding,
 * msgpackr decodes that value and hands it to `read`.
 *
 * The layer that owns a class registers its extension here (the router registers Packet's); the
 * queue layer knows nothing of the classes. msgpackr keeps extensions per module, not per Packr,
 * so one registration reaches every Packr of the process, those created before it included.
 * msgpackr is loaded on first use (it brings a native addon of its own): a registration made
 * before that waits here and is installed when msgpackr loads. Every Packr of the queue layer
 * is made from loadMsgpackr(), so they all share that one msgpackr module.
 *
 * Codecs that are not MessagePack cannot carry an extension: `v8` encodes a top-level instance of
 * an extension's class as its `plain()` form (JSON.stringify, for `json`, calls `toJSON()`
 * itself); `raw` takes bytes only.
 */
import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';

type Msgpackr = typeof import('msgpackr');

/** How the MessagePack codecs write and read the instances of one class. */
export interface CodecExtension<T extends object = object> {
  /**
   * The MessagePack extension type, an integer in 1..100 (msgpackr reserves 101..127 and uses 66
   * and 98 itself; 78 is the codecs' own). Every process that reads the queue must register the same type for the class.
   */
  readonly type: number;
  /** Instances of this class (and of its subclasses) are written by `write`. */
  readonly Class: abstract new (...args: never[]) => T;
  /** The value msgpackr writes in the instance's place (it encodes that value in its turn). */
  write(instance: T): unknown;
  /** The instance, from what `write` returned as decoded. Throws on a malformed value. */
  read(data: unknown): T;
  /** The value the `v8` codec writes for a top-level instance (default: the instance as is). */
  plain?(instance: T): unknown;
}

/**
 * Node Buffers, written by an extension of ours that msgpackr finds before its built-in ones: the
 * same bytes as msgpackr writes for a Buffer (MessagePack bin 8/16/32, read back as a Buffer),
 * about 40% less time for a small object with a Buffer field (msgpackr otherwise reaches a Buffer
 * after six instanceof checks and a typed-array dispatch). The type is only a registration key:
 * nothing is written with it (a record that carries it anyway is read as the bytes it holds).
 */
const BUFFER_TYPE = 0x4e;

type AllocateForWrite = (size: number) => { target: Uint8Array; position: number; targetView: DataView };

function packBuffer(buffer: Buffer, allocate: AllocateForWrite): void {
  const n = buffer.length;
  if (n < 0x100) {
    const { target, position } = allocate(n + 2);
    target[position] = 0xc4;
    target[position + 1] = n;
    target.set(buffer, position + 2);
  } else if (n < 0x10000) {
    const { target, position } = allocate(n + 3);
    target[position] = 0xc5;
    target[position + 1] = n >> 8;
    target[position + 2] = n & 0xff;
    target.set(buffer, position + 3);
  } else {
    const { target, position, targetView } = allocate(n + 5);
    target[position] = 0xc6;
    targetView.setUint32(position + 1, n);
    target.set(buffer, position + 5);
  }
}

/** Extension types in 1..100 taken already: msgpackr's own (BigInt, bundled strings) and Buffer's. */
const MSGPACKR_TYPES: ReadonlySet<number> = new Set([0x42, 0x62, BUFFER_TYPE]);

const registered: CodecExtension[] = [];
let msgpackr: Msgpackr | undefined;

function install(m: Msgpackr, ext: CodecExtension): void {
  m.addExtension({
    Class: ext.Class,
    type: ext.type,
    write: (instance: object) => ext.write(instance),
    read: (data: unknown) => ext.read(data),
  });
}

/**
 * msgpackr, loaded on first use, with every registered extension installed. The queue layer makes
 * its Packrs from this (never from a require of its own), so all of them see the extensions.
 */
export function loadMsgpackr(): Msgpackr {
  if (msgpackr === undefined) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const m = require('msgpackr') as Msgpackr;
    m.addExtension({ Class: Buffer, type: BUFFER_TYPE, pack: packBuffer, unpack: (data: Uint8Array) => Buffer.from(data) } as unknown as Parameters<Msgpackr['addExtension']>[0]);
    for (const ext of registered) install(m, ext);
    msgpackr = m;
  }
  return msgpackr;
}

/**
 * Registers how the `records` and `msgpack` codecs carry instances of `ext.Class`. Idempotent for
 * the same class and type; another class on a type already taken, or another type for a class
 * already registered, is refused (ERR_INVALID_ARG_VALUE).
 */
export function registerCodecExtension<T extends object>(ext: CodecExtension<T>): void {
  if (ext === null || typeof ext !== 'object') throw new InvalidArgumentTypeError('extension', 'an object { type, Class, write, read }', ext);
  const { type, Class, write, read, plain } = ext;
  if (typeof type !== 'number' || !Number.isInteger(type) || type < 1 || type > 100 || MSGPACKR_TYPES.has(type)) {
    throw new InvalidArgumentValueError(
      `extension.type must be an integer in 1..100 other than ${[...MSGPACKR_TYPES].join(', ')} (taken by msgpackr and the codecs); received ${describe(type)}`,
      type,
    );
  }
  if (typeof Class !== 'function') throw new InvalidArgumentTypeError('extension.Class', 'a class', Class);
  if (typeof write !== 'function') throw new InvalidArgumentTypeError('extension.write', 'a function', write);
  if (typeof read !== 'function') throw new InvalidArgumentTypeError('extension.read', 'a function', read);
  if (plain !== undefined && typeof plain !== 'function') throw new InvalidArgumentTypeError('extension.plain', 'a function or undefined', plain);
  for (const other of registered) {
    if (other.Class === Class && other.type === type) return;
    if (other.Class === Class || other.type === type) {
      throw new InvalidArgumentValueError(
        `codec extension type ${type} for ${Class.name} clashes with the registered type ${other.type} for ${other.Class.name}`,
        type,
      );
    }
  }
  const entry = { type, Class, write, read, plain } as CodecExtension;
  registered.push(entry);
  if (msgpackr !== undefined) install(msgpackr, entry);
}

/** What the `v8` codec writes for `item`: its extension's plain() form when it has one. */
export function plainForm(item: unknown): unknown {
  if (item === null || typeof item !== 'object') return item;
  for (const ext of registered) {
    if (item instanceof ext.Class) return ext.plain === undefined ? item : ext.plain(item);
  }
  return item;
}
