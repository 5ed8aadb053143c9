/**
 * "redis" queue descriptors: creating one (the URL never carries a password) and opening one (the
 * `redis` queue type, registered in lib/builtins.ts).
 */
import { statelessCodecByName } from '../queue/codecs';
import type { StatelessCodecName } from '../queue/codecs';
import { QueueDescriptor } from '../queue/descriptor';
import { DescriptorError, InvalidArgumentTypeError, describe } from '../errors';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { splitRedisUrl } from './connection';
import { checkAckMode, checkKeyName, redisDescriptor } from './queue-options';
import type { RedisAckMode, RedisQueueOptions } from './queue-options';


/** What a "redis" descriptor carries: the queue's options that another process may share (no consumer name, no password). */
export type RedisQueueDescriptorOptions = Pick<
  RedisQueueOptions,
  'stream' | 'group' | 'maxsize' | 'codec' | 'ackMode' | 'claimIdleMs' | 'maxDeliveries' | 'deadLetterStream' | 'passwordEnv' | 'queueId'
> & {
  /** redis:// or rediss:// URL. A password in it is stripped (the resolving process reads it from `passwordEnv`). */
  url: string;
};

const DESCRIPTOR_KEYS = ['url', 'stream', 'group', 'queueId', 'maxsize', 'codec', 'ackMode', 'claimIdleMs', 'maxDeliveries', 'deadLetterStream', 'passwordEnv'] as const;

/**
 * A "redis" descriptor: metadata `{ url, stream, group, maxsize, codec, ack_mode, claim_idle_ms,
 * max_deliveries, dead_letter_stream, password_env }`. The URL never carries a password.
 */
export function createRedisQueueDescriptor(options: RedisQueueDescriptorOptions): QueueDescriptor {
  const o = checkOptions<RedisQueueDescriptorOptions>(options);
  checkKnownKeys(o, DESCRIPTOR_KEYS);
  const { url } = splitRedisUrl(o.url);
  if (o.stream === undefined) throw new InvalidArgumentTypeError('options.stream', 'a string (the stream key)', o.stream);
  const stream = checkKeyName(o.stream, 'options.stream');
  const group = o.group === undefined ? 'sage' : checkKeyName(o.group, 'options.group');
  const queueId = o.queueId === undefined ? undefined : checkKeyName(o.queueId, 'options.queueId');
  const maxsize = o.maxsize === undefined ? 0 : checkInteger(o.maxsize, 'options.maxsize', 0);
  const codec = statelessCodecByName(o.codec ?? 'v8').name;
  const ackMode = checkAckMode(o.ackMode);
  return redisDescriptor({
    url, stream, group, queueId, maxsize, codec, ackMode,
    claimIdleMs: o.claimIdleMs === undefined ? undefined : checkInteger(o.claimIdleMs, 'options.claimIdleMs', 10),
    maxDeliveries: o.maxDeliveries === undefined ? undefined : checkInteger(o.maxDeliveries, 'options.maxDeliveries', 1),
    deadLetterStream: o.deadLetterStream === undefined ? undefined : checkKeyName(o.deadLetterStream, 'options.deadLetterStream'),
    passwordEnv: o.passwordEnv === undefined ? undefined : checkKeyName(o.passwordEnv, 'options.passwordEnv'),
  });
}

function metaString(desc: QueueDescriptor, key: string, required: boolean): string | undefined {
  const v = desc.metadata[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) {
    throw new DescriptorError(`metadata.${key} of a "redis" descriptor must be a non-empty string; received ${describe(v)}`);
  }
  return v;
}

function metaInt(desc: QueueDescriptor, key: string, min: number): number | undefined {
  const v = desc.metadata[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new DescriptorError(`metadata.${key} of a "redis" descriptor must be an integer >= ${min}; received ${describe(v)}`);
  }
  return v;
}

/**
 * The RedisQueue options a "redis" descriptor carries (the password never travels: it comes from
 * the resolving process's environment). Throws DescriptorError for malformed metadata.
 */
export function redisOptionsFromDescriptor(desc: QueueDescriptor): RedisQueueOptions {
  const url = metaString(desc, 'url', true) as string;
  const ackMode = metaString(desc, 'ack_mode', false);
  if (ackMode !== undefined && ackMode !== 'auto' && ackMode !== 'explicit') {
    throw new DescriptorError(`metadata.ack_mode of a "redis" descriptor must be "auto" or "explicit"; received ${describe(ackMode)}`);
  }
  const codec = metaString(desc, 'codec', false);
  return {
    url,
    stream: metaString(desc, 'stream', true) as string,
    group: metaString(desc, 'group', false),
    maxsize: metaInt(desc, 'maxsize', 0),
    codec: codec as StatelessCodecName | undefined,
    ackMode: ackMode as RedisAckMode | undefined,
    claimIdleMs: metaInt(desc, 'claim_idle_ms', 10),
    maxDeliveries: metaInt(desc, 'max_deliveries', 1),
    deadLetterStream: metaString(desc, 'dead_letter_stream', false),
    passwordEnv: metaString(desc, 'password_env', false),
    queueId: desc.queueId,
  };
}
