/**
 * The service instance registry: instances per service, health checks on a timer (default every
 * 30 s), and instance choice by consistent hash of a session/user key on the router's HashRing.
 * An unhealthy instance's keys go to the next healthy instance clockwise on the ring (only its
 * keys move) and come back when it is healthy again. Every registration, deregistration and
 * health change emits 'change' (the route cache listens and invalidates).
 */
import { EventEmitter } from 'node:events';

import { InvalidArgumentTypeError } from '../errors';
import { HashRing, stableHash } from '../router/hashing';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { InvalidArgumentValueError } from '../errors';
import { RoutingError } from './errors';

/** One instance of a service (a value; its health is tracked by the registry). */
export class ServiceInstance {
  readonly service: string;
  readonly instanceId: string;
  readonly host: string;
  readonly port: number;
  /** Free-form data (e.g. the lanes' descriptor of a local worker). */
  readonly metadata: Readonly<Record<string, unknown>>;

  constructor(service: string, instanceId: string, host = '127.0.0.1', port = 0, metadata: Record<string, unknown> = {}) {
    for (const [name, v] of [['service', service], ['instanceId', instanceId], ['host', host]] as const) {
      if (typeof v !== 'string' || v.length === 0) throw new InvalidArgumentTypeError(name, 'a non-empty string', v);
    }
    this.service = service;
    this.instanceId = instanceId;
    this.host = host;
    this.port = checkInteger(port, 'port', 0, 65535);
    this.metadata = Object.freeze({ ...metadata });
  }

  /** `service/instanceId`, unique in a registry. */
  get key(): string {
    return `${this.service}/${this.instanceId}`;
  }
}

/** Says whether an instance is healthy (may be async; a throw or rejection counts as unhealthy). */
export type HealthCheck = (instance: ServiceInstance) => boolean | Promise<boolean>;

export interface InstanceRegistryOptions {
  /** How often health checks run (ms). Default 30 000. */
  healthCheckIntervalMs?: number;
  /** The check; default: every instance is healthy unless marked otherwise with setHealthy(). */
  healthCheck?: HealthCheck;
  /** Virtual nodes per instance on each service's ring. Default 160. */
  pointsPerInstance?: number;
}

export interface InstanceHealth {
  instance: ServiceInstance;
  healthy: boolean;
  lastCheckedAt: number | null;
  consecutiveFailures: number;
}

export interface RegistryStats {
  services: Record<string, { instances: number; healthy: number }>;
  health_checks: number;
  failovers: number;
  changes: number;
}

interface Entry extends InstanceHealth {}

interface Service {
  entries: Map<string, Entry>;
  ring: HashRing<Entry>;
}

export declare interface InstanceRegistry {
  on(event: 'change', listener: (info: { service: string; instanceId: string; change: 'registered' | 'deregistered' | 'healthy' | 'unhealthy' }) => void): this;
}

export class InstanceRegistry extends EventEmitter {
  readonly healthCheckIntervalMs: number;
  readonly #check: HealthCheck | undefined;
  readonly #points: number;
  readonly #services = new Map<string, Service>();
  #timer: NodeJS.Timeout | undefined;
  #checks = 0;
  #failovers = 0;
  #changes = 0;

  constructor(options?: InstanceRegistryOptions) {
    super();
    const o = checkOptions<InstanceRegistryOptions>(options);
    checkKnownKeys(o, ['healthCheckIntervalMs', 'healthCheck', 'pointsPerInstance']);
    this.healthCheckIntervalMs = o.healthCheckIntervalMs === undefined ? 30_000 : checkInteger(o.healthCheckIntervalMs, 'options.healthCheckIntervalMs', 1);
    if (o.healthCheck !== undefined && typeof o.healthCheck !== 'function') throw new InvalidArgumentTypeError('options.healthCheck', 'a function', o.healthCheck);
    this.#check = o.healthCheck;
    this.#points = o.pointsPerInstance === undefined ? 160 : checkInteger(o.pointsPerInstance, 'options.pointsPerInstance', 1, 10_000);
  }

