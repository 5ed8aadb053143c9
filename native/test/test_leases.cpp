// Explicit-ack mode (leases.cpp): single-process semantics of leases, acks, nacks, extends,
// expiry and stale settles; then real fork()ed consumers, SIGKILLed while holding leases and
// while parked at each stop point of the ack path (test_hooks.h: InConsLock, AfterTake, InSettle,
// InScan), after which another handle must receive every message again -- nothing lost, the
// duplicates being exactly the messages the dead consumer held.
//
// Linked against the hook-enabled copy of the core (sage_core_hooks, see CMakeLists.txt): no hook
// is armed in this process, only in the children.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "check.h"
#include "futex.h"
#include "sage_ring.h"
#include "segment_mapping.h"
#include "test_hooks.h"

#ifndef SAGE_TEST_HOOKS
#error "test_leases needs the hook-enabled core (sage_core_hooks): its crash tests park children at test hooks"
#endif

using namespace sage;

namespace {

// --- helpers -------------------------------------------------------------------------------------

struct Msg {
  uint64_t pos;
  uint32_t deliveries;
  std::string body;
};

std::unique_ptr<Queue> make_explicit(const std::string& name, uint64_t timeout_ms, uint64_t cap = 4096,
                                     uint64_t max_msg = 0) {
  CreateOptions o;
  o.capacity = cap;
  o.max_message_size = max_msg;
  o.ack_mode = kAckExplicit;
  o.ack_timeout_ms = timeout_ms;
  std::unique_ptr<Queue> q;
  int e = 0;
  CHECK(Queue::open(name, OpenMode::Create, o, &q, &e) == Status::Ok);
  CHECK(q->explicit_ack());
  q->set_spin_ns(0);
  return q;
}

std::unique_ptr<Queue> open_existing(const std::string& name) {
  std::unique_ptr<Queue> q;
  int e = 0;
  CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &e) == Status::Ok);
  q->set_spin_ns(0);
  return q;
}

Status put_str(Queue* q, const std::string& s) {
  Slice sl{reinterpret_cast<const uint8_t*>(s.data()), static_cast<uint32_t>(s.size())};
  size_t w = 0;
  return q->try_put(&sl, 1, &w);
}

// Splits what one get returned into leases. Every message starts with its LeasePrefix.
void parse(const uint8_t* buf, const uint32_t* lens, size_t got, std::vector<Msg>* out) {
  size_t at = 0;
  for (size_t i = 0; i < got; ++i) {
    CHECK(lens[i] >= sizeof(LeasePrefix));
    LeasePrefix p;
    std::memcpy(&p, buf + at, sizeof p);
    CHECK_EQ(p.zero, 0u);
    CHECK(p.deliveries >= 1);
    out->push_back(Msg{p.position, p.deliveries,
                       std::string(reinterpret_cast<const char*>(buf + at + sizeof p), lens[i] - sizeof p)});
    at += lens[i];
  }
}

// One get (blocking for timeout_ms when non-zero) of up to `max` messages into a `cap`-byte buffer.
Status take(Queue* q, size_t max, std::vector<Msg>* out, int64_t timeout_ms = 0, size_t cap = 8192,
            size_t* needed_out = nullptr) {
  std::vector<uint8_t> buf(cap + 1);
  std::vector<uint32_t> lens(max + 1);
  size_t got = 0, needed = 0;
  const Status s = timeout_ms == 0 ? q->try_get(buf.data(), cap, lens.data(), max, &got, &needed)
                                   : q->get(buf.data(), cap, lens.data(), max, &got, &needed, timeout_ms);
  if (needed_out) *needed_out = needed;
  if (s == Status::Ok) {
    CHECK(got >= 1);
    parse(buf.data(), lens.data(), got, out);
  } else {
    CHECK_EQ(got, 0u);
  }
  return s;
}

Msg take_one(Queue* q, int64_t timeout_ms = 0) {
  std::vector<Msg> v;
  const Status s = take(q, 1, &v, timeout_ms);
  if (s != Status::Ok) std::fprintf(stderr, "take_one: %s\n", status_name(s));
  CHECK(s == Status::Ok);
  CHECK_EQ(v.size(), 1u);
  return v[0];
}

Status ack(Queue* q, const Msg& m) { return q->settle(m.pos, m.deliveries, Queue::Settle::Ack); }

uint64_t held(Queue* q) {
  uint64_t n = 0;
  CHECK(q->held_leases(&n, 1000) == Status::Ok);
  return n;
}

// Busy-waits (in 1 ms sleeps) until CLOCK_MONOTONIC reaches `t` (a lease deadline).
void sleep_until_ns(uint64_t t) {
  while (monotonic_ns() < t) usleep(1000);
}

// Waits until the next lease scan is due (hdr->lease_check_ns, read through a second mapping):
// the next get then takes back dead and expired leases before anything new. Bounded: a check
// that is never due again is a lost-wakeup bug, reported here instead of hanging.
void wait_scan_due(const std::string& name) {
  Mapping m(name);
  const uint64_t give_up = monotonic_ns() + 10000000000ull;
  while (monotonic_ns() < m.header()->lease_check_ns.load()) {
    if (monotonic_ns() > give_up) {
      std::fprintf(stderr, "wait_scan_due: no lease scan due within 10 s (lease_check_ns=%llu)\n",
                   static_cast<unsigned long long>(m.header()->lease_check_ns.load()));
      CHECK(false);
    }
    usleep(1000);
  }
}

