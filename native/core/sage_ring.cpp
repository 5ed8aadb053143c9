// The data path of sage::Queue. Producers claim space under a short robust lock (write CLAIMED
// headers, advance `tail`), copy outside it and commit each record with a release store.
// Consumers take committed records under another short robust lock (mark READING, advance
// `head`), copy outside it and mark them CONSUMED. Producers reclaim consumed space lazily.
// A dead producer's claim is turned into padding by the consumer that finds it at the head; a
// dead consumer's READING records are reclaimed by producers. Locks are robust: a producer that
// dies holding its lock leaves a redo journal that the next holder re-applies; a consumer, an
// undo journal that the next holder rolls back. Slot liveness (who is alive) is in liveness.cpp.
#include "sage_ring.h"

#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fault_guard.h"
#include "futex.h"
#include "liveness.h"
#include "test_hooks.h"

namespace sage {

namespace {
// Dead owners are noticed by polling: a waiter blocked behind another process's record wakes at
// least this often to re-check that process. Bounds recovery time after a SIGKILL.
constexpr uint64_t kStuckPollNs = 2000000;  // 2 ms
// Every sleep re-checks at least this often: a safety net should a waker die between deciding
// to wake and issuing the wake (later wakers skip it, see wake()).
constexpr uint64_t kMaxSleepNs = 100000000;  // 100 ms
constexpr uint64_t kHealIntervalNs = 10000000;
}  // namespace

static_assert(kLastStatus == Status::LeaseLost, "SAGE_STATUSES lists every status, the last one last");

const char* status_name(Status s) {
  switch (s) {
#define SAGE_STATUS_NAME_CASE(name) \
  case Status::name:                \
    return #name;
    SAGE_STATUSES(SAGE_STATUS_NAME_CASE)
#undef SAGE_STATUS_NAME_CASE
  }
  return "Unknown";
}

const char* status_code(Status s) {
  switch (s) {
    case Status::Ok: return "OK";
    case Status::Empty: return "ERR_QUEUE_EMPTY";
    case Status::Full: return "ERR_QUEUE_FULL";
    case Status::Closed: return "ERR_QUEUE_CLOSED";
    case Status::TooLarge: return "ERR_MESSAGE_TOO_LARGE";
    case Status::BufferTooSmall: return "ERR_BUFFER_TOO_SMALL";
    case Status::TimedOut: return "ERR_TIMED_OUT";
    case Status::Cancelled: return "ERR_CANCELLED";
    case Status::InvalidName: return "ERR_INVALID_QUEUE_NAME";
    case Status::InvalidArgument: return "ERR_INVALID_ARG_VALUE";
    case Status::Exists: return "ERR_QUEUE_EXISTS";
    case Status::NotFound: return "ERR_QUEUE_NOT_FOUND";
    case Status::NotOurs: return "ERR_NOT_A_SAGE_QUEUE";
    case Status::VersionMismatch: return "ERR_LAYOUT_MISMATCH";
    case Status::NotInitialised: return "ERR_QUEUE_NOT_INITIALISED";
    case Status::NoSpace: return "ERR_NO_SHM_SPACE";
    case Status::NoSlots: return "ERR_TOO_MANY_HANDLES";
    case Status::PermissionDenied: return "ERR_PERMISSION_DENIED";
    case Status::Corrupt: return "ERR_QUEUE_CORRUPT";
    case Status::SystemError: return "ERR_SYSTEM";
    case Status::Initialising: return "ERR_QUEUE_INITIALISING";
    case Status::Forked: return "ERR_QUEUE_FORKED";
    case Status::UntrustedOwner: return "ERR_QUEUE_UNTRUSTED_OWNER";
    case Status::SharedMode: return "ERR_QUEUE_SHARED_MODE";
    case Status::Replaced: return "ERR_QUEUE_REPLACED";
    case Status::Interrupted: return "ERR_INTERRUPTED";
    case Status::Truncated: return "ERR_QUEUE_TRUNCATED";
    case Status::LeaseLost: return "ERR_QUEUE_LEASE_LOST";
  }
  return "ERR_UNKNOWN";
}

const char* status_message(Status s) {
  switch (s) {
    case Status::Ok: return "ok";
    case Status::Empty: return "the queue is empty";
    case Status::Full: return "the queue is full";
    case Status::Closed: return "the queue is closed";
    case Status::TooLarge: return "the message is larger than the queue's maxMessageSize";
    case Status::BufferTooSmall: return "the destination buffer cannot hold the next message";
    case Status::TimedOut: return "timed out";
    case Status::Cancelled: return "cancelled";
    case Status::InvalidName:
      return "invalid queue name: use 1-200 letters, digits, '.', '_' or '-', without '..'";
    case Status::InvalidArgument: return "invalid queue options";
    case Status::Exists: return "a queue with this name already exists";
    case Status::NotFound: return "no queue with this name exists";
    case Status::NotOurs: return "the shared-memory segment is not a sage-queue segment";
    case Status::VersionMismatch:
      return "the segment was created by a sage-queue build with another memory layout";
    case Status::NotInitialised:
      return "the segment was never initialised (its creator is still starting, or died while creating it)";
    case Status::NoSpace: return "not enough space in /dev/shm for the queue";
    case Status::NoSlots: return "too many handles are attached to this queue";
    case Status::PermissionDenied: return "permission denied on the queue's shared-memory segment";
    case Status::Corrupt: return "the queue's shared memory failed a consistency check";
    case Status::SystemError: return "a system call failed";
    case Status::Initialising: return "the segment is still being initialised by its (live) creator; try again";
    case Status::Forked:
      return "this handle was attached by the parent of this forked process: open the queue again in the child";
    case Status::UntrustedOwner:
      return "the queue's segment is owned by another user, who could read and forge its messages; list that "
             "user's uid in the trustedUids option to open it anyway";
    case Status::SharedMode:
      return "the queue's segment is writable by its group or by others, who could read and forge its messages; "
             "pass allowSharedMode: true to open it anyway";
    case Status::Replaced:
      return "the queue's name now refers to another segment than the one this handle opened; it was not removed";
    case Status::Interrupted: return "a blocking call was interrupted by a signal this process handles";
    case Status::Truncated:
      return "the queue's shared-memory segment was truncated by another process: this handle can no longer be used; "
             "release it and recreate the queue";
    case Status::LeaseLost:
      return "this handle no longer holds that message's lease: it was settled already, or its lease expired and it "
             "was taken back for redelivery";
  }
  return "unknown status";
}

// ---------------------------------------------------------------------------------------------
// Lifetime

Queue::~Queue() { release(); }

bool Queue::damaged() const { return mapping_damaged(guard_); }

// Reads the mapping's last byte: a truncation always removes the end of the file, so this faults
// (and the fault guard marks the mapping damaged) even when nothing else we touch is past the new
// end, e.g. an idle queue whose cursors are all in the first page. Slow paths only.
bool Queue::probe_truncated() const {
  if (guard_ < 0) return false;
  (void)static_cast<const volatile uint8_t*>(data_)[cap_ - 1];
  return damaged();
}

void Queue::release() {
  if (hdr_ == nullptr) return;
  if (damaged() && attached_) {
    // Truncated under us: part of the mapping is private zero pages now, and our slot's liveness
    // mutex may be among them, still linked in this thread's robust list. Touch nothing and never
    // unmap it (a later robust lock would write through that link); the kernel frees it at exit.
    // (An inspecting handle locks nothing: it is unmapped below like any other.)
    unguard_mapping(guard_);
    guard_ = -1;
    attached_ = false;
    hdr_ = nullptr;
    data_ = nullptr;
    return;
  }
  unguard_mapping(guard_);
  guard_ = -1;
  if (attached_) {
    attached_ = false;
    // A forked child inherits the mapping, not the slot: freeing it would free the parent's.
    if (!forked() && getpid() == pid_) {
      release_slot(hdr_, slot_);
      // Explicit acks: the leases it still held belong to nobody now: scan on the next get.
      if (ack_) hdr_->lease_check_ns.store(0, std::memory_order_release);
    }
  }
  munmap(hdr_, map_size_);
  hdr_ = nullptr;
  data_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Robust locks with redo journals

// Locks. The robust mutexes live in shared memory, so anything may be in them, and their holder
// may be a stopped process (SIGSTOP, a debugger, the cgroup freezer). So:
//  - only 0 and EOWNERDEAD mean "acquired". Any other error (EINVAL from a garbage kind,
//    ENOTRECOVERABLE, EDEADLK, EAGAIN...) is Corrupt, never a silent acquire; and the kind word is
//    compared with the one pthreads gives a freshly initialised lock before it is used at all.
//  - non-blocking callers try a few times and report busy (TimedOut here; Full/Empty to them).
//  - blocking callers wait with pthread_mutex_clocklock in slices of kLockSliceNs, so their
//    deadline and cancel flag are honoured while a peer is stopped inside the lock, and the
//    kernel's owner-died hand-over (EOWNERDEAD) still reaches them.
//  - a lock word naming a thread that does not exist (and that the kernel therefore will never
//    release: robust-list processing runs before a dying thread's id is freed) is Corrupt.

#if defined(__SANITIZE_THREAD__)
#define SAGE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SAGE_TSAN 1
#endif
#endif

namespace {
constexpr uint64_t kLockSliceNs = 10000000;  // 10 ms
constexpr int kLockTries = 100;

#ifdef __GLIBC__
// The kind word pthreads stores in a robust process-shared mutex (glibc keeps it in __kind).
int expected_mutex_kind() {
  static const int kind = [] {
    pthread_mutex_t m;
    return init_robust_mutex(&m) ? m.__data.__kind : -1;
  }();
  return kind;
}
int mutex_kind(pthread_mutex_t* m) { return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED); }
// The lock word: the holder's thread id in the low 30 bits (0 when free).
uint32_t mutex_owner_tid(pthread_mutex_t* m) {
  return static_cast<uint32_t>(__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED)) & FUTEX_TID_MASK;
}
#else
int expected_mutex_kind() { return 0; }
int mutex_kind(pthread_mutex_t*) { return 0; }
uint32_t mutex_owner_tid(pthread_mutex_t*) { return 0; }
#endif

// True when the lock word names a thread that does not exist: nobody will ever release it. The
// word is read again after the probe, so a holder that died meanwhile (the kernel then marks the
// word owner-died) is not mistaken for a missing one. (Assumes the processes sharing a queue
// share a PID namespace: a thread id is looked up in ours.)
bool owner_missing(pthread_mutex_t* m) {
  const uint32_t tid = mutex_owner_tid(m);
  if (tid == 0) return false;
  if (kill(static_cast<pid_t>(tid), 0) == 0 || errno != ESRCH) return false;  // exists (EPERM: another user's)
  return mutex_owner_tid(m) == tid;
}

// One timed wait for the lock, until the CLOCK_MONOTONIC time `until_ns`. pthread_mutex_clocklock
// is immune to wall-clock jumps; TSan does not intercept it (it would then see our unlock as an
// unlock of a mutex never locked), so TSan builds use the REALTIME timedlock for the same slice.
int timed_lock(pthread_mutex_t* m, uint64_t until_ns);

timespec to_timespec(uint64_t ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(ns / 1000000000ull);
  ts.tv_nsec = static_cast<long>(ns % 1000000000ull);
  return ts;
}
int timed_lock(pthread_mutex_t* m, uint64_t until_ns) {
#ifdef SAGE_TSAN
  const uint64_t now = monotonic_ns();
  const timespec ts = to_timespec(realtime_ns() + (until_ns > now ? until_ns - now : 0));
  return pthread_mutex_timedlock(m, &ts);
#else
  const timespec ts = to_timespec(until_ns);
  return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#endif
}
}  // namespace

