/**
 * The gateway's wire messages: what clients send (`{ id, type?, priority?, msgId, session,
 * body }` as a JSON text frame), how a frame is checked, and the replies the gateway sends.
 */
import { GatewayError } from './errors';
import type { GatewayErrorCode } from './errors';
import { MessagePriority, isPriority } from './priorities';

/** Message types the gateway answers itself. */
export const SYSTEM_TYPES = Object.freeze(['ping', 'heartbeat', 'auth'] as const);
export type SystemType = (typeof SYSTEM_TYPES)[number];

export type MessageKind = 'SYSTEM' | 'BUSINESS' | 'GATEWAY';

/** A checked client message. */
export interface GatewayMessage {
  /** Routing id (integer); required unless `type` is a system type. */
  id?: number;
  type?: string;
  priority: MessagePriority;
  /** The client's id for this message (string or number): de-duplication and reply correlation. */
  msgId?: string | number;
  /** Session / user key: the consistent-hash key choosing the service instance. */
  session?: string;
  body?: unknown;
}

/** What the gateway sends back (JSON text frames). */
export type GatewayReply =
  | { type: 'pong'; msgId?: string | number; t: number }
  | { type: 'heartbeat_ack'; msgId?: string | number; t: number }
  | { type: 'auth_ok'; msgId?: string | number; principal: string }
  | { type: 'gateway'; id: number; msgId?: string | number; body: unknown }
  | { type: 'reply'; id: number; msgId?: string | number; service: string; instance: string; body: unknown }
  | { type: 'error'; code: GatewayErrorCode; message: string; msgId?: string | number; id?: number };

export interface FrameLimits {
  maxFrameBytes: number;
  maxMsgIdLength: number;
  maxSessionLength: number;
}

const bad = (code: GatewayErrorCode, message: string): GatewayError => new GatewayError(code, message);

/** The `msgId` of a frame if it can be read (so an error reply can carry it), else undefined. */
export function peekMsgId(value: unknown): string | number | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const m = (value as { msgId?: unknown }).msgId;
  return (typeof m === 'string' && m.length <= 128) || (typeof m === 'number' && Number.isFinite(m)) ? m : undefined;
}

/**
 * Checks one frame. Throws GatewayError: ERR_BAD_FRAME (binary, not JSON, not an object),
 * ERR_FRAME_TOO_LARGE, ERR_BAD_MESSAGE (a missing or wrongly typed field), ERR_UNKNOWN_PRIORITY.
 * On a parse success the raw object is returned beside the error through `parsed` for error replies.
 */
export function parseFrame(data: string | Buffer, isBinary: boolean, limits: FrameLimits, parsed: { raw?: unknown } = {}): GatewayMessage {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (size > limits.maxFrameBytes) throw bad('ERR_FRAME_TOO_LARGE', `frame of ${size} bytes exceeds the limit of ${limits.maxFrameBytes} bytes`);
  if (isBinary) throw bad('ERR_BAD_FRAME', 'binary frames are not accepted: send JSON text');
  let raw: unknown;
  try {
    raw = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    throw bad('ERR_BAD_FRAME', 'the frame is not valid JSON');
  }
  parsed.raw = raw;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('ERR_BAD_FRAME', 'a message must be a JSON object');
  const m = raw as Record<string, unknown>;
  const out: GatewayMessage = { priority: MessagePriority.NORMAL };
  if (m.type !== undefined) {
    if (typeof m.type !== 'string' || m.type.length === 0 || m.type.length > 64) throw bad('ERR_BAD_MESSAGE', 'type must be a string of 1-64 characters');
    out.type = m.type;
  }
  const system = out.type !== undefined && (SYSTEM_TYPES as readonly string[]).includes(out.type);
  if (m.id !== undefined || !system) {
    if (typeof m.id !== 'number' || !Number.isSafeInteger(m.id)) throw bad('ERR_BAD_MESSAGE', 'id must be an integer message id');
    out.id = m.id;
  }
  if (m.priority !== undefined) {
    const p = typeof m.priority === 'string' ? (MessagePriority as Record<string, number>)[m.priority.toUpperCase()] : m.priority;
    if (!isPriority(p)) throw bad('ERR_UNKNOWN_PRIORITY', `priority must be 0-3 or CRITICAL, HIGH, NORMAL, LOW; received ${JSON.stringify(m.priority)}`);
    out.priority = p;
  }
  if (m.msgId !== undefined) {
    const ok = (typeof m.msgId === 'string' && m.msgId.length > 0 && m.msgId.length <= limits.maxMsgIdLength) || (typeof m.msgId === 'number' && Number.isFinite(m.msgId));
    if (!ok) throw bad('ERR_BAD_MESSAGE', `msgId must be a number or a string of 1-${limits.maxMsgIdLength} characters`);
    out.msgId = m.msgId as string | number;
  } else if (!system) {
    throw bad('ERR_BAD_MESSAGE', 'msgId is required');
  }
  if (m.session !== undefined) {
    if (typeof m.session !== 'string' || m.session.length === 0 || m.session.length > limits.maxSessionLength) {
      throw bad('ERR_BAD_MESSAGE', `session must be a string of 1-${limits.maxSessionLength} characters`);
    }
    out.session = m.session;
  } else if (!system) {
    throw bad('ERR_BAD_MESSAGE', 'session is required');
  }
  if (m.body !== undefined) out.body = m.body;
  return out;
}

/** The error reply for an error (GatewayError codes are kept; anything else is ERR_SERVICE_ERROR). */
export function errorReply(error: unknown, msgId?: string | number, id?: number): GatewayReply {
  const code = error instanceof GatewayError ? error.code : 'ERR_SERVICE_ERROR';
  const message = error instanceof Error ? error.message : String(error);
  const reply: GatewayReply = { type: 'error', code, message };
  if (msgId !== undefined) reply.msgId = msgId;
  if (id !== undefined) reply.id = id;
  return reply;
}
