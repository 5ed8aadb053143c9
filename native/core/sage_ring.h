#pragma once
// sage::Queue: a crash-safe multi-producer multi-consumer queue of variable-size messages in a
// named shared-memory segment. No Node dependency; errors are Status codes, never exceptions.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sys/stat.h>
#include <sys/types.h>
#include <string>
#include <vector>

#include "layout.h"
#include "liveness.h"

namespace sage {

// Every status, in value order (Ok = 0, then 1, 2, ...): the one list the enum, kLastStatus and
// the addon's constants() table (checked against the TypeScript NativeStatus) are made from.
#define SAGE_STATUSES(X)                                                                          \
  X(Ok)                                                                                           \
  X(Empty)            /* nothing to get (or the head record is not committed yet) */              \
  X(Full)             /* no space (or maxsize reached) */                                         \
  X(Closed)           /* closed: puts fail; gets fail once drained */                             \
  X(TooLarge)         /* message over max_message_size: nothing written */                        \
  X(BufferTooSmall)   /* the destination cannot hold the next message; `needed` says how much */  \
  X(TimedOut)                                                                                     \
  X(Cancelled)                                                                                    \
  X(InvalidName)                                                                                  \
  X(InvalidArgument)                                                                              \
  X(Exists)                                                                                       \
  X(NotFound)                                                                                     \
  X(NotOurs)          /* the segment is not a SAGE queue */                                       \
  X(VersionMismatch)  /* a SAGE queue of another layout version or build */                       \
  X(NotInitialised)   /* its creator has not finished (or died while creating it) */              \
  X(NoSpace)          /* /dev/shm cannot hold the segment */                                      \
  X(NoSlots)          /* too many handles attached */                                             \
  X(PermissionDenied)                                                                             \
  X(Corrupt)          /* a record or cursor failed a bounds check */                              \
  X(SystemError)                                                                                  \
  X(Initialising)     /* its creator is alive and still initialising it (try again) */            \
  X(Forked)           /* the handle was attached by the parent of this forked process */        \
  X(UntrustedOwner)   /* the segment is owned by a user the opener does not trust */             \
  X(SharedMode)       /* the segment is writable by group/other and the opener did not allow it */ \
  X(Replaced)         /* the name now refers to another segment than the one this handle opened */ \
  X(Interrupted)      /* a blocking call was interrupted (the binding's signal watch) */          \
  X(Truncated)        /* the segment was shrunk under this process; the handle is unusable */      \
  X(LeaseLost)        /* explicit ack: this handle no longer holds that lease (settled, expired, redelivered) */

// [[nodiscard]] on the type: a Status returned by any function must be looked at.
enum class [[nodiscard]] Status : int {
#define SAGE_STATUS_ENUMERATOR(name) name,
  SAGE_STATUSES(SAGE_STATUS_ENUMERATOR)
#undef SAGE_STATUS_ENUMERATOR
};

namespace detail {
#define SAGE_STATUS_ONE(name) +1
constexpr int kStatusCount = 0 SAGE_STATUSES(SAGE_STATUS_ONE);
#undef SAGE_STATUS_ONE
}  // namespace detail
constexpr Status kLastStatus = static_cast<Status>(detail::kStatusCount - 1);

// The enumerator's name, e.g. "Empty" (the key of the addon's constants().status table).
[[nodiscard]] const char* status_name(Status s);
[[nodiscard]] const char* status_code(Status s);     // stable code, e.g. "ERR_QUEUE_EMPTY"
[[nodiscard]] const char* status_message(Status s);  // human sentence

struct CreateOptions {
  uint64_t capacity = 1 << 20;     // data bytes; rounded up to a power of two
  uint64_t max_message_size = 0;   // 0 = capacity / 4 - header
  uint64_t maxsize = 0;            // messages; 0 = unbounded
  uint32_t mode = 0600;
  uint32_t codec = 0;
  uint32_t ack_mode = kAckAuto;     // kAckExplicit: gets lease messages until acked (leases.cpp)
  uint64_t ack_timeout_ms = 30000;  // explicit mode: lease length (1 ms .. 1 day)
  uint32_t max_deliveries = 5;      // explicit mode: recorded for the bindings (1 .. 1e6)
};

// Explicit-ack mode: each message a get hands out starts with this 16-byte prefix (the record's
// lease id), followed by the payload; the lengths a get reports include it.
struct LeasePrefix {
  uint64_t position;    // the record's ring position: the message's identity
  uint32_t deliveries;  // 1 on first delivery: the lease token settle() must name
  uint32_t zero;
};
static_assert(sizeof(LeasePrefix) == 16, "lease prefix is 16 bytes");

// Whom an opener trusts (checked on the open descriptor with fstat, before anything is read).
// The segment's owner must be the caller's effective uid, root (who can read and write any
// process's memory anyway), or one of `trusted_uids`; and a segment that group or other may write
// is refused unless `allow_shared_mode`. A segment the caller creates is its own: not checked.
struct TrustPolicy {
  std::vector<uint32_t> trusted_uids;
  bool allow_shared_mode = false;
};

// Ok when `st` (the fstat of an open segment) passes `policy`; else UntrustedOwner, SharedMode,
// or NotOurs for something that is not a regular file.
[[nodiscard]] Status check_trust(const struct stat& st, const TrustPolicy& policy);

struct SlotInfo {
  uint32_t index;
  int32_t pid;
  uint32_t role;
  bool alive;
  uint64_t attached_ns;
  uint32_t data_waiters;
  uint32_t space_waiters;
};

struct Stats {
  uint64_t capacity, max_message_size, maxsize, depth_msgs, depth_bytes, used_bytes;
  uint64_t enqueued, dequeued, abandoned_claims, lost_in_read;
  uint64_t wake_calls, waits, lock_recoveries, slots_reaped, waiter_heals;
  uint32_t data_waiters, space_waiters, codec, mode;
  uint64_t created_ns, nonce;
  bool closed;
  // From fstat of the file (not from the segment, which its writers control): owner and mode.
  uint32_t file_uid, file_mode;
  // Explicit-ack mode (all zero in auto mode).
  uint32_t ack_mode, max_deliveries;
  uint64_t ack_timeout_ms, acks, nacks, stale_settles, redeliveries, expired_leases, dead_leases;
  uint64_t redeliverable;  // messages waiting to be delivered again (counted by the last scan, then kept up to date)
  uint64_t unacked_bytes;  // ring bytes from the ack floor to the head: held by leases, or acked behind one
  // Ok, or why the default trust policy refuses the segment (Inspect only: opening refuses it).
  // An untrusted segment is mapped read-only and its slots are not probed: `alive` is false.
  Status trust;
  std::vector<SlotInfo> slots;
};

// Where a message's bytes are, for batched puts.
struct Slice {
  const uint8_t* data;
  uint32_t length;
};

// Inspect maps an existing queue without attaching (no slot, no liveness lock): for tools that
// only read stats. An inspecting handle must not put, get or wait.
enum class OpenMode { Create, Open, OpenOrCreate, Inspect };

[[nodiscard]] bool valid_queue_name(const std::string& name);
std::string shm_name_for(const std::string& name);   // "/sageq.<name>"
extern const char* const kShmPrefix;                  // "sageq."
// Temporary names of segments being created: "sageq-tmp.<16 hex>.<name>" (list() ignores them).
extern const char* const kShmTempPrefix;              // "sageq-tmp."

// One attached handle. A handle's put/get calls must come from one thread at a time (give each
// thread its own handle); wait_readable, wait_writable, wake_all, qsize and stats may be called
// from any thread.
class Queue {
 public:
  // Creates and/or attaches. On failure returns the status and sets *sys_errno when relevant.
  // Creation is atomic: the segment is built and initialised under a private temporary name
  // (kShmTempPrefix) and then link()ed to its name without replacing, so a name only ever
  // refers to a complete segment; when the name is taken, the existing queue wins (OpenOrCreate
  // then opens it). Opening checks `trust` (see TrustPolicy) on the descriptor; Inspect maps an
  // untrusted segment read-only and reports the refusal in stats().trust instead.
  [[nodiscard]] static Status open(const std::string& name, OpenMode mode, const CreateOptions& opts,
                     std::unique_ptr<Queue>* out, int* sys_errno, uint64_t init_wait_ms = 1000,
                     const TrustPolicy& trust = TrustPolicy{});
  // Removes the name, whatever segment it refers to now.
  [[nodiscard]] static Status unlink(const std::string& name, int* sys_errno);
  // Names (without prefix) of every sage-queue segment in /dev/shm (temporary names excluded).
  static std::vector<std::string> list();
  // Temporary names left by creators that died before linking their segment into place (their
  // lock is free), optionally only those for the queues in `only`; removed unless dry_run.
  // Returns the file names (in /dev/shm) found (dry_run) or removed.
  static std::vector<std::string> collect_stale_temps(const std::vector<std::string>* only, bool dry_run);

