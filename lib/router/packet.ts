/**
 * Packet: an immutable routed message. Every "change" returns a new packet; the trace of hops
 * grows as routers deliver it.
 *
 * The constructor validates its options once; the copies (withInputIndex, withHop, updateKey,
 * inheritPartitionInfo) and the packets the codecs decode take the internal path, which checks
 * only what is new. A packet's traceId is made (randomUUID) the first time it is read, and then
 * kept: a packet and every copy of it share it, whichever reads it first.
 *
 * Through a `records` or `msgpack` queue a packet travels in its compact wire form (a codec
 * extension, see packet-wire.ts) and comes out a Packet; `json` and `v8` carry toJSON()'s object,
 * which Packet.from revives.
 */
import { randomUUID } from 'node:crypto';

import { InvalidArgumentTypeError } from '../errors';
import { registerCodecExtension } from '../queue/codec-extensions';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { PartitionKey } from './hashing';
import { PACKET_EXTENSION_TYPE, readEnvelope, writeEnvelope } from './packet-wire';
import type { Hop } from './packet-wire';
import { checkStrategy } from './strategy-names';
import type { StrategyName } from './strategy-names';

export type { Hop } from './packet-wire';

export interface PacketOptions {
  /** Which input of the receiving operator the packet is for. Default 0. */
  inputIndex?: number;
  /** The key keyed strategies partition by. `0` and `""` are keys too. */
  partitionKey?: PartitionKey | null;
  /** Overrides the router's strategy for this packet. */
  partitionStrategy?: StrategyName | null;
  /** Correlates the packet across hops; when absent, a UUID made the first time it is read. */
  traceId?: string;
  /** Creation time, ms since the epoch; now when absent. */
  createdAt?: number;
  trace?: readonly Hop[];
}

/** The plain-object form a packet takes through a `json` or `v8` queue (see Packet.from). */
export interface PacketWire<P = unknown> {
  payload: P;
  inputIndex: number;
  partitionKey: PartitionKey | null;
  partitionStrategy: StrategyName | null;
  traceId: string;
  createdAt: number;
  trace: Hop[];
}

const KNOWN_OPTIONS = ['inputIndex', 'partitionKey', 'partitionStrategy', 'traceId', 'createdAt', 'trace'] as const;
const NO_HOPS: readonly Hop[] = Object.freeze([]);

function checkKey(key: unknown): PartitionKey | null {
  if (key === undefined || key === null) return null;
  if (typeof key === 'string' || typeof key === 'bigint' || key instanceof Uint8Array) return key;
  if (typeof key === 'number' && Number.isFinite(key)) return key;
  throw new InvalidArgumentTypeError('partitionKey', 'a string, finite number, bigint, Uint8Array or null', key);
}

function checkHop(hop: unknown, name: string): Hop {
  const h = hop as Partial<Hop> | null;
  if (h === null || typeof h !== 'object') throw new InvalidArgumentTypeError(name, 'a hop { router, target, at }', hop);
  if (typeof h.router !== 'string') throw new InvalidArgumentTypeError(`${name}.router`, 'a string', h.router);
  if (typeof h.target !== 'string') throw new InvalidArgumentTypeError(`${name}.target`, 'a string', h.target);
  if (typeof h.at !== 'number' || !Number.isFinite(h.at)) throw new InvalidArgumentTypeError(`${name}.at`, 'a finite time (ms since the epoch)', h.at);
  return Object.freeze({ router: h.router, target: h.target, at: h.at });
}

/** The traceId of a packet and its copies: made when first read, then shared by all of them. */
interface TraceIdCell {
  value: string | undefined;
}

/** The fields of a packet built on the internal path (already checked, or new and checked). */
interface Fields<P> {
  payload: P;
  inputIndex: number;
  partitionKey: PartitionKey | null;
  partitionStrategy: StrategyName | null;
  createdAt: number;
  trace: readonly Hop[];
  id: TraceIdCell | undefined;
}

// Set only while build() runs the constructor: the constructor then takes these fields as they are.
let building: Fields<unknown> | undefined;

function build<P>(fields: Fields<P>): Packet<P> {
  building = fields;
  try {
    return new Packet(fields.payload);
  } finally {
    building = undefined;
  }
}

export class Packet<P = unknown> {
  readonly payload: P;
  readonly inputIndex: number;
  readonly partitionKey: PartitionKey | null;
  readonly partitionStrategy: StrategyName | null;
  readonly createdAt: number;
  readonly trace: readonly Hop[];
  #id: TraceIdCell | undefined;

  constructor(payload: P, options?: PacketOptions) {
    const internal = building as Fields<P> | undefined;
    if (internal !== undefined) {
      building = undefined;
      this.payload = internal.payload;
      this.inputIndex = internal.inputIndex;
      this.partitionKey = internal.partitionKey;
      this.partitionStrategy = internal.partitionStrategy;
      this.createdAt = internal.createdAt;
      this.trace = internal.trace;
      this.#id = internal.id;
      Object.freeze(this);
      return;
    }
    const o = checkOptions<PacketOptions>(options);
    checkKnownKeys(o, KNOWN_OPTIONS);
    this.payload = payload;
    this.inputIndex = o.inputIndex === undefined ? 0 : checkInteger(o.inputIndex, 'inputIndex', 0);
    this.partitionKey = checkKey(o.partitionKey);
    this.partitionStrategy = o.partitionStrategy === undefined || o.partitionStrategy === null ? null : checkStrategy(o.partitionStrategy);
    if (o.createdAt !== undefined && (typeof o.createdAt !== 'number' || !Number.isFinite(o.createdAt))) {
      throw new InvalidArgumentTypeError('createdAt', 'a finite number of ms since the epoch', o.createdAt);
    }
    this.createdAt = o.createdAt ?? Date.now();
    if (o.trace !== undefined && !Array.isArray(o.trace)) throw new InvalidArgumentTypeError('trace', 'an array of hops', o.trace);
    this.trace = o.trace === undefined || o.trace.length === 0 ? NO_HOPS : Object.freeze(o.trace.map((h, i) => checkHop(h, `trace[${i}]`)));
    if (o.traceId !== undefined && (typeof o.traceId !== 'string' || o.traceId.length === 0)) {
      throw new InvalidArgumentTypeError('traceId', 'a non-empty string', o.traceId);
    }
    this.#id = o.traceId === undefined ? undefined : { value: o.traceId };
    Object.freeze(this);
  }

