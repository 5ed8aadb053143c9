// Fuzz target over the native core: hostile segment headers (open/attach) and hostile records and
// cursors in an attached segment (put/get/wait/stats). Oracles: the sanitizers (ASan/UBSan: no
// out-of-bounds access, no undefined behaviour), libFuzzer's -timeout (no hang), and the checks
// below (only documented statuses come back; what a get returns fits the caller's buffer and the
// queue's limits; the data path never writes the identity part of the header).
//
// Input layout: the first byte picks a mode, the rest is read by `Reader` (short inputs read as
// zeros, so every prefix is a valid input):
//   0  raw file      the bytes become the whole segment file, with a fuzzed file mode, owner (root
//                    runs only) and trust policy; open it as Open/Inspect/OpenOrCreate: a segment
//                    the policy refuses is refused before its bytes count (Inspect: read-only)
//   1  header patch  a valid empty segment image with patches applied (raw bytes, named fields,
//                    slot fields), then written to the file and opened; on success, data-path ops
//   2  records       a real queue is created and used, then its data area, cursors, journals and
//                    lock states are overwritten through a second mapping; then data-path ops
// (the mode is the first byte % 3). First bytes 0xF0-0xF7 and 0xF8-0xFF select extended variants
// of modes 1 and 2: the slot table is set in bulk (full tables, dead and stale handles), records
// are given fuzzed owners (dead or live producers and consumers), and waits really sleep.
// First bytes 0xE0-0xE7 and 0xE8-0xEF select modes 1 and 2 on explicit-ack segments (leases.cpp;
// odd first bytes: extended as above). Besides the patches above, "lease patches" then write the
// explicit-mode shared state -- ack mode, timeout and max deliveries in the header, the lease
// check time, the redeliverable hint and the counters, the ack floor (reclaim_limit), and records
// turned LEASED / SETTLING / REDELIVER / ... with owners that are ours, another live handle's, dead
// or garbage, and fuzzed LeaseMeta delivery counts and deadlines -- and settle() is called with the
// ids gets handed out, with neighbours of them and with garbage. Oracle: a settle says Ok, LeaseLost
// or InvalidArgument; a get hands out only whole leases (16-byte prefix with a zero pad, length
// within max_message_size + 16) or reports Corrupt; nothing reads or writes out of bounds or hangs.
// (0xE0-0xEF meant modes 1 and 2 by `% 3` before: a few kept corpus inputs changed meaning.)
//
// Lock words. The core checks the data locks' words (a wrong mutex kind or any pthreads error
// other than owner-died is Corrupt; a held lock whose owner thread does not exist is reported, not
// waited on; see native/test/test_lock_faults.cpp), but a garbage word mostly just ends every run
// at the first lock with Corrupt, hiding the data path behind it. So this target keeps lock words
// valid: after every patch each mutex is re-initialised as
// a robust process-shared mutex in one of the states a real process can leave it in -- unlocked,
// owner died (the kernel's FUTEX_OWNER_DIED bit: the next locker gets EOWNERDEAD and runs the
// recovery code against the fuzzed journal), or (slot liveness mutexes only) held by a live
// thread. Everything else in the segment is fuzzed freely.
#include "fuzz_queue.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "futex.h"
#include "layout.h"
#include "sage_ring.h"