  // Removes the name only if it still refers to the segment this handle opened (same device and
  // inode): Replaced when it now refers to another one (nothing removed), NotFound when it is
  // gone. Between the check and the unlink another process could still swap the name (a window
  // of one system call): removing a name by inode is not something POSIX offers.
  [[nodiscard]] Status unlink_if_same(int* sys_errno) const;

  ~Queue();
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // Detaches: stops using the segment and frees this handle's slot. Idempotent. In a child forked
  // after the handle attached, only unmaps: the slot stays the parent's.
  void release();
  bool released() const { return hdr_ == nullptr; }
  // True once the segment was found truncated under this process (fault_guard.h): every call
  // then reports Truncated, and release() leaves the damaged mapping in place.
  bool damaged() const;
  // Touches the end of the mapping, so a truncation is noticed even by an idle handle.
  bool probe_truncated() const;
  bool attached() const { return attached_; }

  // --- non-blocking operations (also the fast path of the blocking ones) ---
  // Puts up to n messages in order; *written says how many went in. A batch stops early at the
  // first message that does not fit (Full) -- earlier ones are committed.
  [[nodiscard]] Status try_put(const Slice* msgs, size_t n, size_t* written);
  // Gets up to max messages, copying payloads back to back into dst (16-byte aligned starts are
  // not guaranteed); lengths[i] receives each length. BufferTooSmall sets *needed when not even
  // the first message fits.
  [[nodiscard]] Status try_get(uint8_t* dst, size_t dst_cap, uint32_t* lengths, size_t max, size_t* got,
                 size_t* needed);

