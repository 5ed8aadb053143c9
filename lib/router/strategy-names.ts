/** The routing strategies a router or a packet can name. */
import { InvalidArgumentValueError, describe } from '../errors';

export const STRATEGIES = ['round_robin', 'hash', 'consistent_hash', 'load_balance', 'broadcast'] as const;
export type StrategyName = (typeof STRATEGIES)[number];

/** Keyed strategies use the packet's key; unkeyed packets under them fall back to round_robin. */
export const KEYED_STRATEGIES: ReadonlySet<StrategyName> = new Set(['hash', 'consistent_hash']);

export function checkStrategy(value: unknown, name = 'strategy'): StrategyName {
  if (typeof value === 'string' && (STRATEGIES as readonly string[]).includes(value)) return value as StrategyName;
  throw new InvalidArgumentValueError(`${name} must be one of ${STRATEGIES.join(', ')}; received ${describe(value)}`, value, 'ERR_UNKNOWN_STRATEGY');
}
