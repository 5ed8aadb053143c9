/**
 * How the shared-memory descriptor types map onto a SageQueue: `sage_queue` names the segment by
 * its queue id (`<namespace>.<id>` when namespaced) and carries the creation options; the seed's
 * `shm` names it by `metadata.shm_name`.
 */
import { DescriptorError, describe } from '../errors';
import type { CodecName } from './codecs';
import type { QueueDescriptor } from './descriptor';
import type { SageQueueOptions } from './sage-options';

function descriptorNumber(desc: QueueDescriptor, key: string): number | undefined {
  const v = desc.metadata[key];
  return typeof v === 'number' ? v : undefined;
}

/** The segment name and options a `sage_queue` or `shm` descriptor opens. */
export function sageOpenArgs(desc: QueueDescriptor): { name: string; options: SageQueueOptions } {
  if (desc.queueType === 'shm') {
    const shmName = desc.metadata.shm_name;
    if (typeof shmName !== 'string') {
      throw new DescriptorError(`an "shm" descriptor needs metadata.shm_name (a string); received ${describe(shmName)}`);
    }
    return { name: shmName, options: { maxsize: descriptorNumber(desc, 'maxsize') } };
  }
  if (desc.queueType !== 'sage_queue') {
    throw new DescriptorError(`a SageQueue opens "sage_queue" and "shm" descriptors, not ${JSON.stringify(desc.queueType)}`);
  }
  const ns = desc.metadata.namespace;
  const codec = desc.metadata.codec;
  return {
    name: typeof ns === 'string' && ns.length > 0 ? `${ns}.${desc.queueId}` : desc.queueId,
    options: {
      capacity: descriptorNumber(desc, 'capacity'),
      maxMessageSize: descriptorNumber(desc, 'max_message_size'),
      maxsize: descriptorNumber(desc, 'maxsize'),
      mode: descriptorNumber(desc, 'mode'),
      codec: typeof codec === 'string' ? (codec as CodecName) : undefined,
    },
  };
}
