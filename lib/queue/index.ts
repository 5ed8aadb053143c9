/** Queue types (LocalQueue, SageQueue), the QueueLike interfaces, codecs, descriptors, the registry and inspection. */
export type { AsyncQueueLike, AsyncWaitOptions, LoadReporting, QueueLike, SyncAndAsyncQueue } from './queue-like';
export { isAsyncQueueLike } from './queue-like';

export { LocalQueue } from './local-queue';
export type { LocalQueueOptions } from './local-queue';

export { SageQueue } from './sage-queue';
export type {
  SageQueueOptions, SageQueueStats, BatchOptions, IterateOptions, TrustOptions, SageAckMode, SageAutoOptions, SageOpenOptions,
  SageExplicitOptions, SageAckQueue,
} from './sage-queue';
export type { SageMessage, SageDeadLetter, NackOptions } from './sage-leases';
export type { RawBatch } from './raw-batch';
export type { QueueInspection, QueueLiveness, GcOptions, GcResult } from './inspect';
export { CODEC_NAMES } from './codecs';
export type { CodecName, StatelessCodecName } from './codecs';

export { QueueDescriptor, MAX_QUEUE_ID_LENGTH, shmQueueDescriptor, sageQueueDescriptor } from './descriptor';
export type {
  JsonObject, JsonPrimitive, JsonValue, ReadonlyJsonObject, ReadonlyJsonValue, QueueDescriptorDict, QueueDescriptorInit,
  LocalQueueDescriptorOptions, ShmQueueDescriptorOptions, SageQueueDescriptorOptions, RayActorQueueDescriptorOptions,
  RayQueueDescriptorOptions, RpcQueueDescriptorOptions,
} from './descriptor';
export {
  registerQueueImplementation, unregisterQueueImplementation, getRegisteredQueueTypes, resolveDescriptor, forgetResolved, getLocalQueue,
} from './registry';
export type { QueueImplementation, QueueFactory, QueueClass, RegisterOptions } from './registry';
