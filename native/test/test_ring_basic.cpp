// Single-process behaviour of the core: FIFO, every record size across the wrap-around, limits,
// close, maxsize, names, create/open errors, stats.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "sage_ring.h"

using namespace sage;

static std::string uniq(const char* base) {
  std::string n = std::string("ctest-") + base + "-" + std::to_string(getpid());
  remove_at_exit(n);
  return n;
}

static std::unique_ptr<Queue> make(const std::string& name, uint64_t cap, uint64_t maxsize = 0, uint64_t max_msg = 0) {
  CreateOptions o;
  o.capacity = cap;
  o.maxsize = maxsize;
  o.max_message_size = max_msg;
  std::unique_ptr<Queue> q;
  int e = 0;
  Status s = Queue::open(name, OpenMode::Create, o, &q, &e);
  CHECK(s == Status::Ok);
  return q;
}

static void test_names() {
  CHECK(valid_queue_name("abc.DEF_1-2"));
  CHECK(!valid_queue_name(""));
  CHECK(!valid_queue_name(".."));
  CHECK(!valid_queue_name("a/b"));
  CHECK(!valid_queue_name("../x"));
  CHECK(!valid_queue_name(std::string(201, 'a')));
  CHECK(!valid_queue_name(std::string("a\0b", 3)));
  std::unique_ptr<Queue> q;
  int e;
  CHECK(Queue::open("a/b", OpenMode::Create, CreateOptions{}, &q, &e) == Status::InvalidName);
}

static void test_fifo_and_sizes() {
  const std::string name = uniq("sizes");
  auto q = make(name, 4096);
  CHECK_EQ(q->capacity(), 4096u);
  CHECK_EQ(q->max_message_size(), 4096u / 4 - 16);
  std::vector<uint8_t> buf(4096), out(4096);
  uint32_t lens[64];
  size_t got = 0, needed = 0, w = 0;
  // Every size from 0 to the maximum, several times round the ring, checked byte for byte.
  for (int round = 0; round < 3; ++round) {
    for (uint32_t len = 0; len <= q->max_message_size(); ++len) {
      for (uint32_t i = 0; i < len; ++i) buf[i] = static_cast<uint8_t>(len * 31 + i + round);
      Slice s{buf.data(), len};
      CHECK(q->try_put(&s, 1, &w) == Status::Ok);
      CHECK_EQ(w, 1u);
      CHECK(q->try_get(out.data(), out.size(), lens, 1, &got, &needed) == Status::Ok);
      CHECK_EQ(got, 1u);
      CHECK_EQ(lens[0], len);
      CHECK(memcmp(out.data(), buf.data(), len) == 0);
    }
  }
  CHECK(q->try_get(out.data(), out.size(), lens, 1, &got, &needed) == Status::Empty);
  // Too large is refused before anything is written.
  Slice big{buf.data(), static_cast<uint32_t>(q->max_message_size() + 1)};
  CHECK(q->try_put(&big, 1, &w) == Status::TooLarge);
  CHECK_EQ(q->qsize(), 0u);
  // Fill until full; FIFO order on the way out.
  uint32_t n = 0;
  for (;;) {
    uint32_t v = n;
    Slice s{reinterpret_cast<uint8_t*>(&v), 4};
    Status st = q->try_put(&s, 1, &w);
    if (st == Status::Full) break;
    CHECK(st == Status::Ok);
    ++n;
  }
  CHECK(n > 100);
  CHECK_EQ(q->qsize(), n);
  // A destination too small for the next message reports how much is needed, takes nothing.
  CHECK(q->try_get(out.data(), 2, lens, 1, &got, &needed) == Status::BufferTooSmall);
  CHECK_EQ(needed, 4u);
  CHECK_EQ(q->qsize(), n);
  for (uint32_t i = 0; i < n;) {
    CHECK(q->try_get(out.data(), out.size(), lens, 64, &got, &needed) == Status::Ok);
    for (size_t k = 0; k < got; ++k, ++i) {
      uint32_t v;
      memcpy(&v, out.data() + 4 * k, 4);
      CHECK_EQ(v, i);
    }
  }
  // Close: puts fail, gets drain then fail.
  uint32_t v = 7;
  Slice s{reinterpret_cast<uint8_t*>(&v), 4};
  CHECK(q->try_put(&s, 1, &w) == Status::Ok);
  q->close();
  CHECK(q->try_put(&s, 1, &w) == Status::Closed);
  CHECK(q->try_get(out.data(), out.size(), lens, 8, &got, &needed) == Status::Ok);
  CHECK_EQ(got, 1u);
  CHECK(q->try_get(out.data(), out.size(), lens, 8, &got, &needed) == Status::Closed);
  CHECK(q->get(out.data(), out.size(), lens, 8, &got, &needed, -1) == Status::Closed);
  Stats st = q->stats();
  CHECK(st.closed);
  CHECK_EQ(st.slots.size(), 1u);
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
}

