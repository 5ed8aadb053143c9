// ring_bench: the sage::Queue core driven from C++ alone, between two processes (the "limit" row
// of `npm run bench`). The parent is the producer (or the ping-pong client); a forked child is
// the consumer (or the echo server). Prints one JSON object on stdout.
//
//   ring_bench --name NAME --mode stream --size 64 --batch 1024 --ms 600 --warm-ms 150 [--pin]
//   ring_bench --name NAME --mode pingpong --size 64 --ms 600 --warm-ms 100 [--spin-us 50] [--pin]
//
// stream:   the producer puts for warm+ms milliseconds (blocking put, `batch` messages per call;
//           batch 1 = single calls), then closes the queue. The consumer takes with blocking
//           gets of up to `batch` messages into a 64 KiB buffer (the JS slab size), reads every
//           message's sequence number, and measures from the end of the warm-up to the close.
// pingpong: the client puts one message on NAME.a and blocks on NAME.b; the server echoes.
//           Round-trip times after the warm-up are reported as p50/p99 in microseconds.
//
// Build (done by bench/run.mjs):
//   g++ -O2 -std=c++17 -Inative/core native/core/*.cpp native/bench/ring_bench.cpp -lpthread -lrt
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "futex.h"
#include "sage_ring.h"

namespace {

struct Args {
  std::string name;
  std::string mode = "stream";
  uint32_t size = 64;
  uint32_t batch = 1;
  uint64_t ms = 600;
  uint64_t warm_ms = 150;
  int64_t spin_us = -1;  // -1 = the core's default
  uint64_t capacity = 1 << 20;
  bool pin = false;
};

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "ring_bench: %s\n", what);
  exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die(("missing value after " + k).c_str());
      return argv[++i];
    };
    if (k == "--name") a.name = val();
    else if (k == "--mode") a.mode = val();
    else if (k == "--size") a.size = static_cast<uint32_t>(std::stoul(val()));
    else if (k == "--batch") a.batch = static_cast<uint32_t>(std::stoul(val()));
    else if (k == "--ms") a.ms = std::stoull(val());
    else if (k == "--warm-ms") a.warm_ms = std::stoull(val());
    else if (k == "--spin-us") a.spin_us = std::stoll(val());
    else if (k == "--capacity") a.capacity = std::stoull(val());
    else if (k == "--pin") a.pin = true;
    else die(("unknown argument " + k).c_str());
  }
  if (a.name.empty()) die("--name is required");
  if (a.size < 4) die("--size must be at least 4 (the sequence number)");
  if (a.batch == 0 || a.batch > 65536) die("--batch must be 1..65536");
  if (a.mode != "stream" && a.mode != "pingpong") die("--mode must be stream or pingpong");
  return a;
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) perror("ring_bench: sched_setaffinity");
}

std::unique_ptr<sage::Queue> open_queue(const std::string& name, sage::OpenMode mode, uint64_t capacity, int64_t spin_us) {
  sage::CreateOptions o;
  o.capacity = capacity;
  std::unique_ptr<sage::Queue> q;
  int err = 0;
  sage::Status s = sage::Queue::open(name, mode, o, &q, &err);
  if (s != sage::Status::Ok) {
    fprintf(stderr, "ring_bench: open %s: %s (%s)\n", name.c_str(), sage::status_code(s), err ? strerror(err) : "");
    exit(2);
  }
  if (spin_us >= 0) q->set_spin_ns(static_cast<uint64_t>(spin_us) * 1000);
  return q;
}

inline uint32_t read_seq(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

// CPU time and interference of one side, from the start of the stream (like the Node rows).
struct Usage {
  uint64_t wall_ns, user_us, sys_us, minflt, nvcsw, nivcsw;
};

Usage usage_now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return Usage{sage::monotonic_ns(),
               static_cast<uint64_t>(ru.ru_utime.tv_sec) * 1000000ull + static_cast<uint64_t>(ru.ru_utime.tv_usec),
               static_cast<uint64_t>(ru.ru_stime.tv_sec) * 1000000ull + static_cast<uint64_t>(ru.ru_stime.tv_usec),
               static_cast<uint64_t>(ru.ru_minflt), static_cast<uint64_t>(ru.ru_nvcsw), static_cast<uint64_t>(ru.ru_nivcsw)};
}

