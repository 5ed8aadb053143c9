/**
 * RouteCache: remembers which instance a (service, key) pair was routed to, with LRU eviction
 * and a TTL (lru-cache). Hit/miss counts and hit rate. `attach(registry)` invalidates a
 * service's entries whenever one of its instances is registered, deregistered or changes health.
 */
import { LRUCache } from 'lru-cache';

import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { InstanceRegistry, ServiceInstance } from './instance-registry';

export interface RouteCacheOptions {
  /** Entries kept per service. Default 10 000. */
  maxEntries?: number;
  /** Entry lifetime in ms. Default 60 000. */
  ttlMs?: number;
}

export interface RouteCacheStats {
  size: number;
  hits: number;
  misses: number;
  hit_rate: number;
  invalidations: number;
}

export class RouteCache {
  readonly maxEntries: number;
  readonly ttlMs: number;
  readonly #byService = new Map<string, LRUCache<string, ServiceInstance>>();
  #hits = 0;
  #misses = 0;
  #invalidations = 0;

  constructor(options?: RouteCacheOptions) {
    const o = checkOptions<RouteCacheOptions>(options);
    checkKnownKeys(o, ['maxEntries', 'ttlMs']);
    this.maxEntries = o.maxEntries === undefined ? 10_000 : checkInteger(o.maxEntries, 'options.maxEntries', 1);
    this.ttlMs = o.ttlMs === undefined ? 60_000 : checkInteger(o.ttlMs, 'options.ttlMs', 1);
  }

  /** The cached instance of (service, key), counting a hit or a miss. */
  get(service: string, key: string): ServiceInstance | undefined {
    const found = this.#byService.get(service)?.get(key);
    if (found === undefined) this.#misses++;
    else this.#hits++;
    return found;
  }

  set(service: string, key: string, instance: ServiceInstance): void {
    let cache = this.#byService.get(service);
    if (cache === undefined) {
      cache = new LRUCache<string, ServiceInstance>({ max: this.maxEntries, ttl: this.ttlMs });
      this.#byService.set(service, cache);
    }
    cache.set(key, instance);
  }

  /** Drops the entries of one service, or of all. */
  invalidate(service?: string): void {
    this.#invalidations++;
    if (service === undefined) this.#byService.clear();
    else this.#byService.delete(service);
  }

  /** Invalidates a service's entries on every change the registry reports. Returns a detach function. */
  attach(registry: InstanceRegistry): () => void {
    const onChange = ({ service }: { service: string }): void => this.invalidate(service);
    registry.on('change', onChange);
    return () => registry.off('change', onChange);
  }

  get size(): number {
    let n = 0;
    for (const c of this.#byService.values()) n += c.size;
    return n;
  }

  stats(): RouteCacheStats {
    const total = this.#hits + this.#misses;
    return { size: this.size, hits: this.#hits, misses: this.#misses, hit_rate: total === 0 ? 0 : this.#hits / total, invalidations: this.#invalidations };
  }
}