namespace sage_fuzz {
namespace {

using sage::Header;
using sage::OpenMode;
using sage::Queue;
using sage::Slice;
using sage::Status;

constexpr size_t kMaxOps = 48;
constexpr size_t kMaxPatches = 32;
constexpr uint64_t kMaxFileSize = 1 << 20;

[[noreturn]] void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "sage-fuzz: invariant violated: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  cleanup();
  std::abort();
}

// Reads the input front to back; past the end it yields zeros.
class Reader {
 public:
  Reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  size_t remaining() const { return i_ < n_ ? n_ - i_ : 0; }
  uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  uint16_t u16() {
    uint16_t lo = u8();
    return static_cast<uint16_t>(lo | (static_cast<uint16_t>(u8()) << 8));
  }
  uint32_t u32() {
    uint32_t lo = u16();
    return lo | (static_cast<uint32_t>(u16()) << 16);
  }
  uint64_t u64() {
    uint64_t lo = u32();
    return lo | (static_cast<uint64_t>(u32()) << 32);
  }
  // Copies up to n bytes into out; returns how many were available.
  size_t bytes(uint8_t* out, size_t n) {
    const size_t k = n < remaining() ? n : remaining();
    if (k) std::memcpy(out, d_ + i_, k);
    i_ += k;
    return k;
  }
  const uint8_t* rest(size_t* n) {
    *n = remaining();
    const uint8_t* p = d_ + (i_ < n_ ? i_ : n_);
    i_ = n_;
    return p;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t i_ = 0;
};

// --- names and files -----------------------------------------------------------------------------

std::vector<std::string>& created() {
  // Never destroyed: cleanup() runs from atexit, after function-local statics may be gone.
  static auto* names = new std::vector<std::string>();
  return *names;
}

std::string name_for(const char* tag) {
  std::string n = std::string("fuzz-") + std::to_string(getpid()) + "-" + tag;
  bool known = false;
  for (const auto& c : created()) known = known || c == n;
  if (!known) created().push_back(n);
  return n;
}

// Removes a segment of ours that may or may not exist. Anything but "removed" or "was not
// there" (say, permission denied) means the run is not testing what it thinks: stop.
void remove_segment(const std::string& name) {
  const Status s = Queue::unlink(name, nullptr);
  if (s != Status::Ok && s != Status::NotFound) fail("cannot remove %s: %s", name.c_str(), sage::status_code(s));
}

std::string path_for(const std::string& name) { return std::string("/dev/shm/") + sage::kShmPrefix + name; }

void write_file(const std::string& name, const uint8_t* data, size_t n, uint64_t size) {
  int fd = ::open(path_for(name).c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) fail("cannot create %s: %s", path_for(name).c_str(), strerror(errno));
  size_t at = 0;
  while (at < n) {
    ssize_t w = ::write(fd, data + at, n - at);
    if (w <= 0) fail("cannot write %s: %s", path_for(name).c_str(), strerror(errno));
    at += static_cast<size_t>(w);
  }
  if (size != n && ftruncate(fd, static_cast<off_t>(size)) != 0) fail("ftruncate: %s", strerror(errno));
  ::close(fd);
}

// --- lock words ----------------------------------------------------------------------------------

enum LockState { kUnlocked = 0, kOwnerDied = 1, kHeldLive = 2 };

void set_lock(pthread_mutex_t* m, int state) {
  std::memset(static_cast<void*>(m), 0, sizeof *m);
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  // glibc keeps the futex word in __data.__lock: owner TID, FUTEX_WAITERS, FUTEX_OWNER_DIED.
  if (state == kOwnerDied) {
    m->__data.__lock = FUTEX_OWNER_DIED;  // what the kernel leaves when the holder dies
  } else if (state == kHeldLive) {
    const int tid = static_cast<int>(syscall(SYS_gettid));
    m->__data.__lock = tid;  // trylock says EBUSY: a live holder
    m->__data.__owner = tid;
  }
}

// Re-initialises every mutex inside [base, base+size) (size may cut the header short).
// slot_states: how to choose each slot's liveness mutex state; first_slot: leave lower slots
// alone (handles this process holds).
void fix_locks(uint8_t* base, size_t size, uint8_t lockbits, uint32_t first_slot) {
  auto inside = [&](size_t off, size_t len) { return off + len <= size; };
  auto* h = reinterpret_cast<Header*>(base);
  if (inside(offsetof(Header, prod_lock), sizeof(pthread_mutex_t))) set_lock(&h->prod_lock, lockbits & 1);
  if (inside(offsetof(Header, cons_lock), sizeof(pthread_mutex_t))) set_lock(&h->cons_lock, (lockbits >> 1) & 1);
  const int slot_mode = (lockbits >> 2) & 3;
  for (uint32_t i = first_slot; i < sage::kMaxSlots; ++i) {
    const size_t off = offsetof(Header, slots) + i * sizeof(sage::ProcessSlot);
    if (!inside(off, sizeof(sage::ProcessSlot))) break;
    int state = kUnlocked;
    if (slot_mode == 1) state = static_cast<int>(h->slots[i].pid.load(std::memory_order_relaxed) & 3) % 3;
    if (slot_mode == 2) state = kOwnerDied;
    if (slot_mode == 3) state = kHeldLive;
    set_lock(&h->slots[i].alive, state);
  }
}

// --- patches -------------------------------------------------------------------------------------

struct Field {
  size_t off;
  size_t size;
  bool cursor;  // deltas move it by whole records (16 bytes)
};

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {offsetof(Header, magic), 8, false},
      {offsetof(Header, layout_version), 4, false},
      {offsetof(Header, layout_signature), 4, false},
      {offsetof(Header, segment_size), 8, false},
      {offsetof(Header, capacity), 8, false},
      {offsetof(Header, max_message_size), 8, false},
      {offsetof(Header, maxsize), 8, false},
      {offsetof(Header, data_offset), 4, false},
      {offsetof(Header, slot_count), 4, false},
      {offsetof(Header, initialised), 4, false},
      {offsetof(Header, closed), 4, false},
      {offsetof(Header, tail), 8, true},
      {offsetof(Header, tail_msgs), 8, false},
      {offsetof(Header, freed), 8, true},
      {offsetof(Header, head), 8, true},
      {offsetof(Header, head_msgs), 8, false},
      {offsetof(Header, reclaim_limit), 8, true},
      {offsetof(Header, prod_journal) + offsetof(sage::LockJournal, valid), 4, false},
      {offsetof(Header, prod_journal) + offsetof(sage::LockJournal, cursor), 8, true},
      {offsetof(Header, prod_journal) + offsetof(sage::LockJournal, msgs), 8, false},
      {offsetof(Header, cons_journal) + offsetof(sage::LockJournal, valid), 4, false},
      {offsetof(Header, cons_journal) + offsetof(sage::LockJournal, cursor), 8, true},
      {offsetof(Header, cons_journal) + offsetof(sage::LockJournal, msgs), 8, false},
      {offsetof(Header, data_seq), 4, false},
      {offsetof(Header, data_waiters), 4, false},
      {offsetof(Header, space_seq), 4, false},
      {offsetof(Header, space_waiters), 4, false},
      {offsetof(Header, data_regs), 4, false},
      {offsetof(Header, data_woken), 4, false},
      {offsetof(Header, space_regs), 4, false},
      {offsetof(Header, space_woken), 4, false},
  };
  return f;
}

const size_t kSlotFieldOffsets[] = {
    offsetof(sage::ProcessSlot, state),         offsetof(sage::ProcessSlot, gen),
    offsetof(sage::ProcessSlot, pid),           offsetof(sage::ProcessSlot, role),
    offsetof(sage::ProcessSlot, data_waiters),  offsetof(sage::ProcessSlot, space_waiters),
    offsetof(sage::ProcessSlot, claiming_ns),
};

void store(uint8_t* p, size_t size, uint64_t v) { std::memcpy(p, &v, size); }  // little-endian
uint64_t load(const uint8_t* p, size_t size) {
  uint64_t v = 0;
  std::memcpy(&v, p, size);
  return v;
}

