// Slot liveness (see liveness.h): claim, release, reap, and the owner checks the data path and
// the waiter heal use to tell a live handle from a dead one.
#include "liveness.h"

#include <unistd.h>

#include <atomic>

#include <cerrno>
#include <mutex>

#include "futex.h"

namespace sage {

namespace {
// A slot left in kSlotClaiming longer than this was abandoned by a process that died attaching.
constexpr uint64_t kClaimingStaleNs = 2000000000ull;  // 2 s

// Called holding the dead slot's `alive` mutex (after EOWNERDEAD, or found unlocked while still
// active): we are its only reaper.
void reap_slot(Header* hdr, uint32_t index, bool owner_died) {
  ProcessSlot& s = hdr->slots[index];
  s.state.store(kSlotReaping, std::memory_order_release);
  const uint32_t dw = s.data_waiters.exchange(0, std::memory_order_relaxed);
  const uint32_t sw = s.space_waiters.exchange(0, std::memory_order_relaxed);
  if (dw) hdr->data_waiters.fetch_sub(dw, std::memory_order_relaxed);
  if (sw) hdr->space_waiters.fetch_sub(sw, std::memory_order_relaxed);
  if (dw || sw) hdr->waiter_heals.fetch_add(1, std::memory_order_relaxed);
  // Only an owner-died mutex needs marking consistent; on a mutex that is not in that state
  // pthread_mutex_consistent fails with EINVAL and changes nothing, so its result is moot.
  if (owner_died) (void)pthread_mutex_consistent(&s.alive);
  pthread_mutex_unlock(&s.alive);
  hdr->slots_reaped.fetch_add(1, std::memory_order_relaxed);
  s.state.store(kSlotFree, std::memory_order_release);
}

// Probes an active slot's `alive` mutex and reaps the slot if its process died.
bool check_and_reap(Header* hdr, uint32_t index) {
  ProcessSlot& s = hdr->slots[index];
  const int rc = pthread_mutex_trylock(&s.alive);
  if (rc == EBUSY) return true;
  if (rc == EOWNERDEAD) {
    reap_slot(hdr, index, true);
    return false;
  }
  if (rc == 0) {
    // Unlocked while still marked active: its owner was probed dead earlier (stats) but not
    // reaped, or is mid-release. Reap it if it is still marked active.
    if (s.state.load(std::memory_order_acquire) == kSlotActive) {
      reap_slot(hdr, index, false);
    } else {
      pthread_mutex_unlock(&s.alive);
    }
    return false;
  }
  return false;  // ENOTRECOVERABLE or garbage: nobody alive to wait for
}
}  // namespace

namespace {
std::atomic<uint64_t> g_fork_generation{0};
std::once_flag g_fork_watch;
// Runs in the child of every fork() (only the forking thread exists there): no handle attached
// before this point is the child's own.
void on_fork_child() { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

void watch_forks() {
  std::call_once(g_fork_watch, [] {
    // Fails only with ENOMEM: then forks go unnoticed on the data path, and release() still
    // leaves the parent's slot alone (it compares getpid()).
    (void)pthread_atfork(nullptr, nullptr, on_fork_child);
  });
}

// Relaxed: the counter changes only in a new child, before any of its threads exist.
uint64_t fork_generation() { return g_fork_generation.load(std::memory_order_relaxed); }

bool init_robust_mutex(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a) != 0) return false;
  const bool ok = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0 &&
                  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0 && pthread_mutex_init(m, &a) == 0;
  pthread_mutexattr_destroy(&a);
  return ok;
}

ClaimResult claim_slot(Header* hdr, SlotClaim* out) {
  for (int pass = 0; pass < 2; ++pass) {
    for (uint32_t i = 0; i < kMaxSlots; ++i) {
      ProcessSlot& s = hdr->slots[i];
      uint32_t expected = kSlotFree;
      if (!s.state.compare_exchange_strong(expected, kSlotClaiming, std::memory_order_acq_rel)) continue;
      s.claiming_ns.store(monotonic_ns(), std::memory_order_relaxed);
      const uint32_t gen = s.gen.fetch_add(1, std::memory_order_relaxed) + 1;
      if (!init_robust_mutex(&s.alive) || pthread_mutex_lock(&s.alive) != 0) {
        s.state.store(kSlotFree, std::memory_order_release);
        return ClaimResult::SystemError;
      }
      s.pid.store(getpid(), std::memory_order_relaxed);
      s.role.store(0, std::memory_order_relaxed);
      s.attached_ns.store(realtime_ns(), std::memory_order_relaxed);
      s.data_waiters.store(0, std::memory_order_relaxed);
      s.space_waiters.store(0, std::memory_order_relaxed);
      expected = kSlotClaiming;
      if (!s.state.compare_exchange_strong(expected, kSlotActive, std::memory_order_acq_rel)) {
        // A survivor decided this claim was abandoned while we were stopped: start over.
        pthread_mutex_unlock(&s.alive);
        continue;
      }
      out->index = i;
      out->owner = make_owner(i, gen);
      return ClaimResult::Ok;
    }
    // Full: clean up handles whose processes died, and slots stuck half-claimed, then retry.
    const uint64_t now = monotonic_ns();
    for (uint32_t i = 0; i < kMaxSlots; ++i) {
      ProcessSlot& s = hdr->slots[i];
      uint32_t st = s.state.load(std::memory_order_acquire);
      if (st == kSlotActive) {
        // Only the reaping matters here: a live slot stays taken, a dead one becomes free.
        (void)check_and_reap(hdr, i);
      } else if (st == kSlotClaiming && now - s.claiming_ns.load(std::memory_order_relaxed) > kClaimingStaleNs) {
        // Losing this race means someone else changed the slot: either way it is not stuck.
        (void)s.state.compare_exchange_strong(st, kSlotFree, std::memory_order_acq_rel);
      }
    }
  }
  return ClaimResult::NoSlots;
}

void release_slot(Header* hdr, uint32_t index) {
  ProcessSlot& s = hdr->slots[index];
  s.state.store(kSlotReaping, std::memory_order_release);
  hdr->data_waiters.fetch_sub(s.data_waiters.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  hdr->space_waiters.fetch_sub(s.space_waiters.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  pthread_mutex_unlock(&s.alive);
  s.state.store(kSlotFree, std::memory_order_release);
}

bool owner_alive(Header* hdr, uint32_t owner, uint32_t self_owner) {
  const uint32_t index = owner_slot(owner);
  if (index >= kMaxSlots) return false;  // garbage owner: nobody to wait for
  if (owner == self_owner) return true;
  ProcessSlot& s = hdr->slots[index];
  if (s.state.load(std::memory_order_acquire) != kSlotActive) return false;
  if ((s.gen.load(std::memory_order_relaxed) & 0xFFFFu) != owner_gen(owner)) return false;
  return check_and_reap(hdr, index);
}

SlotLiveness probe_slot(Header* hdr, uint32_t index) {
  ProcessSlot& slot = hdr->slots[index];
  const int rc = pthread_mutex_trylock(&slot.alive);
  if (rc == EBUSY) return SlotLiveness::Alive;
  // Taken (its owner is gone): put it back as found, minus the owner-died mark, so the slot is
  // reaped later by owner_alive() (which finds it unlocked while still active).
  if (rc == EOWNERDEAD) (void)pthread_mutex_consistent(&slot.alive);  // we hold it: cannot fail
  if (rc == 0 || rc == EOWNERDEAD) pthread_mutex_unlock(&slot.alive);
  return SlotLiveness::Dead;
}

void reap_dead_waiters(Header* hdr, uint32_t self_owner) {
  for (uint32_t i = 0; i < kMaxSlots; ++i) {
    ProcessSlot& s = hdr->slots[i];
    if (s.state.load(std::memory_order_acquire) == kSlotActive &&
        (s.data_waiters.load(std::memory_order_relaxed) | s.space_waiters.load(std::memory_order_relaxed))) {
      // Only the reaping matters: a live waiter keeps its counts.
      (void)owner_alive(hdr, make_owner(i, s.gen.load(std::memory_order_relaxed)), self_owner);
    }
  }
}

}  // namespace sage
