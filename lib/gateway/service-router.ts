/**
 * ServiceRouter: message id -> service (RouteTable) -> instance (InstanceRegistry, by consistent
 * hash of the session key) with a RouteCache in front of the registry. The cache is invalidated
 * by the registry's changes, so a failover or recovery takes effect on the next message.
 */
import { InvalidArgumentTypeError } from '../errors';
import { checkKnownKeys, checkOptions } from '../validate';
import { RoutingError } from './errors';
import type { InstanceRegistry, RegistryStats, ServiceInstance } from './instance-registry';
import { RouteCache } from './route-cache';
import type { RouteCacheOptions, RouteCacheStats } from './route-cache';
import type { RouteTable, RouteTableStats } from './route-table';

export interface ServiceRouterOptions {
  table: RouteTable;
  registry: InstanceRegistry;
  /** A RouteCache, or its options. Default: a RouteCache with its defaults. */
  cache?: RouteCache | RouteCacheOptions;
  /** The service name of the gateway's own id range. Default 'gateway'. */
  gatewayService?: string;
}

export type RouteDecision = { kind: 'GATEWAY'; service: string } | { kind: 'BUSINESS'; service: string; instance: ServiceInstance };

/** Routing stats in the design's shape (GET /routing/stats). */
export interface RoutingStats {
  total_routed: number;
  routing_failures: number;
  by_service: Record<string, number>;
  route_table: RouteTableStats;
  cache: RouteCacheStats;
  registry: RegistryStats;
}

export class ServiceRouter {
  readonly table: RouteTable;
  readonly registry: InstanceRegistry;
  readonly cache: RouteCache;
  readonly gatewayService: string;
  readonly #detach: () => void;
  #routed = 0;
  #failures = 0;
  readonly #byService = new Map<string, number>();

  constructor(options: ServiceRouterOptions) {
    const o = checkOptions<ServiceRouterOptions>(options);
    checkKnownKeys(o, ['table', 'registry', 'cache', 'gatewayService']);
    if (o.table === undefined || typeof (o.table as RouteTable).resolve !== 'function') throw new InvalidArgumentTypeError('options.table', 'a RouteTable', o.table);
    if (o.registry === undefined || typeof (o.registry as InstanceRegistry).select !== 'function') throw new InvalidArgumentTypeError('options.registry', 'an InstanceRegistry', o.registry);
    this.table = o.table;
    this.registry = o.registry;
    this.cache = o.cache instanceof RouteCache ? o.cache : new RouteCache(o.cache);
    this.gatewayService = o.gatewayService ?? 'gateway';
    this.#detach = this.cache.attach(this.registry);
  }

  /** Where message `id` from session `key` goes. Throws RoutingError (counted) when nowhere. */
  route(id: number, key: string): RouteDecision {
    let service: string;
    try {
      service = this.table.resolve(id);
      if (service === this.gatewayService) {
        this.#count(service);
        return { kind: 'GATEWAY', service };
      }
      let instance = this.cache.get(service, key);
      if (instance === undefined) {
        instance = this.registry.select(service, key);
        this.cache.set(service, key, instance);
      }
      this.#count(service);
      return { kind: 'BUSINESS', service, instance };
    } catch (e) {
      if (e instanceof RoutingError) this.#failures++;
      throw e;
    }
  }

  stats(): RoutingStats {
    return {
      total_routed: this.#routed,
      routing_failures: this.#failures,
      by_service: Object.fromEntries(this.#byService),
      route_table: this.table.stats(),
      cache: this.cache.stats(),
      registry: this.registry.stats(),
    };
  }

  /** Stops listening to the registry. */
  close(): void {
    this.#detach();
  }

  #count(service: string): void {
    this.#routed++;
    this.#byService.set(service, (this.#byService.get(service) ?? 0) + 1);
  }
}