Usage usage_since(const Usage& a) {
  Usage b = usage_now();
  return Usage{b.wall_ns - a.wall_ns, b.user_us - a.user_us, b.sys_us - a.sys_us,
               b.minflt - a.minflt,   b.nvcsw - a.nvcsw,     b.nivcsw - a.nivcsw};
}

std::string usage_json(const Usage& u, uint64_t msgs) {
  char buf[320];
  const double wall_us = static_cast<double>(u.wall_ns) / 1000.0;
  snprintf(buf, sizeof buf,
           "{\"wallMs\":%.3f,\"cpuBusy\":%.3f,\"userNsPerMsg\":%.0f,\"sysNsPerMsg\":%.0f,\"minorFaults\":%" PRIu64
           ",\"voluntarySwitches\":%" PRIu64 ",\"involuntarySwitches\":%" PRIu64 "}",
           wall_us / 1000.0, wall_us > 0 ? static_cast<double>(u.user_us + u.sys_us) / wall_us : 0.0,
           msgs ? static_cast<double>(u.user_us) * 1000.0 / static_cast<double>(msgs) : 0.0,
           msgs ? static_cast<double>(u.sys_us) * 1000.0 / static_cast<double>(msgs) : 0.0, u.minflt, u.nvcsw, u.nivcsw);
  return buf;
}

// What the consumer sends back to the producer through a pipe.
struct StreamResult {
  uint64_t counted;    // messages received inside the measured window
  uint64_t total;      // all messages received
  uint64_t window_ns;  // end of warm-up .. close observed
  uint64_t bad;        // sequence numbers out of order
  uint64_t checksum;
  Usage usage;         // the consumer's, from its first get
};

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* p, size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

constexpr size_t kDstBytes = 64 * 1024;  // the JS layer's slab size

StreamResult consume_stream(sage::Queue& q, const Args& a, int ready_fd) {
  std::vector<uint8_t> dst(kDstBytes);
  std::vector<uint32_t> lengths(a.batch);
  StreamResult r{};
  char one = 'r';
  if (!write_all(ready_fd, &one, 1)) die("ready pipe");
  const Usage start = usage_now();
  uint32_t expect = 0;
  uint64_t first_ns = 0, mark_ns = 0, mark_count = 0;
  const uint64_t warm_ns = a.warm_ms * 1000000ull;
  uint64_t since_check = 0;
  for (;;) {
    size_t got = 0, needed = 0;
    sage::Status s = q.get(dst.data(), dst.size(), lengths.data(), a.batch, &got, &needed, -1);
    if (s == sage::Status::Closed) break;
    if (s != sage::Status::Ok) {
      fprintf(stderr, "ring_bench consumer: get: %s\n", sage::status_code(s));
      exit(3);
    }
    size_t at = 0;
    for (size_t i = 0; i < got; ++i) {
      const uint32_t seq = read_seq(dst.data() + at);
      if (seq != expect) ++r.bad;
      expect = seq + 1;
      r.checksum += lengths[i] + dst[at + lengths[i] - 1];
      at += lengths[i];
    }
    r.total += got;
    since_check += got;
    if (mark_ns == 0 && since_check >= 256) {
      since_check = 0;
      const uint64_t now = sage::monotonic_ns();
      if (first_ns == 0) first_ns = now;
      else if (now - first_ns >= warm_ns) {
        mark_ns = now;
        mark_count = r.total;
      }
    }
  }
  const uint64_t end_ns = sage::monotonic_ns();
  if (mark_ns == 0) {  // too few messages for a warm-up: measure everything
    mark_ns = first_ns != 0 ? first_ns : end_ns;
    mark_count = 0;
  }
  r.counted = r.total - mark_count;
  r.window_ns = end_ns - mark_ns;
  r.usage = usage_since(start);
  return r;
}