Status Queue::acquire(pthread_mutex_t* m, bool prod, uint64_t deadline_ns, const std::atomic<bool>* cancel) {
  if (mutex_kind(m) != expected_mutex_kind()) return Status::Corrupt;
  auto taken = [&](int rc) {
    if (rc == EOWNERDEAD) {
      if (prod) recover_prod();
      else recover_cons();
    }
  };
  for (int i = 0; i < kLockTries; ++i) {
    const int rc = pthread_mutex_trylock(m);
    if (rc == 0 || rc == EOWNERDEAD) {
      taken(rc);
      return Status::Ok;
    }
    if (rc != EBUSY) return Status::Corrupt;
    cpu_relax();
  }
  if (owner_missing(m)) return Status::Corrupt;
  if (deadline_ns == kLockTryOnly) return Status::TimedOut;
  for (;;) {
    if (cancel && cancel->load(std::memory_order_acquire)) return Status::Cancelled;
    const uint64_t now = monotonic_ns();
    if (now >= deadline_ns) return Status::TimedOut;
    const int rc = timed_lock(m, deadline_ns - now > kLockSliceNs ? now + kLockSliceNs : deadline_ns);
    if (rc == 0 || rc == EOWNERDEAD) {
      taken(rc);
      return Status::Ok;
    }
    if (rc != ETIMEDOUT) return Status::Corrupt;
    if (owner_missing(m)) return Status::Corrupt;
  }
}

