/**
 * StatefulRouter: a BaseRouter that routes each keyed packet to the pod its user is linked to in
 * a StatefulRouteStore (pod id = the connection's targetName). The user key is the packet's
 * partitionKey.
 *
 * Before a packet is routed, its user's link is made sure of (cache first, then Redis):
 * - a link to a ready pod that this router has a connection for is used;
 * - a temporary link to a pod that is not ready (or unknown to this router) is removed
 *   (compare-and-remove, so a link someone else just made is kept) and the user is linked again;
 * - a persistent link is never moved: while its pod is not ready, packets go to a fallback pod
 *   and come back when it is ready again;
 * - a user without a link is linked to the least-loaded ready pod this router can reach (one
 *   atomic script: concurrent routers agree on one pod).
 * selectTarget then picks the linked pod's connection; when it is ejected, excluded after a
 * failed attempt, or the store could not be reached, it falls back to the highest-random-weight
 * available connection for the user (stable, so one user's fallback is one pod).
 * Unkeyed packets (and non-keyed strategies) are routed as BaseRouter does.
 */
import { InvalidArgumentTypeError } from '../errors';
import { BaseRouter } from '../router/base-router';
import type { RouteManyReport, RouteReport, RouterOptions, SelectionContext } from '../router/base-router';
import type { Connection } from '../router/connection';
import { stableHash } from '../router/hashing';
import type { PartitionKey } from '../router/hashing';
import { Packet } from '../router/packet';
import { KEYED_STRATEGIES } from '../router/strategy-names';
import type { StrategyName } from '../router/strategy-names';
import { checkKnownKeys, checkOptions } from '../validate';
import { StatefulRouteStore } from './route-store';
import type { LinkOptions } from './route-store';

export interface StatefulRouterOptions extends RouterOptions {
  store: StatefulRouteStore;
  /** How the router links users on first sight. Default: temporary, the store's defaultLinkTtlMs. */
  link?: LinkOptions;
}

export interface StatefulRouterStats {
  /** Users linked by this router (first sight or after a failover). */
  linked: number;
  /** Temporary links moved off a pod that was not ready. */
  relinked: number;
  /** Packets sent to a fallback pod instead of their linked one. */
  fallbacks: number;
  /** Store calls that failed (the packet was routed by fallback). */
  storeErrors: number;
  lastStoreError: string | null;
}

/** The user id of a partition key: strings as they are, numbers and bigints in decimal, bytes as `b64:<base64>`. */
export function userKeyOf(key: PartitionKey): string {
  if (typeof key === 'string') return key;
  if (key instanceof Uint8Array) return `b64:${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64')}`;
  return String(key);
}

function baseOptions(options: StatefulRouterOptions): RouterOptions {
  const o = checkOptions<StatefulRouterOptions>(options);
  if (!(o.store instanceof StatefulRouteStore)) throw new InvalidArgumentTypeError('options.store', 'a StatefulRouteStore', o.store);
  if (o.link !== undefined) checkKnownKeys(checkOptions<LinkOptions>(o.link, 'options.link'), ['persistent', 'ttlMs'], 'options.link');
  const { store: _store, link: _link, ...rest } = o;
  return { strategy: 'hash', ...rest };
}

export class StatefulRouter extends BaseRouter {
  readonly store: StatefulRouteStore;
  readonly #link: LinkOptions;
  readonly #pending = new Map<string, Promise<void>>();
  readonly #stats: StatefulRouterStats = { linked: 0, relinked: 0, fallbacks: 0, storeErrors: 0, lastStoreError: null };

  constructor(options: StatefulRouterOptions) {
    super(baseOptions(options));
    this.store = options.store;
    this.#link = { ...(options.link ?? {}) };
  }

  override async route(packet: Packet): Promise<RouteReport> {
    if (!(packet instanceof Packet)) throw new InvalidArgumentTypeError('packet', 'a Packet', packet);
    await this.#prepare([packet]);
    return super.route(packet);
  }

  override async routeMany(packets: readonly Packet[]): Promise<RouteManyReport> {
    if (!Array.isArray(packets)) throw new InvalidArgumentTypeError('packets', 'an array of Packets', packets);
    await this.#prepare(packets.filter((p) => p instanceof Packet));
    return super.routeMany(packets);
  }

  statefulStats(): StatefulRouterStats {
    return { ...this.#stats };
  }

  #isStateful(packet: Packet): boolean {
    return packet.isKeyed() && KEYED_STRATEGIES.has(packet.partitionStrategy ?? this.strategy);
  }

  /** Makes sure every keyed packet's user has a usable link (one store round per user, shared by concurrent routes). */
  async #prepare(packets: readonly Packet[]): Promise<void> {
    const uids = new Set<string>();
    for (const p of packets) if (this.#isStateful(p)) uids.add(userKeyOf(p.partitionKey as PartitionKey));
    if (uids.size === 0) return;
    await Promise.all(
      [...uids].map((uid) => {
        let p = this.#pending.get(uid);
        if (p === undefined) {
          p = this.#ensureLink(uid).catch((e: unknown) => {
            this.#stats.storeErrors++;
            this.#stats.lastStoreError = e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e);
          });
          const mine = p;
          this.#pending.set(uid, mine);
          void mine.finally(() => {
            if (this.#pending.get(uid) === mine) this.#pending.delete(uid);
          });
        }
        return p;
      }),
    );
  }

  async #ensureLink(uid: string): Promise<void> {
    const store = this.store;
    await store.podStates({ maxAgeMs: store.podStateMaxAgeMs });
    const reachable = new Set(this.connections().filter((c) => c.isAvailable()).map((c) => c.targetName));
    let link = await store.getLink(uid);
    if (link !== null) {
      if (store.isPodReady(link.pod) === true && reachable.has(link.pod)) return;
      if (link.persistent) return; // never moved; selectTarget falls back per packet
      if (await store.compareAndRemoveLink(uid, link.pod)) this.#stats.relinked++;
      link = null;
    }
    const candidates = [...reachable].filter((pod) => store.isPodReady(pod) === true);
    if (candidates.length === 0) return;
    const made = await store.linkLeastLoadedIfAbsent(uid, { ...this.#link, candidates });
    if (made?.created) this.#stats.linked++;
  }

  protected override selectTarget(packet: Packet, group: readonly Connection[], strategy: StrategyName, context: SelectionContext): Connection | undefined {
    if (!packet.isKeyed() || !KEYED_STRATEGIES.has(strategy)) return super.selectTarget(packet, group, strategy, context);
    const uid = userKeyOf(packet.partitionKey as PartitionKey);
    const link = this.store.cachedLink(uid);
    if (link !== undefined && this.store.isPodReady(link.pod) !== false) {
      const linked = group.find((c) => c.targetName === link.pod);
      if (linked !== undefined && linked.isAvailable(context.now) && !context.exclude.has(linked)) return linked;
    }
    // Fallback: the available, not-excluded, not-known-unready connection of highest weight for this user.
    let best: Connection | undefined;
    let bestWeight = -1;
    for (const c of group) {
      if (!c.isAvailable(context.now) || context.exclude.has(c) || this.store.isPodReady(c.targetName) === false) continue;
      const w = stableHash(`${uid}|${c.targetName}`);
      if (w > bestWeight) {
        best = c;
        bestWeight = w;
      }
    }
    if (best === undefined) {
      // Every candidate failed this packet already or is known unready: any available one.
      best = group.find((c) => c.isAvailable(context.now) && !context.exclude.has(c)) ?? group.find((c) => c.isAvailable(context.now));
    }
    if (best !== undefined) this.#stats.fallbacks++;
    return best;
  }
}