int run_stream(const Args& a) {
  auto q = open_queue(a.name, sage::OpenMode::Create, a.capacity, a.spin_us);
  int ready[2], result[2];
  if (pipe(ready) != 0 || pipe(result) != 0) die("pipe");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the producer
    if (a.pin) pin_to(1);
    // The inherited handle is the parent's: destroying it here would release the parent's slot
    // in the segment. Drop it without running its destructor, and attach our own.
    (void)q.release();
    auto cq = open_queue(a.name, sage::OpenMode::Open, a.capacity, a.spin_us);
    StreamResult r = consume_stream(*cq, a, ready[1]);
    bool ok = write_all(result[1], &r, sizeof r);
    cq->release();
    _exit(ok ? 0 : 4);
  }
  if (a.pin) pin_to(0);
  char c;
  if (!read_all(ready[0], &c, 1)) die("consumer did not start");

  std::vector<uint8_t> payload(static_cast<size_t>(a.size) * a.batch, 0xA5);
  std::vector<sage::Slice> slices(a.batch);
  for (uint32_t i = 0; i < a.batch; ++i) slices[i] = sage::Slice{payload.data() + static_cast<size_t>(i) * a.size, a.size};
  uint32_t seq = 0;
  uint64_t sent = 0;
  const Usage prod_start = usage_now();
  const uint64_t start = sage::monotonic_ns();
  const uint64_t stop = start + (a.warm_ms + a.ms) * 1000000ull;
  for (uint64_t iter = 0;; ++iter) {
    for (uint32_t i = 0; i < a.batch; ++i, ++seq) memcpy(payload.data() + static_cast<size_t>(i) * a.size, &seq, 4);
    size_t w = 0;
    sage::Status s = q->put(slices.data(), a.batch, &w, -1);
    if (s != sage::Status::Ok) {
      fprintf(stderr, "ring_bench producer: put: %s\n", sage::status_code(s));
      return 3;
    }
    sent += a.batch;
    if ((iter & 63) == 0 && sage::monotonic_ns() >= stop) break;
  }
  q->close();
  const Usage prod_usage = usage_since(prod_start);
  StreamResult r{};
  bool got = read_all(result[0], &r, sizeof r);
  int status = 0;
  waitpid(pid, &status, 0);
  sage::Stats st = q->stats();
  q->release();
  int err = 0;
  if (sage::Queue::unlink(a.name, &err) != sage::Status::Ok) std::fprintf(stderr, "ring_bench: could not remove %s\n", a.name.c_str());
  if (!got) die("consumer failed");
  const double rate = r.window_ns > 0 ? static_cast<double>(r.counted) * 1e9 / static_cast<double>(r.window_ns) : 0;
  printf("{\"mode\":\"stream\",\"size\":%u,\"batch\":%u,\"msgsPerSec\":%.1f,\"counted\":%" PRIu64
         ",\"windowMs\":%.3f,\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"outOfOrder\":%" PRIu64
         ",\"wakeCalls\":%" PRIu64 ",\"waits\":%" PRIu64 ",\"enqueued\":%" PRIu64 ",\"dequeued\":%" PRIu64
         ",\"producer\":%s,\"consumer\":%s}\n",
         a.size, a.batch, rate, r.counted, static_cast<double>(r.window_ns) / 1e6, sent, r.total, r.bad, st.wake_calls,
         st.waits, st.enqueued, st.dequeued, usage_json(prod_usage, sent).c_str(), usage_json(r.usage, r.total).c_str());
  return (r.total == sent && r.bad == 0) ? 0 : 5;
}

