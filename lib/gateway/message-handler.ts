/**
 * UnifiedMessageHandler: every frame a client sends goes through `handle()`, which never throws:
 * it classifies the message as SYSTEM (`ping`, `heartbeat`, `auth`: answered here), GATEWAY (an
 * id in the gateway's own range: answered by `handleGateway`) or BUSINESS (an id in a service's
 * range: routed, then handed to `dispatch`), and turns every failure — a malformed frame, an
 * unknown id, a session that has not authenticated, a dispatch error — into an error reply with
 * a code, counted by code.
 */
import { InvalidArgumentTypeError } from '../errors';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { GatewayError } from './errors';
import { errorReply, parseFrame, peekMsgId } from './message';
import type { FrameLimits, GatewayMessage, GatewayReply, MessageKind } from './message';
import type { ServiceInstance } from './instance-registry';
import type { ServiceRouter } from './service-router';

/** One client connection as the handler sees it. */
export interface GatewayConnection {
  /** Unique per gateway process. */
  readonly id: string;
  /** Set by a successful `auth`. */
  principal: string | null;
  send(reply: GatewayReply): void;
}

/** Checks an auth token: returns the principal (e.g. a user name), or false/null to refuse. */
export type AuthVerifier = (token: unknown, connection: GatewayConnection) => string | false | null | Promise<string | false | null>;

export interface BusinessMessage extends GatewayMessage {
  id: number;
  session: string;
  msgId: string | number;
}

export interface UnifiedMessageHandlerOptions {
  router: ServiceRouter;
  verifyAuth: AuthVerifier;
  /**
   * Sends a routed business message on its way (throw a GatewayError to report a failure to the
   * client). `frame` is the frame as received (checked: `message` was read from it), for a
   * dispatch that forwards the client's bytes as they are instead of encoding `message` again.
   */
  dispatch: (message: BusinessMessage, instance: ServiceInstance, connection: GatewayConnection, frame: string | Buffer) => void | Promise<void>;
  /** Answers a GATEWAY message (the reply's body). Default: `{ echo: body }`. */
  handleGateway?: (message: GatewayMessage, connection: GatewayConnection) => unknown;
  /** Business and gateway messages need a prior `auth`. Default true. */
  requireAuth?: boolean;
  /** Largest frame in bytes. Default 65 536. */
  maxFrameBytes?: number;
}

export interface HandlerStats {
  received: number;
  by_kind: Record<MessageKind, number>;
  errors: number;
  errors_by_code: Record<string, number>;
}

export class UnifiedMessageHandler {
  readonly #o: Required<Omit<UnifiedMessageHandlerOptions, 'handleGateway'>> & Pick<UnifiedMessageHandlerOptions, 'handleGateway'>;
  readonly #limits: FrameLimits;
  #received = 0;
  readonly #byKind: Record<MessageKind, number> = { SYSTEM: 0, BUSINESS: 0, GATEWAY: 0 };
  #errors = 0;
  readonly #errorsByCode = new Map<string, number>();

  constructor(options: UnifiedMessageHandlerOptions) {
    const o = checkOptions<UnifiedMessageHandlerOptions>(options);
    checkKnownKeys(o, ['router', 'verifyAuth', 'dispatch', 'handleGateway', 'requireAuth', 'maxFrameBytes']);
    if (o.router === undefined || typeof o.router.route !== 'function') throw new InvalidArgumentTypeError('options.router', 'a ServiceRouter', o.router);
    for (const k of ['verifyAuth', 'dispatch'] as const) if (typeof o[k] !== 'function') throw new InvalidArgumentTypeError(`options.${k}`, 'a function', o[k]);
    if (o.handleGateway !== undefined && typeof o.handleGateway !== 'function') throw new InvalidArgumentTypeError('options.handleGateway', 'a function', o.handleGateway);
    const maxFrameBytes = o.maxFrameBytes === undefined ? 65_536 : checkInteger(o.maxFrameBytes, 'options.maxFrameBytes', 64, 64 << 20);
    this.#o = { ...(o as UnifiedMessageHandlerOptions), requireAuth: o.requireAuth ?? true, maxFrameBytes };
    this.#limits = { maxFrameBytes, maxMsgIdLength: 128, maxSessionLength: 256 };
  }