Status Queue::lock_prod(uint64_t deadline_ns, const std::atomic<bool>* cancel) {
  return acquire(&hdr_->prod_lock, true, deadline_ns, cancel);
}

Status Queue::lock_cons(uint64_t deadline_ns, const std::atomic<bool>* cancel) {
  return acquire(&hdr_->cons_lock, false, deadline_ns, cancel);
}

Status Queue::await_lock(bool prod, uint64_t deadline_ns, const std::atomic<bool>* cancel) {
  pthread_mutex_t* m = prod ? &hdr_->prod_lock : &hdr_->cons_lock;
  if (mutex_owner_tid(m) == 0 && mutex_kind(m) == expected_mutex_kind()) return Status::Ok;  // free: nothing to wait for
  const Status s = acquire(m, prod, deadline_ns, cancel);
  if (s == Status::Ok) {
    if (prod) unlock_prod();
    else unlock_cons();
  }
  return s;
}

void Queue::unlock_prod() { pthread_mutex_unlock(&hdr_->prod_lock); }
void Queue::unlock_cons() { pthread_mutex_unlock(&hdr_->cons_lock); }

void Queue::recover_prod() {
  // The previous holder died inside put's critical section. Headers are written before the
  // journal is marked valid, so a valid journal can simply be re-applied; otherwise nothing
  // visible changed (headers beyond `tail` are unreachable garbage).
  LockJournal& j = hdr_->prod_journal;
  if (j.valid.load(std::memory_order_acquire)) {
    if (j.cursor >= hdr_->tail.load(std::memory_order_relaxed) &&
        j.cursor - hdr_->freed.load(std::memory_order_relaxed) <= cap_) {
      hdr_->tail_msgs.store(j.msgs, std::memory_order_relaxed);
      hdr_->tail.store(j.cursor, std::memory_order_release);
    }
    j.valid.store(0, std::memory_order_release);
  }
  hdr_->lock_recoveries.fetch_add(1, std::memory_order_relaxed);
  // We hold the mutex in the owner-died state (EOWNERDEAD): marking it consistent cannot fail.
  (void)pthread_mutex_consistent(&hdr_->prod_lock);
}

void Queue::recover_cons() {
  // The previous holder died inside get's critical section, before its take was committed (the
  // journal is valid until then): roll the take back. Every record it had marked READING goes
  // back to COMMITTED, and head to where it was, so no message is lost. Producers cannot have
  // reclaimed anything above the old head: reclaim_limit only moves once a take is committed.
  LockJournal& j = hdr_->cons_journal;
  const uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  if (j.valid.load(std::memory_order_acquire)) {
    const uint64_t old_head = j.cursor;
    if (old_head >= hdr_->reclaim_limit.load(std::memory_order_relaxed) && old_head <= tail) {
      uint64_t pos = old_head;
      while (pos < tail) {
        RecordHeader* r = record_at(pos);
        if (r == nullptr || r->position != pos) break;
        const uint32_t st = r->state.load(std::memory_order_acquire);
        const uint32_t kind = rec_kind(st);
        uint64_t size;
        if (kind == kRecPadding) {
          size = r->length;
          if (size < kRecordHeaderSize || size % kRecordAlign != 0 || (pos & mask_) + size > cap_) break;
        } else if (kind == kRecReading || (ack_ && (kind == kRecLeased || kind == kRecSettling))) {
          if (r->length > rec_max_ || r->length < meta_) break;
          size = record_size(r->length);
          r->state.store(rec_state(kRecCommitted, rec_owner(st)), std::memory_order_release);
          // A record taken from the head had never been delivered (head only moves forward).
          if (ack_) reinterpret_cast<LeaseMeta*>(r + 1)->deliveries.store(0, std::memory_order_relaxed);
        } else if (kind == kRecCommitted && pos < hdr_->head.load(std::memory_order_relaxed)) {
          // Already rolled back by a recoverer that died too: what follows may still be marked.
          if (r->length > rec_max_) break;
          size = record_size(r->length);
        } else {
          break;  // marking proceeds in order: nothing past the first unmarked record
        }
        pos += size;
      }
      hdr_->head_msgs.store(j.msgs, std::memory_order_relaxed);
      hdr_->head.store(old_head, std::memory_order_release);
    }
    j.valid.store(0, std::memory_order_release);
  }
  // Covers a holder that died after committing its take but before publishing the limit. (In
  // explicit mode the limit is the ack floor, moved only over settled records.)
  if (!ack_) hdr_->reclaim_limit.store(hdr_->head.load(std::memory_order_relaxed), std::memory_order_release);
  hdr_->lock_recoveries.fetch_add(1, std::memory_order_relaxed);
  // We hold the mutex in the owner-died state (EOWNERDEAD): marking it consistent cannot fail.
  (void)pthread_mutex_consistent(&hdr_->cons_lock);
}

// ---------------------------------------------------------------------------------------------
// Records

bool Queue::owner_alive(uint32_t owner) { return sage::owner_alive(hdr_, owner, owner_); }

RecordHeader* Queue::record_at(uint64_t pos) const {
  const uint64_t off = pos & mask_;
  if ((off & (kRecordAlign - 1)) != 0 || off + kRecordHeaderSize > cap_) return nullptr;
  return reinterpret_cast<RecordHeader*>(data_ + off);
}

Status Queue::reclaim_locked() {
  uint64_t f = hdr_->freed.load(std::memory_order_relaxed);
  const uint64_t start = f;
  const uint64_t h = hdr_->reclaim_limit.load(std::memory_order_acquire);
  Status result = Status::Ok;
  while (f < h) {
    RecordHeader* r = record_at(f);
    if (r == nullptr || r->position != f) {
      result = Status::Corrupt;
      break;
    }
    uint32_t st = r->state.load(std::memory_order_acquire);  // pairs with the consumer's release
    uint32_t kind = rec_kind(st);
    if (kind == kRecConsumed) {
      if (r->length > rec_max_) {
        result = Status::Corrupt;
        break;
      }
      f += record_size(r->length);
    } else if (kind == kRecPadding) {
      uint64_t size = r->length;
      if (size < kRecordHeaderSize || size % kRecordAlign != 0 || (f & mask_) + size > cap_) {
        result = Status::Corrupt;
        break;
      }
      f += size;
    } else if (kind == kRecReading) {
      if (owner_alive(rec_owner(st))) break;
      // Its consumer died while copying it out: that message is lost (documented).
      if (r->state.compare_exchange_strong(st, rec_state(kRecConsumed, 0), std::memory_order_acq_rel)) {
        hdr_->lost_in_read.fetch_add(1, std::memory_order_relaxed);
      }
    } else {
      result = Status::Corrupt;
      break;
    }
  }
  if (f > h) result = Status::Corrupt;
  else if (f != start) hdr_->freed.store(f, std::memory_order_release);
  return result;
}

