#pragma once
// The shared-memory layout of a SAGE queue segment. Everything here lives in /dev/shm and is
// read by processes that may be of another build, or may have written garbage before dying:
// offsets only (never pointers), fixed-width fields, and every length/offset read from here is
// bounds-checked by the code that uses it.
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "version.h"

namespace sage {

// Our own cache-line constant (std::hardware_destructive_interference_size warns in headers).
constexpr size_t kCacheLine = 64;
// Hot cursors get two lines each, to defeat the adjacent-line prefetcher.
constexpr size_t kHotAlign = 128;

constexpr uint64_t kMagic = 0x3155455545474153ull;  // bytes "SAGEUEU1" in memory (little-endian)
constexpr uint32_t kMaxSlots = 128;                 // attached handles per queue
constexpr uint32_t kRecordAlign = 16;
constexpr uint32_t kRecordHeaderSize = 16;
constexpr size_t kNameMax = 200;
constexpr uint64_t kMinCapacity = 4096;
constexpr uint64_t kMaxCapacity = 1ull << 32;  // record lengths are 32-bit

// Record kinds, stored in the top 8 bits of a record's state word; the low 24 bits name the
// owner (slot index in bits 16..23, slot generation in bits 0..15).
enum RecordKind : uint32_t {
  kRecEmpty = 0,
  kRecClaimed = 1,    // space claimed by a producer, payload being written
  kRecCommitted = 2,  // payload complete: may be read
  kRecReading = 3,    // taken by a consumer, payload being copied out
  kRecConsumed = 4,   // read: space may be reused
  kRecPadding = 5,    // filler (wrap-around, or an abandoned claim): skipped
  // Explicit-ack queues only (leases.cpp). A taken record is LEASED to its consumer until acked
  // (then CONSUMED); its space is not reused before.
  kRecLeased = 6,     // delivered to the owner, not acked yet
  kRecSettling = 7,   // its owner is acking / nacking / extending it, or copying it out of a get
  kRecRedeliver = 8,  // nacked, or its lease expired / its owner died: to be delivered again
};

// Explicit-ack queues: the first 16 bytes of every record's payload area (the user's payload
// follows; the record's `length` counts both). Written by the producer (zeroes) before commit,
// then only by whoever holds the record exclusively (a consumer under the consumer lock while
// leasing it, or its owner in the SETTLING state).
struct LeaseMeta {
  std::atomic<uint32_t> deliveries;  // times handed out (the lease token: a stale ack names an older one)
  uint32_t reserved;
  std::atomic<uint64_t> deadline_ns;  // LEASED: lease expiry; REDELIVER: not before (CLOCK_MONOTONIC)
};
constexpr uint32_t kLeaseMetaSize = 16;
static_assert(sizeof(LeaseMeta) == kLeaseMetaSize, "lease meta is 16 bytes");

enum AckMode : uint32_t { kAckAuto = 0, kAckExplicit = 1 };

inline uint32_t rec_kind(uint32_t state) { return state >> 24; }
inline uint32_t rec_owner(uint32_t state) { return state & 0xFFFFFFu; }
inline uint32_t rec_state(uint32_t kind, uint32_t owner) { return (kind << 24) | (owner & 0xFFFFFFu); }
inline uint32_t owner_slot(uint32_t owner) { return owner >> 16; }
inline uint32_t owner_gen(uint32_t owner) { return owner & 0xFFFFu; }
inline uint32_t make_owner(uint32_t slot, uint32_t gen) { return (slot << 16) | (gen & 0xFFFFu); }

// Each record starts 16-byte aligned with this header; the payload follows.
struct RecordHeader {
  std::atomic<uint32_t> state;  // kind | owner; written last with release when committing
  uint32_t length;              // payload bytes (padding: the whole padding record's size)
  uint64_t position;            // logical ring position of this record (corruption check)
};
static_assert(sizeof(RecordHeader) == kRecordHeaderSize, "record header is 16 bytes");

enum SlotState : uint32_t {
  kSlotFree = 0,
  kSlotClaiming = 1,  // being set up by an attaching process
  kSlotActive = 2,
  kSlotReaping = 3,   // its owner died; a survivor is cleaning up
};

enum SlotRole : uint32_t { kRoleProducer = 1, kRoleConsumer = 2, kRoleCreator = 4 };

// One per attached handle. `alive` is a robust process-shared mutex held by the attaching thread
// for as long as the handle is attached: when the process dies the kernel marks it owner-died,
// which is how survivors learn of the death (never from a bare PID, which can be reused).
// Claimed, released and reaped only through liveness.h.
struct alignas(kHotAlign) ProcessSlot {
  pthread_mutex_t alive;
  std::atomic<uint32_t> state;
  std::atomic<uint32_t> gen;
  std::atomic<int32_t> pid;
  std::atomic<uint32_t> role;
  std::atomic<uint64_t> attached_ns;    // CLOCK_REALTIME, for display
  std::atomic<uint64_t> claiming_ns;    // CLOCK_MONOTONIC while kSlotClaiming
  std::atomic<uint32_t> data_waiters;   // this handle's share of Header::data_waiters
  std::atomic<uint32_t> space_waiters;  // this handle's share of Header::space_waiters
};

// Journal of a lock's critical section, for the next holder when this one dies inside it.
// Producer lock: a REDO record (the new tail and message count, re-applied if valid).
// Consumer lock: an UNDO record (the old head and message count, restored if valid, and the
// records the dead holder had marked are given back).
struct LockJournal {
  std::atomic<uint32_t> valid;
  uint32_t pad_;
  uint64_t cursor;
  uint64_t msgs;
};

// Owner stamped on a dead producer's claim turned into padding: passing it counts as a message
// taken (never a real owner: slot indexes are below 128).
constexpr uint32_t kAbandonedOwner = 0xFFFFFFu;

struct alignas(kHotAlign) Header {
  // --- identity: written once by the creator, `initialised` last (release) ---
  uint64_t magic;
  uint32_t layout_version;
  uint32_t layout_signature;
  uint64_t segment_size;
  uint64_t capacity;          // data bytes, a power of two
  uint64_t max_message_size;  // payload bytes
  uint64_t maxsize;           // messages, 0 = unbounded
  uint64_t nonce;
  uint64_t created_ns;        // CLOCK_REALTIME
  uint32_t codec;
  uint32_t mode;
  uint32_t data_offset;
  uint32_t slot_count;
  uint32_t ack_mode;        // AckMode
  uint32_t max_deliveries;  // explicit mode: deliveries before a message is dead-lettered (enforced by the bindings)
  uint64_t ack_timeout_ns;  // explicit mode: lease length
  char name[kNameMax + 8];
  std::atomic<uint32_t> initialised;
  std::atomic<uint32_t> closed;