  // The non-blocking calls never wait for a lock: when the producer (consumer) lock is held
  // by another handle (possibly a stopped process) they report Full (Empty), the same outcome
  // as "would block". A lock in a state pthreads refuses, or held by a thread that does not
  // exist, is reported as Corrupt.

  // --- blocking operations (timeout_ms < 0 = forever) ---
  // The timeout covers waiting for the locks as well (acquired with a timed lock in slices, so
  // a dead holder is still recovered and a nonexistent one reported). When `cancel` becomes
  // true (set by another thread, or a signal handler, which should then call wake_all()), the
  // call returns `cancel_status` (Cancelled or Interrupted) within ~10 ms.
  [[nodiscard]] Status put(const Slice* msgs, size_t n, size_t* written, int64_t timeout_ms,
                           const std::atomic<bool>* cancel = nullptr, Status cancel_status = Status::Cancelled);
  [[nodiscard]] Status get(uint8_t* dst, size_t dst_cap, uint32_t* lengths, size_t max, size_t* got,
             size_t* needed, int64_t timeout_ms, const std::atomic<bool>* cancel = nullptr,
             Status cancel_status = Status::Cancelled);
  // Waits until a get could make progress (or the queue closes), without taking anything.
  // spin = false sleeps at once (for a caller that already spent the spin budget elsewhere).
  [[nodiscard]] Status wait_readable(int64_t timeout_ms, const std::atomic<bool>* cancel, bool spin = true);
  // Waits until `bytes` of payload could be put (or the queue closes).
  [[nodiscard]] Status wait_writable(uint64_t bytes, int64_t timeout_ms, const std::atomic<bool>* cancel, bool spin = true);
  // Wakes every waiter of this queue in every process (used to cancel a local wait).
  void wake_all();