static void test_batches_and_maxsize() {
  const std::string name = uniq("batch");
  auto q = make(name, 1 << 16, /*maxsize=*/10);
  std::vector<uint32_t> vals(32);
  std::vector<Slice> slices(32);
  for (uint32_t i = 0; i < 32; ++i) {
    vals[i] = i;
    slices[i] = Slice{reinterpret_cast<uint8_t*>(&vals[i]), 4};
  }
  size_t w = 0;
  CHECK(q->try_put(slices.data(), 32, &w) == Status::Full);
  CHECK_EQ(w, 10u);  // maxsize bounds the batch
  CHECK_EQ(q->qsize(), 10u);
  std::vector<uint8_t> out(1024);
  uint32_t lens[32];
  size_t got, needed;
  CHECK(q->try_get(out.data(), out.size(), lens, 32, &got, &needed) == Status::Ok);
  CHECK_EQ(got, 10u);
  // Timed blocking put on a full queue times out as Full within its timeout.
  CHECK(q->try_put(slices.data(), 10, &w) == Status::Ok);
  CHECK(q->put(slices.data(), 1, &w, 20) == Status::Full);
  // Timed blocking get on an empty queue.
  CHECK(q->try_get(out.data(), out.size(), lens, 32, &got, &needed) == Status::Ok);
  CHECK(q->get(out.data(), out.size(), lens, 1, &got, &needed, 20) == Status::Empty);
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
}

static void test_open_errors() {
  const std::string name = uniq("open");
  std::unique_ptr<Queue> q, q2;
  int e = 0;
  CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q, &e) == Status::NotFound);
  q = make(name, 8192);
  CHECK(Queue::open(name, OpenMode::Create, CreateOptions{}, &q2, &e) == Status::Exists);
  CHECK(Queue::open(name, OpenMode::Open, CreateOptions{}, &q2, &e) == Status::Ok);
  CHECK_EQ(q2->capacity(), 8192u);
  CHECK_EQ(q->stats().slots.size(), 2u);
  // Mode 0600 by default.
  struct stat st;
  CHECK(stat((std::string("/dev/shm/") + kShmPrefix + name).c_str(), &st) == 0);
  CHECK_EQ(st.st_mode & 0777, 0600u);
  q2->release();
  CHECK_EQ(q->stats().slots.size(), 1u);
  // Destroy then reuse the name; the old handle keeps working on the old segment.
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
  auto q3 = make(name, 4096);
  CHECK(q3->nonce() != q->nonce());
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
  // A foreign file under our prefix is refused.
  const std::string foreign = uniq("foreign");
  std::string path = std::string("/dev/shm/") + kShmPrefix + foreign;
  FILE* f = fopen(path.c_str(), "w");
  CHECK(f != nullptr);
  std::vector<char> junk(8192, 'x');
  fwrite(junk.data(), 1, junk.size(), f);
  fclose(f);
  CHECK(Queue::open(foreign, OpenMode::Open, CreateOptions{}, &q2, &e) == Status::NotOurs);
  unlink(path.c_str());
  // Bad options.
  CreateOptions bad;
  bad.capacity = 4096;
  bad.max_message_size = 4096;
  CHECK(Queue::open(uniq("bad"), OpenMode::Create, bad, &q2, &e) == Status::InvalidArgument);
}

// wait_readable(spin = false) sleeps on the futex at once, whatever the handle's spin budget: the
// notifier thread of a JS handle whose event loop already polled for the budget.
static void test_wait_without_spin() {
  const std::string name = uniq("nospin");
  auto q = make(name, 8192);
  q->set_spin_ns(10ull * 1000 * 1000 * 1000);  // 10 s: a spinning wait never sleeps within the test
  CHECK(q->wait_readable(30, nullptr) == Status::TimedOut);
  CHECK_EQ(q->stats().waits, 0u);  // spun through the whole timeout
  CHECK(q->wait_readable(30, nullptr, false) == Status::TimedOut);
  CHECK(q->stats().waits > 0u);  // slept on the futex
  const uint64_t before = q->stats().waits;
  CHECK(q->wait_writable(16, 30, nullptr, false) == Status::Ok);  // room: returns at once
  CHECK_EQ(q->stats().waits, before);
  CHECK(Queue::unlink(name, nullptr) == Status::Ok);
}

int main() {
  test_names();
  test_fifo_and_sizes();
  test_batches_and_maxsize();
  test_open_errors();
  test_wait_without_spin();
  std::printf("test_ring_basic: all checks passed\n");
  return 0;
}