// Applies one patch from the input to [base, base+size). Raw byte patches land in
// [raw_lo, raw_hi); slot patches only touch slots >= first_slot.
void apply_patch(Reader& r, uint8_t* base, size_t size, size_t raw_lo, size_t raw_hi, uint32_t first_slot) {
  const uint8_t kind = r.u8();
  switch (kind & 3) {
    case 0: {  // raw bytes
      if (raw_hi <= raw_lo) return;
      const size_t off = raw_lo + r.u16() % (raw_hi - raw_lo);
      uint8_t buf[16];
      size_t n = r.bytes(buf, (kind >> 2) % 17);
      if (off + n > raw_hi) n = raw_hi - off;
      std::memcpy(base + off, buf, n);
      return;
    }
    case 1: {  // a named field, absolute value
      const Field& f = fields()[r.u8() % fields().size()];
      const uint64_t v = r.u64();
      if (f.off + f.size <= size) store(base + f.off, f.size, v);
      return;
    }
    case 2: {  // a named field moved by a small signed delta (records, for cursors)
      const Field& f = fields()[r.u8() % fields().size()];
      const int64_t delta = static_cast<int8_t>(r.u8());
      if (f.off + f.size > size) return;
      const uint64_t cur = load(base + f.off, f.size);
      store(base + f.off, f.size, cur + static_cast<uint64_t>(delta * (f.cursor ? 16 : 1)));
      return;
    }
    default: {  // a slot field
      const uint32_t slot = first_slot + r.u8() % (sage::kMaxSlots - first_slot);
      const size_t which = kSlotFieldOffsets[r.u8() % (sizeof kSlotFieldOffsets / sizeof kSlotFieldOffsets[0])];
      const uint32_t v = r.u32();
      const size_t off = offsetof(Header, slots) + slot * sizeof(sage::ProcessSlot) + which;
      if (off + 4 <= size) store(base + off, 4, v);
      return;
    }
  }
}

// --- checked operations --------------------------------------------------------------------------

bool one_of(Status s, std::initializer_list<Status> allowed) {
  for (Status a : allowed) {
    if (s == a) return true;
  }
  return false;
}

void expect(Status s, std::initializer_list<Status> allowed, const char* op) {
  if (!one_of(s, allowed)) fail("%s returned %s", op, sage::status_code(s));
  if (std::strncmp(sage::status_code(s), s == Status::Ok ? "OK" : "ERR_", s == Status::Ok ? 2 : 4) != 0 || sage::status_message(s)[0] == 0) {
    fail("status %d has no stable code or message", static_cast<int>(s));
  }
}

// The identity part of the header: the data path must never write it.
struct Identity {
  uint8_t bytes[offsetof(Header, initialised)];
};

// SAGE_FUZZ_TRACE=1 prints each operation and the cursors (for triaging a kept input).
bool trace() {
  static const bool on = std::getenv("SAGE_FUZZ_TRACE") != nullptr;
  return on;
}

// Mode 2's own mapping of the segment (null otherwise): lets the checks read the cursors.
const Header* g_view = nullptr;

struct Handles {
  std::unique_ptr<Queue> a, b;
  bool sleepy = false;  // extended modes: waits really sleep (1 ms futex waits, no spinning)
  bool ack = false;     // explicit-ack segment: lease patches and settle operations
};

// Explicit mode: lease ids handed out by gets in this run (settle() targets; some are stale).
std::vector<std::pair<uint64_t, uint32_t>>& known_leases() {
  static auto* v = new std::vector<std::pair<uint64_t, uint32_t>>();
  return *v;
}

// Largest length a get may report: explicit-mode messages carry the 16-byte lease prefix.
uint64_t max_reported(Queue* q) { return q->max_message_size() + (q->explicit_ack() ? sizeof(sage::LeasePrefix) : 0); }

void checked_get(Queue* q, Reader& r, bool blocking) {
  uint8_t dst[4096 + 64];
  uint32_t lengths[8];
  const size_t max = 1 + r.u8() % 8;
  const size_t cap = r.u16() % (sizeof dst);
  size_t got = 0, needed = 0;
  const Status s = blocking ? q->get(dst, cap, lengths, max, &got, &needed, 0) : q->try_get(dst, cap, lengths, max, &got, &needed);
  expect(s, {Status::Ok, Status::Empty, Status::Closed, Status::BufferTooSmall, Status::Corrupt}, blocking ? "get" : "try_get");
  if (s == Status::Ok) {
    if (got == 0 || got > max) fail("get returned %zu messages for max %zu", got, max);
    uint64_t total = 0;
    for (size_t i = 0; i < got; ++i) {
      if (lengths[i] > max_reported(q)) fail("get returned a %u-byte message over the limit %llu", lengths[i], static_cast<unsigned long long>(max_reported(q)));
      total += lengths[i];
    }
    if (total > cap) fail("get returned %llu bytes into a %zu-byte buffer", static_cast<unsigned long long>(total), cap);
    if (q->explicit_ack()) {
      size_t at = 0;
      for (size_t i = 0; i < got; ++i) {
        if (lengths[i] < sizeof(sage::LeasePrefix)) fail("explicit-mode get returned a %u-byte message (no lease prefix)", lengths[i]);
        sage::LeasePrefix p;
        std::memcpy(&p, dst + at, sizeof p);
        if (p.zero != 0) fail("lease prefix with a non-zero pad");
        if (known_leases().size() < 64) known_leases().emplace_back(p.position, p.deliveries);
        at += lengths[i];
      }
    }
  } else {
    if (got != 0) fail("get returned %s with %zu messages", sage::status_code(s), got);
    // A corrupted cursor pair must be reported, not taken for an empty queue (a blocking get
    // would spin on it until its deadline).
    if (s == Status::Empty && g_view != nullptr &&
        g_view->head.load(std::memory_order_relaxed) > g_view->tail.load(std::memory_order_relaxed)) {
      fail("get returned Empty while head > tail");
    }
    if (s == Status::BufferTooSmall && (needed <= cap || needed > max_reported(q))) {
      fail("BufferTooSmall with needed=%zu for a %zu-byte buffer", needed, cap);
    }
  }
}