// Ack floor == head: nothing leased, nothing waiting to be redelivered, nothing acked behind a lease.
void check_all_settled(Queue* q) {
  std::vector<Msg> v;
  CHECK(take(q, 8, &v) == Status::Empty);
  CHECK_EQ(held(q), 0u);
  const Stats st = q->stats();
  CHECK_EQ(st.unacked_bytes, 0u);
  CHECK_EQ(st.redeliverable, 0u);
  CHECK_EQ(q->qsize(), 0u);
}

// --- single process ----------------------------------------------------------------------------

// Leased records keep their space until acked, and only the ack of the oldest one (the ack floor)
// lets producers reuse any of it.
void test_ack_frees_space() {
  const std::string name = uniq("lease-space");
  auto q = make_explicit(name, 60000);
  const std::string body(100, 'x');
  size_t n = 0;
  while (put_str(q.get(), body) == Status::Ok) ++n;
  CHECK(n >= 10);
  std::vector<Msg> got;
  CHECK(take(q.get(), 64, &got) == Status::Ok);
  CHECK_EQ(got.size(), n);
  CHECK_EQ(held(q.get()), n);
  CHECK(put_str(q.get(), body) == Status::Full);  // taken, but leased: no space
  for (size_t i = n - 1; i >= 1; --i) CHECK(ack(q.get(), got[i]) == Status::Ok);
  CHECK(put_str(q.get(), body) == Status::Full);  // the oldest still holds the floor
  CHECK(q->stats().unacked_bytes > 0);
  CHECK(ack(q.get(), got[0]) == Status::Ok);
  size_t again = 0;
  while (put_str(q.get(), body) == Status::Ok) ++again;
  CHECK_EQ(again, n);  // the whole ring came back
  CHECK_EQ(q->stats().acks, n);
  got.clear();
  CHECK(take(q.get(), 64, &got) == Status::Ok);
  for (auto& m : got) CHECK(ack(q.get(), m) == Status::Ok);
  check_all_settled(q.get());
}

// A nack (no delay) makes the message the next one delivered, before newer ones, with deliveries 2.
void test_nack_redelivers_first() {
  const std::string name = uniq("lease-nack");
  auto q = make_explicit(name, 60000);
  for (const char* s : {"a", "b", "c"}) CHECK(put_str(q.get(), s) == Status::Ok);
  Msg a = take_one(q.get());
  CHECK(a.body == "a" && a.deliveries == 1);
  CHECK(q->settle(a.pos, a.deliveries, Queue::Settle::Nack) == Status::Ok);
  CHECK_EQ(held(q.get()), 0u);
  CHECK_EQ(q->qsize(), 3u);  // b, c and the nacked a
  std::vector<Msg> got;
  CHECK(take(q.get(), 8, &got) == Status::Ok);
  CHECK_EQ(got.size(), 3u);
  CHECK(got[0].body == "a" && got[0].deliveries == 2 && got[0].pos == a.pos);
  CHECK(got[1].body == "b" && got[1].deliveries == 1);
  CHECK(got[2].body == "c" && got[2].deliveries == 1);
  CHECK(q->settle(a.pos, 1, Queue::Settle::Ack) == Status::LeaseLost);  // the first delivery's token
  for (auto& m : got) CHECK(ack(q.get(), m) == Status::Ok);
  const Stats st = q->stats();
  CHECK_EQ(st.nacks, 1u);
  CHECK_EQ(st.redeliveries, 1u);
  CHECK_EQ(st.acks, 3u);
  check_all_settled(q.get());
}

// A nack with a delay: never handed out before the delay is over (checked against the clock at
// each delivery, so a slow machine cannot make it fail), and handed out after it.
void test_nack_delay() {
  const std::string name = uniq("lease-delay");
  auto q = make_explicit(name, 60000);
  CHECK(put_str(q.get(), "a") == Status::Ok);
  CHECK(put_str(q.get(), "b") == Status::Ok);
  Msg a = take_one(q.get());
  const uint64_t delay_ms = 200;
  const uint64_t nacked_at = monotonic_ns();
  CHECK(q->settle(a.pos, a.deliveries, Queue::Settle::Nack, delay_ms) == Status::Ok);
  const uint64_t not_before = nacked_at + delay_ms * 1000000ull;
  // Only b may come now (a comes first only once its delay is over).
  std::vector<Msg> got;
  CHECK(take(q.get(), 8, &got) == Status::Ok);
  if (monotonic_ns() < not_before) {
    CHECK_EQ(got.size(), 1u);
    CHECK(got[0].body == "b");
  }
  for (auto& m : got) {
    if (m.body == "a") CHECK(monotonic_ns() >= not_before);
  }
  // Blocking get: a arrives (once), not before its time.
  bool have_a = false;
  for (auto& m : got) have_a = have_a || m.body == "a";
  while (!have_a) {
    std::vector<Msg> more;
    const Status s = take(q.get(), 8, &more, 10000);
    CHECK(s == Status::Ok);
    CHECK(monotonic_ns() >= not_before);
    for (auto& m : more) {
      CHECK(m.body == "a");
      got.push_back(m);
      have_a = true;
    }
  }
  size_t as = 0;
  for (auto& m : got) {
    if (m.body == "a") {
      ++as;
      CHECK_EQ(m.deliveries, 2u);
    }
    CHECK(ack(q.get(), m) == Status::Ok);
  }
  CHECK_EQ(as, 1u);
  check_all_settled(q.get());
}

