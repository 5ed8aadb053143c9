/**
 * The route store's vocabulary: its options, links and pod states, and the checks and small
 * parsers its operations share.
 */
import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import type { JsonValue } from '../queue/descriptor';

export const POD_SERVICE_STATES = ['starting', 'ready', 'draining', 'stopped'] as const;
/** Only 'ready' pods get new links; a pod leaving 'ready' loses its cached links. */
export type PodServiceState = (typeof POD_SERVICE_STATES)[number];

export interface StatefulRouteStoreOptions {
  /** Key namespace: letters, digits, '_', '-', '.' (1-64). */
  namespace: string;
  /** Default redis://127.0.0.1:6379. */
  url?: string;
  password?: string;
  /** Default SAGE_REDIS_PASSWORD. */
  passwordEnv?: string;
  /** Links held in the local cache. Default 10000. */
  cacheMax?: number;
  /** How long a cached link is trusted. Default 5000 ms. */
  cacheTtlMs?: number;
  /** A load report older than this is ignored. Default 10000 ms. */
  loadStaleMs?: number;
  /** Pod states older than this are read again before choosing a pod. Default 1000 ms. */
  podStateMaxAgeMs?: number;
  /** TTL of a temporary link when none is given. Default 30 min. */
  defaultLinkTtlMs?: number;
  /** Default 5000 ms. */
  commandTimeoutMs?: number;
  /** How long a call waits for an unreachable Redis. Default 5000 ms. */
  unavailableTimeoutMs?: number;
  /** Listen to pod-state events (one more connection) for prompt cache invalidation. Default true. */
  subscribe?: boolean;
  /** Called with every script call's name and keys (tests check the hash tags with it). */
  onScriptCall?: (script: string, keys: readonly string[]) => void;
}

export interface LinkOptions {
  /** A persistent link has no TTL, and trySetLink never moves it to another pod. Default false. */
  persistent?: boolean;
  /** TTL of a temporary link. Default `defaultLinkTtlMs`. */
  ttlMs?: number;
}

export interface Link {
  pod: string;
  persistent: boolean;
  /** Remaining TTL when read (null for persistent links, or when not known). */
  ttlMs: number | null;
  /** When the link was made, ms (Redis clock); 0 when not known. */
  since: number;
}

export interface PodState {
  pod: string;
  service: { state: string; at: number; ageMs: number } | null;
  load: { load: number; at: number; ageMs: number; stale: boolean } | null;
  workload: { value: JsonValue; at: number; ageMs: number } | null;
  /** service.state === 'ready'. */
  ready: boolean;
  /** The stored values, exactly as the scripts parse them. */
  raw: { service: string | null; load: string | null; workload: string | null };
}

export interface RouteStoreStats {
  cacheHits: number;
  cacheMisses: number;
  cacheSize: number;
  /** Cached links dropped because their pod left the ready state. */
  invalidatedLinks: number;
  scriptCalls: number;
  events: number;
}

export const OPTION_KEYS = [
  'namespace', 'url', 'password', 'passwordEnv', 'cacheMax', 'cacheTtlMs', 'loadStaleMs', 'podStateMaxAgeMs', 'defaultLinkTtlMs',
  'commandTimeoutMs', 'unavailableTimeoutMs', 'subscribe', 'onScriptCall',
] as const;
export const NAMESPACE = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_ID = 1024;
const MAX_POD = 256;

export function checkUid(value: unknown, name = 'uid'): string {
  if (typeof value !== 'string') throw new InvalidArgumentTypeError(name, 'a string (the user key)', value);
  if (value.length === 0 || value.length > MAX_ID) {
    throw new InvalidArgumentValueError(`${name} must be a non-empty string of at most ${MAX_ID} characters; received ${describe(value)}`, value);
  }
  return value;
}

export function checkPod(value: unknown, name = 'pod'): string {
  if (typeof value !== 'string') throw new InvalidArgumentTypeError(name, 'a string (the pod id)', value);
  if (value.length === 0 || value.length > MAX_POD) {
    throw new InvalidArgumentValueError(`${name} must be a non-empty string of at most ${MAX_POD} characters; received ${describe(value)}`, value);
  }
  return value;
}

/** '%', '{' and '}' are escaped so the user id can never end or open the hash tag early. */
export function escapeTagPart(s: string): string {
  return s.replace(/[%{}]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function parseJson(raw: string | null): Record<string, unknown> | null {
  if (raw === null) return null;
  try {
    const v: unknown = JSON.parse(raw);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function flatToMap(flat: unknown): Map<string, string> {
  const m = new Map<string, string>();
  const a = flat as string[];
  for (let i = 0; i + 1 < a.length; i += 2) m.set(a[i] as string, a[i + 1] as string);
  return m;
}
