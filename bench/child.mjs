// Entry point of every Node benchmark child process:
//   node bench/child.mjs <transport> <role> <json config>
// transport: sage | unix-socket | process-send; role: see ROLES.
import { fail, watchParent } from './lib/child-io.mjs';

const ROLES = {
  'stream-producer': 'streamProducer',
  'stream-consumer': 'streamConsumer',
  'stream-peer': 'streamPeer',
  'ping-client': 'pingClient',
  'ping-server': 'pingServer',
  'ping-peer': 'pingPeer',
};

const [transport, role, json] = process.argv.slice(2);
const TRANSPORTS = new Set(['sage', 'unix-socket', 'process-send']);

try {
  if (!TRANSPORTS.has(transport) || !(role in ROLES)) {
    throw new Error(`usage: child.mjs <${[...TRANSPORTS].join('|')}> <${Object.keys(ROLES).join('|')}> <json>`);
  }
  const cfg = JSON.parse(json ?? '{}');
  // Peers forked over IPC have no stdin from run.mjs: their parent's channel is their lifeline.
  if (!role.endsWith('-peer')) watchParent();
  const mod = await import(`./transports/${transport}.mjs`);
  const fn = mod[ROLES[role]];
  if (typeof fn !== 'function') throw new Error(`${transport} has no ${role} role`);
  await fn(cfg);
} catch (e) {
  fail(e);
}
