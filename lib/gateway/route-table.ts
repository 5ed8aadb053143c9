/**
 * RouteTable: message id ranges -> service names, compiled once into sorted arrays. Lookup is a
 * binary search (O(log n)). Overlapping, inverted or malformed ranges are refused at build time;
 * an id no range covers is a counted routing failure (`resolve` throws RoutingError).
 */
import { InvalidArgumentTypeError } from '../errors';
import { RouteTableError, RoutingError } from './errors';

/** One range, inclusive at both ends: `{ start: 1000, end: 1999, service: 'logic' }`. */
export interface RouteRange {
  start: number;
  end: number;
  service: string;
}

export interface RouteTableStats {
  ranges: number;
  lookups: number;
  routing_failures: number;
}

export class RouteTable {
  readonly #starts: Float64Array;
  readonly #ends: Float64Array;
  readonly #services: string[];
  #lookups = 0;
  #failures = 0;

  /** Builds a table; accepts `[start, end, service]` tuples too. */
  constructor(ranges: ReadonlyArray<RouteRange | readonly [number, number, string]>) {
    if (!Array.isArray(ranges)) throw new InvalidArgumentTypeError('ranges', 'an array of { start, end, service }', ranges);
    const list = ranges.map((r, i) => checkRange(r, i));
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1] as RouteRange;
      const cur = list[i] as RouteRange;
      if (cur.start <= prev.end) {
        throw new RouteTableError(
          `route ranges overlap: [${prev.start}, ${prev.end}] -> ${prev.service} and [${cur.start}, ${cur.end}] -> ${cur.service}`,
          cur,
        );
      }
    }
    this.#starts = Float64Array.from(list, (r) => r.start);
    this.#ends = Float64Array.from(list, (r) => r.end);
    this.#services = list.map((r) => r.service);
  }

  /** The ranges, sorted by start. */
  get ranges(): RouteRange[] {
    return this.#services.map((service, i) => ({ start: this.#starts[i] as number, end: this.#ends[i] as number, service }));
  }

  /** The service names, each once. */
  get services(): string[] {
    return [...new Set(this.#services)];
  }

  /** The service owning `id`, or undefined (counted as a failure). */
  lookup(id: number): string | undefined {
    this.#lookups++;
    const starts = this.#starts;
    let lo = 0;
    let hi = starts.length;
    // The last range whose start <= id.
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((starts[mid] as number) <= id) lo = mid + 1;
      else hi = mid;
    }
    const i = lo - 1;
    if (i >= 0 && id <= (this.#ends[i] as number)) return this.#services[i];
    this.#failures++;
    return undefined;
  }

  /** The service owning `id`; throws RoutingError ERR_UNKNOWN_ROUTE (counted) if none does. */
  resolve(id: number): string {
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new InvalidArgumentTypeError('id', 'an integer message id', id);
    const service = this.lookup(id);
    if (service === undefined) throw new RoutingError('ERR_UNKNOWN_ROUTE', `no service owns message id ${id}`, { messageId: id });
    return service;
  }

  stats(): RouteTableStats {
    return { ranges: this.#services.length, lookups: this.#lookups, routing_failures: this.#failures };
  }
}

function checkRange(r: unknown, i: number): RouteRange {
  const tuple = Array.isArray(r);
  const start = tuple ? (r as unknown[])[0] : (r as RouteRange | null)?.start;
  const end = tuple ? (r as unknown[])[1] : (r as RouteRange | null)?.end;
  const service = tuple ? (r as unknown[])[2] : (r as RouteRange | null)?.service;
  if (r === null || typeof r !== 'object') throw new RouteTableError(`ranges[${i}] must be { start, end, service } or [start, end, service]`, r);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) throw new RouteTableError(`ranges[${i}]: start and end must be integers`, r);
  if ((start as number) > (end as number)) throw new RouteTableError(`ranges[${i}] is inverted: start ${String(start)} > end ${String(end)}`, r);
  if (typeof service !== 'string' || service.length === 0) throw new RouteTableError(`ranges[${i}]: service must be a non-empty string`, r);
  return { start: start as number, end: end as number, service };
}