void checked_put(Queue* q, Reader& r, bool blocking) {
  static uint8_t payload[8192];
  Slice msgs[4];
  const size_t n = 1 + r.u8() % 4;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t len = r.u16() % (q->max_message_size() + 40);
    if (at + len > sizeof payload) len = 0;
    for (uint32_t k = 0; k < len; ++k) payload[at + k] = static_cast<uint8_t>(k * 7 + i);
    msgs[i] = Slice{payload + at, len};
    at += len;
  }
  size_t written = 0;
  const Status s = blocking ? q->put(msgs, n, &written, 0) : q->try_put(msgs, n, &written);
  expect(s, {Status::Ok, Status::Full, Status::Closed, Status::TooLarge, Status::Corrupt}, blocking ? "put" : "try_put");
  if (written > n) fail("put wrote %zu of %zu", written, n);
  if (s == Status::Ok && written != n) fail("put returned Ok with %zu of %zu written", written, n);
}

void check_stats(Queue* q) {
  sage::Stats st = q->stats();
  if (st.capacity != q->capacity()) fail("stats capacity changed");
  if (st.slots.size() > sage::kMaxSlots) fail("stats listed %zu slots", st.slots.size());
  (void)q->qsize();
  (void)q->used_bytes();
  (void)q->closed();
}

// Explicit mode: settle() with an id a get handed out (maybe since settled, taken back or
// redelivered), a neighbour of one, or garbage; and held_leases().
void checked_settle(Queue* q, Reader& r, const Header* view) {
  const uint8_t how = r.u8();
  if ((how & 7) == 7) {
    uint64_t n = 0;
    expect(q->held_leases(&n, 0), {Status::Ok, Status::Corrupt, Status::TimedOut}, "held_leases");
    return;
  }
  uint64_t pos;
  uint32_t deliveries;
  auto& known = known_leases();
  switch ((how >> 3) & 3) {
    case 0:
    case 1:
      if (!known.empty()) {
        const auto& k = known[r.u8() % known.size()];
        pos = k.first;
        deliveries = k.second + static_cast<uint32_t>(static_cast<int8_t>((how & 0x20) ? r.u8() % 3 - 1 : 0));
        break;
      }
      [[fallthrough]];
    case 2:  // near the live part of the ring
      pos = (view ? view->reclaim_limit.load(std::memory_order_relaxed) : 0) + 16 * static_cast<uint64_t>(static_cast<int16_t>(r.u16()));
      deliveries = r.u8() % 4;
      break;
    default:
      pos = r.u64();
      deliveries = r.u32();
      break;
  }
  const Queue::Settle ops[] = {Queue::Settle::Ack, Queue::Settle::Nack, Queue::Settle::Extend};
  const Queue::Settle op = ops[(how >> 6) % 3];
  const uint64_t delay = (how & 0x40) && (r.u8() & 1) ? r.u64() % 100000000ull : r.u8() % 3;
  expect(q->settle(pos, deliveries, op, delay), {Status::Ok, Status::LeaseLost, Status::InvalidArgument}, "settle");
}

// Explicit mode: writes the lease state (header fields, or one record's state word and LeaseMeta).
void lease_patch(Reader& r, uint8_t* map, size_t map_size, size_t data_off) {
  auto* h = reinterpret_cast<Header*>(map);
  const uint8_t kind = r.u8();
  if ((kind & 1) == 0) {
    static const Field lease_fields[] = {
        {offsetof(Header, ack_mode), 4, false},        {offsetof(Header, max_deliveries), 4, false},
        {offsetof(Header, ack_timeout_ns), 8, false},  {offsetof(Header, lease_check_ns), 8, false},
        {offsetof(Header, redeliverable), 8, false},   {offsetof(Header, reclaim_limit), 8, true},
        {offsetof(Header, head), 8, true},             {offsetof(Header, acks), 8, false},
        {offsetof(Header, stale_settles), 8, false},   {offsetof(Header, redeliveries), 8, false},
    };
    const Field& f = lease_fields[r.u8() % (sizeof lease_fields / sizeof lease_fields[0])];
    if (f.off + f.size > map_size) return;
    uint64_t v;
    switch ((kind >> 1) & 3) {
      case 0: v = r.u64(); break;
      case 1: v = load(map + f.off, f.size) + static_cast<uint64_t>(static_cast<int8_t>(r.u8()) * (f.cursor ? 16 : 1)); break;
      case 2: v = (kind & 8) ? 0 : ~0ull; break;
      default: v = sage::monotonic_ns() + static_cast<uint64_t>(static_cast<int8_t>(r.u8())) * 1000000ull; break;
    }
    store(map + f.off, f.size, v);
    return;
  }
  // A record from the ack floor on (the n-th), walked like the core walks it.
  const uint64_t cap = h->capacity;
  // (The header mode fuzzes data_offset too: only an aligned one is walked, as the core requires.)
  if (cap == 0 || (cap & (cap - 1)) != 0 || data_off % sage::kRecordAlign != 0 || data_off + cap > map_size) return;
  uint64_t pos = h->reclaim_limit.load(std::memory_order_relaxed);
  const uint64_t tail = h->tail.load(std::memory_order_relaxed);
  uint8_t* data = map + data_off;
  sage::RecordHeader* rec = nullptr;
  for (int n = r.u8() % 16; n >= 0 && pos < tail; --n) {
    const uint64_t off = pos & (cap - 1);
    if ((off & 15) != 0 || off + sage::kRecordHeaderSize + sage::kLeaseMetaSize > cap) return;
    rec = reinterpret_cast<sage::RecordHeader*>(data + off);
    const uint32_t st = rec->state.load(std::memory_order_relaxed);
    const uint64_t size = sage::rec_kind(st) == sage::kRecPadding ? rec->length : sage::record_size(rec->length);
    if (n == 0 || size < sage::kRecordHeaderSize || size > cap) break;
    pos += size;
  }
  if (rec == nullptr) return;
  static const uint32_t kinds[] = {sage::kRecLeased,    sage::kRecSettling, sage::kRecRedeliver, sage::kRecConsumed,
                                   sage::kRecCommitted, sage::kRecReading,  sage::kRecClaimed,   sage::kRecPadding};
  uint32_t owner;
  switch ((kind >> 1) & 3) {
    case 0: owner = sage::make_owner(0, h->slots[0].gen.load(std::memory_order_relaxed)); break;  // handle a
    case 1: owner = sage::make_owner(1, h->slots[1].gen.load(std::memory_order_relaxed)); break;  // handle b (if any)
    case 2: owner = sage::make_owner(4 + r.u8() % (sage::kMaxSlots - 4), r.u16()); break;          // dead or garbage
    default: owner = r.u32(); break;
  }
  rec->state.store(sage::rec_state(kinds[(kind >> 3) % 8], owner), std::memory_order_relaxed);
  auto* meta = reinterpret_cast<sage::LeaseMeta*>(rec + 1);
  if (kind & 0x40) {
    const uint32_t dv[] = {0, 1, 2, ~0u, r.u32()};
    meta->deliveries.store(dv[r.u8() % 5], std::memory_order_relaxed);
  }
  if (kind & 0x80) {
    const uint64_t now = sage::monotonic_ns();
    const uint64_t dl[] = {0, now - 1000000, now + 1000000, ~0ull, r.u64()};
    meta->deadline_ns.store(dl[r.u8() % 5], std::memory_order_relaxed);
  }
}

