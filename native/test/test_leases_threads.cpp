// Explicit acks under concurrency, threads standing in for processes (each its own handle and
// slot): 2 producers and 4 consumers on a small ring with a 20 ms ack timeout. Consumers ack most
// messages at once, but also nack (with and without a delay), extend, hold leases long enough for
// them to expire (then ack late: Ok if nobody took the message again, LeaseLost if someone did),
// repeat acks they already made and settle garbage ids; one consumer now and then releases its
// handle while holding leases and attaches again -- so lease scans, late acks, redelivery of
// expired and dead-owner leases, and settles race. Run under TSan (test_*_threads*) and ASan.
//
// At the end: every message acked exactly once (by payload id), never the same (id, deliveries)
// token handed out twice, payloads intact (a lease taken back under a slow copy would let its
// space be reused under it), and the queue's counters agree with what the threads saw (acks,
// nacks, stale settles, redeliveries).
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "futex.h"
#include "sage_ring.h"

using namespace sage;

namespace {

constexpr int kProducers = 2, kConsumers = 4;
constexpr uint32_t kPerProducer = 2500;
constexpr uint32_t kTotal = kProducers * kPerProducer;
constexpr uint64_t kAckTimeoutMs = 20;

struct Lease {
  uint64_t pos;
  uint32_t deliveries;
  uint32_t id;
};

uint8_t pattern(uint32_t id, uint32_t i) { return static_cast<uint8_t>(id * 131u + i * 7u); }

struct Shared {
  Shared() : acked(kTotal), tokens(kTotal) {}
  std::vector<std::atomic<uint32_t>> acked;   // successful acks per id
  std::vector<std::atomic<uint64_t>> tokens;  // bit d: delivery d was handed out
  std::atomic<uint32_t> acked_total{0};
  std::atomic<uint64_t> deliveries{0}, redelivered{0}, nacks{0}, lease_lost{0}, extends{0}, late_ok{0};
  std::atomic<uint64_t> stale_on_arrival{0};
  std::atomic<uint64_t> abandoned{0};  // leases left behind by a handle released without settling them
  std::atomic<bool> failed{false};
};

void fail(Shared* sh, const char* what, uint32_t id, uint32_t d) {
  std::fprintf(stderr, "test_leases_threads: %s (id %u, deliveries %u)\n", what, id, d);
  sh->failed = true;
}

void consumer(const std::string& name, int c, Shared* sh) {
  std::unique_ptr<Queue> q;
  int err = 0;
  CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &err) == Status::Ok);
  q->set_spin_ns(c % 2 ? 0 : 20000);
  uint64_t my_deliveries = 0;
  std::mt19937 rng(1234u + static_cast<unsigned>(c));
  std::vector<uint8_t> out(16384);
  uint32_t lens[16];
  std::vector<Lease> held, done;  // leases kept for later; leases we acked (to ack again: refused)
  const size_t max = 1 + static_cast<size_t>(c) * 3;

  auto settle = [&](const Lease& l, Queue::Settle op, uint64_t delay = 0) {
    const Status s = q->settle(l.pos, l.deliveries, op, delay);
    if (s == Status::LeaseLost) {
      sh->lease_lost.fetch_add(1);
    } else if (s != Status::Ok) {
      fail(sh, status_name(s), l.id, l.deliveries);
    }
    return s;
  };
  auto do_ack = [&](const Lease& l) {
    if (settle(l, Queue::Settle::Ack) != Status::Ok) return false;
    if (sh->acked[l.id].fetch_add(1) != 0) fail(sh, "acked twice", l.id, l.deliveries);
    sh->acked_total.fetch_add(1);
    done.push_back(l);
    return true;
  };

  const uint64_t give_up = monotonic_ns() + 90000000000ull;  // 90 s: a hang is a failure
  while (sh->acked_total.load() < kTotal && !sh->failed.load()) {
    if (monotonic_ns() > give_up) {
      fail(sh, "no progress: gave up", sh->acked_total.load(), 0);
      break;
    }
    // The last consumer detaches now and then while holding leases (a handle closed without
    // settling: its slot is freed, so scans take its leases back as a dead owner's) and attaches
    // again with a new handle, which may get the same slot under a new generation.
    if (c == kConsumers - 1 && !held.empty() && my_deliveries >= 300) {
      my_deliveries = 0;
      sh->abandoned.fetch_add(held.size());
      held.clear();
      q->release();
      q.reset();
      CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &err) == Status::Ok);
      q->set_spin_ns(0);
    }
    size_t got = 0, needed = 0;
    const Status s = q->get(out.data(), out.size(), lens, max, &got, &needed, 20);
    if (s == Status::Empty) {
      got = 0;
    } else if (s != Status::Ok) {
      fail(sh, status_name(s), 0, 0);
      break;
    }
    size_t at = 0;
    for (size_t k = 0; k < got; ++k) {
      LeasePrefix p;
      std::memcpy(&p, out.data() + at, sizeof p);
      uint32_t id = 0;
      const uint32_t len = lens[k] - static_cast<uint32_t>(sizeof p);
      if (lens[k] < sizeof p + 4 || p.zero != 0 || p.deliveries == 0 || p.deliveries >= 64) {
        fail(sh, "bad prefix", 0, p.deliveries);
        at += lens[k];
        continue;
      }
      std::memcpy(&id, out.data() + at + sizeof p, 4);
      bool intact = id < kTotal && len == 4 + id % 97;
      for (uint32_t i = 4; intact && i < len; ++i) intact = out[at + sizeof p + i] == pattern(id, i);
      at += lens[k];
      if (!intact) {
        fail(sh, "payload corrupt", id, p.deliveries);
        continue;
      }
      sh->deliveries.fetch_add(1);
      ++my_deliveries;
      if (p.deliveries > 1) sh->redelivered.fetch_add(1);
      // Already acked by another consumer: legitimate only when this lease expired between the
      // get's take and this line (a stalled thread); its own settle is then refused ("acked twice"
      // catches an Ok).
      if (sh->acked[id].load() != 0) sh->stale_on_arrival.fetch_add(1);
      if (sh->tokens[id].fetch_or(1ull << p.deliveries) & (1ull << p.deliveries)) {
        fail(sh, "same delivery token handed out twice", id, p.deliveries);
      }
      const Lease l{p.position, p.deliveries, id};
      const unsigned r = rng() % 16;
      if (p.deliveries >= 4) {
        do_ack(l);  // enough games: let it finish
      } else if (r == 0) {
        if (settle(l, Queue::Settle::Nack, rng() % 2 ? 0 : 2) == Status::Ok) sh->nacks.fetch_add(1);
      } else if (r == 1 || r == 2) {
        held.push_back(l);  // settled later, maybe after it expired
      } else if (r == 3) {
        if (settle(l, Queue::Settle::Extend) == Status::Ok) sh->extends.fetch_add(1);
        do_ack(l);
      } else {
        do_ack(l);
      }
    }
    // Now and then: let held leases age past the timeout, then settle them (late ack or nack).
    if (!held.empty() && (got == 0 || rng() % 4 == 0)) {
      if (rng() % 2) usleep(static_cast<useconds_t>(rng() % (2 * kAckTimeoutMs * 1000)));
      for (const Lease& l : held) {
        if (rng() % 5 == 0) {
          if (settle(l, Queue::Settle::Nack) == Status::Ok) sh->nacks.fetch_add(1);
        } else if (do_ack(l)) {
          sh->late_ok.fetch_add(1);
        }
      }
      held.clear();
    }
    // Repeat an ack we already made (always refused), and settle ids that name nothing.
    if (!done.empty() && rng() % 8 == 0) {
      const Lease& l = done[rng() % done.size()];
      if (q->settle(l.pos, l.deliveries, Queue::Settle::Ack) != Status::LeaseLost) {
        fail(sh, "a repeated ack was not refused", l.id, l.deliveries);
      }
      sh->lease_lost.fetch_add(1);
      const uint64_t misaligned = l.pos + 1 + rng() % 15;
      if (q->settle(misaligned, l.deliveries, Queue::Settle::Ack) != Status::InvalidArgument) {
        fail(sh, "a misaligned id was not refused", l.id, l.deliveries);
      }
      if (q->settle((1ull << 62) + (rng() % 512) * 16, 1, Queue::Settle::Nack) != Status::LeaseLost) {
        fail(sh, "an id past the head was not refused", l.id, l.deliveries);
      }
      sh->lease_lost.fetch_add(1);
      if (done.size() > 256) done.erase(done.begin(), done.begin() + 128);
    }
  }
  // Whatever is still held was acked by someone else by now: refused.
  for (const Lease& l : held) {
    if (q->settle(l.pos, l.deliveries, Queue::Settle::Ack) != Status::LeaseLost) fail(sh, "stale hold acked", l.id, 0);
    sh->lease_lost.fetch_add(1);
  }
  uint64_t n = 1;
  CHECK(q->held_leases(&n, 5000) == Status::Ok);
  if (n != 0) fail(sh, "a consumer still holds leases at the end", static_cast<uint32_t>(n), 0);
}

}  // namespace