void Queue::wake(bool data) {
  std::atomic<uint32_t>* seq = data ? &hdr_->data_seq : &hdr_->space_seq;
  std::atomic<uint32_t>* waiters = data ? &hdr_->data_waiters : &hdr_->space_waiters;
  std::atomic<uint32_t>* regs = data ? &hdr_->data_regs : &hdr_->space_regs;
  std::atomic<uint32_t>* woken_upto = data ? &hdr_->data_woken : &hdr_->space_woken;
  // An RMW (not a plain load) on the waiter count: if it reads 0, it is ordered before any
  // waiter's later increment, which then reads from it and so sees the data we just published.
  // Either the waiter sees our data, or we see its count (and, through it, its registration).
  // (A fence would do, but TSan cannot model fences.)
  if (waiters->fetch_add(0, std::memory_order_acq_rel) == 0) return;
  // Skip the syscall when every waiter registered so far was already woken (it just has not run
  // yet): wake at most once per registration, not once per message.
  const uint32_t registered = regs->load(std::memory_order_acquire);
  uint32_t covered = woken_upto->load(std::memory_order_relaxed);
  if (covered == registered ||
      (!woken_upto->compare_exchange_strong(covered, registered, std::memory_order_acq_rel) && covered == registered)) {
    // Waiters are counted but were all woken already. If one of them died before leaving, its
    // count would stay forever: look for dead waiters now and then.
    heal_waiters();
    return;
  }
  seq->fetch_add(1, std::memory_order_release);
  const int woken = futex_wake_all(seq);
  hdr_->wake_calls.fetch_add(1, std::memory_order_relaxed);
  if (woken == 0) heal_waiters();  // counted waiters but nobody asleep: maybe one died
}

void Queue::heal_waiters() {
  // Reaping a dead slot subtracts its waiter counts. Rate-limited: a live waiter may simply be
  // between registering and sleeping, or not yet have run since it was woken.
  static thread_local uint64_t last_heal = 0;
  const uint64_t now = monotonic_ns();
  if (now - last_heal < kHealIntervalNs) return;
  last_heal = now;
  reap_dead_waiters(hdr_, owner_);
}

// ---------------------------------------------------------------------------------------------
// Put

Status Queue::try_put(const Slice* msgs, size_t n, size_t* written) {
  if (damaged()) return Status::Truncated;
  const Status s = put_attempt(msgs, n, written, kLockTryOnly, nullptr);
  if (s == Status::Full && *written == 0 && probe_truncated()) return Status::Truncated;
  return damaged() ? Status::Truncated : s;  // what a fault let it read was zeros: discard
}

Status Queue::put_attempt(const Slice* msgs, size_t n, size_t* written, uint64_t lock_deadline,
                          const std::atomic<bool>* cancel) {
  *written = 0;
  if (hdr_ == nullptr || !attached_) return Status::InvalidArgument;
  if (forked()) return Status::Forked;
  if (n == 0) return Status::Ok;
  for (size_t i = 0; i < n; ++i) {
    if (msgs[i].length > max_msg_) return Status::TooLarge;  // before anything is written
  }
  const uint64_t meta = meta_;
  if (hdr_->closed.load(std::memory_order_acquire)) return Status::Closed;

  // Busy (the lock is held past our budget, maybe by a stopped process) reads as Full: the
  // caller's "would block" path (a wait, or a typed refusal) handles both alike.
  const Status ls = lock_prod(lock_deadline, cancel);
  if (ls != Status::Ok) return ls == Status::TimedOut ? Status::Full : ls;
  if (hdr_->closed.load(std::memory_order_acquire)) {
    unlock_prod();
    return Status::Closed;
  }
  const uint64_t tail = hdr_->tail.load(std::memory_order_relaxed);
  const uint64_t tmsgs = hdr_->tail_msgs.load(std::memory_order_relaxed);
  const uint64_t hmsgs = hdr_->head_msgs.load(std::memory_order_acquire);
  uint64_t freed = hdr_->freed.load(std::memory_order_relaxed);
  // The cursors come from shared memory: a tail that is misaligned, behind `freed` or more than
  // the ring ahead of it would place the headers written below out of bounds.
  if ((tail & (kRecordAlign - 1)) != 0 || freed > tail || tail - freed > cap_) {
    unlock_prod();
    return Status::Corrupt;
  }
  uint64_t pos = tail;
  size_t k = 0;
  bool reclaimed = false;
  Status corrupt = Status::Ok;
  for (;;) {
    while (k < n) {
      const uint64_t rec = record_size(msgs[k].length + meta);
      const uint64_t off = pos & mask_;
      const uint64_t pad = off + rec > cap_ ? cap_ - off : 0;
      if (pos + pad + rec - freed > cap_) break;
      if (maxsize_ != 0 && tmsgs + k - hmsgs >= maxsize_) break;
      if (pad != 0) {
        auto* p = reinterpret_cast<RecordHeader*>(data_ + off);
        p->length = static_cast<uint32_t>(pad);
        p->position = pos;
        p->state.store(rec_state(kRecPadding, owner_), std::memory_order_relaxed);
        pos += pad;
      }
      auto* r = reinterpret_cast<RecordHeader*>(data_ + (pos & mask_));
      r->length = static_cast<uint32_t>(msgs[k].length + meta);
      r->position = pos;
      r->state.store(rec_state(kRecClaimed, owner_), std::memory_order_relaxed);
      pos += rec;
      ++k;
    }
    if (k == n || reclaimed) break;
    reclaimed = true;
    if (ack_ && lock_cons(kLockTryOnly) == Status::Ok) {
      // Explicit mode: settled records count only once the ack floor passes them.
      advance_floor_locked();
      unlock_cons();
    }
    corrupt = reclaim_locked();
    const uint64_t f2 = hdr_->freed.load(std::memory_order_relaxed);
    if (f2 == freed) break;
    freed = f2;
  }
  if (k == 0) {
    unlock_prod();
    return corrupt != Status::Ok ? corrupt : Status::Full;
  }
  LockJournal& j = hdr_->prod_journal;
  j.cursor = pos;
  j.msgs = tmsgs + k;
  j.valid.store(1, std::memory_order_release);
  SAGE_HOOK(InProdLock);
  hdr_->tail_msgs.store(tmsgs + k, std::memory_order_relaxed);
  hdr_->tail.store(pos, std::memory_order_release);  // headers above are visible to acquirers
  j.valid.store(0, std::memory_order_release);
  unlock_prod();
  SAGE_HOOK(AfterClaim);

  ProcessSlot& me = hdr_->slots[slot_];
  if (!(me.role.load(std::memory_order_relaxed) & kRoleProducer)) me.role.fetch_or(kRoleProducer, std::memory_order_relaxed);

  pos = tail;
  for (size_t i = 0; i < k; ++i) {
    const uint64_t rec = record_size(msgs[i].length + meta);
    const uint64_t off = pos & mask_;
    if (off + rec > cap_) pos += cap_ - off;
    auto* r = reinterpret_cast<RecordHeader*>(data_ + (pos & mask_));
    uint8_t* dst = reinterpret_cast<uint8_t*>(r) + kRecordHeaderSize;
    if (meta != 0) {
      auto* m = reinterpret_cast<LeaseMeta*>(dst);
      m->deliveries.store(0, std::memory_order_relaxed);
      m->reserved = 0;
      m->deadline_ns.store(0, std::memory_order_relaxed);
      dst += meta;
    }
    const uint32_t len = msgs[i].length;
    if (i == 0 && SAGE_HOOK_ARMED(MidCopy)) {
      memcpy(dst, msgs[i].data, len / 2);
      SAGE_HOOK(MidCopy);
    }
    if (len) memcpy(dst, msgs[i].data, len);
    if (i == 0) SAGE_HOOK(BeforeCommit);
    r->state.store(rec_state(kRecCommitted, owner_), std::memory_order_release);  // publishes payload
    pos += rec;
  }
  wake(true);
  *written = k;
  return k == n ? Status::Ok : Status::Full;
}