// Extend restarts the lease: past its original deadline it is still held (not taken back by a
// scan, still ackable with the same token). An attempt can only judge this when its check runs
// before the extended deadline (~600 ms of slack); on a machine that stalls longer the attempt
// settles what it got and is repeated (at most 5 times) -- an attempt that could not judge is
// never counted as a pass.
void test_extend_keeps_lease() {
  const std::string name = uniq("lease-extend");
  const uint64_t timeout_ms = 1000;
  auto q = make_explicit(name, timeout_ms);
  bool judged = false;
  for (int attempt = 0; attempt < 5 && !judged; ++attempt) {
    CHECK(put_str(q.get(), "a") == Status::Ok);
    Msg a = take_one(q.get());
    const uint64_t after_get = monotonic_ns();
    usleep(600000);
    // Only this handle ever scans, so the lease is still ours even if this sleep overran it.
    const uint64_t before_extend = monotonic_ns();
    CHECK(q->settle(a.pos, a.deliveries, Queue::Settle::Extend) == Status::Ok);
    const uint64_t new_deadline = before_extend + timeout_ms * 1000000ull;  // at least
    {
      Mapping m(name);
      auto* meta = reinterpret_cast<LeaseMeta*>(m.base + m.header()->data_offset + (a.pos & (q->capacity() - 1)) +
                                                kRecordHeaderSize);
      CHECK(meta->deadline_ns.load() >= new_deadline);
    }
    const uint64_t old_deadline = after_get + timeout_ms * 1000000ull;  // at most
    CHECK(old_deadline < new_deadline);
    sleep_until_ns(old_deadline + 1000000);
    // A scan now (the check is due: a lease is out) must leave the extended lease alone.
    wait_scan_due(name);
    const uint64_t expired_before = q->stats().expired_leases;
    std::vector<Msg> got;
    const Status s = take(q.get(), 8, &got);
    if (monotonic_ns() < new_deadline) {
      judged = true;
      CHECK(s == Status::Empty);
      CHECK_EQ(held(q.get()), 1u);
      CHECK_EQ(q->stats().expired_leases, expired_before);
      CHECK(ack(q.get(), a) == Status::Ok);
    } else {
      std::fprintf(stderr, "test_extend_keeps_lease: attempt %d too slow to judge (machine stalled)\n", attempt);
      for (auto& m : got) CHECK(ack(q.get(), m) == Status::Ok);  // its redelivery, if the scan took it back
      const Status late = ack(q.get(), a);
      CHECK(late == (got.empty() ? Status::Ok : Status::LeaseLost));
    }
    check_all_settled(q.get());
  }
  CHECK(judged);
}

// Expiry: the lease is taken back and delivered again (deliveries 2, not before the deadline);
// the old token is refused (ack, nack, extend), the new one works.
void test_expiry_redelivers() {
  const std::string name = uniq("lease-expiry");
  const uint64_t timeout_ms = 50;
  auto q = make_explicit(name, timeout_ms);
  CHECK(put_str(q.get(), "a") == Status::Ok);
  const uint64_t before_get = monotonic_ns();
  Msg a1 = take_one(q.get());
  CHECK_EQ(a1.deliveries, 1u);
  Msg a2 = take_one(q.get(), 10000);
  CHECK(monotonic_ns() >= before_get + timeout_ms * 1000000ull);
  CHECK(a2.body == "a" && a2.pos == a1.pos && a2.deliveries == 2);
  CHECK(q->settle(a1.pos, a1.deliveries, Queue::Settle::Ack) == Status::LeaseLost);
  CHECK(q->settle(a1.pos, a1.deliveries, Queue::Settle::Nack) == Status::LeaseLost);
  CHECK(q->settle(a1.pos, a1.deliveries, Queue::Settle::Extend) == Status::LeaseLost);
  CHECK_EQ(held(q.get()), 1u);  // the stale settles did not disturb the new lease
  CHECK(ack(q.get(), a2) == Status::Ok);
  const Stats st = q->stats();
  CHECK_EQ(st.expired_leases, 1u);
  CHECK_EQ(st.redeliveries, 1u);
  CHECK_EQ(st.stale_settles, 3u);
  CHECK_EQ(st.acks, 1u);
  check_all_settled(q.get());
}

// A late ack of an expired lease still counts while nobody took the message again: (1) past the
// deadline but not yet scanned, (2) taken back by a scan (REDELIVER) that had no room to deliver
// it. Either way it is not delivered again afterwards. A late nack/extend is refused.
void test_late_ack() {
  const std::string name = uniq("lease-late");
  const uint64_t timeout_ms = 30;
  auto q = make_explicit(name, timeout_ms);
  // (1)
  CHECK(put_str(q.get(), "a") == Status::Ok);
  Msg a = take_one(q.get());
  sleep_until_ns(monotonic_ns() + (timeout_ms + 2) * 1000000ull);
  CHECK(ack(q.get(), a) == Status::Ok);
  CHECK_EQ(q->stats().expired_leases, 0u);
  check_all_settled(q.get());
  // (2)
  CHECK(put_str(q.get(), "bbbb") == Status::Ok);
  Msg b = take_one(q.get());
  sleep_until_ns(monotonic_ns() + (timeout_ms + 2) * 1000000ull);
  wait_scan_due(name);
  std::vector<Msg> none;
  size_t needed = 0;
  CHECK(take(q.get(), 4, &none, 0, 8, &needed) == Status::BufferTooSmall);  // the scan ran: b taken back
  CHECK_EQ(needed, sizeof(LeasePrefix) + 4);
  Stats st = q->stats();
  CHECK_EQ(st.expired_leases, 1u);
  CHECK_EQ(st.redeliverable, 1u);
  CHECK_EQ(held(q.get()), 0u);
  CHECK(q->settle(b.pos, b.deliveries, Queue::Settle::Extend) == Status::LeaseLost);
  CHECK(q->settle(b.pos, b.deliveries, Queue::Settle::Nack) == Status::LeaseLost);
  CHECK(ack(q.get(), b) == Status::Ok);
  st = q->stats();
  CHECK_EQ(st.acks, 2u);
  CHECK_EQ(st.redeliveries, 0u);
  wait_scan_due(name);
  check_all_settled(q.get());
}