// Runs data-path operations read from the input against one or two handles. `mapping` (when not
// null) is a second mapping of the segment, through which "patch" operations corrupt it further.
void run_ops(Reader& r, Handles& hs, const std::string& name, uint8_t* mapping, size_t map_size, size_t data_off) {
  Identity before;
  if (mapping) std::memcpy(before.bytes, mapping, sizeof before.bytes);
  for (size_t n = 0; n < kMaxOps && !r.empty(); ++n) {
    const uint8_t op = r.u8();
    Queue* q = (op & 0x80) && hs.b ? hs.b.get() : hs.a.get();
    if (q == nullptr) return;
    if (trace() && g_view) {
      std::fprintf(stderr, "op %u on %s: head=%llu tail=%llu freed=%llu limit=%llu\n", op % 12, q == hs.a.get() ? "a" : "b",
                   static_cast<unsigned long long>(g_view->head.load()), static_cast<unsigned long long>(g_view->tail.load()),
                   static_cast<unsigned long long>(g_view->freed.load()), static_cast<unsigned long long>(g_view->reclaim_limit.load()));
    }
    if (hs.ack && (op & 0x40)) {
      // Explicit mode: a settle, or (with a mapping) a lease patch while attached.
      if (mapping && (op & 0x20)) {
        lease_patch(r, mapping, map_size, data_off);
        std::memcpy(before.bytes, mapping, sizeof before.bytes);  // ack_mode etc. are the fuzzer's
      } else {
        checked_settle(q, r, g_view);
      }
      if (mapping && std::memcmp(before.bytes, mapping, sizeof before.bytes) != 0) fail("the data path wrote the header's identity fields");
      continue;
    }
    switch (op % 12) {
      case 0: checked_put(q, r, false); break;
      case 1: checked_get(q, r, false); break;
      case 2: checked_put(q, r, true); break;
      case 3: checked_get(q, r, true); break;
      case 4:
        if (hs.sleepy) q->set_spin_ns(0);
        // Corrupt: the wait found the (fuzzed) segment corrupt and says so instead of waiting.
        expect(q->wait_readable(hs.sleepy ? 1 : 0, nullptr), {Status::Ok, Status::TimedOut, Status::Corrupt}, "wait_readable");
        break;
      case 5:
        if (hs.sleepy) q->set_spin_ns(0);
        expect(q->wait_writable(r.u16(), hs.sleepy ? 1 : 0, nullptr), {Status::Ok, Status::TimedOut, Status::TooLarge, Status::Corrupt},
               "wait_writable");
        break;
      case 6: check_stats(q); break;
      case 7:
        if ((r.u8() & 7) == 0) q->close();
        break;
      case 8: q->wake_all(); break;
      case 9: {  // attach a second handle (validates the header as it is now)
        if (hs.b) {
          hs.b->release();
          hs.b.reset();
          break;
        }
        int err = 0;
        const OpenMode mode = (r.u8() & 1) ? OpenMode::Open : OpenMode::Inspect;
        Status s = Queue::open(name, mode, sage::CreateOptions{}, &hs.b, &err, 0);
        expect(s, {Status::Ok, Status::Corrupt, Status::VersionMismatch, Status::NotOurs, Status::NotInitialised, Status::Initialising, Status::NoSlots, Status::Truncated},
               "open (second handle)");
        if (s == Status::Ok && mode == OpenMode::Inspect) {
          check_stats(hs.b.get());
          hs.b->release();
          hs.b.reset();
        }
        break;
      }
      case 10:  // corrupt more while attached
        if (mapping) {
          apply_patch(r, mapping, map_size, data_off, map_size, 4);
          std::memcpy(before.bytes, mapping, sizeof before.bytes);  // identity patches are the fuzzer's, not the core's
        }
        break;
      default: {  // a get whose buffer is exactly the next message's size (the edge of BufferTooSmall)
        uint8_t dst[4096];
        uint32_t len = 0;
        size_t got = 0, needed = 0;
        Status s = q->try_get(dst, 0, &len, 1, &got, &needed);
        expect(s, {Status::Ok, Status::Empty, Status::Closed, Status::BufferTooSmall, Status::Corrupt}, "try_get(0)");
        if (s == Status::BufferTooSmall && needed <= sizeof dst) {
          s = q->try_get(dst, needed, &len, 1, &got, &needed);
          expect(s, {Status::Ok, Status::Empty, Status::Closed, Status::BufferTooSmall, Status::Corrupt}, "try_get(needed)");
        }
        break;
      }
    }
    if (mapping && std::memcmp(before.bytes, mapping, sizeof before.bytes) != 0) fail("the data path wrote the header's identity fields");
  }
}