// ---------------------------------------------------------------------------------------------
// Get

Status Queue::try_get(uint8_t* dst, size_t dst_cap, uint32_t* lengths, size_t max, size_t* got, size_t* needed) {
  if (damaged()) return Status::Truncated;
  const Status s = get_attempt(dst, dst_cap, lengths, max, got, needed, kLockTryOnly, nullptr);
  if (damaged()) {
    *got = 0;  // copied from zero pages: not messages
    return Status::Truncated;
  }
  return s;
}

Status Queue::get_attempt(uint8_t* dst, size_t dst_cap, uint32_t* lengths, size_t max, size_t* got, size_t* needed,
                          uint64_t lock_deadline, const std::atomic<bool>* cancel) {
  *got = 0;
  if (needed) *needed = 0;
  if (hdr_ == nullptr || !attached_) return Status::InvalidArgument;
  if (forked()) return Status::Forked;
  if (max == 0) return Status::Ok;
  {
    // Lock-free look first: an empty queue costs two loads, no lock.
    const uint64_t h = hdr_->head.load(std::memory_order_acquire);
    const uint64_t t = hdr_->tail.load(std::memory_order_acquire);
    // Explicit mode: also nothing to redeliver before the next lease scan is due.
    if (h == t && (!ack_ || monotonic_ns() < hdr_->lease_check_ns.load(std::memory_order_acquire))) {
      if (probe_truncated()) return Status::Truncated;
      return hdr_->closed.load(std::memory_order_acquire) && hdr_->tail.load(std::memory_order_acquire) == h &&
                     (!ack_ || hdr_->redeliverable.load(std::memory_order_relaxed) == 0)
                 ? Status::Closed
                 : Status::Empty;
    }
  }
  if (taken_.size() < max) taken_.resize(max);
  if (ack_ && leased_.size() < max) leased_.resize(max);
  // Busy reads as Empty (see put_attempt).
  const Status ls = lock_cons(lock_deadline, cancel);
  if (ls != Status::Ok) return ls == Status::TimedOut ? Status::Empty : ls;
  const uint64_t now = ack_ ? monotonic_ns() : 0;
  size_t k = 0;
  size_t bytes = 0;
  bool pending = false;  // explicit mode: REDELIVER records left (delayed, or beyond this batch)
  bool floor_moved = false;  // explicit mode: acked space became reusable (wake a producer)
  Status scan = Status::Ok;
  if (ack_) {
    floor_moved = advance_floor_locked();
    if (now >= hdr_->lease_check_ns.load(std::memory_order_relaxed)) {
      scan = scan_leases_locked(now, dst_cap, lengths, max, &k, &bytes, needed, &pending);
    } else {
      pending = hdr_->redeliverable.load(std::memory_order_relaxed) != 0;
    }
  }
  const uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  const uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  const uint64_t hm0 = hdr_->head_msgs.load(std::memory_order_relaxed);
  uint64_t hm = hm0;
  uint64_t h = head;
  // A head past the tail can only be corruption: say so (an Empty here would make a blocking get
  // spin until its deadline, since readable_now() sees head != tail).
  Status st = head > tail ? Status::Corrupt : scan;
  LockJournal& j = hdr_->cons_journal;
  bool journaled = false;
  // Before the first record is marked: what to restore if we die before the take is committed.
  auto journal = [&]() {
    if (journaled) return;
    j.cursor = head;
    j.msgs = hm0;
    j.valid.store(1, std::memory_order_release);
    journaled = true;
    SAGE_HOOK(InConsLock);
  };
  while (h < tail && k < max && st == Status::Ok) {
    RecordHeader* r = record_at(h);
    if (r == nullptr || r->position != h) {
      st = Status::Corrupt;
      break;
    }
    const uint32_t s = r->state.load(std::memory_order_acquire);  // pairs with the commit
    const uint32_t kind = rec_kind(s);
    if (kind == kRecPadding) {
      const uint64_t size = r->length;
      // (Records never straddle `tail`: one that does is corrupt, and would move head past it.)
      if (size < kRecordHeaderSize || size % kRecordAlign != 0 || (h & mask_) + size > cap_ || size > tail - h) {
        st = Status::Corrupt;
        break;
      }
      if (rec_owner(s) == kAbandonedOwner) ++hm;  // a dead producer's claim: counted as taken
      h += size;
      continue;
    }
    const uint32_t len = r->length;
    if (len > rec_max_ || len < meta_ || (h & mask_) + record_size(len) > cap_ || record_size(len) > tail - h) {
      st = Status::Corrupt;
      break;
    }
    if (kind == kRecCommitted) {
      if (bytes + len > dst_cap) {
        if (k == 0) {
          st = Status::BufferTooSmall;
          if (needed) *needed = len;
        }
        break;
      }
      journal();
      if (ack_) {
        lease_locked(r, now);
        leased_[k] = 1;
      } else {
        r->state.store(rec_state(kRecReading, owner_), std::memory_order_relaxed);
      }
      taken_[k] = h;
      lengths[k++] = len;
      bytes += len;
      h += record_size(len);
      ++hm;
      if (k == 2) SAGE_HOOK(MidTake);  // inside the consumer lock, two records already marked
    } else if (kind == kRecClaimed) {
      if (owner_alive(rec_owner(s))) break;  // FIFO: wait for it to commit
      // Its producer died before committing: the record becomes padding, never delivered. (Kept
      // even if this take is rolled back: passing it again counts it again, from the old count.)
      r->length = static_cast<uint32_t>(record_size(len));
      r->state.store(rec_state(kRecPadding, kAbandonedOwner), std::memory_order_release);
      hdr_->abandoned_claims.fetch_add(1, std::memory_order_relaxed);
      ++hm;
      h += r->length;
    } else {
      st = Status::Corrupt;
      break;
    }
  }
  if (h != head) {
    journal();
    hdr_->head_msgs.store(hm, std::memory_order_relaxed);
    hdr_->head.store(h, std::memory_order_release);
    j.valid.store(0, std::memory_order_release);  // the take is committed
    if (!ack_) hdr_->reclaim_limit.store(h, std::memory_order_release);
  }
  unlock_cons();
  if (k == 0) {
    if (st != Status::Ok) return st;
    if (h == tail && hdr_->closed.load(std::memory_order_acquire) && hdr_->tail.load(std::memory_order_acquire) == h &&
        !pending) {
      return Status::Closed;
    }
    if (h != head || floor_moved) wake(false);  // padding skipped, or acked space: space to reclaim
    return Status::Empty;
  }
  SAGE_HOOK(AfterTake);
  ProcessSlot& me = hdr_->slots[slot_];
  if (!(me.role.load(std::memory_order_relaxed) & kRoleConsumer)) me.role.fetch_or(kRoleConsumer, std::memory_order_relaxed);

  // Copy out the records we marked, by the positions noted under the lock. Never walk the
  // headers again: padding between them is below `head` now, and producers may already have
  // reclaimed and reused it.
  size_t at = 0;
  for (size_t i = 0; i < k; ++i) {
    RecordHeader* r = record_at(taken_[i]);
    const uint32_t len = lengths[i];
    const uint8_t* src = reinterpret_cast<uint8_t*>(r) + kRecordHeaderSize;
    if (i == 0 && SAGE_HOOK_ARMED(MidRead)) {
      memcpy(dst + at, src, len / 2);
      SAGE_HOOK(MidRead);
    }
    if (ack_) {
      // Leased: the record stays until acked. Hand out its id in place of the lease meta (the
      // token noted under the lock).
      const LeasePrefix id{taken_[i], leased_[i], 0};
      memcpy(dst + at, &id, sizeof id);
      if (len > kLeaseMetaSize) memcpy(dst + at + kLeaseMetaSize, src + kLeaseMetaSize, len - kLeaseMetaSize);
      // Copied: now a lease that may expire (lease_locked left it SETTLING to us for the copy).
      r->state.store(rec_state(kRecLeased, owner_), std::memory_order_release);
      at += len;
      continue;
    }
    if (len) memcpy(dst + at, src, len);
    r->state.store(rec_state(kRecConsumed, owner_), std::memory_order_release);  // space reusable
    at += len;
  }
  if (!ack_ || floor_moved) wake(false);
  *got = k;
  return Status::Ok;  // a corrupt record after these is reported by the next get
}