// A second ack (or nack, extend) of a settled message is refused.
void test_double_ack() {
  const std::string name = uniq("lease-double");
  auto q = make_explicit(name, 60000);
  CHECK(put_str(q.get(), "a") == Status::Ok);
  CHECK(put_str(q.get(), "b") == Status::Ok);
  Msg a = take_one(q.get());
  Msg b = take_one(q.get());
  CHECK(ack(q.get(), b) == Status::Ok);  // b is above the floor: its record is still there
  CHECK(ack(q.get(), b) == Status::LeaseLost);
  CHECK(q->settle(b.pos, b.deliveries, Queue::Settle::Nack) == Status::LeaseLost);
  CHECK(ack(q.get(), a) == Status::Ok);  // both CONSUMED (the floor passes them at the next get)
  CHECK(ack(q.get(), a) == Status::LeaseLost);
  CHECK(ack(q.get(), b) == Status::LeaseLost);
  CHECK(q->settle(a.pos, a.deliveries, Queue::Settle::Extend) == Status::LeaseLost);
  const Stats st = q->stats();
  CHECK_EQ(st.acks, 2u);
  CHECK_EQ(st.stale_settles, 5u);
  check_all_settled(q.get());
}

// Ids that name no lease of ours: refused (InvalidArgument or LeaseLost), never a crash, and the
// real leases are untouched afterwards.
void test_garbage_ids() {
  const std::string name = uniq("lease-garbage");
  auto q = make_explicit(name, 60000);
  // Move the floor off zero first, so positions below it exist.
  CHECK(put_str(q.get(), "zzzz") == Status::Ok);
  CHECK(ack(q.get(), take_one(q.get())) == Status::Ok);
  CHECK(put_str(q.get(), std::string(40, 'a')) == Status::Ok);
  CHECK(put_str(q.get(), std::string(40, 'b')) == Status::Ok);
  CHECK(put_str(q.get(), std::string(40, 'c')) == Status::Ok);  // committed, not taken
  Msg a = take_one(q.get());
  Msg b = take_one(q.get());
  const uint64_t cap = q->capacity();
  const uint64_t bad_pos[] = {0,           a.pos - 16,    a.pos + 1,          a.pos + 8,
                              a.pos + 16,  a.pos + 32,    b.pos + 4,          b.pos + 48,
                              b.pos + 128, cap,           a.pos + cap,        cap - 8,
                              cap - 16,    UINT64_MAX,    UINT64_MAX - 15,    1ull << 63,
                              a.pos ^ (1ull << 40)};
  const uint32_t bad_deliveries[] = {1, 2, 0, UINT32_MAX};
  const Queue::Settle ops[] = {Queue::Settle::Ack, Queue::Settle::Nack, Queue::Settle::Extend};
  for (uint64_t p : bad_pos) {
    for (uint32_t d : bad_deliveries) {
      for (auto op : ops) {
        const Status s = q->settle(p, d, op, 5);
        if (s != Status::InvalidArgument && s != Status::LeaseLost) {
          std::fprintf(stderr, "settle(%llu, %u, %d) = %s\n", static_cast<unsigned long long>(p), d,
                       static_cast<int>(op), status_name(s));
        }
        CHECK(s == Status::InvalidArgument || s == Status::LeaseLost);
      }
    }
  }
  // The right positions with wrong tokens.
  for (const Msg* m : {&a, &b}) {
    for (uint32_t d : {0u, 2u, 3u, UINT32_MAX}) {
      for (auto op : ops) {
        const Status s = q->settle(m->pos, d, op);
        CHECK(s == (d == 0 ? Status::InvalidArgument : Status::LeaseLost));
      }
    }
  }
  CHECK(q->settle(a.pos, a.deliveries, Queue::Settle::Nack, 86400001) == Status::InvalidArgument);  // delay > 1 day
  CHECK_EQ(held(q.get()), 2u);
  CHECK_EQ(q->stats().acks, 1u);
  CHECK_EQ(q->stats().nacks, 0u);
  CHECK(ack(q.get(), b) == Status::Ok);
  CHECK(ack(q.get(), a) == Status::Ok);
  Msg c = take_one(q.get());
  CHECK(c.body == std::string(40, 'c') && c.deliveries == 1);  // untouched by any of the above
  CHECK(ack(q.get(), c) == Status::Ok);
  check_all_settled(q.get());
}

// held_leases counts this handle's leases only: up on a get, down on ack and nack; another handle
// holding the redelivered message counts it instead.
void test_held_leases() {
  const std::string name = uniq("lease-held");
  auto q = make_explicit(name, 60000);
  auto q2 = open_existing(name);
  CHECK(q2->explicit_ack());
  CHECK_EQ(q2->ack_timeout_ms(), 60000u);
  for (const char* s : {"a", "b", "c"}) CHECK(put_str(q.get(), s) == Status::Ok);
  CHECK_EQ(held(q.get()), 0u);
  std::vector<Msg> got;
  CHECK(take(q.get(), 3, &got) == Status::Ok);
  CHECK_EQ(got.size(), 3u);
  CHECK_EQ(held(q.get()), 3u);
  CHECK_EQ(held(q2.get()), 0u);
  CHECK(ack(q.get(), got[1]) == Status::Ok);
  CHECK_EQ(held(q.get()), 2u);
  CHECK(q->settle(got[0].pos, got[0].deliveries, Queue::Settle::Nack) == Status::Ok);
  CHECK_EQ(held(q.get()), 1u);
  Msg again = take_one(q2.get());
  CHECK(again.body == "a" && again.deliveries == 2);
  CHECK_EQ(held(q2.get()), 1u);
  CHECK_EQ(held(q.get()), 1u);
  CHECK(ack(q.get(), again) == Status::LeaseLost);  // q2's lease, not q's
  CHECK(ack(q2.get(), got[2]) == Status::LeaseLost);  // q's lease, not q2's
  CHECK(ack(q2.get(), again) == Status::Ok);
  CHECK(ack(q.get(), got[2]) == Status::Ok);
  CHECK_EQ(held(q.get()), 0u);
  CHECK_EQ(held(q2.get()), 0u);
  check_all_settled(q.get());
}

