/**
 * How the shared-memory descriptor types map onto a SageQueue: `sage_queue` names the segment by
 * its queue id (`<namespace>.<id>` when namespaced) and carries the creation options; the seed's
 * `shm` names it by `metadata.shm_name`.
 */
import { DescriptorError, describe } from '../errors';
import type { CodecName } from './codecs';
import type { QueueDescriptor } from './descriptor';
import type { OpenMode, SageQueueOptions } from './sage-options';

function descriptorNumber(desc: QueueDescriptor, key: string): number | undefined {
  const v = desc.metadata[key];
  return typeof v === 'number' ? v : undefined;
}

/**
 * The segment name, options and open mode of a `sage_queue` or `shm` descriptor: it attaches to
 * an existing queue, and creates one only when a `sage_queue` descriptor says `create: true`.
 */
export function sageOpenArgs(desc: QueueDescriptor): { name: string; options: SageQueueOptions; mode: OpenMode } {
  if (desc.queueType === 'shm') {
    const shmName = desc.metadata.shm_name;
    if (typeof shmName !== 'string') {
      throw new DescriptorError(`an "shm" descriptor needs metadata.shm_name (a string); received ${describe(shmName)}`);
    }
    return { name: shmName, options: {}, mode: 'open' };
  }
  if (desc.queueType !== 'sage_queue') {
    throw new DescriptorError(`a SageQueue opens "sage_queue" and "shm" descriptors, not ${JSON.stringify(desc.queueType)}`);
  }
  const ns = desc.metadata.namespace;
  const codec = desc.metadata.codec;
  const ack = desc.metadata.ack_mode;
  if (ack !== undefined && ack !== 'auto' && ack !== 'explicit') {
    throw new DescriptorError(`metadata.ack_mode of a "sage_queue" descriptor must be "auto" or "explicit"; received ${describe(ack)}`);
  }
  const ackMode = ack as 'auto' | 'explicit' | undefined;
  return {
    name: typeof ns === 'string' && ns.length > 0 ? `${ns}.${desc.queueId}` : desc.queueId,
    mode: desc.metadata.create === true ? 'openOrCreate' : 'open',
    options: desc.metadata.create !== true ? { codec: typeof codec === 'string' ? (codec as CodecName) : undefined, ackMode } : {
      ackMode,
      capacity: descriptorNumber(desc, 'capacity'),
      maxMessageSize: descriptorNumber(desc, 'max_message_size'),
      maxsize: descriptorNumber(desc, 'maxsize'),
      mode: descriptorNumber(desc, 'mode'),
      codec: typeof codec === 'string' ? (codec as CodecName) : undefined,
    },
  };
}
