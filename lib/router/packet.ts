/**
 * Packet: an immutable routed message. Every "change" returns a new packet; the trace of hops
 * grows as routers deliver it.
 */
import { randomUUID } from 'node:crypto';

import { InvalidArgumentTypeError } from '../errors';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { PartitionKey } from './hashing';
import { checkStrategy } from './strategy-names';
import type { StrategyName } from './strategy-names';

/** One delivery of the packet: which router sent it to which target, and when (ms epoch). */
export interface Hop {
  readonly router: string;
  readonly target: string;
  readonly at: number;
}

export interface PacketOptions {
  /** Which input of the receiving operator the packet is for. Default 0. */
  inputIndex?: number;
  /** The key keyed strategies partition by. `0` and `""` are keys too. */
  partitionKey?: PartitionKey | null;
  /** Overrides the router's strategy for this packet. */
  partitionStrategy?: StrategyName | null;
  /** Correlates the packet across hops; a UUID when absent. */
  traceId?: string;
  /** Creation time, ms since the epoch; now when absent. */
  createdAt?: number;
  trace?: readonly Hop[];
}

/** The plain-object form a packet takes through a serialising queue (see Packet.from). */
export interface PacketWire<P = unknown> {
  payload: P;
  inputIndex: number;
  partitionKey: PartitionKey | null;
  partitionStrategy: StrategyName | null;
  traceId: string;
  createdAt: number;
  trace: Hop[];
}

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
  return { router: h.router, target: h.target, at: h.at };
}

export class Packet<P = unknown> {
  readonly payload: P;
  readonly inputIndex: number;
  readonly partitionKey: PartitionKey | null;
  readonly partitionStrategy: StrategyName | null;
  readonly traceId: string;
  readonly createdAt: number;
  readonly trace: readonly Hop[];

  constructor(payload: P, options?: PacketOptions) {
    const o = checkOptions<PacketOptions>(options);
    checkKnownKeys(o, ['inputIndex', 'partitionKey', 'partitionStrategy', 'traceId', 'createdAt', 'trace']);
    this.payload = payload;
    this.inputIndex = o.inputIndex === undefined ? 0 : checkInteger(o.inputIndex, 'inputIndex', 0);
    this.partitionKey = checkKey(o.partitionKey);
    this.partitionStrategy = o.partitionStrategy === undefined || o.partitionStrategy === null ? null : checkStrategy(o.partitionStrategy);
    if (o.traceId !== undefined && (typeof o.traceId !== 'string' || o.traceId.length === 0)) {
      throw new InvalidArgumentTypeError('traceId', 'a non-empty string', o.traceId);
    }
    this.traceId = o.traceId ?? randomUUID();
    if (o.createdAt !== undefined && (typeof o.createdAt !== 'number' || !Number.isFinite(o.createdAt))) {
      throw new InvalidArgumentTypeError('createdAt', 'a finite number of ms since the epoch', o.createdAt);
    }
    this.createdAt = o.createdAt ?? Date.now();
    if (o.trace !== undefined && !Array.isArray(o.trace)) throw new InvalidArgumentTypeError('trace', 'an array of hops', o.trace);
    this.trace = Object.freeze((o.trace ?? []).map((h, i) => Object.freeze(checkHop(h, `trace[${i}]`))));
    Object.freeze(this);
  }

  /** Revives a packet from its wire form (what a consumer of a serialising queue receives). */
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
    return this.#with({ partitionKey: key, partitionStrategy: strategy === undefined ? this.partitionStrategy : strategy });
  }

  /** A copy carrying `other`'s partition key and strategy (e.g. a result keyed like its input). */
  inheritPartitionInfo(other: Packet): Packet<P> {
    if (!(other instanceof Packet)) throw new InvalidArgumentTypeError('other', 'a Packet', other);
    return this.#with({ partitionKey: other.partitionKey, partitionStrategy: other.partitionStrategy });
  }

  /** A copy addressed to another input of the receiving operator. */
  withInputIndex(inputIndex: number): Packet<P> {
    return inputIndex === this.inputIndex ? this : this.#with({ inputIndex });
  }

  /** A copy with one more hop in its trace. */
  withHop(router: string, target: string, at = Date.now()): Packet<P> {
    return this.#with({ trace: [...this.trace, { router, target, at }] });
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

  #with(changes: PacketOptions): Packet<P> {
    return new Packet(this.payload, {
      inputIndex: this.inputIndex,
      partitionKey: this.partitionKey,
      partitionStrategy: this.partitionStrategy,
      traceId: this.traceId,
      createdAt: this.createdAt,
      trace: this.trace,
      ...changes,
    });
  }
}