  // --- producer side (guarded by prod_lock) ---
  alignas(kHotAlign) pthread_mutex_t prod_lock;
  LockJournal prod_journal;
  alignas(kHotAlign) std::atomic<uint64_t> tail;       // bytes claimed
  std::atomic<uint64_t> tail_msgs;                     // messages claimed
  alignas(kHotAlign) std::atomic<uint64_t> freed;      // bytes reclaimed behind the consumers

  // --- consumer side (guarded by cons_lock) ---
  alignas(kHotAlign) pthread_mutex_t cons_lock;
  LockJournal cons_journal;
  alignas(kHotAlign) std::atomic<uint64_t> head;       // bytes taken by consumers
  std::atomic<uint64_t> head_msgs;                     // messages taken (or abandoned)
  // How far producers may reclaim: `head` as of the last consumer critical section that
  // completed. A take whose holder died inside the lock is rolled back, so it must stay above it.
  std::atomic<uint64_t> reclaim_limit;

  // --- futex words and waiter counts: consumers wait for data, producers for space ---
  // `*_regs` counts registrations (ever); `*_woken` is the registration count the last wake
  // covered: a waker skips FUTEX_WAKE when nobody registered since (a woken waiter may take
  // tens of us to run and leave the count).
  alignas(kHotAlign) std::atomic<uint32_t> data_seq;
  std::atomic<uint32_t> data_waiters;
  std::atomic<uint32_t> data_regs;
  std::atomic<uint32_t> data_woken;
  alignas(kHotAlign) std::atomic<uint32_t> space_seq;
  std::atomic<uint32_t> space_waiters;
  std::atomic<uint32_t> space_regs;
  std::atomic<uint32_t> space_woken;