// Closed: puts refused; what is queued, leased or nacked is still delivered and settled; a get
// reports Closed once everything is acked.
void test_closed() {
  const std::string name = uniq("lease-closed");
  auto q = make_explicit(name, 60000);
  for (const char* s : {"a", "b", "c"}) CHECK(put_str(q.get(), s) == Status::Ok);
  Msg a = take_one(q.get());
  q->close();
  CHECK(q->closed());
  CHECK(put_str(q.get(), "d") == Status::Closed);
  CHECK(q->settle(a.pos, a.deliveries, Queue::Settle::Nack) == Status::Ok);
  std::vector<Msg> got;
  CHECK(take(q.get(), 8, &got) == Status::Ok);
  CHECK_EQ(got.size(), 3u);
  CHECK(got[0].body == "a" && got[0].deliveries == 2);
  CHECK(got[1].body == "b" && got[2].body == "c");
  CHECK(q->settle(got[1].pos, got[1].deliveries, Queue::Settle::Extend) == Status::Ok);
  for (auto& m : got) CHECK(ack(q.get(), m) == Status::Ok);
  std::vector<Msg> none;
  CHECK(take(q.get(), 8, &none) == Status::Closed);
  CHECK(take(q.get(), 8, &none, 1000) == Status::Closed);
  CHECK_EQ(held(q.get()), 0u);
}

// max_message_size counts the payload only: the get reports (and needs room for) 16 bytes more.
void test_max_message_size() {
  const std::string name = uniq("lease-max");
  auto q = make_explicit(name, 60000, 4096, 100);
  CHECK_EQ(q->max_message_size(), 100u);
  CHECK(put_str(q.get(), std::string(101, 'x')) == Status::TooLarge);
  const std::string big(100, 'y');
  CHECK(put_str(q.get(), big) == Status::Ok);
  std::vector<Msg> got;
  size_t needed = 0;
  CHECK(take(q.get(), 1, &got, 0, 115, &needed) == Status::BufferTooSmall);
  CHECK_EQ(needed, 116u);
  CHECK(take(q.get(), 1, &got, 0, 116) == Status::Ok);
  CHECK(got.size() == 1 && got[0].body == big && got[0].deliveries == 1);
  CHECK(ack(q.get(), got[0]) == Status::Ok);
  check_all_settled(q.get());
  // Default limit: a quarter of the ring less the record header and the lease meta.
  const std::string name2 = uniq("lease-max-default");
  auto q2 = make_explicit(name2, 60000, 4096);
  CHECK_EQ(q2->max_message_size(), 4096u / 4 - 16 - 16);
  // The payload limit leaves room for the meta: one over is refused at creation.
  CreateOptions o;
  o.capacity = 4096;
  o.ack_mode = kAckExplicit;
  o.max_message_size = 4096 / 2 - 16 - 16 + 1;
  std::unique_ptr<Queue> bad;
  int e = 0;
  CHECK(Queue::open(uniq("lease-max-bad"), OpenMode::Create, o, &bad, &e) == Status::InvalidArgument);
  o.max_message_size = 4096 / 2 - 16 - 16;
  const std::string name3 = uniq("lease-max-edge");
  CHECK(Queue::open(name3, OpenMode::Create, o, &bad, &e) == Status::Ok);
  bad->set_spin_ns(0);
  const std::string edge(o.max_message_size, 'e');
  CHECK(put_str(bad.get(), edge) == Status::Ok);
  got.clear();
  CHECK(take(bad.get(), 1, &got) == Status::Ok);
  CHECK(got[0].body == edge);
  CHECK(ack(bad.get(), got[0]) == Status::Ok);
  check_all_settled(bad.get());
}

// Option checks at creation, and an auto-ack queue: no prefix, no leases, settle refused.
void test_options_and_auto_mode() {
  CreateOptions o;
  o.capacity = 4096;
  o.ack_mode = kAckExplicit;
  std::unique_ptr<Queue> q;
  int e = 0;
  o.ack_timeout_ms = 0;
  CHECK(Queue::open(uniq("lease-opt1"), OpenMode::Create, o, &q, &e) == Status::InvalidArgument);
  o.ack_timeout_ms = 86400001;
  CHECK(Queue::open(uniq("lease-opt2"), OpenMode::Create, o, &q, &e) == Status::InvalidArgument);
  o.ack_timeout_ms = 1000;
  o.max_deliveries = 0;
  CHECK(Queue::open(uniq("lease-opt3"), OpenMode::Create, o, &q, &e) == Status::InvalidArgument);
  o.max_deliveries = 5;
  o.ack_mode = 2;
  CHECK(Queue::open(uniq("lease-opt4"), OpenMode::Create, o, &q, &e) == Status::InvalidArgument);

  const std::string name = uniq("lease-auto");
  auto a = make(name);
  CHECK(!a->explicit_ack());
  CHECK(put_str(a.get(), "abc") == Status::Ok);
  uint8_t buf[64];
  uint32_t len = 0;
  size_t got = 0, needed = 0;
  CHECK(a->try_get(buf, sizeof buf, &len, 1, &got, &needed) == Status::Ok);
  CHECK_EQ(len, 3u);  // no prefix
  CHECK(std::memcmp(buf, "abc", 3) == 0);
  CHECK(a->settle(0, 1, Queue::Settle::Ack) == Status::InvalidArgument);
  CHECK(a->settle(0, 1, Queue::Settle::Nack) == Status::InvalidArgument);
  CHECK(a->settle(0, 1, Queue::Settle::Extend) == Status::InvalidArgument);
  uint64_t n = 99;
  CHECK(a->held_leases(&n, 0) == Status::Ok);
  CHECK_EQ(n, 0u);
  const Stats st = a->stats();
  CHECK_EQ(st.ack_mode, 0u);
  CHECK_EQ(st.acks, 0u);
  CHECK_EQ(st.stale_settles, 0u);
}

