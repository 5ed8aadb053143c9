// Threaded smoke test, so the TSan tree has something real to run: several threads increment a
// shared atomic counter and publish a plain (non-atomic) payload through a release/acquire flag.
// The total must be exact and the payload must be seen intact by the reader.
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

namespace {

constexpr int kThreads = 4;
constexpr long kIncrementsPerThread = 200000;

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

void counter_reaches_exact_total() {
  std::atomic<long> counter{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      // Spin until every thread is started, so the increments really overlap.
      while (!go.load(std::memory_order_acquire)) {  // pairs with the release store below
        std::this_thread::yield();
      }
      for (long i = 0; i < kIncrementsPerThread; ++i) {
        // relaxed: only the final total matters; join() orders it before the read below.
        counter.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  go.store(true, std::memory_order_release);  // pairs with the acquire loads in the threads
  for (auto& th : threads) th.join();
  check(counter.load(std::memory_order_relaxed) == kThreads * kIncrementsPerThread,
        "counter == threads * increments");
}

void release_acquire_publishes_payload() {
  constexpr int kRounds = 1000;
  long payload = 0;               // plain memory, published through `ready`
  std::atomic<int> ready{0};      // round number whose payload is published
  std::atomic<int> consumed{0};   // round number the reader has finished with
  bool payload_ok = true;

  std::thread reader([&] {
    for (int round = 1; round <= kRounds; ++round) {
      while (ready.load(std::memory_order_acquire) != round) {  // pairs with the writer's release
        std::this_thread::yield();
      }
      if (payload != round * 7L) payload_ok = false;
      consumed.store(round, std::memory_order_release);  // pairs with the writer's acquire
    }
  });
  for (int round = 1; round <= kRounds; ++round) {
    while (consumed.load(std::memory_order_acquire) != round - 1) {  // pairs with the reader's release
      std::this_thread::yield();
    }
    payload = round * 7L;
    ready.store(round, std::memory_order_release);  // pairs with the reader's acquire
  }
  reader.join();
  check(payload_ok, "reader saw every published payload intact");
  check(consumed.load(std::memory_order_relaxed) == kRounds, "reader consumed every round");
}

}  // namespace

int main() {
  counter_reaches_exact_total();
  release_acquire_publishes_payload();
  if (failures != 0) {
    std::fprintf(stderr, "test_smoke_threads: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_smoke_threads: ok\n");
  return 0;
}