// ---------------------------------------------------------------------------------------------
// Waiting

Status Queue::readable_now(bool* stuck) {
  *stuck = false;
  const bool closed = hdr_->closed.load(std::memory_order_acquire);
  const uint64_t h = hdr_->head.load(std::memory_order_acquire);
  const uint64_t t = hdr_->tail.load(std::memory_order_acquire);
  if (ack_ && h == t) {
    // Nothing new: readable once a lease scan is due (expired, dead or nacked leases). While
    // leases are out, poll: a consumer's death is only noticed by a scan.
    const bool redeliverable = hdr_->redeliverable.load(std::memory_order_relaxed) != 0;
    if (!redeliverable && hdr_->reclaim_limit.load(std::memory_order_acquire) == h) return closed ? Status::Ok : Status::Empty;
    *stuck = true;
    if (monotonic_ns() >= hdr_->lease_check_ns.load(std::memory_order_acquire)) return Status::Ok;
    return closed && !redeliverable ? Status::Ok : Status::Empty;
  }
  if (closed) return Status::Ok;
  if (h == t) return Status::Empty;
  RecordHeader* r = record_at(h);
  if (r == nullptr) return Status::Corrupt;
  const uint32_t s = r->state.load(std::memory_order_acquire);
  if (rec_kind(s) != kRecClaimed) return Status::Ok;  // a get makes progress (or reports corruption)
  if (!owner_alive(rec_owner(s))) return Status::Ok;  // the get will turn it into padding
  *stuck = true;  // a producer is writing it; poll in case it dies
  return Status::Empty;
}

Status Queue::writable_now(uint64_t bytes, bool* stuck) {
  *stuck = false;
  if (hdr_->closed.load(std::memory_order_acquire)) return Status::Ok;
  if (maxsize_ != 0 && hdr_->tail_msgs.load(std::memory_order_acquire) - hdr_->head_msgs.load(std::memory_order_acquire) >= maxsize_) {
    return Status::Full;
  }
  const uint64_t rec = record_size(bytes + meta_);
  for (int pass = 0; pass < 2; ++pass) {
    const uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
    const uint64_t off = tail & mask_;
    const uint64_t pad = off + rec > cap_ ? cap_ - off : 0;
    if (tail + pad + rec - hdr_->freed.load(std::memory_order_acquire) <= cap_) return Status::Ok;
    if (ack_ && lock_cons(kLockTryOnly) == Status::Ok) {
      advance_floor_locked();  // settled records count once the ack floor passes them
      unlock_cons();
    }
    if (pass == 1 || tail + pad + rec - hdr_->reclaim_limit.load(std::memory_order_acquire) > cap_) break;
    // Consumers have moved on but nobody reclaimed their space yet: do it now. A corrupt record
    // below reclaim_limit would keep the space from ever coming free: report it instead of
    // waiting for space that cannot come.
    // Never wait for the lock here (this runs on notifier threads and in blocking waits): when
    // it is busy, say "not yet" and poll (stuck) -- its holder reclaims or we retry soon.
    const Status ls = lock_prod(kLockTryOnly);
    if (ls == Status::TimedOut) {
      *stuck = true;
      return Status::Full;
    }
    if (ls != Status::Ok) return ls;
    const Status rs = reclaim_locked();
    unlock_prod();
    if (rs != Status::Ok) return rs;
  }
  // Blocked behind records still being read: if a reader died, only polling notices.
  *stuck = hdr_->reclaim_limit.load(std::memory_order_acquire) != hdr_->freed.load(std::memory_order_acquire);
  return Status::Full;
}

