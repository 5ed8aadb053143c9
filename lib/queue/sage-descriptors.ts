/** Openers of the shared-memory descriptor types ("sage_queue" and the seed's "shm"). */
import type { CodecName } from './codecs';
import type { QueueDescriptor } from './descriptor';
import { InvalidArgumentValueError } from '../errors';
import { SageQueue } from './sage-queue';

function descriptorNumber(desc: QueueDescriptor, key: string): number | undefined {
  const v = desc.metadata[key];
  return typeof v === 'number' ? v : undefined;
}

/** `sage_queue` descriptors open (or create) the segment named by the queue id. */
export function openSageDescriptor(desc: QueueDescriptor): SageQueue<unknown> {
  const ns = desc.metadata.namespace;
  const name = typeof ns === 'string' && ns.length > 0 ? `${ns}.${desc.queueId}` : desc.queueId;
  const codec = desc.metadata.codec;
  return new SageQueue(name, {
    capacity: descriptorNumber(desc, 'capacity'),
    maxMessageSize: descriptorNumber(desc, 'max_message_size'),
    maxsize: descriptorNumber(desc, 'maxsize'),
    mode: descriptorNumber(desc, 'mode'),
    codec: typeof codec === 'string' ? (codec as CodecName) : undefined,
  });
}

/** `shm` descriptors (the seed's shared-memory queue) open the segment named by `shm_name`. */
export function openShmDescriptor(desc: QueueDescriptor): SageQueue<unknown> {
  const shmName = desc.metadata.shm_name;
  if (typeof shmName !== 'string') {
    throw new InvalidArgumentValueError('an "shm" descriptor needs metadata.shm_name (a string)', shmName, 'ERR_INVALID_DESCRIPTOR');
  }
  return new SageQueue(shmName, { maxsize: descriptorNumber(desc, 'maxsize') });
}

