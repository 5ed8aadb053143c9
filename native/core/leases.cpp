// Explicit-ack mode of sage::Queue: leases, acks and redelivery (docs/design.md "Explicit acks").
//
// A get marks each record it takes LEASED to its handle (owner slot + generation in the state
// word) with a lease deadline and a delivery count in the record's LeaseMeta, and leaves it in
// the ring. Its owner settles it lock-free: it first moves the state word LEASED(me) ->
// SETTLING(me) with a CAS, which makes the record its own to read and write, checks that the
// record is the one it was given (position and delivery count, the lease token), and then stores
// CONSUMED (ack), REDELIVER (nack) or LEASED again with a new deadline (extend).
//
// The ack floor (`reclaim_limit` in this mode) is the first record not yet settled; producers
// never reclaim past it, so everything in [floor, head) keeps its memory, and a consumer holding
// the consumer lock may walk it. Such a walk (a lease scan) runs when `lease_check_ns` is due: it
// takes back leases whose deadline passed or whose owner died (their slot's robust liveness
// mutex says so; no pid is ever polled) by moving them to REDELIVER, and leases REDELIVER
// records to the scanning handle, oldest first, before anything new from the head. While leases
// are out, a scan is due at least every kLivenessScanNs.
#include <cstring>

#include "layout.h"
#include "liveness.h"
#include "futex.h"
#include "sage_ring.h"
#include "test_hooks.h"