Status Queue::wait_on(bool for_data, uint64_t bytes, int64_t timeout_ms, const std::atomic<bool>* cancel, bool spin) {
  if (hdr_ == nullptr || !attached_) return Status::InvalidArgument;
  const uint64_t start = monotonic_ns();
  const uint64_t deadline = timeout_ms < 0 ? 0 : start + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  const uint64_t spin_end = start + (spin ? spin_ns_ : 0);
  std::atomic<uint32_t>* seq = for_data ? &hdr_->data_seq : &hdr_->space_seq;
  std::atomic<uint32_t>* waiters = for_data ? &hdr_->data_waiters : &hdr_->space_waiters;
  std::atomic<uint32_t>* regs = for_data ? &hdr_->data_regs : &hdr_->space_regs;
  ProcessSlot& me = hdr_->slots[slot_];
  std::atomic<uint32_t>* my_waiters = for_data ? &me.data_waiters : &me.space_waiters;
  const Status not_ready = for_data ? Status::Empty : Status::Full;
  bool stuck = false;
  for (;;) {
    if (probe_truncated()) return Status::Truncated;
    const Status first = for_data ? readable_now(&stuck) : writable_now(bytes, &stuck);
    if (damaged()) return Status::Truncated;
    // Ready: but if the lock that the get (put) needs is held, e.g. by a stopped process, the
    // caller's non-blocking retry would only find it busy again. Wait for the lock here (timed,
    // in slices: cancel and the deadline are still honoured).
    if (first == Status::Ok) return await_lock(!for_data, deadline == 0 ? kLockForever : deadline, cancel);
    if (first != not_ready) return first;  // the corruption the probe found
    if (cancel && cancel->load(std::memory_order_acquire)) return Status::Cancelled;
    uint64_t now = monotonic_ns();
    if (deadline != 0 && now >= deadline) return Status::TimedOut;
    if (now < spin_end) {
      // Spinning costs a core but avoids the ~30 us wake-up of a halted vCPU.
      for (int i = 0; i < 64; ++i) cpu_relax();
      continue;
    }
    my_waiters->fetch_add(1, std::memory_order_relaxed);
    regs->fetch_add(1, std::memory_order_acq_rel);     // before the count: a waker that sees the
    waiters->fetch_add(1, std::memory_order_acq_rel);  // count (its RMW pairs with this one) sees it
    const uint32_t observed = seq->load(std::memory_order_acquire);
    const Status probe = for_data ? readable_now(&stuck) : writable_now(bytes, &stuck);
    if (probe == not_ready && !(cancel && cancel->load(std::memory_order_acquire))) {
      uint64_t until = deadline;
      const uint64_t poll = monotonic_ns() + (stuck ? kStuckPollNs : kMaxSleepNs);
      if (until == 0 || poll < until) until = poll;
      hdr_->waits.fetch_add(1, std::memory_order_relaxed);
      // Woken, timed out or the word had changed (EAGAIN): every outcome means the same thing,
      // loop and re-check readiness, cancel and the deadline. (EFAULT/EINVAL cannot happen: the
      // word is an aligned atomic in our live mapping.)
      (void)futex_wait_until(seq, observed, until);
    }
    waiters->fetch_sub(1, std::memory_order_relaxed);
    my_waiters->fetch_sub(1, std::memory_order_relaxed);
    if (probe != not_ready && probe != Status::Ok) return probe;  // Ok: the loop's first probe re-checks
  }
}

Status Queue::wait_readable(int64_t timeout_ms, const std::atomic<bool>* cancel, bool spin) {
  if (forked()) return Status::Forked;  // its waiter counts would land in the parent's slot
  return wait_on(true, 0, timeout_ms, cancel, spin);
}

Status Queue::wait_writable(uint64_t bytes, int64_t timeout_ms, const std::atomic<bool>* cancel, bool spin) {
  if (forked()) return Status::Forked;
  if (bytes > max_msg_) return Status::TooLarge;
  return wait_on(false, bytes, timeout_ms, cancel, spin);
}

void Queue::wake_all() {
  if (hdr_ == nullptr) return;
  hdr_->data_seq.fetch_add(1, std::memory_order_release);
  hdr_->space_seq.fetch_add(1, std::memory_order_release);
  // How many were woken does not matter here (nobody may be asleep), and a failure (EFAULT,
  // EINVAL) is impossible on these aligned words of our live mapping.
  (void)futex_wake_all(&hdr_->data_seq);
  (void)futex_wake_all(&hdr_->space_seq);
}

namespace {
int64_t remaining_ms(int64_t timeout_ms, uint64_t start) {
  if (timeout_ms < 0) return -1;
  const int64_t spent = static_cast<int64_t>((monotonic_ns() - start) / 1000000ull);
  return spent >= timeout_ms ? 0 : timeout_ms - spent;
}
}  // namespace

// Blocking put/get: the deadline covers the lock as well (put_attempt/get_attempt wait for it
// in slices), and `cancel` is checked between slices and sleeps.
Status Queue::put(const Slice* msgs, size_t n, size_t* written, int64_t timeout_ms, const std::atomic<bool>* cancel,
                  Status cancel_status) {
  *written = 0;
  const uint64_t start = monotonic_ns();
  const uint64_t deadline = timeout_ms < 0 ? kLockForever : start + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  for (;;) {
    if (cancel && cancel->load(std::memory_order_acquire)) return cancel_status;
    if (damaged()) return Status::Truncated;
    size_t w = 0;
    Status s = put_attempt(msgs + *written, n - *written, &w, deadline, cancel);
    *written += w;
    if (damaged()) return Status::Truncated;
    if (s == Status::Cancelled) return cancel_status;
    if (s != Status::Full) return s;
    if (monotonic_ns() >= deadline) return Status::Full;
    Status ws = wait_on(false, msgs[*written].length, remaining_ms(timeout_ms, start), cancel);
    if (ws == Status::Cancelled) return cancel_status;
    if (ws == Status::TimedOut) {
      // One last try without waiting for the lock: space may have come at the very end.
      s = try_put(msgs + *written, n - *written, &w);
      *written += w;
      return s;
    }
    if (ws != Status::Ok) return ws;
  }
}

