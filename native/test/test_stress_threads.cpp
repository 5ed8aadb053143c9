// MPMC stress with threads standing in for processes (each with its own handle and slot):
// 4 producers x 4 consumers, variable sizes, blocking waits on a small ring. Every message is
// delivered exactly once, uncorrupted, in per-producer order. Run under TSan and ASan.
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "sage_ring.h"

using namespace sage;

constexpr int kProducers = 4, kConsumers = 4;
constexpr uint32_t kPerProducer = 20000;

struct Msg {
  uint32_t producer, seq, len, sum;
};

static uint32_t checksum(const uint8_t* p, uint32_t n) {
  uint32_t h = 2166136261u;
  for (uint32_t i = 0; i < n; ++i) h = (h ^ p[i]) * 16777619u;
  return h;
}

int main() {
  const std::string name = "ctest-stress-" + std::to_string(getpid());
  remove_at_exit(name);
  CreateOptions o;
  o.capacity = 16384;  // small: constant wrap-around and full/empty transitions
  std::unique_ptr<Queue> creator;
  int e;
  CHECK(Queue::open(name, OpenMode::Create, o, &creator, &e) == Status::Ok);
  std::atomic<int> producers_done{0};
  std::vector<std::vector<uint32_t>> last(kConsumers, std::vector<uint32_t>(kProducers, 0));
  std::vector<std::atomic<uint32_t>> seen(kProducers * kPerProducer);
  for (auto& s : seen) s.store(0);
  std::atomic<bool> failed{false};

  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      std::unique_ptr<Queue> q;
      int err;
      CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &err) == Status::Ok);
      q->set_spin_ns(p % 2 ? 0 : 20000);  // half sleep at once: exercise the futex path
      std::vector<uint8_t> buf(sizeof(Msg) + 600);
      for (uint32_t i = 1; i <= kPerProducer; ++i) {
        uint32_t extra = (i * 7919u + p) % 600;
        for (uint32_t b = 0; b < extra; ++b) buf[sizeof(Msg) + b] = static_cast<uint8_t>(i + b + p);
        Msg m{static_cast<uint32_t>(p), i, extra, checksum(buf.data() + sizeof(Msg), extra)};
        memcpy(buf.data(), &m, sizeof m);
        Slice s{buf.data(), static_cast<uint32_t>(sizeof(Msg) + extra)};
        size_t w = 0;
        CHECK(q->put(&s, 1, &w, -1) == Status::Ok);
      }
      producers_done.fetch_add(1);
    });
  }
  std::atomic<uint64_t> received{0};
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      std::unique_ptr<Queue> q;
      int err;
      CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &err) == Status::Ok);
      q->set_spin_ns(c % 2 ? 0 : 20000);
      std::vector<uint8_t> out(8192);
      uint32_t lens[16];
      for (;;) {
        size_t got = 0, needed = 0;
        Status s = q->get(out.data(), out.size(), lens, 1 + c * 5, &got, &needed, -1);
        if (s == Status::Closed) break;
        CHECK(s == Status::Ok);
        size_t at = 0;
        for (size_t k = 0; k < got; ++k) {
          Msg m;
          CHECK(lens[k] >= sizeof m);
          memcpy(&m, out.data() + at, sizeof m);
          if (m.producer >= kProducers || m.seq == 0 || m.seq > kPerProducer || lens[k] != sizeof m + m.len ||
              checksum(out.data() + at + sizeof m, m.len) != m.sum) {
            failed = true;
          } else {
            // Per-producer order as seen by one consumer is increasing (FIFO in claim order).
            if (m.seq <= last[c][m.producer]) failed = true;
            last[c][m.producer] = m.seq;
            if (seen[m.producer * kPerProducer + m.seq - 1].fetch_add(1) != 0) failed = true;
          }
          at += lens[k];
        }
        received.fetch_add(got);
      }
    });
  }
  // Close once every producer is done and the queue has drained.
  while (producers_done.load() < kProducers) usleep(1000);
  while (creator->qsize() != 0) usleep(1000);
  creator->close();
  for (auto& t : threads) t.join();
  CHECK(!failed.load());
  CHECK_EQ(received.load(), static_cast<uint64_t>(kProducers) * kPerProducer);
  for (auto& s : seen) CHECK_EQ(s.load(), 1u);
  Stats st = creator->stats();
  CHECK_EQ(st.enqueued, st.dequeued);
  CHECK_EQ(st.abandoned_claims, 0u);
  std::printf("test_stress_threads: %llu messages, %llu wake syscalls, %llu sleeps: all checks passed\n",
              static_cast<unsigned long long>(received.load()), static_cast<unsigned long long>(st.wake_calls),
              static_cast<unsigned long long>(st.waits));
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
  return 0;
}