  // --- explicit-ack mode (leases.cpp; docs/design.md "Explicit acks") ---
  // A get hands out each message prefixed by a LeasePrefix and leaves it in the ring, LEASED to
  // this handle until settled; its space is not reused before. A lease not settled within the
  // queue's ack timeout, or held by a handle that died, is delivered again (deliveries + 1).
  enum class Settle { Ack, Nack, Extend };
  // Ack: done with it (its space may be reused). Nack: deliver it again, not before `delay_ms`.
  // Extend: restart its lease timeout. LeaseLost when this handle no longer holds that delivery
  // (already settled, or expired and taken back / delivered again); an Ack of an expired lease
  // that nobody took yet still succeeds. InvalidArgument for an id that names no record.
  [[nodiscard]] Status settle(uint64_t position, uint32_t deliveries, Settle op, uint64_t delay_ms = 0);
  // Settles n leases (ids as handed out; delay 0), out[i] = each one's status; returns how many
  // succeeded. One counter update and one wake check for the whole batch.
  size_t settle_many(const LeasePrefix* ids, size_t n, Settle op, Status* out);
  // How many leases this handle holds (counted under the consumer lock, waiting up to timeout_ms).
  [[nodiscard]] Status held_leases(uint64_t* count, int64_t timeout_ms);
  bool explicit_ack() const { return ack_; }
  uint64_t ack_timeout_ms() const;
  uint32_t max_deliveries() const;

  // Closes the queue for every process. Never waits for a data lock: it tries the producer lock
  // briefly, and when that lock is held (e.g. by a stopped process) it closes anyway; a put
  // inside its critical section at that moment may still commit (docs/design.md).
  void close();
  bool closed() const;
  uint64_t qsize() const;
  uint64_t used_bytes() const;
  Stats stats();

  const std::string& name() const { return name_; }
  uint64_t capacity() const { return cap_; }
  uint64_t max_message_size() const { return max_msg_; }
  uint64_t maxsize() const { return maxsize_; }
  uint32_t codec() const;
  uint64_t nonce() const;
  // Spin budget before sleeping in a blocking wait (default 50 us; 0 = sleep at once).
  void set_spin_ns(uint64_t ns) { spin_ns_ = ns; }
  uint64_t spin_ns() const { return spin_ns_; }