  get maxFrameBytes(): number {
    return this.#o.maxFrameBytes;
  }

  /** Classifies a checked message. */
  classify(message: GatewayMessage): MessageKind {
    if (message.type === 'ping' || message.type === 'heartbeat' || message.type === 'auth') return 'SYSTEM';
    if (message.id !== undefined && this.#o.router.table.lookup(message.id) === this.#o.router.gatewayService) return 'GATEWAY';
    return 'BUSINESS';
  }

  /** Handles one frame. Never throws: failures become error replies on `connection`. */
  async handle(connection: GatewayConnection, data: string | Buffer, isBinary = false): Promise<void> {
    this.#received++;
    const parsed: { raw?: unknown } = {};
    let message: GatewayMessage | undefined;
    try {
      message = parseFrame(data, isBinary, this.#limits, parsed);
      await this.#handle(connection, message, data);
    } catch (e) {
      this.#error(connection, e, message?.msgId ?? peekMsgId(parsed.raw), message?.id);
    }
  }

  /** Sends an error reply (and counts it): for failures found after dispatch (e.g. a duplicate). */
  reportError(connection: GatewayConnection, error: unknown, msgId?: string | number, id?: number): void {
    this.#error(connection, error, msgId, id);
  }

  stats(): HandlerStats {
    return { received: this.#received, by_kind: { ...this.#byKind }, errors: this.#errors, errors_by_code: Object.fromEntries(this.#errorsByCode) };
  }

  async #handle(connection: GatewayConnection, message: GatewayMessage, frame: string | Buffer): Promise<void> {
    const kind = this.classify(message);
    this.#byKind[kind]++;
    if (kind === 'SYSTEM') return this.#system(connection, message);
    if (this.#o.requireAuth && connection.principal === null) {
      throw new GatewayError('ERR_NOT_AUTHENTICATED', 'send { type: "auth", body: { token } } before business messages');
    }
    const m = message as BusinessMessage;
    const route = this.#o.router.route(m.id, m.session);
    if (route.kind === 'GATEWAY') {
      const body = this.#o.handleGateway === undefined ? { echo: m.body ?? null } : await this.#o.handleGateway(m, connection);
      const reply: GatewayReply = { type: 'gateway', id: m.id, body };
      if (m.msgId !== undefined) reply.msgId = m.msgId;
      connection.send(reply);
      return;
    }
    await this.#o.dispatch(m, route.instance, connection, frame);
  }

  async #system(connection: GatewayConnection, m: GatewayMessage): Promise<void> {
    const withId = <R extends GatewayReply>(r: R): R => (m.msgId === undefined ? r : { ...r, msgId: m.msgId });
    if (m.type === 'ping') return connection.send(withId({ type: 'pong', t: Date.now() }));
    if (m.type === 'heartbeat') return connection.send(withId({ type: 'heartbeat_ack', t: Date.now() }));
    const body = m.body as { token?: unknown } | undefined;
    let principal: string | false | null = null;
    try {
      principal = await this.#o.verifyAuth(body?.token, connection);
    } catch {
      principal = null;
    }
    if (typeof principal !== 'string' || principal.length === 0) throw new GatewayError('ERR_AUTH_FAILED', 'authentication failed: the token was refused');
    connection.principal = principal;
    connection.send(withId({ type: 'auth_ok', principal }));
  }

  #error(connection: GatewayConnection, error: unknown, msgId?: string | number, id?: number): void {
    const reply = errorReply(error, msgId, id);
    this.#errors++;
    const code = (reply as { code: string }).code;
    this.#errorsByCode.set(code, (this.#errorsByCode.get(code) ?? 0) + 1);
    try {
      connection.send(reply);
    } catch {
      // the connection is gone: nothing to tell
    }
  }
}
