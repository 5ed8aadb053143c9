/**
 * Message priorities. A LOWER number is MORE urgent: CRITICAL (0) is served before HIGH (1),
 * NORMAL (2) and LOW (3). (Python's heapq and this design agree; some queues, e.g. RabbitMQ and
 * BullMQ, use the opposite direction: do not mix them up.)
 */
import { InvalidArgumentTypeError, InvalidArgumentValueError } from '../errors';

export const MessagePriority = Object.freeze({
  /** System messages, errors. */
  CRITICAL: 0,
  /** Real-time traffic, payments. */
  HIGH: 1,
  /** Chat, queries. */
  NORMAL: 2,
  /** Logs, statistics. */
  LOW: 3,
} as const);

export type MessagePriority = (typeof MessagePriority)[keyof typeof MessagePriority];
export type PriorityName = keyof typeof MessagePriority;

/** Every level, most urgent first. */
export const PRIORITY_LEVELS: readonly MessagePriority[] = Object.freeze([0, 1, 2, 3] as const);
export const PRIORITY_NAMES: readonly PriorityName[] = Object.freeze(['CRITICAL', 'HIGH', 'NORMAL', 'LOW'] as const);
export const LEVEL_COUNT = 4;

/** True for 0, 1, 2 or 3. */
export function isPriority(value: unknown): value is MessagePriority {
  return value === 0 || value === 1 || value === 2 || value === 3;
}

/**
 * A priority from a number (0-3) or a name ('CRITICAL'... case-insensitive). Anything else throws
 * ERR_UNKNOWN_PRIORITY (a TypeError with the offending value).
 */
export function parsePriority(value: unknown, name = 'priority'): MessagePriority {
  if (isPriority(value)) return value;
  if (typeof value === 'string') {
    const level = (MessagePriority as Record<string, MessagePriority>)[value.toUpperCase()];
    if (level !== undefined) return level;
  }
  if (typeof value !== 'number' && typeof value !== 'string') {
    throw new InvalidArgumentTypeError(name, 'a priority (0-3 or CRITICAL, HIGH, NORMAL, LOW)', value);
  }
  throw new InvalidArgumentValueError(`${name} must be 0-3 or CRITICAL, HIGH, NORMAL, LOW; received ${JSON.stringify(value)}`, value, 'ERR_UNKNOWN_PRIORITY');
}

/** The name of a level ('CRITICAL', ...). */
export function priorityName(level: MessagePriority): PriorityName {
  return PRIORITY_NAMES[level] as PriorityName;
}
