// A handle used in a child made by fork(): the child inherits the mapping but not the handle's
// slot (its liveness lock is held by the parent's thread). The core refuses every use of the
// inherited handle with Status::Forked, and releasing it in the child must leave the parent's slot
// alone: the parent stays attached, alive and usable, and the slot is not handed to anyone else.
// Real fork()s, and one raw fork system call that skips the pthread_atfork handlers.
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "check.h"
#include "sage_ring.h"

using sage::OpenMode;
using sage::Queue;
using sage::Slice;
using sage::Status;

namespace {

// In a child: report and leave without running atexit handlers (the parent owns the segment).
#define CHILD_CHECK(cond)                                                               \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: child CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      _exit(2);                                                                         \
    }                                                                                   \
  } while (0)

int wait_child(pid_t pid) {
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  return WEXITSTATUS(status);
}

// The parent's handle is still attached: its slot is active, holds the parent's pid, is alive,
// and the queue works through it.
void check_parent_intact(Queue* q, const char* when) {
  sage::Stats st = q->stats();
  if (st.slots.size() != 1) std::fprintf(stderr, "%s: %zu slots active\n", when, st.slots.size());
  CHECK_EQ(st.slots.size(), 1u);
  CHECK_EQ(st.slots[0].pid, getpid());
  CHECK(st.slots[0].alive);
  const char msg[] = "after";
  Slice s{reinterpret_cast<const uint8_t*>(msg), sizeof msg};
  size_t w = 0;
  CHECK(q->try_put(&s, 1, &w) == Status::Ok);
  uint8_t buf[64];
  uint32_t len = 0;
  size_t got = 0, needed = 0;
  CHECK(q->try_get(buf, sizeof buf, &len, 1, &got, &needed) == Status::Ok);
  CHECK_EQ(got, 1u);
  CHECK(std::memcmp(buf, msg, sizeof msg) == 0);
}

}  // namespace

int main() {
  const std::string name = "test-fork-" + std::to_string(getpid());
  remove_at_exit(name);
  std::unique_ptr<Queue> q;
  int err = 0;
  sage::CreateOptions o;
  o.capacity = 1 << 16;
  CHECK(Queue::open(name, OpenMode::Create, o, &q, &err) == Status::Ok);
  const char hello[] = "hello";
  Slice s{reinterpret_cast<const uint8_t*>(hello), sizeof hello};
  size_t w = 0;
  CHECK(q->try_put(&s, 1, &w) == Status::Ok);

  // 1. fork(): every use of the inherited handle is refused, close() closes nothing, and
  //    release() leaves the parent's slot; the child can attach a handle of its own.
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    size_t cw = 0, got = 0, needed = 0;
    uint8_t buf[64];
    uint32_t len = 0;
    CHILD_CHECK(q->try_put(&s, 1, &cw) == Status::Forked);
    CHILD_CHECK(q->put(&s, 1, &cw, 10) == Status::Forked);
    CHILD_CHECK(q->try_get(buf, sizeof buf, &len, 1, &got, &needed) == Status::Forked);
    CHILD_CHECK(q->get(buf, sizeof buf, &len, 1, &got, &needed, 10) == Status::Forked);
    CHILD_CHECK(q->wait_readable(10, nullptr) == Status::Forked);
    CHILD_CHECK(q->wait_writable(8, 10, nullptr) == Status::Forked);
    q->close();
    CHILD_CHECK(!q->closed());
    q->release();
    std::unique_ptr<Queue> own;
    int e = 0;
    CHILD_CHECK(Queue::open(name, OpenMode::Open, sage::CreateOptions{}, &own, &e, 0) == Status::Ok);
    CHILD_CHECK(own->try_get(buf, sizeof buf, &len, 1, &got, &needed) == Status::Ok);  // "hello"
    CHILD_CHECK(got == 1 && std::memcmp(buf, hello, sizeof hello) == 0);
    CHILD_CHECK(own->stats().slots.size() == 2);  // the parent's and its own
    own.reset();
    q.reset();  // the destructor releases too: still nothing of the parent's is freed
    _exit(0);
  }
  CHECK_EQ(wait_child(pid), 0);
  CHECK(!q->closed());
  check_parent_intact(q.get(), "after fork()");

  // The parent's slot was not handed out: a new handle gets another one.
  {
    std::unique_ptr<Queue> other;
    CHECK(Queue::open(name, OpenMode::Open, sage::CreateOptions{}, &other, &err, 0) == Status::Ok);
    sage::Stats st = other->stats();
    CHECK_EQ(st.slots.size(), 2u);
  }

  // 2. A raw fork system call (no pthread_atfork handlers ran): release() still notices the pid
  //    changed and leaves the parent's slot alone.
#ifdef SYS_fork
  pid = static_cast<pid_t>(syscall(SYS_fork));
  CHECK(pid >= 0);
  if (pid == 0) {
    q->release();
    _exit(0);
  }
  CHECK_EQ(wait_child(pid), 0);
  check_parent_intact(q.get(), "after a raw fork");
#endif

  q->release();
  CHECK_EQ(Queue::unlink(name, &err) == Status::Ok, true);
  std::printf("test_fork: ok\n");
  return 0;
}