// --- slot tables and record owners (extended modes) -----------------------------------------------

// Gives every slot from first_slot on a state in bulk, so the full-table paths of attach (reaping
// dead handles, freeing stale half-claimed slots, NoSlots) are reachable; fix_locks() then gives
// their liveness mutexes a state. A patch can only ever touch a few of the 128 slots.
void fill_slots(Reader& r, uint8_t* base, size_t size, uint32_t first_slot) {
  const uint8_t pattern = r.u8();
  for (uint32_t i = first_slot; i < sage::kMaxSlots; ++i) {
    const size_t off = offsetof(Header, slots) + i * sizeof(sage::ProcessSlot);
    if (off + sizeof(sage::ProcessSlot) > size) break;
    auto* slot = reinterpret_cast<sage::ProcessSlot*>(base + off);
    uint32_t state;
    switch (pattern % 4) {
      case 0: state = sage::kSlotActive; break;
      case 1: state = sage::kSlotClaiming; break;  // claiming_ns 0: stale, a survivor frees it
      case 2: state = (i & 1) ? sage::kSlotActive : sage::kSlotReaping; break;
      default: state = r.u8() % 5; break;
    }
    slot->state.store(state, std::memory_order_relaxed);
    slot->claiming_ns.store((pattern & 4) ? ~0ull : 0, std::memory_order_relaxed);
    slot->pid.store(static_cast<int32_t>(i), std::memory_order_relaxed);  // fix_locks' per-slot choice
    slot->data_waiters.store((pattern & 8) ? i : 0, std::memory_order_relaxed);
    slot->space_waiters.store((pattern & 16) ? 1 : 0, std::memory_order_relaxed);
  }
}

// Makes records belong to a (fuzzed) slot >= 4: sets that slot's state and generation, then
// stamps the owner into the state words of the records from `freed` to `tail` (optionally turning
// them into CLAIMED or READING records), so the dead/live-owner paths of get (abandoned claims)
// and reclaim (lost in read) run against fuzzed owners.
void own_records(Reader& r, uint8_t* map, size_t map_size, size_t data_off, uint64_t cap) {
  auto* h = reinterpret_cast<Header*>(map);
  const uint32_t slot = 4 + r.u8() % (sage::kMaxSlots - 4);
  const uint16_t gen = r.u16();
  const uint8_t how = r.u8();
  h->slots[slot].state.store((how & 1) ? sage::kSlotActive : static_cast<uint32_t>(r.u8() % 5), std::memory_order_relaxed);
  h->slots[slot].gen.store(gen, std::memory_order_relaxed);
  h->slots[slot].pid.store(static_cast<int32_t>(r.u8()), std::memory_order_relaxed);
  const uint32_t owner = sage::make_owner(slot, (how & 2) ? gen : static_cast<uint16_t>(gen + 1));
  uint8_t* data = map + data_off;
  uint64_t pos = h->freed.load(std::memory_order_relaxed);
  const uint64_t tail = h->tail.load(std::memory_order_relaxed);
  for (int n = 0; n < 64 && pos < tail; ++n) {
    const uint64_t off = pos & (cap - 1);
    if ((off & 15) != 0 || off + sage::kRecordHeaderSize > cap || data_off + off + sage::kRecordHeaderSize > map_size) break;
    auto* rec = reinterpret_cast<sage::RecordHeader*>(data + off);
    const uint32_t st = rec->state.load(std::memory_order_relaxed);
    const uint64_t size = sage::rec_kind(st) == sage::kRecPadding ? rec->length : sage::record_size(rec->length);
    if (size < sage::kRecordHeaderSize || size > cap) break;
    if (sage::rec_kind(st) != sage::kRecPadding || (how & 4)) {
      uint32_t kind = sage::rec_kind(st);
      const uint8_t pick = r.u8();
      if (pick & 1) kind = (pick & 2) ? sage::kRecClaimed : sage::kRecReading;
      rec->state.store(sage::rec_state(kind, owner), std::memory_order_relaxed);
    }
    pos += size;
  }
}

// --- modes ---------------------------------------------------------------------------------------

const std::vector<uint8_t>& template_image(bool ack) {
  static std::vector<uint8_t> images[2];
  std::vector<uint8_t>& img = images[ack ? 1 : 0];
  if (!img.empty()) return img;
  const std::string name = name_for(ack ? "tpl-ack" : "tpl");
  remove_segment(name);
  std::unique_ptr<Queue> q;
  sage::CreateOptions o;
  o.capacity = 4096;
  if (ack) {
    o.ack_mode = sage::kAckExplicit;
    o.ack_timeout_ms = 2;
  }
  int err = 0;
  if (Queue::open(name, OpenMode::Create, o, &q, &err) != Status::Ok) fail("cannot create the template queue");
  q->release();
  int fd = ::open(path_for(name).c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) fail("cannot read the template");
  img.resize(static_cast<size_t>(st.st_size));
  if (pread(fd, img.data(), img.size(), 0) != static_cast<ssize_t>(img.size())) fail("short template read");
  ::close(fd);
  remove_segment(name);
  return img;
}

