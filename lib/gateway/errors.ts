/**
 * The gateway's typed errors. Each has a stable `code`; the gateway also sends these codes to
 * WebSocket clients in its error replies, so they are part of the wire protocol.
 */
import { SageQueueError } from '../errors';
import type { GatewayErrorCode } from '../errors';

export type { GatewayErrorCode } from '../errors';

export class GatewayError extends SageQueueError {
  declare readonly code: GatewayErrorCode;
  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A route table could not be built: overlapping, inverted or malformed ranges. */
export class RouteTableError extends GatewayError {
  readonly range: unknown;
  constructor(message: string, range: unknown) {
    super('ERR_ROUTE_TABLE', message);
    this.range = range;
  }
}

/** No service owns a message id, or a service has no healthy instance. */
export class RoutingError extends GatewayError {
  readonly messageId: number | undefined;
  readonly service: string | undefined;
  constructor(code: 'ERR_UNKNOWN_ROUTE' | 'ERR_NO_HEALTHY_INSTANCE', message: string, detail: { messageId?: number; service?: string }) {
    super(code, message);
    this.messageId = detail.messageId;
    this.service = detail.service;
  }
}

/** A NORMAL or LOW enqueue refused (or timed out waiting) while the queue is above its high watermark. */
export class BackpressureError extends GatewayError {
  readonly usageRatio: number;
  readonly timedOut: boolean;
  constructor(usageRatio: number, timedOut: boolean) {
    super(
      'ERR_BACKPRESSURE',
      `the queue is throttling NORMAL and LOW messages (usage ${(usageRatio * 100).toFixed(1)}%)` +
        (timedOut ? ' and did not fall below its low watermark in time' : '') +
        '; retry later or send with a higher priority',
    );
    this.usageRatio = usageRatio;
    this.timedOut = timedOut;
  }
}
