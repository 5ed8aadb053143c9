// Checks the bugs the fuzzer found, rebuilt by hand (pinned regressions), then replays every kept
// fuzz input (native/fuzz/corpus and native/fuzz/crashes) through the fuzz target's entry point,
// without libFuzzer: the sanitizer trees of `npm test` check each of them
// (an out-of-bounds access or undefined behaviour aborts under ASan/UBSan; a violated invariant
// aborts in the target). A watchdog turns a hang into a failure naming the input.
//
// Usage: test_fuzz_regressions [DIR_OR_FILE...]   (default: the two directories of this checkout;
// SAGE_FUZZ_DIR, if defined at compile time, names another native/fuzz)
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "check.h"
// The fuzz target itself, compiled into this test (no libFuzzer), so the test needs nothing from
// the build system but the glob that builds every native/test/test_*.cpp.
#include "../fuzz/fuzz_queue.cpp"

namespace {

// native/fuzz of this checkout: next to this file (CMake compiles it by its absolute path).
std::string fuzz_dir() {
#ifdef SAGE_FUZZ_DIR
  return SAGE_FUZZ_DIR;
#else
  std::string here = __FILE__;
  const size_t slash = here.rfind('/');
  here = slash == std::string::npos ? std::string(".") : here.substr(0, slash);
  return here + "/../fuzz";
#endif
}

}  // namespace

namespace {

const char* g_current = "";

void on_alarm(int) {
  // Async-signal-safe: write(2) only.
  const char* a = "test_fuzz_regressions: input hung (watchdog): ";
  if (write(2, a, strlen(a)) < 0 || write(2, g_current, strlen(g_current)) < 0 || write(2, "\n", 1) < 0) {
  }
  sage_fuzz::cleanup();
  _exit(3);
}

void collect(const std::string& path, std::vector<std::string>* out, bool must_exist) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (must_exist) {
      std::fprintf(stderr, "test_fuzz_regressions: %s does not exist\n", path.c_str());
      std::exit(1);
    }
    return;
  }
  if (S_ISREG(st.st_mode)) {
    out->push_back(path);
    return;
  }
  DIR* d = opendir(path.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;  // ".", "..", ".gitkeep"
    const std::string p = path + "/" + e->d_name;
    if (stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out->push_back(p);
  }
  closedir(d);
}

// --- pinned regressions: the bugs the fuzzer found, rebuilt by hand ------------------------------
// (The kept crash inputs replay them too, but their meaning depends on the fuzz input format.)

struct Mapped {
  std::unique_ptr<sage::Queue> q;
  sage::Header* h = nullptr;
  size_t size = 0;
  std::string name;
};

