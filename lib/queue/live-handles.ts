/**
 * Handles still attached in this thread. `process.exit()` does not run the addon's environment
 * cleanup hook on the main thread, so without this an exiting process would look dead (not
 * released) to the others. Weak: a dropped queue is still collected (its finalizer releases it).
 */
interface Releasable {
  release(): void;
}

const live = new Set<WeakRef<Releasable>>();
const forgetOnCollect = new FinalizationRegistry<WeakRef<Releasable>>((ref) => live.delete(ref));
let exitHookInstalled = false;

/** Releases `handle` when the process exits, unless it was released (see untrackLive) or collected first. */
export function trackLive(handle: Releasable): WeakRef<Releasable> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const ref of live) ref.deref()?.release();
    });
  }
  const ref = new WeakRef(handle);
  live.add(ref);
  forgetOnCollect.register(handle, ref, ref);
  return ref;
}

/** The handle was released: nothing to do for it at exit. */
export function untrackLive(ref: WeakRef<Releasable>): void {
  live.delete(ref);
  forgetOnCollect.unregister(ref);
}
