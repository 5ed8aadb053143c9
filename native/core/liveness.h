#pragma once
// Slot liveness: which attached handles are alive. Each attached handle owns one ProcessSlot of
// the segment and holds that slot's robust process-shared `alive` mutex for as long as it is
// attached. When its process dies the kernel hands the mutex to the next locker with EOWNERDEAD:
// that is how survivors learn of the death (never from a bare PID, which can be reused). The
// survivor that sees it reaps the slot (subtracts the dead handle's waiter counts, frees it).
//
// Everything about slots lives here: claim (attach), release (detach), the owner check that
// reaps a dead slot, the probe that does not, and the sweep for dead waiters.
#include <pthread.h>

#include <cstdint>

#include "layout.h"

namespace sage {

// Initialises a robust, process-shared mutex in shared memory. False if pthreads refused.
[[nodiscard]] bool init_robust_mutex(pthread_mutex_t* m);

// A slot claimed by this handle: its index and the owner stamp (index and generation) that the
// handle writes into the records it claims or takes.
struct SlotClaim {
  uint32_t index = 0;
  uint32_t owner = 0;
};

enum class [[nodiscard]] ClaimResult { Ok, NoSlots, SystemError };

// Claims a free slot for this thread and locks its `alive` mutex. When every slot is taken, reaps
// the slots of dead processes (and slots left half-claimed for over 2 s) and tries once more.
[[nodiscard]] ClaimResult claim_slot(Header* hdr, SlotClaim* out);

// Detaches: gives this handle's waiter counts back, unlocks `alive` and frees the slot.
void release_slot(Header* hdr, uint32_t index);

// Is the owner of a record (a stamp from a record's state word) still attached and alive?
// A dead owner's slot is reaped on the way. `self_owner` is the caller's own stamp (always alive).
[[nodiscard]] bool owner_alive(Header* hdr, uint32_t owner, uint32_t self_owner);

// Liveness of an active slot, probed without reaping (a dead process stays visible, e.g. to
// `sage-queue ls`, until the data path or `gc` cleans it up).
enum class [[nodiscard]] SlotLiveness { Alive, Dead };
[[nodiscard]] SlotLiveness probe_slot(Header* hdr, uint32_t index);

// fork() detection. A handle belongs to the process that attached it: its slot's `alive` mutex
// is held by a thread of that process, and a forked child inherits the mapping but not the lock.
// The generation counts the forks this process is a child of (incremented in the child by a
// pthread_atfork handler, installed by the first watch_forks()): a handle compares it with the
// value it saw when attaching, which costs one relaxed load instead of a getpid() system call on
// every operation. A child made without the atfork handlers (a raw clone(), _Fork()) is still
// caught where it matters most, in release(), which compares getpid() as well.
void watch_forks();
[[nodiscard]] uint64_t fork_generation();

// Reaps every active slot whose process died and that still counts waiters (the waiter heal).
// `self_owner` is the caller's own stamp, never probed.
void reap_dead_waiters(Header* hdr, uint32_t self_owner);

}  // namespace sage