Mapped mapped_queue(const char* tag, uint64_t capacity) {
  Mapped m;
  m.name = std::string("ctest-fuzzpin-") + tag + "-" + std::to_string(getpid());
  remove_at_exit(m.name);
  sage::CreateOptions o;
  o.capacity = capacity;
  int err = 0;
  CHECK(sage::Queue::open(m.name, sage::OpenMode::Create, o, &m.q, &err) == sage::Status::Ok);
  const std::string path = std::string("/dev/shm/") + sage::kShmPrefix + m.name;
  const int fd = ::open(path.c_str(), O_RDWR);
  CHECK(fd >= 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  m.size = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  CHECK(p != MAP_FAILED);
  m.h = static_cast<sage::Header*>(p);
  return m;
}

void put_bytes(sage::Queue* q, uint32_t len, sage::Status expect) {
  std::vector<uint8_t> buf(len, 7);
  sage::Slice s{buf.data(), len};
  size_t w = 0;
  CHECK(q->try_put(&s, 1, &w) == expect);
}

// Found as a UBSan "misaligned member access" in try_put (sage_ring.cpp, writing the CLAIMED
// header at data + (tail & mask)): a tail that is misaligned, behind `freed` or more than the ring
// ahead of it placed record headers out of bounds. Fixed: try_put checks them and says Corrupt.
void pinned_put_with_a_corrupt_tail() {
  Mapped m = mapped_queue("tail", 4096);
  put_bytes(m.q.get(), 100, sage::Status::Ok);
  const uint64_t tail = m.h->tail.load();
  const uint64_t freed = m.h->freed.load();
  const uint64_t bad[] = {tail + 1, tail + 8, freed + 4096 + 16, freed - 16, tail + 4096 - 8};
  for (uint64_t t : bad) {
    if (t == tail) continue;
    m.h->tail.store(t);
    put_bytes(m.q.get(), 100, sage::Status::Corrupt);
    put_bytes(m.q.get(), 3000 > m.q->max_message_size() ? 500 : 3000, sage::Status::Corrupt);
  }
  m.h->tail.store(tail);
  put_bytes(m.q.get(), 100, sage::Status::Ok);
  munmap(m.h, m.size);
}

// Found as "get returned Empty while head > tail": a padding or message record whose (corrupted)
// length reached past `tail` moved `head` past it; from then on the queue looked empty forever
// and a blocking get spun until its deadline. Fixed: records must end at or below `tail`, and a
// head past the tail is reported as Corrupt.
void pinned_get_with_a_record_past_tail() {
  Mapped m = mapped_queue("head", 4096);
  put_bytes(m.q.get(), 100, sage::Status::Ok);
  const uint64_t head = m.h->head.load();
  auto* rec = reinterpret_cast<sage::RecordHeader*>(reinterpret_cast<uint8_t*>(m.h) + m.h->data_offset + (head & 4095));
  const uint32_t good_len = rec->length;
  uint8_t dst[4096];
  uint32_t len = 0;
  size_t got = 0, needed = 0;
  // a message record longer than what was claimed (ends past tail)
  rec->length = good_len + 512;
  CHECK(m.q->try_get(dst, sizeof dst, &len, 1, &got, &needed) == sage::Status::Corrupt);
  CHECK(m.h->head.load() == head);
  // a padding record reaching past tail
  const uint32_t state = rec->state.load();
  rec->state.store(sage::rec_state(sage::kRecPadding, 0));
  rec->length = 1024;
  CHECK(m.q->try_get(dst, sizeof dst, &len, 1, &got, &needed) == sage::Status::Corrupt);
  CHECK(m.h->head.load() == head);
  // a head already past the tail
  rec->state.store(state);
  rec->length = good_len;
  const uint64_t tail = m.h->tail.load();
  m.h->head.store(tail + 16);
  CHECK(m.q->try_get(dst, sizeof dst, &len, 1, &got, &needed) == sage::Status::Corrupt);
  CHECK(m.q->get(dst, sizeof dst, &len, 1, &got, &needed, 50) == sage::Status::Corrupt);  // not a 50 ms spin
  m.h->head.store(head);
  CHECK(m.q->try_get(dst, sizeof dst, &len, 1, &got, &needed) == sage::Status::Ok);
  CHECK(got == 1 && len == 100);
  munmap(m.h, m.size);
}

}  // namespace

int main(int argc, char** argv) {
  pinned_put_with_a_corrupt_tail();
  pinned_get_with_a_record_past_tail();
  std::vector<std::string> files;
  size_t corpus = 0, crashes = 0;
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) collect(argv[i], &files, true);
  } else {
    collect(fuzz_dir() + "/corpus", &files, true);
    corpus = files.size();
    collect(fuzz_dir() + "/crashes", &files, false);
    crashes = files.size() - corpus;
    // An empty corpus would make this test pass vacuously (e.g. a wrong SAGE_FUZZ_DIR).
    CHECK(corpus > 0);
  }
  std::sort(files.begin(), files.end());
  signal(SIGALRM, on_alarm);
  size_t bytes = 0;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    g_current = f.c_str();
    alarm(30);
    sage_fuzz::run_one(data.data(), data.size());
    alarm(0);
    bytes += data.size();
  }
  sage_fuzz::cleanup();
  std::printf("test_fuzz_regressions: 2 pinned regressions passed; replayed %zu inputs (%zu corpus, %zu crash regressions, %zu bytes)\n", files.size(),
              corpus, crashes, bytes);
  return 0;
}
