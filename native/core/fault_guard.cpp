// Fault guard (see fault_guard.h): a lock-free table of guarded mappings read by the SIGBUS
// handler, and the handler itself (async-signal-safe: atomics, mmap, sigaction).
#include "fault_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>

namespace sage {

namespace {

constexpr int kMaxGuards = 4096;

struct Guard {
  std::atomic<uintptr_t> start{0};  // 0 = free
  std::atomic<size_t> len{0};
  std::atomic<uint32_t> damaged{0};
};

Guard g_guards[kMaxGuards];
struct sigaction g_prev_bus;
std::once_flag g_installed;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Guard& g : g_guards) {
    const uintptr_t start = g.start.load(std::memory_order_acquire);
    if (start == 0 || addr < start) continue;
    const size_t len = g.len.load(std::memory_order_acquire);
    if (addr - start >= len) continue;
    // Ours: replace the faulting page and everything after it in this mapping with zero pages.
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t from = addr & ~(page - 1);
    const int saved_errno = errno;
    void* p = mmap(reinterpret_cast<void*>(from), start + len - from, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    errno = saved_errno;
    if (p != MAP_FAILED) {
      g.damaged.store(1, std::memory_order_release);
      return;  // the faulting access is retried and now reads zeros
    }
    break;  // could not repair: let the previous disposition decide
  }
  // Not one of our mappings: what would have happened without us.
  if (g_prev_bus.sa_flags & SA_SIGINFO) {
    if (g_prev_bus.sa_sigaction != nullptr) {
      g_prev_bus.sa_sigaction(sig, info, context);
      return;
    }
  } else if (g_prev_bus.sa_handler != SIG_DFL && g_prev_bus.sa_handler != SIG_IGN) {
    g_prev_bus.sa_handler(sig);
    return;
  }
  // Default action: restore it; returning retries the access, which faults again and terminates.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGBUS, &dfl, nullptr);
}

void install() {
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  (void)sigaction(SIGBUS, &sa, &g_prev_bus);
}

}  // namespace

int guard_mapping(void* p, size_t len) {
  std::call_once(g_installed, install);
  for (int i = 0; i < kMaxGuards; ++i) {
    uintptr_t expected = 0;
    Guard& g = g_guards[i];
    if (g.len.load(std::memory_order_relaxed) != 0) continue;  // being set up or in use
    size_t free_len = 0;
    if (!g.len.compare_exchange_strong(free_len, len, std::memory_order_acq_rel)) continue;
    g.damaged.store(0, std::memory_order_relaxed);
    g.start.compare_exchange_strong(expected, reinterpret_cast<uintptr_t>(p), std::memory_order_acq_rel);
    return i;
  }
  return -1;
}

void unguard_mapping(int id) {
  if (id < 0 || id >= kMaxGuards) return;
  g_guards[id].start.store(0, std::memory_order_release);
  g_guards[id].len.store(0, std::memory_order_release);
}

bool mapping_damaged(int id) {
  return id >= 0 && id < kMaxGuards && g_guards[id].damaged.load(std::memory_order_relaxed) != 0;
}

}  // namespace sage