// --- forked consumers, SIGKILLed -----------------------------------------------------------------

std::vector<pid_t>& live_children() {
  static auto* v = new std::vector<pid_t>;  // never destroyed: kill_children runs at exit
  return *v;
}

// Children still alive when the test fails are killed and reaped (atexit).
void kill_children() {
  for (pid_t p : live_children()) {
    kill(p, SIGKILL);
    waitpid(p, nullptr, 0);
  }
  live_children().clear();
}

#define CHILD_CHECK(cond)                                                                 \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      dprintf(2, "%s:%d: child CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
      _exit(2);                                                                           \
    }                                                                                     \
  } while (0)

struct Child {
  pid_t pid = -1;
  int rd = -1;  // the child's stderr
  std::string out;
};

// Forks a child running `body` with its stderr on a pipe to us; `body` never returns (it parks at
// a hook, or pauses after reporting).
Child spawn(const std::function<void()>& body) {
  static bool registered = false;
  if (!registered) {
    registered = true;
    std::atexit(kill_children);
  }
  int fds[2];
  CHECK(pipe2(fds, O_CLOEXEC) == 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    // Dies with the test, however the test ends (a CHECK runs kill_children; a signal does not).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(3);
    close(fds[0]);
    dup2(fds[1], 2);
    body();
    for (;;) pause();
  }
  close(fds[1]);
  live_children().push_back(pid);
  Child c;
  c.pid = pid;
  c.rd = fds[0];
  return c;
}

// Reads the child's stderr until `marker` appears (10 s at most).
void read_until(Child* c, const std::string& marker) {
  const uint64_t give_up = monotonic_ns() + 10000000000ull;
  while (c->out.find(marker) == std::string::npos) {
    if (c->out.find("child CHECK failed") != std::string::npos || monotonic_ns() > give_up) break;
    pollfd p{c->rd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    const ssize_t n = read(c->rd, buf, sizeof buf);
    if (n <= 0) break;  // the child is gone
    c->out.append(buf, static_cast<size_t>(n));
  }
  if (c->out.find(marker) == std::string::npos) {
    std::fprintf(stderr, "child %d never wrote '%s'; it wrote:\n%s\n", c->pid, marker.c_str(), c->out.c_str());
    CHECK(false);
  }
}

// SIGKILLs a child that is parked (it must not have exited by itself) and reaps it.
void kill_child(Child* c) {
  CHECK(kill(c->pid, SIGKILL) == 0);
  int status = 0;
  CHECK(waitpid(c->pid, &status, 0) == c->pid);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  auto& v = live_children();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == c->pid) v.erase(v.begin() + static_cast<long>(i));
  }
  close(c->rd);
}

// In a child: its own handle on the queue (the parent's handle is unusable after fork).
std::unique_ptr<Queue> child_open(const std::string& name) {
  std::unique_ptr<Queue> q;
  int e = 0;
  CHILD_CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &e) == Status::Ok);
  q->set_spin_ns(0);
  return q;
}

// In a child: one try_get of up to `max` messages, parsed.
std::vector<Msg> child_take(Queue* q, size_t max) {
  std::vector<uint8_t> buf(8192);
  std::vector<uint32_t> lens(max);
  size_t got = 0, needed = 0;
  const Status s = q->try_get(buf.data(), buf.size(), lens.data(), max, &got, &needed);
  CHILD_CHECK(s == Status::Ok);
  std::vector<Msg> out;
  size_t at = 0;
  for (size_t i = 0; i < got; ++i) {
    LeasePrefix p;
    std::memcpy(&p, buf.data() + at, sizeof p);
    out.push_back(Msg{p.position, p.deliveries,
                      std::string(reinterpret_cast<const char*>(buf.data() + at + sizeof p), lens[i] - sizeof p)});
    at += lens[i];
  }
  return out;
}

std::string body_of(int i) { return "m" + std::to_string(i); }

struct Expect {
  int id;
  uint32_t deliveries;
};

// The parent's side after a child died: once the lease scan is due, every message still in the
// queue must come in `order` (ids and delivery counts), with no other; all are acked here (each
// exactly once: the ack count grows by exactly their number).
// With wait_due false it does not wait for the scan first: the blocking gets alone must find them
// (fine when nothing new competes with the redelivered messages for the first place).
void receive_exactly(Queue* q, const std::string& name, const std::vector<Expect>& order,
                     const std::vector<Msg>* child_got = nullptr, bool wait_due = true) {
  if (wait_due) wait_scan_due(name);
  const uint64_t acks_before = q->stats().acks;
  std::vector<Msg> got;
  while (got.size() < order.size()) {
    const Status s = take(q, 64, &got, 10000);
    if (s != Status::Ok) {
      std::fprintf(stderr, "receive_exactly: %s after %zu of %zu messages\n", status_name(s), got.size(), order.size());
      CHECK(false);
    }
  }
  CHECK_EQ(got.size(), order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    if (got[i].body != body_of(order[i].id) || got[i].deliveries != order[i].deliveries) {
      std::fprintf(stderr, "receive_exactly: #%zu is %s (deliveries %u), expected %s (deliveries %u)\n", i,
                   got[i].body.c_str(), got[i].deliveries, body_of(order[i].id).c_str(), order[i].deliveries);
      CHECK(false);
    }
  }
  // Same identities as the child was given.
  if (child_got) {
    for (const Msg& c : *child_got) {
      bool found = false;
      for (const Msg& m : got) found = found || (m.pos == c.pos && m.body == c.body && m.deliveries > c.deliveries);
      CHECK(found);
    }
  }
  for (auto& m : got) CHECK(ack(q, m) == Status::Ok);
  const Stats st = q->stats();
  CHECK_EQ(st.acks - acks_before, order.size());
  check_all_settled(q);
}

