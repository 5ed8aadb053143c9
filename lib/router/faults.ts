/**
 * Whose fault a failed send was. A router retries, fails over and ejects only for target
 * faults (a closed, full, slow or unreachable queue). An item fault — the packet itself cannot be
 * taken by the target, whichever attempt or target it is — is dead-lettered at once: retrying it
 * cannot help, and counting it against the target would eject a healthy target and move its keys.
 *
 * An error is an item fault when:
 * - its `code` is `ERR_SERIALIZATION` (SerializationError: the target's codec cannot encode it) or
 *   `ERR_MESSAGE_TOO_LARGE` (MessageTooLargeError: larger than the target's maxMessageSize); the
 *   code is checked rather than the class, so errors from another copy of this package count too;
 * - or it carries the ITEM_FAULT marker: `error[ITEM_FAULT] === true`. A custom queue marks its
 *   own "this item is bad" errors with markItemFault(error). ITEM_FAULT is
 *   `Symbol.for('sage-queue.itemFault')`, so the marker also works across copies of the package.
 * Only the error itself is looked at, not its `cause` chain.
 */

/** The marker property of an error that blames the item, not the target (see isItemFault). */
export const ITEM_FAULT: unique symbol = Symbol.for('sage-queue.itemFault') as typeof ITEM_FAULT;

const ITEM_FAULT_CODES: ReadonlySet<string> = new Set(['ERR_SERIALIZATION', 'ERR_MESSAGE_TOO_LARGE']);

/** Marks `error` as an item fault (for custom queues' errors) and returns it. */
export function markItemFault<E extends object>(error: E): E & { readonly [ITEM_FAULT]: true } {
  Object.defineProperty(error, ITEM_FAULT, { value: true, enumerable: false, configurable: true });
  return error as E & { readonly [ITEM_FAULT]: true };
}

/** True when `error` says the item is at fault, not the target (see the module comment). */
export function isItemFault(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if ((error as { [ITEM_FAULT]?: unknown })[ITEM_FAULT] === true) return true;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && ITEM_FAULT_CODES.has(code);
}

/** `CODE: message` (or `Name: message`) of an error, for reports, dead letters and health. */
export function reasonOf(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${e.message}` : `${e.name}: ${e.message}`;
  }
  return String(e);
}
