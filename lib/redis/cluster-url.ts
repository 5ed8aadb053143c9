/**
 * The Redis Cluster URL form: `redis+cluster://[user[:password]@]host1:port1,host2:port2,...`
 * (`rediss+cluster://` for TLS). The hosts are startup nodes: any reachable one is enough, the
 * client learns the rest of the cluster from it. Cluster has one database, so the path may only
 * be empty or `/0`; the only query parameter is `password`.
 */
import { InvalidArgumentValueError, describe } from '../errors';

export interface ClusterAddress {
  host: string;
  port: number;
}

export interface ParsedClusterUrl {
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
  nodes: ClusterAddress[];
  /** The URL without its password (what descriptors carry). */
  clean: string;
}

const CLUSTER_SCHEME = /^(rediss?)\+cluster:\/\//i;

/** True for `redis+cluster://` and `rediss+cluster://` URLs. */
export function isClusterUrl(url: string): boolean {
  return CLUSTER_SCHEME.test(url);
}

function bad(name: string, what: string, value: unknown): InvalidArgumentValueError {
  return new InvalidArgumentValueError(`${name} ${what}; received ${describe(value)}`, value);
}

function parseAddress(text: string, name: string): ClusterAddress {
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d*))?$/.exec(text);
  if (v6 !== null) {
    host = v6[1] as string;
    portText = v6[2];
  } else {
    const at = text.lastIndexOf(':');
    host = at < 0 ? text : text.slice(0, at);
    portText = at < 0 ? undefined : text.slice(at + 1);
  }
  if (host === '' || /[\s/?#@[\]]/.test(host) || (v6 === null && host.includes(':'))) throw bad(name, 'must list host:port pairs separated by commas (redis+cluster://h1:p1,h2:p2)', text);
  const port = portText === undefined || portText === '' ? 6379 : Number(portText);
  if (!/^\d*$/.test(portText ?? '') || !Number.isInteger(port) || port < 1 || port > 65535) throw bad(name, 'has a port outside 1-65535', text);
  return { host, port };
}

/** Parses a cluster URL; throws InvalidArgumentValueError (ERR_INVALID_ARG_VALUE) for a malformed one. */
export function parseClusterUrl(url: string, name = 'options.url'): ParsedClusterUrl {
  const scheme = CLUSTER_SCHEME.exec(url);
  if (scheme === null) throw bad(name, 'must start with redis+cluster:// or rediss+cluster://', url.replace(/\/\/[^@/]*@/, '//***@'));
  const tls = (scheme[1] as string).toLowerCase() === 'rediss';
  let rest = url.slice(scheme[0].length);
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf('/');
  const path = slash >= 0 ? rest.slice(slash) : '';
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  if (path !== '' && path !== '/' && path !== '/0') throw bad(name, 'may not name a database: Redis Cluster has only database 0', path);
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at) : '';
  const hosts = at >= 0 ? authority.slice(at + 1) : authority;
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== '') {
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    const pass = colon >= 0 ? userinfo.slice(colon + 1) : '';
    try {
      username = user === '' ? undefined : decodeURIComponent(user);
      password = pass === '' ? undefined : decodeURIComponent(pass);
    } catch {
      throw bad(name, 'has a malformed user name or password (percent-encoding)', '(hidden)');
    }
  }
  if (query !== '') {
    const params = new URLSearchParams(query);
    for (const key of params.keys()) {
      if (key !== 'password') throw bad(name, 'may only have the query parameter password', key);
    }
    password ??= params.get('password') ?? undefined;
  }
  if (hosts === '') throw bad(name, 'must name at least one host:port', url.replace(/\/\/[^@/]*@/, '//***@'));
  const nodes = hosts.split(',').map((h) => parseAddress(h, name));
  const user = username === undefined ? '' : `${encodeURIComponent(username)}@`;
  const list = nodes.map((n) => `${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`).join(',');
  return { tls, username, password, nodes, clean: `${tls ? 'rediss' : 'redis'}+cluster://${user}${list}` };
}
