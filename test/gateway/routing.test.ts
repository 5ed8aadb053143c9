/**
 * Routing pieces in-process: the RouteTable (built from ranges; overlapping, inverted and
 * malformed ranges refused at build time; binary-search lookup; unknown ids counted), the
 * InstanceRegistry (consistent hash of a session key, failover to the next healthy instance
 * and recovery, health checks on a timer), the RouteCache (hits, misses, TTL, invalidation by
 * registry changes) and the ServiceRouter composing them.
 */
import { describe, expect, it } from 'vitest';

import { InstanceRegistry, RouteCache, RouteTable, RouteTableError, ServiceInstance, ServiceRouter } from '../../lib/index';

const RANGES = [
  { start: 1000, end: 1999, service: 'logic' },
  { start: 2000, end: 2999, service: 'chat' },
  { start: 3000, end: 3999, service: 'fight' },
  { start: 9000, end: 9999, service: 'gateway' },
];

describe('RouteTable', () => {
  it('maps every id of a range, both ends included, to its service, and nothing else', () => {
    const t = new RouteTable(RANGES);
    expect([1000, 1500, 1999, 2000, 2999, 3000, 3999, 9000, 9999].map((id) => t.lookup(id))).toEqual([
      'logic', 'logic', 'logic', 'chat', 'chat', 'fight', 'fight', 'gateway', 'gateway',
    ]);
    expect([999, 4000, 8999, 10_000, -1].map((id) => t.lookup(id))).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(t.stats()).toEqual({ ranges: 4, lookups: 14, routing_failures: 5 });
    expect(() => t.resolve(5000)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_ROUTE', messageId: 5000 }));
    expect(t.stats().routing_failures).toBe(6);
    expect(new RouteTable([[1, 5, 'a']]).lookup(3)).toBe('a');
  });

  it('refuses overlapping, inverted and malformed ranges when it is built', () => {
    expect(() => new RouteTable([...RANGES, { start: 1999, end: 2000, service: 'x' }])).toThrow(RouteTableError);
    expect(() => new RouteTable([{ start: 10, end: 5, service: 'x' }])).toThrow(expect.objectContaining({ code: 'ERR_ROUTE_TABLE' }));
    expect(() => new RouteTable([{ start: 1.5, end: 5, service: 'x' }])).toThrow(expect.objectContaining({ code: 'ERR_ROUTE_TABLE' }));
    expect(() => new RouteTable([{ start: 1, end: 5, service: '' }])).toThrow(expect.objectContaining({ code: 'ERR_ROUTE_TABLE' }));
    expect(() => new RouteTable('x' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

describe('InstanceRegistry', () => {
  const make = (n: number, opts?: ConstructorParameters<typeof InstanceRegistry>[0]): InstanceRegistry => {
    const r = new InstanceRegistry(opts);
    for (let i = 0; i < n; i++) r.register(new ServiceInstance('chat', `chat-${i}`, '127.0.0.1', 7000 + i));
    return r;
  };

  it('defaults to a 30 s health check interval and picks the same instance for a key every time', () => {
    const r = make(3);
    expect(r.healthCheckIntervalMs).toBe(30_000);
    const first = r.select('chat', 'user-1').instanceId;
    for (let i = 0; i < 10; i++) expect(r.select('chat', 'user-1').instanceId).toBe(first);
  });

  it('fails over only the unhealthy instance\'s keys to healthy ones, and moves them back on recovery', () => {
    const r = make(4);
    const keys = Array.from({ length: 400 }, (_, i) => `user-${i}`);
    const before = new Map(keys.map((k) => [k, r.select('chat', k).instanceId]));
    const changes: string[] = [];
    r.on('change', (c) => changes.push(`${c.instanceId}:${c.change}`));
    r.setHealthy('chat', 'chat-1', false);
    for (const k of keys) {
      const now = r.select('chat', k).instanceId;
      if (before.get(k) === 'chat-1') expect(now).not.toBe('chat-1');
      else expect(now).toBe(before.get(k));
    }
    expect(r.stats().failovers).toBeGreaterThan(0);
    r.setHealthy('chat', 'chat-1', true);
    for (const k of keys) expect(r.select('chat', k).instanceId).toBe(before.get(k));
    expect(changes).toEqual(['chat-1:unhealthy', 'chat-1:healthy']);
  });

  it('throws ERR_NO_HEALTHY_INSTANCE when a service has none (or is unknown)', () => {
    const r = make(1);
    r.setHealthy('chat', 'chat-0', false);
    expect(() => r.select('chat', 'k')).toThrow(expect.objectContaining({ code: 'ERR_NO_HEALTHY_INSTANCE', service: 'chat' }));
    expect(() => r.select('nope', 'k')).toThrow(expect.objectContaining({ code: 'ERR_NO_HEALTHY_INSTANCE' }));
  });

  it('runs the health check on its timer and marks failing instances unhealthy (a throw counts as a failure)', async () => {
    let down = 'chat-2';
    const r = make(3, {
      healthCheckIntervalMs: 10,
      healthCheck: (i) => {
        if (i.instanceId === 'chat-0') throw new Error('boom');
        return i.instanceId !== down;
      },
    });
    r.start();
    try {
      await new Promise((res) => setTimeout(res, 60));
      expect(r.stats().services.chat).toEqual({ instances: 3, healthy: 1 });
      down = '';
      await r.checkNow();
      expect(r.stats().services.chat).toEqual({ instances: 3, healthy: 2 });
      expect(r.stats().health_checks).toBeGreaterThanOrEqual(6);
    } finally {
      r.stop();
    }
  });

  it('validates instances and options', () => {
    expect(() => new ServiceInstance('', 'a')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new ServiceInstance('s', 'a', 'h', 70_000)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new InstanceRegistry({ healthCheckIntervalMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new InstanceRegistry().register({} as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new InstanceRegistry().setHealthy('a', 'b', true)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_INSTANCE' }));
  });
});

describe('RouteCache and ServiceRouter', () => {
  it('counts hits and misses, expires entries after the TTL, and reports the hit rate', async () => {
    const c = new RouteCache({ ttlMs: 20 });
    const i = new ServiceInstance('chat', 'a');
    expect(c.get('chat', 'k')).toBeUndefined();
    c.set('chat', 'k', i);
    expect(c.get('chat', 'k')).toBe(i);
    expect(c.get('chat', 'k')).toBe(i);
    await new Promise((r) => setTimeout(r, 40));
    expect(c.get('chat', 'k')).toBeUndefined();
    expect(c.stats()).toMatchObject({ hits: 2, misses: 2, hit_rate: 0.5 });
  });

  it('routes ids to services and keys to instances through the cache, invalidated when an instance registers, deregisters or changes health', () => {
    const registry = new InstanceRegistry();
    registry.register(new ServiceInstance('chat', 'a'));
    registry.register(new ServiceInstance('chat', 'b'));
    const router = new ServiceRouter({ table: new RouteTable(RANGES), registry });
    const first = router.route(2001, 'user-9');
    expect(first.kind).toBe('BUSINESS');
    router.route(2001, 'user-9');
    expect(router.stats().cache).toMatchObject({ hits: 1, misses: 1 });
    const owner = first.kind === 'BUSINESS' ? first.instance.instanceId : '';
    registry.setHealthy('chat', owner, false);
    const moved = router.route(2001, 'user-9');
    expect(moved.kind === 'BUSINESS' && moved.instance.instanceId).not.toBe(owner);
    expect(router.stats().cache.invalidations).toBe(1);
    registry.setHealthy('chat', owner, true);
    registry.register(new ServiceInstance('chat', 'c'));
    registry.deregister('chat', 'c');
    expect(router.stats().cache.invalidations).toBe(4);
    expect(router.route(9001, 'user-9')).toEqual({ kind: 'GATEWAY', service: 'gateway' });
    expect(() => router.route(5000, 'user-9')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_ROUTE' }));
    expect(() => router.route(3000, 'user-9')).toThrow(expect.objectContaining({ code: 'ERR_NO_HEALTHY_INSTANCE' }));
    const s = router.stats();
    expect(s).toMatchObject({ total_routed: 4, routing_failures: 2, by_service: { chat: 3, gateway: 1 } });
    router.close();
  });
});