void mode_raw(Reader& r) {
  const std::string name = name_for("raw");
  const uint8_t flags = r.u8();
  uint64_t size = 0;
  if (flags & 1) size = r.u32() % kMaxFileSize;
  size_t n = 0;
  const uint8_t* bytes = r.rest(&n);
  if (n > kMaxFileSize) n = kMaxFileSize;
  if (!(flags & 1)) size = n;
  write_file(name, bytes, n < size ? n : static_cast<size_t>(size), size);
  const OpenMode modes[] = {OpenMode::Open, OpenMode::Inspect, OpenMode::OpenOrCreate};
  const OpenMode mode = modes[(flags >> 1) % 3];
  // Trust: the file's owner and mode, and the opener's policy, are fuzzed too. The refusal is
  // decided on the descriptor before anything is read, so it must win over whatever the bytes say
  // (except for Inspect, which maps read-only, reports the refusal and probes no slot).
  const uint8_t trustbits = r.u8();
  const std::string path = path_for(name);
  const mode_t fmode = 0600 | ((trustbits & 1) ? 020 : 0) | ((trustbits & 2) ? 002 : 0) | ((trustbits & 4) ? 044 : 0);
  if (chmod(path.c_str(), fmode) != 0) fail("chmod: %s", strerror(errno));
  const bool foreign = (trustbits & 8) != 0 && geteuid() == 0;
  if (foreign && chown(path.c_str(), 65534, 65534) != 0) fail("chown: %s", strerror(errno));
  sage::TrustPolicy policy;
  policy.allow_shared_mode = (trustbits & 16) != 0;
  if (trustbits & 32) policy.trusted_uids = {65534};
  if (trustbits & 64) policy.trusted_uids.push_back(static_cast<uint32_t>(r.u32()));
  Status refusal = Status::Ok;
  if (foreign && !(trustbits & 32)) refusal = Status::UntrustedOwner;
  else if ((fmode & 022) != 0 && !policy.allow_shared_mode) refusal = Status::SharedMode;
  std::unique_ptr<Queue> q;
  int err = 0;
  sage::CreateOptions o;
  o.capacity = 4096;
  Status s = Queue::open(name, mode, o, &q, &err, 0, policy);
  if (refusal != Status::Ok && mode != OpenMode::Inspect && s != refusal) {
    fail("open (raw) of an untrusted segment returned %s, not %s", sage::status_code(s), sage::status_code(refusal));
  }
  expect(s, {Status::Ok, Status::Corrupt, Status::VersionMismatch, Status::NotOurs, Status::NotInitialised, Status::Initialising, Status::NoSlots,
             Status::UntrustedOwner, Status::SharedMode, Status::Truncated},
         "open (raw)");
  if (s == Status::Ok) {
    if (mode == OpenMode::Inspect) {
      // Inspect reports `policy`'s verdict in stats().trust instead of refusing.
      const sage::Stats st = q->stats();
      if (st.file_mode != static_cast<uint32_t>(fmode)) fail("stats: file mode %o, expected %o", st.file_mode, fmode);
      if (st.trust != refusal) fail("stats: trust %s, expected %s", sage::status_code(st.trust), sage::status_code(refusal));
      if (st.trust != Status::Ok) {
        for (const sage::SlotInfo& slot : st.slots) {
          if (slot.alive) fail("stats of an untrusted segment probed slot %u", slot.index);
        }
      }
    }
    check_stats(q.get());
    q->release();
  }
  remove_segment(name);
}

void mode_header(Reader& r, bool extended, bool ack) {
  const std::string name = name_for("hdr");
  std::vector<uint8_t> img = template_image(ack);
  const uint8_t lockbits = r.u8();
  const uint8_t sizeop = r.u8();
  if (extended) fill_slots(r, img.data(), img.size(), 0);
  const size_t npatch = r.u8() % (kMaxPatches + 1);
  for (size_t i = 0; i < npatch; ++i) apply_patch(r, img.data(), img.size(), 0, img.size(), 0);
  if (ack) {
    const size_t nlease = r.u8() % 16;
    const size_t off = reinterpret_cast<Header*>(img.data())->data_offset;
    for (size_t i = 0; i < nlease; ++i) lease_patch(r, img.data(), img.size(), off);
  }
  fix_locks(img.data(), img.size(), lockbits, 0);
  uint64_t size = img.size();
  switch (sizeop % 6) {
    case 1: size = r.u16() % img.size(); break;                     // truncated
    case 2: size = img.size() + 16 * static_cast<uint64_t>(r.u16()); break;  // longer than it says
    case 3: size = sizeof(Header); break;
    case 4: size = img.size() - 4096 + 16 * (r.u8() % 255); break;  // data area cut
    default: break;
  }
  write_file(name, img.data(), size < img.size() ? static_cast<size_t>(size) : img.size(), size);
  Handles hs;
  hs.sleepy = extended;
  hs.ack = ack;
  int err = 0;
  const OpenMode mode = (sizeop & 0x80) ? OpenMode::Inspect : OpenMode::Open;
  Status s = Queue::open(name, mode, sage::CreateOptions{}, &hs.a, &err, 0);
  expect(s, {Status::Ok, Status::Corrupt, Status::VersionMismatch, Status::NotOurs, Status::NotInitialised, Status::Initialising, Status::NoSlots, Status::Truncated},
         "open (header)");
  if (s == Status::Ok) {
    if (mode == OpenMode::Inspect) {
      check_stats(hs.a.get());
    } else {
      run_ops(r, hs, name, nullptr, 0, 0);
    }
  }
  hs.b.reset();
  hs.a.reset();
  remove_segment(name);
}