int main() {
  const std::string name = "ctest-lease-threads-" + std::to_string(getpid());
  remove_at_exit(name);
  CreateOptions o;
  o.capacity = 16384;  // small: producers wait on the ack floor all the time
  o.ack_mode = kAckExplicit;
  o.ack_timeout_ms = kAckTimeoutMs;
  std::unique_ptr<Queue> creator;
  int e = 0;
  CHECK(Queue::open(name, OpenMode::Create, o, &creator, &e) == Status::Ok);
  Shared sh;
  for (auto& a : sh.acked) a.store(0);
  for (auto& t : sh.tokens) t.store(0);

  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      std::unique_ptr<Queue> q;
      int err = 0;
      CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &err) == Status::Ok);
      q->set_spin_ns(p % 2 ? 0 : 20000);
      std::vector<uint8_t> buf(4 + 97);
      for (uint32_t i = 0; i < kPerProducer; ++i) {
        const uint32_t id = static_cast<uint32_t>(p) * kPerProducer + i;
        const uint32_t len = 4 + id % 97;
        std::memcpy(buf.data(), &id, 4);
        for (uint32_t b = 4; b < len; ++b) buf[b] = pattern(id, b);
        Slice s{buf.data(), len};
        size_t w = 0;
        const Status st = q->put(&s, 1, &w, 100000);
        if (st != Status::Ok) {
          fail(&sh, status_name(st), id, 0);
          return;
        }
      }
    });
  }
  for (int c = 0; c < kConsumers; ++c) threads.emplace_back([&, c] { consumer(name, c, &sh); });
  for (auto& t : threads) t.join();

  CHECK(!sh.failed.load());
  CHECK_EQ(sh.acked_total.load(), kTotal);
  for (auto& a : sh.acked) CHECK_EQ(a.load(), 1u);
  // Settled: nothing left to get, nothing held, the ack floor at the head.
  std::vector<uint8_t> out(4096);
  uint32_t lens[4];
  size_t got = 0, needed = 0;
  CHECK(creator->try_get(out.data(), out.size(), lens, 4, &got, &needed) == Status::Empty);
  uint64_t n = 1;
  CHECK(creator->held_leases(&n, 5000) == Status::Ok);
  CHECK_EQ(n, 0u);
  const Stats st = creator->stats();
  CHECK_EQ(st.unacked_bytes, 0u);
  CHECK_EQ(st.acks, static_cast<uint64_t>(kTotal));
  CHECK_EQ(st.nacks, sh.nacks.load());
  CHECK_EQ(st.stale_settles, sh.lease_lost.load());
  CHECK_EQ(st.redeliveries, sh.redelivered.load());
  CHECK_EQ(sh.deliveries.load(), static_cast<uint64_t>(kTotal) + st.redeliveries);
  // Leases of a released handle are taken back as dead (or as expired, if a scan saw the deadline
  // pass first); nobody else dies here.
  CHECK(sh.abandoned.load() > 0);
  CHECK(st.dead_leases <= sh.abandoned.load());
  // Every redelivery was a nacked or taken-back lease (some of those were acked late instead).
  CHECK(st.redeliveries <= st.nacks + st.expired_leases + st.dead_leases);
  CHECK_EQ(st.redeliverable, 0u);
  std::printf("test_leases_threads: %u messages, %llu deliveries, %llu nacks, %llu expired, %llu late acks ok, "
              "%llu stale settles, %llu extends, %llu expired before the get returned, %llu abandoned by a released handle (%llu taken back as dead): "
              "all checks passed\n",
              kTotal, static_cast<unsigned long long>(sh.deliveries.load()), static_cast<unsigned long long>(st.nacks),
              static_cast<unsigned long long>(st.expired_leases), static_cast<unsigned long long>(sh.late_ok.load()),
              static_cast<unsigned long long>(st.stale_settles), static_cast<unsigned long long>(sh.extends.load()),
              static_cast<unsigned long long>(sh.stale_on_arrival.load()), static_cast<unsigned long long>(sh.abandoned.load()),
              static_cast<unsigned long long>(st.dead_leases));
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
  return 0;
}
