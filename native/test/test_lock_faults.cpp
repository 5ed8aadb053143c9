// The data locks under attack: a lock word whose mutex kind was overwritten, a lock "held" by a
// thread that does not exist, and a lock held by a live thread that never lets go (a stopped
// process). The lock words are changed through a second mapping, as another process could.
//   - a garbage kind is Corrupt, never a silent acquire (every call that takes the lock);
//   - a nonexistent owner is Corrupt, at once for a non-blocking call, and a blocking call with
//     a timeout (or none) does not hang;
//   - a live holder: non-blocking calls report busy as Full / Empty at once, blocking calls
//     return after their timeout, close() returns at once, a cancel flag is honoured.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "segment_mapping.h"
#include "futex.h"
#include "sage_ring.h"

using namespace sage;

namespace {

uint64_t ms_since(uint64_t start) { return (monotonic_ns() - start) / 1000000ull; }

struct Io {
  uint8_t byte = 7;
  Slice s{&byte, 1};
  uint8_t out[64];
  uint32_t lens[4];
  size_t w = 0, got = 0, needed = 0;
};

// Mutex kind overwritten with garbage: pthreads would answer EINVAL (or, for another valid kind,
// give a lock that is no longer robust). Every call that needs the lock reports Corrupt.
void test_garbage_kind_is_corrupt() {
  for (int which = 0; which < 2; ++which) {
    const std::string name = uniq(which == 0 ? "kind-prod" : "kind-cons");
    auto q = make(name);
    Io io;
    CHECK(q->try_put(&io.s, 1, &io.w) == Status::Ok);  // something to get
    Mapping m(name);
    pthread_mutex_t* lock = which == 0 ? &m.header()->prod_lock : &m.header()->cons_lock;
    lock->__data.__kind = 0x5a5a;
    if (which == 0) {
      CHECK(q->try_put(&io.s, 1, &io.w) == Status::Corrupt);
      CHECK(q->put(&io.s, 1, &io.w, 100) == Status::Corrupt);
      CHECK(q->put(&io.s, 1, &io.w, -1) == Status::Corrupt);
    } else {
      CHECK(q->try_get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed) == Status::Corrupt);
      CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, 100) == Status::Corrupt);
      CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, -1) == Status::Corrupt);
      CHECK_EQ(io.got, 0u);
    }
    const uint64_t t0 = monotonic_ns();
    q->close();  // does not wait, does not crash
    CHECK(ms_since(t0) < 500);
    CHECK(q->closed());
  }
}

// The lock word names a thread id that no process has (above any pid_max): the kernel will never
// hand it over. Non-blocking calls report Corrupt at once; blocking ones do not hang.
void test_nonexistent_owner_does_not_hang() {
  for (int which = 0; which < 2; ++which) {
    const std::string name = uniq(which == 0 ? "ghost-prod" : "ghost-cons");
    auto q = make(name);
    Io io;
    CHECK(q->try_put(&io.s, 1, &io.w) == Status::Ok);
    Mapping m(name);
    pthread_mutex_t* lock = which == 0 ? &m.header()->prod_lock : &m.header()->cons_lock;
    __atomic_store_n(&lock->__data.__lock, 0x3FFFFFF0, __ATOMIC_RELEASE);
    uint64_t t0 = monotonic_ns();
    if (which == 0) {
      CHECK(q->try_put(&io.s, 1, &io.w) == Status::Corrupt);
      CHECK(ms_since(t0) < 500);
      t0 = monotonic_ns();
      CHECK(q->put(&io.s, 1, &io.w, -1) == Status::Corrupt);  // forever: still returns
      CHECK(ms_since(t0) < 2000);
    } else {
      CHECK(q->try_get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed) == Status::Corrupt);
      CHECK(ms_since(t0) < 500);
      t0 = monotonic_ns();
      CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, -1) == Status::Corrupt);
      CHECK(ms_since(t0) < 2000);
      // The readiness wait (what the async notifier runs) reports it too.
      CHECK(q->wait_readable(-1, nullptr) == Status::Corrupt);
    }
    t0 = monotonic_ns();
    q->close();
    CHECK(ms_since(t0) < 500);
  }
}