Status Queue::get(uint8_t* dst, size_t dst_cap, uint32_t* lengths, size_t max, size_t* got, size_t* needed,
                  int64_t timeout_ms, const std::atomic<bool>* cancel, Status cancel_status) {
  const uint64_t start = monotonic_ns();
  const uint64_t deadline = timeout_ms < 0 ? kLockForever : start + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  for (;;) {
    if (cancel && cancel->load(std::memory_order_acquire)) return cancel_status;
    if (damaged()) return Status::Truncated;
    Status s = get_attempt(dst, dst_cap, lengths, max, got, needed, deadline, cancel);
    if (damaged()) {
      *got = 0;
      return Status::Truncated;
    }
    if (s == Status::Cancelled) return cancel_status;
    if (s != Status::Empty) return s;
    if (monotonic_ns() >= deadline) return Status::Empty;
    Status ws = wait_on(true, 0, remaining_ms(timeout_ms, start), cancel);
    if (ws == Status::Cancelled) return cancel_status;
    if (ws == Status::TimedOut) return try_get(dst, dst_cap, lengths, max, got, needed);
    if (ws != Status::Ok) return ws;
  }
}

// ---------------------------------------------------------------------------------------------
// Close, size, stats

void Queue::close() {
  // A forked child's inherited handle closes nothing (like every other use of it, see forked()).
  if (hdr_ == nullptr || !attached_ || forked() || damaged()) return;
  // Normally under the producer lock, so no put is between its closed-check (made under that
  // lock) and its claim. Gets need no lock: they report Closed only once head has caught up with
  // a tail re-read after seeing `closed`. Closing never waits for the lock: when it is busy (a
  // holder stopped inside it) or unusable, close anyway -- a put already inside its critical
  // section may then still commit, and its message is delivered like any other.
  const Status ls = lock_prod(kLockTryOnly);
  hdr_->closed.store(1, std::memory_order_seq_cst);
  if (ls == Status::Ok) unlock_prod();
  wake_all();
}

bool Queue::closed() const { return hdr_ != nullptr && hdr_->closed.load(std::memory_order_acquire) != 0; }

uint64_t Queue::qsize() const {
  if (hdr_ == nullptr) return 0;
  const uint64_t hm = hdr_->head_msgs.load(std::memory_order_acquire);
  const uint64_t tm = hdr_->tail_msgs.load(std::memory_order_acquire);
  // Explicit mode: messages to be delivered again count too (the figure is a hint: see Header).
  const uint64_t again = ack_ ? hdr_->redeliverable.load(std::memory_order_relaxed) : 0;
  return (tm > hm ? tm - hm : 0) + again;
}

uint64_t Queue::used_bytes() const {
  if (hdr_ == nullptr) return 0;
  const uint64_t f = hdr_->freed.load(std::memory_order_acquire);
  const uint64_t t = hdr_->tail.load(std::memory_order_acquire);
  return t > f ? t - f : 0;
}

uint32_t Queue::codec() const { return hdr_ ? hdr_->codec : 0; }
uint64_t Queue::nonce() const { return hdr_ ? hdr_->nonce : 0; }

Stats Queue::stats() {
  Stats s{};
  if (hdr_ == nullptr) return s;
  s.capacity = cap_;
  s.max_message_size = max_msg_;
  s.maxsize = maxsize_;
  const uint64_t head = hdr_->head.load(std::memory_order_acquire);
  const uint64_t tail = hdr_->tail.load(std::memory_order_acquire);
  s.depth_msgs = qsize();
  s.depth_bytes = tail > head ? tail - head : 0;
  s.used_bytes = used_bytes();
  s.enqueued = hdr_->tail_msgs.load(std::memory_order_acquire);
  s.dequeued = hdr_->head_msgs.load(std::memory_order_acquire);
  s.abandoned_claims = hdr_->abandoned_claims.load(std::memory_order_relaxed);
  s.lost_in_read = hdr_->lost_in_read.load(std::memory_order_relaxed);
  s.wake_calls = hdr_->wake_calls.load(std::memory_order_relaxed);
  s.waits = hdr_->waits.load(std::memory_order_relaxed);
  s.lock_recoveries = hdr_->lock_recoveries.load(std::memory_order_relaxed);
  s.slots_reaped = hdr_->slots_reaped.load(std::memory_order_relaxed);
  s.waiter_heals = hdr_->waiter_heals.load(std::memory_order_relaxed);
  s.data_waiters = hdr_->data_waiters.load(std::memory_order_relaxed);
  s.space_waiters = hdr_->space_waiters.load(std::memory_order_relaxed);
  s.codec = hdr_->codec;
  s.mode = hdr_->mode;
  s.created_ns = hdr_->created_ns;
  s.nonce = hdr_->nonce;
  s.closed = closed();
  s.file_uid = file_uid_;
  s.file_mode = file_mode_;
  s.trust = trust_;
  if (ack_) {
    s.ack_mode = hdr_->ack_mode;
    s.max_deliveries = hdr_->max_deliveries;
    s.ack_timeout_ms = hdr_->ack_timeout_ns / 1000000;
    s.acks = hdr_->acks.load(std::memory_order_relaxed);
    s.nacks = hdr_->nacks.load(std::memory_order_relaxed);
    s.stale_settles = hdr_->stale_settles.load(std::memory_order_relaxed);
    s.redeliveries = hdr_->redeliveries.load(std::memory_order_relaxed);
    s.expired_leases = hdr_->expired_leases.load(std::memory_order_relaxed);
    s.dead_leases = hdr_->dead_leases.load(std::memory_order_relaxed);
    s.redeliverable = hdr_->redeliverable.load(std::memory_order_relaxed);
    const uint64_t floor = hdr_->reclaim_limit.load(std::memory_order_acquire);
    s.unacked_bytes = head > floor ? head - floor : 0;
  }
  for (uint32_t i = 0; i < kMaxSlots; ++i) {
    ProcessSlot& slot = hdr_->slots[i];
    if (slot.state.load(std::memory_order_acquire) != kSlotActive) continue;
    SlotInfo info{};
    info.index = i;
    info.pid = slot.pid.load(std::memory_order_relaxed);
    info.role = slot.role.load(std::memory_order_relaxed);
    info.attached_ns = slot.attached_ns.load(std::memory_order_relaxed);
    info.data_waiters = slot.data_waiters.load(std::memory_order_relaxed);
    info.space_waiters = slot.space_waiters.load(std::memory_order_relaxed);
    if (attached_ && i == slot_) {
      info.alive = true;
    } else if (trust_ != Status::Ok) {
      // An untrusted segment is mapped read-only, and locking a mutex someone else wrote would
      // put it on this thread's robust list: no probing, the slot is reported not alive.
      info.alive = false;
    } else {
      // Probe without reaping, so a dead process stays visible (e.g. to `sage-queue ls`) until
      // the data path or `gc` cleans it up.
      info.alive = probe_slot(hdr_, i) == SlotLiveness::Alive;
    }
    s.slots.push_back(info);
  }
  return s;
}

}  // namespace sage