  /**
   * Correlates the packet across hops and processes. Given, or a UUID made the first time it is
   * read (of this packet or of any copy of it: they share it). It crosses a `records`/`msgpack`
   * queue when it was given or read before, or when the packet has a trace; otherwise the
   * receiving side's packet makes its own when read there.
   */
  get traceId(): string {
    const cell = this.#cell();
    return (cell.value ??= randomUUID());
  }

  /** Revives a packet from its wire form (what a consumer of a `json` or `v8` queue receives). */
  static from<P = unknown>(wire: PacketWire<P> | Packet<P>): Packet<P> {
    if (wire instanceof Packet) return wire;
    if (wire === null || typeof wire !== 'object' || !('payload' in wire) || typeof wire.traceId !== 'string' || !Array.isArray(wire.trace)) {
      throw new InvalidArgumentTypeError('wire', 'a packet in wire form ({ payload, traceId, trace, ... }, see Packet#toJSON)', wire);
    }
    return new Packet(wire.payload, {
      inputIndex: wire.inputIndex,
      partitionKey: wire.partitionKey,
      partitionStrategy: wire.partitionStrategy,
      traceId: wire.traceId,
      createdAt: wire.createdAt,
      trace: wire.trace,
    });
  }

  /** True when the packet has a partition key (`0` and `""` count). */
  isKeyed(): boolean {
    return this.partitionKey !== null;
  }

  /** A copy with another key (and, optionally, strategy). */
  updateKey(key: PartitionKey | null, strategy?: StrategyName | null): Packet<P> {
    const partitionKey = checkKey(key);
    const partitionStrategy = strategy === undefined ? this.partitionStrategy : strategy === null ? null : checkStrategy(strategy);
    return this.#copy(this.inputIndex, partitionKey, partitionStrategy, this.trace);
  }

  /** A copy carrying `other`'s partition key and strategy (e.g. a result keyed like its input). */
  inheritPartitionInfo(other: Packet): Packet<P> {
    if (!(other instanceof Packet)) throw new InvalidArgumentTypeError('other', 'a Packet', other);
    return this.#copy(this.inputIndex, other.partitionKey, other.partitionStrategy, this.trace);
  }

  /** A copy addressed to another input of the receiving operator. */
  withInputIndex(inputIndex: number): Packet<P> {
    if (inputIndex === this.inputIndex) return this;
    return this.#copy(checkInteger(inputIndex, 'inputIndex', 0), this.partitionKey, this.partitionStrategy, this.trace);
  }

  /** A copy with one more hop in its trace. */
  withHop(router: string, target: string, at = Date.now()): Packet<P> {
    const hop = checkHop({ router, target, at }, 'hop');
    return this.#copy(this.inputIndex, this.partitionKey, this.partitionStrategy, Object.freeze([...this.trace, hop]));
  }

  toJSON(): PacketWire<P> {
    return {
      payload: this.payload,
      inputIndex: this.inputIndex,
      partitionKey: this.partitionKey,
      partitionStrategy: this.partitionStrategy,
      traceId: this.traceId,
      createdAt: this.createdAt,
      trace: this.trace.map((h) => ({ ...h })),
    };
  }

  /** The shared traceId cell, made now if this packet has none yet (copies take it along). */
  #cell(): TraceIdCell {
    return (this.#id ??= { value: undefined });
  }

  #copy(inputIndex: number, partitionKey: PartitionKey | null, partitionStrategy: StrategyName | null, trace: readonly Hop[]): Packet<P> {
    return build({ payload: this.payload, inputIndex, partitionKey, partitionStrategy, createdAt: this.createdAt, trace, id: this.#cell() });
  }

  /** The traceId the wire form carries: when it exists already, or (made now) when there is a trace. */
  static #wireTraceId(p: Packet): string | undefined {
    return p.trace.length !== 0 ? p.traceId : p.#id?.value;
  }

  static {
    registerCodecExtension<Packet>({
      type: PACKET_EXTENSION_TYPE,
      Class: Packet,
      write: (p) => writeEnvelope(p.payload, p.inputIndex, p.partitionKey, p.partitionStrategy, p.createdAt, Packet.#wireTraceId(p), p.trace),
      read: (data) => {
        const f = readEnvelope(data);
        return build({
          payload: f.payload,
          inputIndex: f.inputIndex,
          partitionKey: f.partitionKey,
          partitionStrategy: f.partitionStrategy,
          createdAt: f.createdAt,
          trace: f.trace.length === 0 ? NO_HOPS : Object.freeze(f.trace),
          id: f.traceId === undefined ? undefined : { value: f.traceId },
        });
      },
      plain: (p) => p.toJSON(),
    });
  }
}