// A live thread holds the lock and does not let go (what a SIGSTOPped holder looks like).
class Holder {
 public:
  explicit Holder(pthread_mutex_t* m) : m_(m), t_([this] { run(); }) {
    while (!held_.load(std::memory_order_acquire)) usleep(100);
  }
  ~Holder() {
    release_.store(true, std::memory_order_release);
    t_.join();
  }

 private:
  void run() {
    const int rc = pthread_mutex_lock(m_);
    CHECK(rc == 0 || rc == EOWNERDEAD);
    held_.store(true, std::memory_order_release);
    while (!release_.load(std::memory_order_acquire)) usleep(1000);
    pthread_mutex_unlock(m_);
  }
  pthread_mutex_t* m_;
  std::atomic<bool> held_{false}, release_{false};
  std::thread t_;
};

void test_live_holder_busy_is_would_block() {
  const std::string name = uniq("held");
  auto q = make(name);
  Io io;
  CHECK(q->try_put(&io.s, 1, &io.w) == Status::Ok);
  Mapping m(name);
  {
    Holder hold(&m.header()->prod_lock);
    uint64_t t0 = monotonic_ns();
    CHECK(q->try_put(&io.s, 1, &io.w) == Status::Full);  // busy reads as "would block"
    CHECK(ms_since(t0) < 200);
    t0 = monotonic_ns();
    CHECK(q->put(&io.s, 1, &io.w, 300) == Status::Full);  // the timeout covers the lock
    const uint64_t took = ms_since(t0);
    CHECK(took >= 290 && took < 1500);
    // Space is there but the lock is held: the readiness wait does not report "ready".
    CHECK(q->wait_writable(1, 100, nullptr) == Status::TimedOut);
    // A cancel flag set by another thread ends a blocking put within a slice.
    std::atomic<bool> cancel{false};
    std::thread canceller([&] {
      usleep(100000);
      cancel.store(true, std::memory_order_release);
    });
    t0 = monotonic_ns();
    CHECK(q->put(&io.s, 1, &io.w, -1, &cancel, Status::Interrupted) == Status::Interrupted);
    CHECK(ms_since(t0) < 1000);
    canceller.join();
    t0 = monotonic_ns();
    q->close();  // never waits for the data lock
    CHECK(ms_since(t0) < 200);
    CHECK(q->closed());
  }
  // Let go: the message put before close is still there.
  CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, 1000) == Status::Ok);
  CHECK_EQ(io.got, 1u);
}

void test_live_consumer_holder() {
  const std::string name = uniq("held-cons");
  auto q = make(name);
  Io io;
  CHECK(q->try_put(&io.s, 1, &io.w) == Status::Ok);
  Mapping m(name);
  {
    Holder hold(&m.header()->cons_lock);
    uint64_t t0 = monotonic_ns();
    CHECK(q->try_get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed) == Status::Empty);
    CHECK(ms_since(t0) < 200);
    t0 = monotonic_ns();
    CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, 300) == Status::Empty);
    const uint64_t took = ms_since(t0);
    CHECK(took >= 290 && took < 1500);
    CHECK(q->wait_readable(100, nullptr) == Status::TimedOut);
    t0 = monotonic_ns();
    q->close();
    CHECK(ms_since(t0) < 200);
  }
  // Released: the message is delivered, then Closed.
  CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, 1000) == Status::Ok);
  CHECK(q->try_get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed) == Status::Closed);
}

// A lock released after a while: a blocking get waiting on it gets the message.
void test_blocking_get_acquires_when_released() {
  const std::string name = uniq("held-then-free");
  auto q = make(name);
  Io io;
  CHECK(q->try_put(&io.s, 1, &io.w) == Status::Ok);
  Mapping m(name);
  auto hold = std::make_unique<Holder>(&m.header()->cons_lock);
  std::thread letgo([&] {
    usleep(150000);
    hold.reset();
  });
  const uint64_t t0 = monotonic_ns();
  CHECK(q->get(io.out, sizeof io.out, io.lens, 1, &io.got, &io.needed, 5000) == Status::Ok);
  CHECK(ms_since(t0) >= 100);
  letgo.join();
}

}  // namespace

int main() {
  test_garbage_kind_is_corrupt();
  test_nonexistent_owner_does_not_hang();
  test_live_holder_busy_is_would_block();
  test_live_consumer_holder();
  test_blocking_get_acquires_when_released();
  std::printf("test_lock_faults: all checks passed\n");
  return 0;
}
