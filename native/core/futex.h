#pragma once
// Shared (not PRIVATE) futex wait/wake on 32-bit words inside the segment: the waiters and the
// wakers are in different processes.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>

namespace sage {

inline uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

inline uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Sleeps while *word == expected, at most until the absolute CLOCK_MONOTONIC deadline (0 = no
// deadline). Returns 0 when woken (or spuriously), ETIMEDOUT, or EAGAIN if the word had changed.
[[nodiscard]] inline int futex_wait_until(std::atomic<uint32_t>* word, uint32_t expected, uint64_t deadline_ns) {
  timespec ts;
  timespec* tsp = nullptr;
  if (deadline_ns != 0) {
    ts.tv_sec = static_cast<time_t>(deadline_ns / 1000000000ull);
    ts.tv_nsec = static_cast<long>(deadline_ns % 1000000000ull);
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute timeout on CLOCK_MONOTONIC (plain FUTEX_WAIT is relative).
  long rc = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_BITSET, expected, tsp,
                    nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == 0) return 0;
  return errno == EINTR ? 0 : errno;
}

// Returns how many waiters were woken (or -1 with errno set).
[[nodiscard]] inline int futex_wake_all(std::atomic<uint32_t>* word) {
  return static_cast<int>(syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0));
}

// A spin-wait hint to the CPU (lets the sibling hyper-thread run, saves power). No memory ordering.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace sage
