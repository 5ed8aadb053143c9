// Corruption found while waiting is reported, not waited out: the segment is corrupted through a
// second mapping (as another process could), then the blocking calls and the readiness waits
// must return Corrupt at once instead of sleeping until their deadline.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "segment_mapping.h"
#include "futex.h"
#include "sage_ring.h"

using namespace sage;

namespace {

// Record `offset` of the data area, as the mapping sees it.
RecordHeader* record(const Mapping& m, uint64_t offset) {
  CHECK(offset + sizeof(RecordHeader) <= m.header()->capacity);
  return reinterpret_cast<RecordHeader*>(m.base + m.header()->data_offset + offset);
}

// Consumed records that producers have not reclaimed yet, the first of them corrupt: reclaiming
// (from wait_writable, or from a put that finds the ring full) must report it. Waiting could
// never succeed: `freed` cannot pass the corrupt record.
void test_wait_writable_reports_corrupt_reclaim() {
  const std::string name = uniq("corrupt-reclaim");
  auto q = make(name);
  std::vector<uint8_t> payload(200, 0x5a), out(4096);
  Slice s{payload.data(), static_cast<uint32_t>(payload.size())};
  size_t w = 0, n = 0;
  for (;;) {
    const Status ps = q->try_put(&s, 1, &w);
    if (ps == Status::Full) break;
    CHECK(ps == Status::Ok);
    ++n;
  }
  CHECK(n > 2);
  uint32_t lens[64];
  size_t got = 0, needed = 0;
  CHECK(q->try_get(out.data(), out.size(), lens, 64, &got, &needed) == Status::Ok);
  CHECK_EQ(got, n);  // every record consumed; none reclaimed yet (nobody put since)
  {
    Mapping m(name);
    CHECK_EQ(m.header()->freed.load(), 0u);
    CHECK(m.header()->reclaim_limit.load() > 0u);
    record(m, 0)->position = 0xdead0;  // the first record to reclaim no longer says where it is
  }
  const uint64_t t0 = monotonic_ns();
  CHECK(q->wait_writable(payload.size(), 2000, nullptr) == Status::Corrupt);
  CHECK(monotonic_ns() - t0 < 1000000000ull);  // reported, not waited out
  w = 0;
  CHECK(q->put(&s, 1, &w, 2000) == Status::Corrupt);
  CHECK_EQ(w, 0u);
  CHECK(q->try_put(&s, 1, &w) == Status::Corrupt);
}

// A head that no record can start at: the readiness wait says so, and so does the get.
void test_wait_readable_reports_corrupt_head() {
  const std::string name = uniq("corrupt-head");
  auto q = make(name);
  uint8_t byte = 1;
  Slice s{&byte, 1};
  size_t w = 0;
  CHECK(q->try_put(&s, 1, &w) == Status::Ok);
  {
    Mapping m(name);
    m.header()->head.store(8);  // misaligned (records start 16-byte aligned), below tail
  }
  CHECK(q->wait_readable(2000, nullptr) == Status::Corrupt);
  uint8_t out[16];
  uint32_t len = 0;
  size_t got = 0, needed = 0;
  CHECK(q->get(out, sizeof out, &len, 1, &got, &needed, 2000) == Status::Corrupt);
  CHECK_EQ(got, 0u);
}

}  // namespace

int main() {
  test_wait_writable_reports_corrupt_reclaim();
  test_wait_readable_reports_corrupt_head();
  std::printf("test_corrupt_segment: all checks passed\n");
  return 0;
}