void mode_records(Reader& r, bool extended, bool ack) {
  const std::string name = name_for("rec");
  remove_segment(name);
  const uint8_t cfg = r.u8();
  sage::CreateOptions o;
  o.capacity = 4096u << (cfg & 1);
  o.maxsize = (cfg & 2) ? 1 + r.u8() % 8 : 0;
  const uint64_t meta = ack ? sage::kLeaseMetaSize : 0;
  o.max_message_size = (cfg & 4) ? 1 + r.u16() % (o.capacity / 2 - 16 - meta) : 0;
  if (ack) {
    o.ack_mode = sage::kAckExplicit;
    o.ack_timeout_ms = 1 + r.u8() % 4;  // short: leases expire within a run
  }
  Handles hs;
  hs.sleepy = extended;
  hs.ack = ack;
  int err = 0;
  if (Queue::open(name, OpenMode::Create, o, &hs.a, &err) != Status::Ok) fail("cannot create %s", name.c_str());
  if (cfg & 8) {  // a second attached handle from the start (slot 1)
    if (Queue::open(name, OpenMode::Open, o, &hs.b, &err) != Status::Ok) fail("cannot open %s", name.c_str());
  }
  // Some honest traffic first, so records, padding and wrap-arounds exist.
  const size_t nput = r.u8() % 12;
  for (size_t i = 0; i < nput; ++i) {
    uint8_t payload[2048];
    uint32_t len = r.u16() % (hs.a->max_message_size() + 1);
    if (len > sizeof payload) len = sizeof payload;
    std::memset(payload, static_cast<int>(i), len);
    Slice s{payload, len};
    size_t w = 0;
    // The queue is sound until corrupted below: a put of at most max_message_size either fits
    // or finds the ring full, and a get into a buffer of 2048 bytes (>= every length put)
    // either takes one or finds the queue empty.
    const Status ps = hs.a->try_put(&s, 1, &w);
    if (ps != Status::Ok && ps != Status::Full) fail("honest put on a sound queue: %s", sage::status_code(ps));
    const uint8_t g = r.u8();
    if (g & 1) {
      uint8_t dst[2048 + sizeof(sage::LeasePrefix)];
      uint32_t l;
      size_t got, needed;
      const Status gs = hs.a->try_get(dst, sizeof dst, &l, 1, &got, &needed);
      if (gs != Status::Ok && gs != Status::Empty) fail("honest get on a sound queue: %s", sage::status_code(gs));
      if (ack && gs == Status::Ok) {
        sage::LeasePrefix p;
        std::memcpy(&p, dst, sizeof p);
        known_leases().emplace_back(p.position, p.deliveries);
        // Settled at once by its holder: a sound queue accepts it.
        if (g & 2) {
          const Queue::Settle op = (g & 4) ? Queue::Settle::Ack : (g & 8) ? Queue::Settle::Nack : Queue::Settle::Extend;
          const Status ss = hs.a->settle(p.position, p.deliveries, op, 0);
          if (ss != Status::Ok) fail("honest settle on a sound queue: %s", sage::status_code(ss));
        }
      }
    }
  }
  // Corrupt it through a second mapping of the same segment.
  int fd = ::open(path_for(name).c_str(), O_RDWR | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) fail("cannot reopen %s", name.c_str());
  const size_t map_size = static_cast<size_t>(st.st_size);
  auto* map = static_cast<uint8_t*>(mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ::close(fd);
  if (map == MAP_FAILED) fail("mmap: %s", strerror(errno));
  const size_t data_off = reinterpret_cast<Header*>(map)->data_offset;
  const uint8_t lockbits = r.u8();
  if (extended) {
    if (r.u8() & 1) fill_slots(r, map, map_size, 4);
    own_records(r, map, map_size, data_off, o.capacity);
  }
  const size_t npatch = r.u8() % (kMaxPatches + 1);
  for (size_t i = 0; i < npatch; ++i) apply_patch(r, map, map_size, data_off, map_size, 4);
  if (ack) {
    const size_t nlease = r.u8() % 16;
    for (size_t i = 0; i < nlease; ++i) lease_patch(r, map, map_size, data_off);
  }
  // Slots 0 and 1 are this process's handles: their liveness mutexes are held and stay as they are.
  fix_locks(map, map_size, lockbits, 4);
  g_view = reinterpret_cast<const Header*>(map);
  run_ops(r, hs, name, map, map_size, data_off);
  g_view = nullptr;
  hs.b.reset();
  hs.a.reset();
  munmap(map, map_size);
  remove_segment(name);
}

}  // namespace

void cleanup() {
  // Best effort at exit (also from the watchdog and atexit): most are already gone (NotFound),
  // and there is nobody left to report a failure to.
  for (const auto& n : created()) (void)Queue::unlink(n, nullptr);
}

int run_one(const uint8_t* data, size_t size) {
  static bool registered = false;
  if (!registered) {
    registered = true;
    std::atexit(cleanup);
  }
  Reader r(data, size);
  known_leases().clear();
  const uint8_t mode = r.u8();
  if (mode >= 0xE0 && mode < 0xF0) {
    // Explicit-ack segments (see the top of this file).
    if (mode < 0xE8) mode_header(r, mode & 1, true);
    else mode_records(r, mode & 1, true);
    return 0;
  }
  if (mode >= 0xF0) {
    // Extended modes (added later; first bytes below 0xF0 keep their meaning for kept inputs).
    if (mode < 0xF8) mode_header(r, true, false);
    else mode_records(r, true, false);
    return 0;
  }
  switch (mode % 3) {
    case 0: mode_raw(r); break;
    case 1: mode_header(r, false, false); break;
    default: mode_records(r, false, false); break;
  }
  return 0;
}

}  // namespace sage_fuzz