int run_pingpong(const Args& a) {
  const std::string na = a.name + ".a", nb = a.name + ".b";
  auto qa = open_queue(na, sage::OpenMode::Create, a.capacity, a.spin_us);
  auto qb = open_queue(nb, sage::OpenMode::Create, a.capacity, a.spin_us);
  int ready[2];
  if (pipe(ready) != 0) die("pipe");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (a.pin) pin_to(1);
    (void)qa.release();  // the parent's handles (see run_stream)
    (void)qb.release();
    auto in = open_queue(na, sage::OpenMode::Open, a.capacity, a.spin_us);
    auto out = open_queue(nb, sage::OpenMode::Open, a.capacity, a.spin_us);
    std::vector<uint8_t> buf(kDstBytes);
    char one = 'r';
    if (!write_all(ready[1], &one, 1)) _exit(4);
    for (;;) {
      uint32_t len = 0;
      size_t got = 0, needed = 0;
      sage::Status s = in->get(buf.data(), buf.size(), &len, 1, &got, &needed, -1);
      if (s == sage::Status::Closed) break;
      if (s != sage::Status::Ok) _exit(3);
      sage::Slice sl{buf.data(), len};
      size_t w = 0;
      if (out->put(&sl, 1, &w, -1) != sage::Status::Ok) _exit(3);
    }
    in->release();
    out->release();
    _exit(0);
  }
  if (a.pin) pin_to(0);
  char c;
  if (!read_all(ready[0], &c, 1)) die("server did not start");
  std::vector<uint8_t> msg(a.size, 0x5A), back(kDstBytes);
  std::vector<double> rtts;
  rtts.reserve(1 << 20);
  const uint64_t start = sage::monotonic_ns();
  const uint64_t warm_end = start + a.warm_ms * 1000000ull;
  const uint64_t stop = warm_end + a.ms * 1000000ull;
  uint32_t seq = 0;
  for (;;) {
    memcpy(msg.data(), &seq, 4);
    ++seq;
    const uint64_t t0 = sage::monotonic_ns();
    sage::Slice sl{msg.data(), a.size};
    size_t w = 0;
    if (qa->put(&sl, 1, &w, -1) != sage::Status::Ok) die("put");
    uint32_t len = 0;
    size_t got = 0, needed = 0;
    if (qb->get(back.data(), back.size(), &len, 1, &got, &needed, -1) != sage::Status::Ok) die("get");
    const uint64_t t1 = sage::monotonic_ns();
    if (len != a.size || read_seq(back.data()) != seq - 1) die("echo mismatch");
    if (t0 >= warm_end) rtts.push_back(static_cast<double>(t1 - t0) / 1000.0);
    if (t1 >= stop || rtts.size() >= (1u << 20)) break;
  }
  qa->close();
  int status = 0;
  waitpid(pid, &status, 0);
  sage::Stats st = qa->stats();
  sage::Stats sb = qb->stats();
  qa->release();
  qb->release();
  int err = 0;
  if (sage::Queue::unlink(na, &err) != sage::Status::Ok) std::fprintf(stderr, "ring_bench: could not remove %s\n", na.c_str());
  if (sage::Queue::unlink(nb, &err) != sage::Status::Ok) std::fprintf(stderr, "ring_bench: could not remove %s\n", nb.c_str());
  std::sort(rtts.begin(), rtts.end());
  auto pct = [&](double p) {
    if (rtts.empty()) return 0.0;
    size_t i = static_cast<size_t>(p * static_cast<double>(rtts.size() - 1) + 0.5);
    return rtts[std::min(i, rtts.size() - 1)];
  };
  printf("{\"mode\":\"pingpong\",\"size\":%u,\"samples\":%zu,\"p50Us\":%.3f,\"p99Us\":%.3f,\"minUs\":%.3f,"
         "\"wakeCalls\":%" PRIu64 ",\"waits\":%" PRIu64 "}\n",
         a.size, rtts.size(), pct(0.5), pct(0.99), rtts.empty() ? 0.0 : rtts.front(), st.wake_calls + sb.wake_calls,
         st.waits + sb.waits);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  return a.mode == "stream" ? run_stream(a) : run_pingpong(a);
}
