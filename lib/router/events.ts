/**
 * What a router tells its listeners (RouterEvents: the typed event map behind BaseRouter's on /
 * once / off), and the sink the delivery policy reports through. Data only.
 *
 * Listeners run synchronously inside the delivery; an exception a listener throws is rethrown
 * on the next tick (an 'uncaughtException'), never into the delivery, so the router's accounting
 * (sent = delivered + deadLettered + failed) holds whatever listeners do.
 */
import type { DeliveryFault } from './reports';
import type { StrategyName } from './strategy-names';

/** A copy's attempt failed by the target's fault; the copy is retried after `delayMs`. */
export interface RetryEvent {
  router: string;
  traceId: string;
  broadcastIndex: number;
  /** The target that failed the attempt. */
  target: string;
  parallelIndex: number;
  /** The attempt that failed (1 = the first). */
  attempt: number;
  /** The jittered backoff before the next attempt. */
  delayMs: number;
  reason: string;
}

/** A target was ejected (consecutive failures, or a failed probe). */
export interface EjectEvent {
  router: string;
  target: string;
  broadcastIndex: number;
  parallelIndex: number;
  /** How many times this target has been ejected, this time included. */
  timesEjected: number;
  /** How long it stays out before a probe (router clock ms). */
  ejectedForMs: number;
  /** The error that ejected it. */
  reason: string | null;
}

/** An ejected target took a probe copy: it is back in rotation. */
export interface RecoverEvent {
  router: string;
  target: string;
  broadcastIndex: number;
  parallelIndex: number;
  timesEjected: number;
}

/** A copy was given up: put on the dead-letter queue (`status` 'dead_lettered') or failed. */
export interface DeadLetterEvent {
  router: string;
  traceId: string;
  broadcastIndex: number;
  /** The last target tried (null when none was available). */
  target: string | null;
  status: 'dead_lettered' | 'failed';
  fault: DeliveryFault;
  reason: string;
  attempts: number;
}

/** A route() call settled (emitted only while someone listens: it feeds latency histograms). */
export interface RouteEvent {
  router: string;
  traceId: string;
  strategy: StrategyName;
  /** From route() to its report, router clock milliseconds (fractional). */
  latencyMs: number;
  ok: boolean;
  copies: number;
}

/** The events of a BaseRouter and their listeners' arguments. */
export interface RouterEvents {
  retry: [event: RetryEvent];
  eject: [event: EjectEvent];
  recover: [event: RecoverEvent];
  'dead-letter': [event: DeadLetterEvent];
  route: [event: RouteEvent];
}

/** How the delivery policy reports events (BaseRouter passes its own emit). */
export interface RouterEventSink {
  emit<K extends keyof RouterEvents>(event: K, ...args: RouterEvents[K]): void;
  /** Whether anyone listens (payloads are built only then). */
  listening(event: keyof RouterEvents): boolean;
}

/** A sink that drops everything (a policy used without a router). */
export const NO_EVENTS: RouterEventSink = {
  emit: () => undefined,
  listening: () => false,
};