void put_ids(Queue* q, int from, int to) {
  for (int i = from; i < to; ++i) CHECK(put_str(q, body_of(i)) == Status::Ok);
}

// A consumer takes 3 leases and is SIGKILLed: the others get exactly those 3 again, first, in
// their original order, deliveries 2; then the rest.
void test_killed_consumer() {
  const std::string name = uniq("lease-kill");
  auto q = make_explicit(name, 60000);
  put_ids(q.get(), 0, 6);
  Child c = spawn([&] {
    auto cq = child_open(name);
    std::vector<Msg> got = child_take(cq.get(), 3);
    CHILD_CHECK(got.size() == 3);
    for (const Msg& m : got) dprintf(2, "took %s %llu %u\n", m.body.c_str(), static_cast<unsigned long long>(m.pos), m.deliveries);
    dprintf(2, "ready\n");
    for (;;) pause();
  });
  read_until(&c, "ready\n");
  std::vector<Msg> child_got;
  {
    size_t at = 0;
    while ((at = c.out.find("took ", at)) != std::string::npos) {
      char body[32];
      unsigned long long pos = 0;
      unsigned d = 0;
      CHECK(std::sscanf(c.out.c_str() + at, "took %31s %llu %u", body, &pos, &d) == 3);
      child_got.push_back(Msg{pos, d, body});
      at += 5;
    }
  }
  CHECK_EQ(child_got.size(), 3u);
  for (int i = 0; i < 3; ++i) CHECK(child_got[static_cast<size_t>(i)].body == body_of(i) && child_got[static_cast<size_t>(i)].deliveries == 1);
  CHECK_EQ(q->qsize(), 3u);
  kill_child(&c);
  receive_exactly(q.get(), name, {{0, 2}, {1, 2}, {2, 2}, {3, 1}, {4, 1}, {5, 1}}, &child_got);
  const Stats st = q->stats();
  CHECK_EQ(st.dead_leases, 3u);
  CHECK_EQ(st.redeliveries, 3u);
  CHECK_EQ(st.expired_leases, 0u);
}

// Killed at AfterTake: the take is committed (3 records LEASED to the child) but nothing was
// copied out. They come back first, deliveries 2.
void test_killed_after_take() {
  const std::string name = uniq("lease-aftertake");
  auto q = make_explicit(name, 60000);
  put_ids(q.get(), 0, 5);
  Child c = spawn([&] {
    auto cq = child_open(name);
    set_test_hook(HookPoint::AfterTake);
    (void)child_take(cq.get(), 3);
    CHILD_CHECK(false);  // parked above
  });
  read_until(&c, "SAGE_HOOK after-take\n");
  kill_child(&c);
  receive_exactly(q.get(), name, {{0, 2}, {1, 2}, {2, 2}, {3, 1}, {4, 1}});
  CHECK_EQ(q->stats().dead_leases, 3u);
}

// Killed at InConsLock: inside the consumer lock with the take journaled (head not moved), after
// this get's lease scan already leased a nacked message to it. The next holder rolls the take
// back (nothing of it is delivered twice); the nacked message and the child's earlier lease are
// taken back from the dead child.
void test_killed_in_cons_lock() {
  const std::string name = uniq("lease-conslock");
  auto q = make_explicit(name, 60000);
  put_ids(q.get(), 0, 6);
  Child c = spawn([&] {
    auto cq = child_open(name);
    std::vector<Msg> got = child_take(cq.get(), 2);
    CHILD_CHECK(got.size() == 2 && got[0].body == "m0");
    CHILD_CHECK(cq->settle(got[0].pos, got[0].deliveries, Queue::Settle::Nack) == Status::Ok);
    set_test_hook(HookPoint::InConsLock);
    (void)child_take(cq.get(), 4);  // the scan leases m0 (deliveries 2), then m2 is journaled: parks
    CHILD_CHECK(false);
  });
  read_until(&c, "SAGE_HOOK in-cons-lock\n");
  kill_child(&c);
  // m0: delivered to the child twice (its second lease was never handed out); m1 once.
  receive_exactly(q.get(), name, {{0, 3}, {1, 2}, {2, 1}, {3, 1}, {4, 1}, {5, 1}});
  const Stats st = q->stats();
  CHECK(st.lock_recoveries >= 1);
  CHECK_EQ(st.dead_leases, 2u);
}

// Killed at InSettle: mid-ack (the record SETTLING to the child, not yet CONSUMED). The ack never
// happened: that message is delivered again like the child's other leases.
void test_killed_in_settle() {
  const std::string name = uniq("lease-settle");
  auto q = make_explicit(name, 60000);
  put_ids(q.get(), 0, 5);
  Child c = spawn([&] {
    auto cq = child_open(name);
    std::vector<Msg> got = child_take(cq.get(), 3);
    CHILD_CHECK(got.size() == 3);
    CHILD_CHECK(cq->settle(got[0].pos, got[0].deliveries, Queue::Settle::Ack) == Status::Ok);  // this one is done
    set_test_hook(HookPoint::InSettle);
    (void)cq->settle(got[1].pos, got[1].deliveries, Queue::Settle::Ack);
    CHILD_CHECK(false);
  });
  read_until(&c, "SAGE_HOOK in-settle\n");
  kill_child(&c);
  receive_exactly(q.get(), name, {{1, 2}, {2, 2}, {3, 1}, {4, 1}});
  CHECK_EQ(q->stats().dead_leases, 2u);
}

