/**
 * UnifiedMessageHandler in-process (the ws transport has its own test): SYSTEM messages
 * answered by the handler, auth through the pluggable verifier, business messages refused
 * before auth, GATEWAY-range ids answered, unknown ids and every kind of malformed frame turned
 * into an error reply with a code (counted), and dispatch errors reported, never thrown.
 * Also the standalone BackpressureController and MessageDeduplicator.
 */
import { describe, expect, it } from 'vitest';

import {
  BackpressureController, GatewayError, InstanceRegistry, MessageDeduplicator, RouteTable, ServiceInstance, ServiceRouter, UnifiedMessageHandler,
} from '../../lib/index';
import type { GatewayConnection, GatewayReply } from '../../lib/index';

function setup(dispatchError?: Error) {
  const registry = new InstanceRegistry();
  registry.register(new ServiceInstance('chat', 'chat-0'));
  const router = new ServiceRouter({ table: new RouteTable([[2000, 2999, 'chat'], [9000, 9999, 'gateway'], [3000, 3999, 'fight']]), registry });
  const dispatched: unknown[] = [];
  const handler = new UnifiedMessageHandler({
    router,
    verifyAuth: (token) => (token === 'secret' ? 'alice' : false),
    dispatch: (m, instance) => {
      if (dispatchError) throw dispatchError;
      dispatched.push({ id: m.id, instance: instance.instanceId });
    },
  });
  const replies: GatewayReply[] = [];
  const conn: GatewayConnection = { id: 'c1', principal: null, send: (r) => void replies.push(r) };
  const send = (frame: unknown, binary = false) => handler.handle(conn, typeof frame === 'string' || Buffer.isBuffer(frame) ? (frame as string) : JSON.stringify(frame), binary);
  return { handler, replies, conn, send, dispatched };
}

describe('UnifiedMessageHandler', () => {
  it('answers ping and heartbeat itself, authenticates with the verifier, and refuses business messages before auth', async () => {
    const { replies, send, dispatched, conn } = setup();
    await send({ type: 'ping', msgId: 1 });
    await send({ type: 'heartbeat' });
    await send({ id: 2001, msgId: 'a', session: 's' });
    await send({ type: 'auth', msgId: 2, body: { token: 'wrong' } });
    await send({ type: 'auth', msgId: 3, body: { token: 'secret' } });
    await send({ id: 2001, msgId: 'b', session: 's' });
    expect(replies.map((r) => (r.type === 'error' ? `error:${r.code}` : r.type))).toEqual([
      'pong', 'heartbeat_ack', 'error:ERR_NOT_AUTHENTICATED', 'error:ERR_AUTH_FAILED', 'auth_ok',
    ]);
    expect(conn.principal).toBe('alice');
    expect(dispatched).toEqual([{ id: 2001, instance: 'chat-0' }]);
  });

  it('answers GATEWAY-range ids, and reports unknown ids and services without instances as errors', async () => {
    const { replies, send, conn, handler } = setup();
    conn.principal = 'alice';
    await send({ id: 9001, msgId: 'g', session: 's', body: 1 });
    await send({ id: 5000, msgId: 'u', session: 's' });
    await send({ id: 3000, msgId: 'f', session: 's' });
    expect(replies).toEqual([
      { type: 'gateway', id: 9001, msgId: 'g', body: { echo: 1 } },
      expect.objectContaining({ type: 'error', code: 'ERR_UNKNOWN_ROUTE', msgId: 'u', id: 5000 }),
      expect.objectContaining({ type: 'error', code: 'ERR_NO_HEALTHY_INSTANCE', msgId: 'f' }),
    ]);
    expect(handler.stats().by_kind).toEqual({ SYSTEM: 0, BUSINESS: 2, GATEWAY: 1 });
  });

  it('turns every kind of malformed frame into an error reply with a code, counted by code', async () => {
    const { replies, send, conn, handler } = setup();
    conn.principal = 'alice';
    await send('not json');
    await send(Buffer.from([1, 2, 3]), true);
    await send('[1,2]');
    await send('null');
    await send('x'.repeat(70_000));
    await send({ msgId: 'm', session: 's' }); // no id
    await send({ id: '2001', msgId: 'm', session: 's' });
    await send({ id: 2001, session: 's' }); // no msgId
    await send({ id: 2001, msgId: 'm' }); // no session
    await send({ id: 2001, msgId: 'm', session: 's', priority: 9 });
    await send({ id: 2001, msgId: 'm', session: 's', priority: 'urgent' });
    await send({ type: 5, id: 2001, msgId: 'm', session: 's' });
    const codes = replies.map((r) => (r.type === 'error' ? r.code : r.type));
    expect(codes).toEqual([
      'ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_FRAME_TOO_LARGE', 'ERR_BAD_MESSAGE', 'ERR_BAD_MESSAGE',
      'ERR_BAD_MESSAGE', 'ERR_BAD_MESSAGE', 'ERR_UNKNOWN_PRIORITY', 'ERR_UNKNOWN_PRIORITY', 'ERR_BAD_MESSAGE',
    ]);
    expect(replies[9]).toMatchObject({ msgId: 'm' }); // the reply carries the msgId when it could be read
    expect(handler.stats()).toMatchObject({ received: 12, errors: 12, errors_by_code: { ERR_BAD_FRAME: 4, ERR_FRAME_TOO_LARGE: 1, ERR_BAD_MESSAGE: 5, ERR_UNKNOWN_PRIORITY: 2 } });
  });

  it('reports a dispatch failure to the client instead of throwing', async () => {
    const { replies, send, conn } = setup(new GatewayError('ERR_BACKPRESSURE', 'busy'));
    conn.principal = 'alice';
    await expect(send({ id: 2001, msgId: 'm', session: 's' })).resolves.toBeUndefined();
    expect(replies).toEqual([expect.objectContaining({ type: 'error', code: 'ERR_BACKPRESSURE', msgId: 'm' })]);
  });
});

describe('BackpressureController', () => {
  it('throttles at the high watermark and releases only below the low one', () => {
    const b = new BackpressureController({ highWatermark: 0.8, lowWatermark: 0.5 });
    expect([0.5, 0.79, 0.8, 0.6, 0.5, 0.49, 0.7].map((u) => b.update(u))).toEqual([false, false, true, true, true, false, false]);
    expect(b.stats()).toEqual({ usage_ratio: 0.7, is_throttling: false, high_watermark: 0.8, low_watermark: 0.5, throttle_events: 1 });
    expect(() => new BackpressureController({ highWatermark: 2 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('MessageDeduplicator', () => {
  it('drops ids seen within the window, accepts them after it, and keeps at most maxEntries ids', () => {
    let now = 0;
    const d = new MessageDeduplicator({ windowMs: 100, maxEntries: 3, now: () => now });
    expect(['a', 'a', 'b'].map((id) => d.isDuplicate(id))).toEqual([false, true, false]);
    now = 100;
    expect(d.isDuplicate('a')).toBe(false);
    for (const id of ['x', 'y', 'z', 'w']) d.isDuplicate(id);
    expect(d.size).toBe(3);
    expect(d.stats()).toMatchObject({ duplicate_count: 1, tracked: 3, evicted_count: 2 });
    expect(() => d.isDuplicate(5 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
