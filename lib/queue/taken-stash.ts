/**
 * Messages a SageQueue handle has taken from the shared queue but not handed out yet: the rest of
 * a batch that an `iterate()` consumer took in one native call and broke out of before it yielded
 * them all. The handle's next consumer (get, getMany, getRawBatch, getAsync, iterate) takes these
 * first, in order, so leaving a loop early loses nothing while the process lives. Each entry is a
 * view of a slab that is never written again (see SlabReader), so it stays valid.
 */
export class TakenStash {
  #items: Buffer[] = [];
  #head = 0;

  /** Messages held. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  push(raw: Buffer): void {
    this.#items.push(raw);
  }

  /** The oldest message, removed; undefined when none is held. */
  shift(): Buffer | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const raw = this.#items[this.#head++];
    if (this.#head === this.#items.length) this.clear();
    return raw;
  }

  /** Puts `raw` back in front (a message that was shifted and could not be handed out now). */
  unshift(raw: Buffer): void {
    if (this.#head > 0) this.#items[--this.#head] = raw;
    else this.#items.unshift(raw);
  }

  /** Drops everything (the handle was released: what it held goes with it). */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}