namespace sage {

namespace {
// While leases are out, how often a consumer looks for dead holders (bounds redelivery time
// after a SIGKILL, together with the 2 ms poll of waiting consumers).
constexpr uint64_t kLivenessScanNs = 10000000;  // 10 ms

LeaseMeta* meta_of(RecordHeader* r) { return reinterpret_cast<LeaseMeta*>(r + 1); }
}  // namespace

uint64_t Queue::ack_timeout_ms() const { return hdr_ != nullptr && ack_ ? hdr_->ack_timeout_ns / 1000000 : 0; }
uint32_t Queue::max_deliveries() const { return hdr_ != nullptr && ack_ ? hdr_->max_deliveries : 0; }

void Queue::lower_lease_check(uint64_t when) {
  uint64_t cur = hdr_->lease_check_ns.load(std::memory_order_relaxed);
  while (when < cur &&
         !hdr_->lease_check_ns.compare_exchange_weak(cur, when, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

void Queue::lease_locked(RecordHeader* r, uint64_t now) {
  LeaseMeta* m = meta_of(r);
  m->deadline_ns.store(now + ack_timeout_ns_, std::memory_order_relaxed);
  m->deliveries.store(m->deliveries.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // SETTLING(me), not LEASED yet: get_attempt copies the record out after dropping the consumer
  // lock and only then stores LEASED. A scan never takes back a live owner's SETTLING record, so
  // however long the copy is delayed, the lease cannot expire under it and be redelivered, acked
  // and its space reused by a producer while we still read it (a torn message).
  r->state.store(rec_state(kRecSettling, owner_), std::memory_order_release);
  lower_lease_check(now + kLivenessScanNs);
}

bool Queue::advance_floor_locked() {
  // Only over settled records and padding: anything else holds its memory.
  uint64_t f = hdr_->reclaim_limit.load(std::memory_order_relaxed);
  const uint64_t start = f;
  const uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  while (f < head) {
    RecordHeader* r = record_at(f);
    if (r == nullptr || r->position != f) break;  // the scan reports it
    const uint32_t kind = rec_kind(r->state.load(std::memory_order_acquire));
    uint64_t size;
    if (kind == kRecConsumed) {
      if (r->length > rec_max_) break;
      size = record_size(r->length);
    } else if (kind == kRecPadding) {
      size = r->length;
      if (size < kRecordHeaderSize || size % kRecordAlign != 0 || (f & mask_) + size > cap_) break;
    } else {
      break;
    }
    if (size > head - f) break;
    f += size;
  }
  if (f == start) return false;
  hdr_->reclaim_limit.store(f, std::memory_order_release);
  return true;
}

Status Queue::scan_leases_locked(uint64_t now, size_t dst_cap, uint32_t* lengths, size_t max, size_t* k,
                                 size_t* bytes, size_t* needed, bool* pending) {
  // Liveness of each owner met, asked once per scan (a trylock on its slot's robust mutex).
  int8_t alive_cache[kMaxSlots];
  uint32_t cached_owner[kMaxSlots];
  memset(alive_cache, -1, sizeof alive_cache);
  auto alive = [&](uint32_t owner) {
    const uint32_t slot = owner_slot(owner);
    if (slot >= kMaxSlots) return false;
    if (alive_cache[slot] < 0 || cached_owner[slot] != owner) {
      cached_owner[slot] = owner;
      alive_cache[slot] = owner == owner_ || owner_alive(owner) ? 1 : 0;
    }
    return alive_cache[slot] == 1;
  };
  const uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  // Claim the due check, leaving a fallback in case we die before the end: a scanner killed here
  // must not leave the next scan never due. A nack or lease that lowers it while we walk keeps
  // its lower value (see the end).
  const uint64_t fallback = now + kLivenessScanNs;
  hdr_->lease_check_ns.store(fallback, std::memory_order_release);
  uint64_t next = UINT64_MAX;  // when the next scan is due
  uint64_t waiting = 0;        // REDELIVER records left
  bool full = false;           // stopped taking: the batch or the destination is full
  Status result = Status::Ok;
  uint64_t pos = hdr_->reclaim_limit.load(std::memory_order_relaxed);
  while (pos < head) {
    RecordHeader* r = record_at(pos);
    if (r == nullptr || r->position != pos) {
      result = Status::Corrupt;
      break;
    }
    uint32_t st = r->state.load(std::memory_order_acquire);
    const uint32_t kind = rec_kind(st);
    if (kind == kRecPadding) {
      const uint64_t size = r->length;
      if (size < kRecordHeaderSize || size % kRecordAlign != 0 || (pos & mask_) + size > cap_ || size > head - pos) {
        result = Status::Corrupt;
        break;
      }
      pos += size;
      continue;
    }
    const uint32_t len = r->length;
    if (len > rec_max_ || len < meta_ || (pos & mask_) + record_size(len) > cap_ || record_size(len) > head - pos) {
      result = Status::Corrupt;
      break;
    }
    LeaseMeta* m = meta_of(r);
    if (kind == kRecLeased || kind == kRecSettling) {
      const uint32_t owner = rec_owner(st);
      const bool dead = !alive(owner);
      const bool expired = kind == kRecLeased && m->deadline_ns.load(std::memory_order_relaxed) <= now;
      if (dead || expired) {
        // Taken back. A CAS: its owner may be settling it right now (then it is theirs).
        if (r->state.compare_exchange_strong(st, rec_state(kRecRedeliver, 0), std::memory_order_acq_rel)) {
          m->deadline_ns.store(0, std::memory_order_relaxed);
          (dead ? hdr_->dead_leases : hdr_->expired_leases).fetch_add(1, std::memory_order_relaxed);
          st = rec_state(kRecRedeliver, 0);
        } else {
          next = now;  // changed under us: look again next time
          pos += record_size(len);
          continue;
        }
      } else {
        // (SETTLING: being copied out of a get, or settled. Either way its lease deadline is the
        // next moment it can matter, unless its owner dies first.)
        const uint64_t d = m->deadline_ns.load(std::memory_order_relaxed);
        if (d < next) next = d;
        if (now + kLivenessScanNs < next) next = now + kLivenessScanNs;
        pos += record_size(len);
        continue;
      }
    }
    if (rec_kind(st) == kRecRedeliver) {
      const uint64_t not_before = m->deadline_ns.load(std::memory_order_relaxed);
      const uint32_t out = len;  // handed out as prefix + payload: the record's length
      if (not_before > now) {
        ++waiting;
        if (not_before < next) next = not_before;
      } else if (full || *k >= max || *bytes + out > dst_cap) {
        if (*k == 0 && out > dst_cap && needed) *needed = out;
        full = true;
        ++waiting;
        next = now;  // deliverable now: the next get takes it
      } else if (r->state.compare_exchange_strong(st, rec_state(kRecSettling, owner_), std::memory_order_acq_rel)) {
        // Ours alone now (a late ack of the expired lease may have won it instead: then it is gone).
        SAGE_HOOK(InScan);
        lease_locked(r, now);
        hdr_->redeliveries.fetch_add(1, std::memory_order_relaxed);
        taken_[*k] = pos;
        leased_[*k] = m->deliveries.load(std::memory_order_relaxed);
        lengths[(*k)++] = out;
        *bytes += out;
      } else {
        next = now;  // changed under us (a settle holds it for a moment): look again next time
      }
      pos += record_size(len);
      continue;
    }
    if (kind == kRecConsumed) {
      pos += record_size(len);
      continue;
    }
    result = Status::Corrupt;  // nothing else can be below the head
    break;
  }
  // A scan that stopped early (corruption) leaves the check due, so it is reported again.
  if (result != Status::Ok) next = now;
  hdr_->redeliverable.store(waiting, std::memory_order_relaxed);
  // The leases this scan took are out now too. (Leases are only taken under the consumer lock, so
  // no other handle leased anything meanwhile; the only concurrent lowering is a nack, of a record
  // this walk saw leased to a live owner or already nacked: `next` covers it. So replacing our
  // own fallback by `next`, which may be later, loses nothing.)
  if (*k > 0 && now + kLivenessScanNs < next) next = now + kLivenessScanNs;
  uint64_t expected = fallback;
  if (!hdr_->lease_check_ns.compare_exchange_strong(expected, next, std::memory_order_acq_rel)) lower_lease_check(next);
  *pending = waiting != 0;
  if (*k == 0 && full && needed && *needed != 0) return Status::BufferTooSmall;
  return result;
}

Status Queue::settle(uint64_t position, uint32_t deliveries, Settle op, uint64_t delay_ms) {
  if (hdr_ == nullptr || !attached_) return Status::InvalidArgument;
  if (forked()) return Status::Forked;
  if (damaged()) return Status::Truncated;
  const Status s = settle_one(position, deliveries, op, delay_ms);
  if (s == Status::Ok && op == Settle::Ack) {
    hdr_->acks.fetch_add(1, std::memory_order_relaxed);
    acked_wake();
  }
  return s;
}

void Queue::acked_wake() {
  // A producer waiting for space needs the ack floor past what was acked: move it now if the
  // consumer lock is free (else its holder's get moves it, and wakes the producer).
  if (hdr_->space_waiters.load(std::memory_order_relaxed) != 0 && lock_cons(kLockTryOnly) == Status::Ok) {
    advance_floor_locked();
    unlock_cons();
  }
  wake(false);
}

size_t Queue::settle_many(const LeasePrefix* ids, size_t n, Settle op, Status* out) {
  if (hdr_ == nullptr || !attached_ || forked() || damaged()) {
    const Status s = hdr_ == nullptr || !attached_ ? Status::InvalidArgument : forked() ? Status::Forked : Status::Truncated;
    for (size_t i = 0; i < n; ++i) out[i] = s;
    return 0;
  }
  size_t ok = 0;
  for (size_t i = 0; i < n; ++i) {
    out[i] = settle_one(ids[i].position, ids[i].deliveries, op, 0);
    if (out[i] == Status::Ok) ++ok;
  }
  // One counter update and one wake check for the batch.
  if (ok != 0 && op == Settle::Ack) {
    hdr_->acks.fetch_add(ok, std::memory_order_relaxed);
    acked_wake();
  }
  return ok;
}

Status Queue::settle_one(uint64_t position, uint32_t deliveries, Settle op, uint64_t delay_ms) {
  if (!ack_ || deliveries == 0 || delay_ms > 86400000ull) return Status::InvalidArgument;
  // Below the ack floor: settled long ago (its memory may belong to another record by now).
  const uint64_t floor = hdr_->reclaim_limit.load(std::memory_order_acquire);
  const uint64_t head = hdr_->head.load(std::memory_order_acquire);
  RecordHeader* r = record_at(position);
  if (r == nullptr) return Status::InvalidArgument;  // names no record
  if ((position & mask_) + kRecordHeaderSize + kLeaseMetaSize > cap_) return Status::InvalidArgument;
  auto stale = [&]() {
    hdr_->stale_settles.fetch_add(1, std::memory_order_relaxed);
    return Status::LeaseLost;
  };
  if (position < floor || position >= head) return stale();
  uint32_t st = r->state.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t kind = rec_kind(st);
    const bool mine = kind == kRecLeased && rec_owner(st) == owner_;
    // An ack of an expired lease that nobody took again yet still counts.
    const bool late_ack = kind == kRecRedeliver && op == Settle::Ack;
    if (!mine && !late_ack) return stale();
    if (r->state.compare_exchange_weak(st, rec_state(kRecSettling, owner_), std::memory_order_acq_rel)) break;
  }
  // SETTLING(me): nobody else writes this record now, and the memory cannot be reused under us.
  SAGE_HOOK(InSettle);
  LeaseMeta* m = meta_of(r);
  if (r->position != position || m->deliveries.load(std::memory_order_relaxed) != deliveries) {
    r->state.store(st, std::memory_order_release);  // another record, or a later delivery: not ours
    return stale();
  }
  const bool was_redeliver = rec_kind(st) == kRecRedeliver;
  const uint64_t now = op == Settle::Ack ? 0 : monotonic_ns();  // an ack needs no clock
  switch (op) {
    case Settle::Ack:
      r->state.store(rec_state(kRecConsumed, owner_), std::memory_order_release);
      if (was_redeliver) {
        // Keep the hint from wrapping below zero (a scan recounts it exactly).
        uint64_t cur = hdr_->redeliverable.load(std::memory_order_relaxed);
        while (cur != 0 && !hdr_->redeliverable.compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) {
        }
      }
      return Status::Ok;  // (the caller counts it and wakes a producer waiting for space)
    case Settle::Nack:
      m->deadline_ns.store(now + delay_ms * 1000000ull, std::memory_order_relaxed);
      r->state.store(rec_state(kRecRedeliver, 0), std::memory_order_release);
      hdr_->redeliverable.fetch_add(1, std::memory_order_relaxed);
      hdr_->nacks.fetch_add(1, std::memory_order_relaxed);
      lower_lease_check(now + delay_ms * 1000000ull);
      if (delay_ms == 0) wake(true);
      return Status::Ok;
    case Settle::Extend:
      m->deadline_ns.store(now + ack_timeout_ns_, std::memory_order_relaxed);
      r->state.store(rec_state(kRecLeased, owner_), std::memory_order_release);
      return Status::Ok;
  }
  return Status::InvalidArgument;
}

Status Queue::held_leases(uint64_t* count, int64_t timeout_ms) {
  *count = 0;
  if (hdr_ == nullptr || !attached_) return Status::InvalidArgument;
  if (forked()) return Status::Forked;
  if (!ack_) return Status::Ok;
  const uint64_t deadline =
      timeout_ms < 0 ? kLockForever : monotonic_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  const Status ls = lock_cons(timeout_ms == 0 ? kLockTryOnly : deadline);
  if (ls != Status::Ok) return ls;
  advance_floor_locked();
  const uint64_t now = monotonic_ns();
  const uint64_t head = hdr_->head.load(std::memory_order_relaxed);
  uint64_t pos = hdr_->reclaim_limit.load(std::memory_order_relaxed);
  Status result = Status::Ok;
  while (pos < head) {
    RecordHeader* r = record_at(pos);
    if (r == nullptr || r->position != pos) {
      result = Status::Corrupt;
      break;
    }
    const uint32_t st = r->state.load(std::memory_order_acquire);
    uint64_t size = r->length;
    if (rec_kind(st) != kRecPadding) {
      if (size > rec_max_) {
        result = Status::Corrupt;
        break;
      }
      size = record_size(size);
    }
    if (size < kRecordHeaderSize || size % kRecordAlign != 0 || size > head - pos) {
      result = Status::Corrupt;
      break;
    }
    const uint32_t kind = rec_kind(st);
    // A lease past its deadline is as good as taken back (the next scan does it): not counted.
    const bool expired = kind == kRecLeased && reinterpret_cast<LeaseMeta*>(r + 1)->deadline_ns.load(std::memory_order_relaxed) <= now;
    if ((kind == kRecLeased || kind == kRecSettling) && rec_owner(st) == owner_ && !expired) ++*count;
    pos += size;
  }
  unlock_cons();
  return result;
}

}  // namespace sage