  // --- statistics (slow-path counters) ---
  alignas(kHotAlign) std::atomic<uint64_t> wake_calls;     // FUTEX_WAKE syscalls issued
  std::atomic<uint64_t> waits;                             // FUTEX_WAIT sleeps entered
  std::atomic<uint64_t> abandoned_claims;                  // claims of dead producers padded
  std::atomic<uint64_t> lost_in_read;                      // messages a dead consumer was reading
  std::atomic<uint64_t> lock_recoveries;                   // EOWNERDEAD recoveries
  std::atomic<uint64_t> slots_reaped;                      // dead handles cleaned up
  std::atomic<uint64_t> waiter_heals;                      // waiter counts repaired

  // --- explicit-ack bookkeeping (leases.cpp). In explicit mode `reclaim_limit` is the ack floor:
  // the first record not yet acked (producers never reclaim past it). ---
  alignas(kHotAlign) std::atomic<uint64_t> lease_check_ns;  // next scan for expired/dead leases
  std::atomic<uint64_t> redeliverable;    // REDELIVER records (a hint, recounted by every scan)
  std::atomic<uint64_t> acks;
  std::atomic<uint64_t> nacks;
  std::atomic<uint64_t> stale_settles;    // acks/nacks/extends refused: the lease was no longer held
  std::atomic<uint64_t> redeliveries;     // deliveries after the first
  std::atomic<uint64_t> expired_leases;   // leases taken back at their deadline
  std::atomic<uint64_t> dead_leases;      // leases taken back from a dead consumer

  ProcessSlot slots[kMaxSlots];
};

// A hash of sizes and alignments of every shared field: a build with another layout refuses
// to attach instead of corrupting data (the LMDB lock-file habit).
constexpr uint32_t fnv_mix(uint32_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= static_cast<uint32_t>((v >> (i * 8)) & 0xFF);
    h *= 16777619u;
  }
  return h;
}

constexpr uint32_t layout_signature() {
  uint32_t h = 2166136261u;
  h = fnv_mix(h, SAGE_LAYOUT_VERSION);
  h = fnv_mix(h, sizeof(Header));
  h = fnv_mix(h, alignof(Header));
  h = fnv_mix(h, offsetof(Header, initialised));
  h = fnv_mix(h, offsetof(Header, prod_lock));
  h = fnv_mix(h, offsetof(Header, tail));
  h = fnv_mix(h, offsetof(Header, freed));
  h = fnv_mix(h, offsetof(Header, cons_lock));
  h = fnv_mix(h, offsetof(Header, head));
  h = fnv_mix(h, offsetof(Header, reclaim_limit));
  h = fnv_mix(h, offsetof(Header, data_seq));
  h = fnv_mix(h, offsetof(Header, space_seq));
  h = fnv_mix(h, offsetof(Header, space_woken));
  h = fnv_mix(h, offsetof(Header, wake_calls));
  h = fnv_mix(h, offsetof(Header, ack_mode));
  h = fnv_mix(h, offsetof(Header, ack_timeout_ns));
  h = fnv_mix(h, offsetof(Header, lease_check_ns));
  h = fnv_mix(h, offsetof(Header, dead_leases));
  h = fnv_mix(h, sizeof(LeaseMeta));
  h = fnv_mix(h, offsetof(Header, slots));
  h = fnv_mix(h, sizeof(ProcessSlot));
  h = fnv_mix(h, sizeof(pthread_mutex_t));
  h = fnv_mix(h, sizeof(RecordHeader));
  h = fnv_mix(h, kCacheLine);
  h = fnv_mix(h, kHotAlign);
  h = fnv_mix(h, kMaxSlots);
  h = fnv_mix(h, kRecordAlign);
  return h;
}

static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be lock-free");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "cursors must be lock-free");
static_assert(sizeof(ProcessSlot) == kHotAlign, "one slot per two cache lines");

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
inline uint64_t record_size(uint64_t payload) { return align_up(kRecordHeaderSize + payload, kRecordAlign); }

}  // namespace sage