 private:
  Queue() = default;
  // True in a child forked after this handle attached: the slot, its liveness lock and its waiter
  // counts belong to the parent, so the child must neither use nor release them.
  bool forked() const { return fork_gen_ != fork_generation(); }
  [[nodiscard]] Status attach_slot();  // claims a slot (liveness.h) for this handle
  // Creates the segment under a temporary name and links it to `name` (see open()).
  [[nodiscard]] static Status create_linked(const std::string& name, const CreateOptions& opts, uint64_t cap,
                                            uint64_t max_msg, std::unique_ptr<Queue>* out, int* sys_errno);
  void set_identity(const struct stat& st, Status trust);  // records what fstat said at open
  // Lock acquisition (see "Locks" in sage_ring.cpp). deadline_ns: kLockTryOnly = a few trylocks
  // and no wait; kLockForever = no deadline; else an absolute CLOCK_MONOTONIC time. Returns Ok
  // (held; a dead holder's journal was recovered), TimedOut (busy: not acquired in time),
  // Cancelled (cancel became true), or Corrupt (pthreads refused the lock word, or its owner
  // thread does not exist: never treated as acquired).
  static constexpr uint64_t kLockTryOnly = 0;
  static constexpr uint64_t kLockForever = UINT64_MAX;
  [[nodiscard]] Status lock_prod(uint64_t deadline_ns, const std::atomic<bool>* cancel = nullptr);
  [[nodiscard]] Status lock_cons(uint64_t deadline_ns, const std::atomic<bool>* cancel = nullptr);
  [[nodiscard]] Status acquire(pthread_mutex_t* m, bool prod, uint64_t deadline_ns, const std::atomic<bool>* cancel);
  // Waits (timed, in slices) until the lock is free and gives it back at once: used by readiness
  // waits, so a waiter does not report "ready" while a stopped process holds the lock.
  [[nodiscard]] Status await_lock(bool prod, uint64_t deadline_ns, const std::atomic<bool>* cancel);
  void unlock_prod();
  void unlock_cons();
  [[nodiscard]] Status put_attempt(const Slice* msgs, size_t n, size_t* written, uint64_t lock_deadline,
                                   const std::atomic<bool>* cancel);
  [[nodiscard]] Status get_attempt(uint8_t* dst, size_t dst_cap, uint32_t* lengths, size_t max, size_t* got,
                                   size_t* needed, uint64_t lock_deadline, const std::atomic<bool>* cancel);
  void recover_prod();
  void recover_cons();
  // Is the owner of a record still attached and alive? Reaps its slot if it died (liveness.h).
  [[nodiscard]] bool owner_alive(uint32_t owner);
  // Advances `freed` over consumed records (prod lock held). Corrupt if a record below
  // `reclaim_limit` fails a bounds check (`freed` then stays before it).
  [[nodiscard]] Status reclaim_locked();
  void wake(bool data);
  void heal_waiters();
  // Readiness probes used by waiters: Ok when a get (put of `bytes`) could make progress or the
  // queue is closed; Empty (Full) when not yet; Corrupt when the probe found the segment corrupt.
  // `stuck` = blocked behind a record whose owner must be re-checked periodically (a dead owner
  // is only noticed by polling).
  [[nodiscard]] Status readable_now(bool* stuck);
  [[nodiscard]] Status writable_now(uint64_t bytes, bool* stuck);
  [[nodiscard]] Status wait_on(bool for_data, uint64_t record_bytes, int64_t timeout_ms, const std::atomic<bool>* cancel,
                               bool spin = true);
  RecordHeader* record_at(uint64_t pos) const;
  // Explicit mode (leases.cpp), consumer lock held: moves the ack floor over settled records.
  // Returns whether the floor moved.
  bool advance_floor_locked();
  // After acks: moves the floor for a producer waiting for space (if the consumer lock is free) and wakes it.
  void acked_wake();
  // Takes expired and dead leases back (REDELIVER) and leases deliverable REDELIVER records to
  // this handle, appending them to taken_/lengths (in ring order) within max and dst_cap.
  [[nodiscard]] Status scan_leases_locked(uint64_t now, size_t dst_cap, uint32_t* lengths, size_t max, size_t* k,
                                          size_t* bytes, size_t* needed, bool* pending);
  // Marks a record taken from the head LEASED to this handle (consumer lock held).
  void lease_locked(RecordHeader* r, uint64_t now);
  void lower_lease_check(uint64_t when);
  // settle() without the ack counter and the producer wake (settle / settle_many do those).
  [[nodiscard]] Status settle_one(uint64_t position, uint32_t deliveries, Settle op, uint64_t delay_ms);
  void set_ack_mode(bool on, uint64_t timeout_ns) {
    ack_ = on;
    meta_ = on ? kLeaseMetaSize : 0;
    rec_max_ = max_msg_ + meta_;
    ack_timeout_ns_ = timeout_ns;
  }
  uint64_t meta_ = 0;  // bytes of LeaseMeta in front of each payload (16 in explicit mode, else 0)

  Header* hdr_ = nullptr;
  uint8_t* data_ = nullptr;
  int guard_ = -1;  // fault_guard.h registration of the mapping
  size_t map_size_ = 0;
  uint64_t cap_ = 0, mask_ = 0, max_msg_ = 0, maxsize_ = 0;
  uint64_t rec_max_ = 0;  // largest record `length`: max_msg_ + meta_
  bool ack_ = false;
  uint64_t ack_timeout_ns_ = 0;
  uint32_t slot_ = 0, owner_ = 0;
  bool attached_ = false;
  dev_t dev_ = 0;      // the segment this handle opened (fstat of its descriptor)
  ino_t ino_ = 0;
  uint32_t file_uid_ = 0, file_mode_ = 0;
  Status trust_ = Status::Ok;  // Inspect only: why the segment is untrusted (read-only mapping)
  uint64_t fork_gen_ = 0;  // fork_generation() when this handle attached
  pid_t pid_ = 0;          // the attaching process (release() double-checks with getpid())
  uint64_t spin_ns_ = 50000;
  std::string name_;
  std::vector<uint64_t> taken_;  // positions of the records one try_get took
  std::vector<uint32_t> leased_;  // explicit mode: their delivery counts (the lease tokens handed out)
};

}  // namespace sage