// Killed at InScan: mid-redelivery, inside the consumer lock, with a nacked message SETTLING to
// the child and the queue otherwise empty. The next consumer must still get both the nacked
// message and the child's other lease (no new message arrives to trigger a scan on its own).
void test_killed_in_scan() {
  const std::string name = uniq("lease-scan");
  auto q = make_explicit(name, 60000);
  put_ids(q.get(), 0, 2);
  Child c = spawn([&] {
    auto cq = child_open(name);
    std::vector<Msg> got = child_take(cq.get(), 2);
    CHILD_CHECK(got.size() == 2);
    CHILD_CHECK(cq->settle(got[0].pos, got[0].deliveries, Queue::Settle::Nack) == Status::Ok);
    set_test_hook(HookPoint::InScan);
    (void)child_take(cq.get(), 4);
    CHILD_CHECK(false);
  });
  read_until(&c, "SAGE_HOOK in-scan\n");
  kill_child(&c);
  receive_exactly(q.get(), name, {{0, 2}, {1, 2}}, nullptr, false);  // a blocking get finds them
  CHECK_EQ(q->stats().dead_leases, 2u);
  // And the queue goes on working.
  put_ids(q.get(), 2, 4);
  receive_exactly(q.get(), name, {{2, 1}, {3, 1}});
}

// A consumer stalled while copying a message out of its get (parked at MidRead, alive) past the
// lease deadline: the lease must not be taken back under the copy -- once taken back it could be
// redelivered, acked and its ring space reused by a producer while the stalled consumer is still
// reading it (a torn message with a valid-looking lease prefix). It is taken back once the
// consumer dies (deliveries 2).
void test_lease_not_taken_back_mid_copy() {
  const std::string name = uniq("lease-midread");
  const uint64_t timeout_ms = 30;
  auto q = make_explicit(name, timeout_ms);
  put_ids(q.get(), 0, 1);
  Child c = spawn([&] {
    auto cq = child_open(name);
    set_test_hook(HookPoint::MidRead);
    (void)child_take(cq.get(), 1);
    CHILD_CHECK(false);
  });
  read_until(&c, "SAGE_HOOK mid-read\n");
  sleep_until_ns(monotonic_ns() + (timeout_ms + 5) * 1000000ull);  // its deadline has passed
  wait_scan_due(name);
  std::vector<Msg> got;
  const Status s = take(q.get(), 8, &got);
  if (s == Status::Ok) {
    std::fprintf(stderr, "got %s (deliveries %u) while its first consumer was still copying it out\n",
                 got[0].body.c_str(), got[0].deliveries);
  }
  CHECK(s == Status::Empty);
  CHECK_EQ(q->stats().expired_leases, 0u);
  kill_child(&c);
  receive_exactly(q.get(), name, {{0, 2}});
  CHECK_EQ(q->stats().dead_leases, 1u);
}

// Two consumers killed in turn, the second while holding the first one's redelivered leases:
// delivery counts add up, nothing is lost.
void test_killed_twice() {
  const std::string name = uniq("lease-twice");
  auto q = make_explicit(name, 60000);
  put_ids(q.get(), 0, 4);
  Child c1 = spawn([&] {
    auto cq = child_open(name);
    std::vector<Msg> got = child_take(cq.get(), 2);
    CHILD_CHECK(got.size() == 2);
    dprintf(2, "ready\n");
    for (;;) pause();
  });
  read_until(&c1, "ready\n");
  kill_child(&c1);
  wait_scan_due(name);
  Child c2 = spawn([&] {
    auto cq = child_open(name);
    std::vector<Msg> got = child_take(cq.get(), 3);  // m0, m1 again, then m2
    CHILD_CHECK(got.size() == 3 && got[0].body == "m0" && got[0].deliveries == 2 && got[2].body == "m2" &&
                got[2].deliveries == 1);
    dprintf(2, "ready\n");
    for (;;) pause();
  });
  read_until(&c2, "ready\n");
  kill_child(&c2);
  receive_exactly(q.get(), name, {{0, 3}, {1, 3}, {2, 2}, {3, 1}});
  CHECK_EQ(q->stats().dead_leases, 5u);
}

}  // namespace

#define RUN(test)                           \
  do {                                      \
    std::printf("%s\n", #test);             \
    std::fflush(stdout);                    \
    test();                                 \
  } while (0)

int main() {
  RUN(test_options_and_auto_mode);
  RUN(test_ack_frees_space);
  RUN(test_nack_redelivers_first);
  RUN(test_nack_delay);
  RUN(test_extend_keeps_lease);
  RUN(test_expiry_redelivers);
  RUN(test_late_ack);
  RUN(test_double_ack);
  RUN(test_garbage_ids);
  RUN(test_held_leases);
  RUN(test_closed);
  RUN(test_max_message_size);
  RUN(test_killed_consumer);
  RUN(test_killed_after_take);
  RUN(test_killed_in_cons_lock);
  RUN(test_killed_in_settle);
  RUN(test_killed_in_scan);
  RUN(test_killed_twice);
  RUN(test_lease_not_taken_back_mid_copy);
  std::printf("test_leases: ok\n");
  return 0;
}