  /** Adds an instance (healthy until a check says otherwise). Re-registering the same key replaces it. */
  register(instance: ServiceInstance): void {
    if (!(instance instanceof ServiceInstance)) throw new InvalidArgumentTypeError('instance', 'a ServiceInstance', instance);
    let svc = this.#services.get(instance.service);
    if (svc === undefined) {
      svc = { entries: new Map(), ring: new HashRing<Entry>([], (e) => e.instance.instanceId) };
      this.#services.set(instance.service, svc);
    }
    svc.entries.set(instance.instanceId, { instance, healthy: true, lastCheckedAt: null, consecutiveFailures: 0 });
    this.#rebuild(svc);
    this.#changed(instance, 'registered');
  }

  /** Removes an instance; returns whether it was registered. */
  deregister(service: string, instanceId: string): boolean {
    const svc = this.#services.get(service);
    const entry = svc?.entries.get(instanceId);
    if (svc === undefined || entry === undefined) return false;
    svc.entries.delete(instanceId);
    this.#rebuild(svc);
    this.#changed(entry.instance, 'deregistered');
    return true;
  }

  /** Marks an instance healthy or not (e.g. when its process exits); emits 'change' if it changed. */
  setHealthy(service: string, instanceId: string, healthy: boolean): void {
    const entry = this.#services.get(service)?.entries.get(instanceId);
    if (entry === undefined) throw new InvalidArgumentValueError(`no instance ${service}/${instanceId} is registered`, instanceId, 'ERR_UNKNOWN_INSTANCE');
    entry.lastCheckedAt = Date.now();
    entry.consecutiveFailures = healthy ? 0 : entry.consecutiveFailures + 1;
    if (entry.healthy === healthy) return;
    entry.healthy = healthy;
    this.#changed(entry.instance, healthy ? 'healthy' : 'unhealthy');
  }

  /** Every instance of a service (or of all services) with its health. */
  instances(service?: string): InstanceHealth[] {
    const svcs = service === undefined ? [...this.#services.values()] : [this.#services.get(service)].filter((s): s is Service => s !== undefined);
    return svcs.flatMap((s) => [...s.entries.values()].map((e) => ({ ...e })));
  }

  /**
   * The instance for `key` (a session or user id): its owner on the service's ring, or, when that
   * one is unhealthy, the next healthy instance clockwise. Throws RoutingError
   * ERR_NO_HEALTHY_INSTANCE when the service has none.
   */
  select(service: string, key: string): ServiceInstance {
    if (typeof key !== 'string') throw new InvalidArgumentTypeError('key', 'a string', key);
    const svc = this.#services.get(service);
    if (svc !== undefined) {
      const hash = stableHash(key);
      const chosen = svc.ring.lookup(hash, (e) => e.healthy);
      if (chosen !== undefined) {
        if (chosen !== svc.ring.lookup(hash)) this.#failovers++;
        return chosen.instance;
      }
    }
    throw new RoutingError('ERR_NO_HEALTHY_INSTANCE', `service ${JSON.stringify(service)} has no healthy instance`, { service });
  }

  /** Runs the health check on every instance now. */
  async checkNow(): Promise<void> {
    const check = this.#check;
    if (check === undefined) return;
    const all = [...this.#services.values()].flatMap((s) => [...s.entries.values()]);
    await Promise.all(
      all.map(async (e) => {
        let ok: boolean;
        try {
          ok = (await check(e.instance)) === true;
        } catch {
          ok = false;
        }
        this.#checks++;
        // It may have been deregistered meanwhile.
        if (this.#services.get(e.instance.service)?.entries.get(e.instance.instanceId) === e) this.setHealthy(e.instance.service, e.instance.instanceId, ok);
      }),
    );
  }

  /** Starts the periodic health checks (the timer does not keep the process alive). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => void this.checkNow(), this.healthCheckIntervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  stats(): RegistryStats {
    const services: RegistryStats['services'] = {};
    for (const [name, s] of this.#services) {
      const all = [...s.entries.values()];
      services[name] = { instances: all.length, healthy: all.filter((e) => e.healthy).length };
    }
    return { services, health_checks: this.#checks, failovers: this.#failovers, changes: this.#changes };
  }

  [Symbol.dispose](): void {
    this.stop();
  }

  #rebuild(svc: Service): void {
    svc.ring = new HashRing<Entry>([...svc.entries.values()], (e) => e.instance.instanceId, this.#points);
  }

  #changed(instance: ServiceInstance, change: 'registered' | 'deregistered' | 'healthy' | 'unhealthy'): void {
    this.#changes++;
    this.emit('change', { service: instance.service, instanceId: instance.instanceId, change });
  }
}
