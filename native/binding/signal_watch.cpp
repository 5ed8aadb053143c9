// SignalWatch (see signal_watch.h): a fixed table of active watches that the signal handler
// reads without locks, and reference-counted wrapping of each signal's previous handler.
#include "signal_watch.h"

#include <signal.h>

#include <cerrno>
#include <mutex>

namespace sage_binding {

namespace {

constexpr int kMaxWatches = 64;  // blocking calls in progress at once (one per JS thread)
constexpr int kMaxSignal = 31;

struct WatchSlot {
  std::atomic<bool> used{false};
  std::atomic<uint32_t> mask{0};
  std::atomic<std::atomic<bool>*> flag{nullptr};
  std::atomic<sage::Queue*> queue{nullptr};
  std::atomic<int> in_handler{0};  // handlers currently using flag/queue
};

WatchSlot g_slots[kMaxWatches];
std::mutex g_install;                  // guards g_prev and g_refs (never taken in the handler)
struct sigaction g_prev[kMaxSignal + 1];  // written before our handler is installed
int g_refs[kMaxSignal + 1];

void on_signal(int sig, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  const uint32_t bit = sig > 0 && sig <= kMaxSignal ? 1u << sig : 0;
  for (WatchSlot& s : g_slots) {
    if (!(s.mask.load(std::memory_order_acquire) & bit)) continue;
    s.in_handler.fetch_add(1, std::memory_order_acq_rel);
    // Re-checked after announcing ourselves: a watch that ended meanwhile cleared its mask first
    // and waits for in_handler to drop before its flag and queue go away.
    if (s.mask.load(std::memory_order_acquire) & bit) {
      std::atomic<bool>* f = s.flag.load(std::memory_order_acquire);
      sage::Queue* q = s.queue.load(std::memory_order_acquire);
      if (f) f->store(true, std::memory_order_release);
      if (q) q->wake_all();  // atomics and FUTEX_WAKE only: async-signal-safe
    }
    s.in_handler.fetch_sub(1, std::memory_order_acq_rel);
  }
  errno = saved_errno;
  if (bit == 0) return;
  const struct sigaction& prev = g_prev[sig];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, info, context);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler != nullptr) {
    prev.sa_handler(sig);
  }
}

bool is_ours(const struct sigaction& a) { return (a.sa_flags & SA_SIGINFO) && a.sa_sigaction == on_signal; }

}  // namespace

SignalWatch::SignalWatch(uint32_t mask, sage::Queue* q) {
  mask &= ~1u;  // no signal 0
  if (mask == 0) return;
  {
    std::lock_guard<std::mutex> lock(g_install);
    for (int sig = 1; sig <= kMaxSignal; ++sig) {
      if (!(mask & (1u << sig)) || sig == SIGKILL || sig == SIGSTOP) continue;
      if (g_refs[sig] == 0) {
        struct sigaction cur {};
        if (sigaction(sig, nullptr, &cur) != 0) continue;
        const bool handled = (cur.sa_flags & SA_SIGINFO) ? cur.sa_sigaction != nullptr
                                                         : cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN;
        if (!handled) continue;
        if (!is_ours(cur)) {
          g_prev[sig] = cur;
          struct sigaction mine = cur;
          mine.sa_flags |= SA_SIGINFO;
          mine.sa_flags &= ~SA_RESETHAND;
          mine.sa_sigaction = on_signal;
          if (sigaction(sig, &mine, nullptr) != 0) continue;
        }
      }
      ++g_refs[sig];
      installed_ |= 1u << sig;
    }
  }
  if (installed_ == 0) return;
  for (int i = 0; i < kMaxWatches; ++i) {
    bool expected = false;
    if (!g_slots[i].used.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) continue;
    g_slots[i].flag.store(&fired_, std::memory_order_release);
    g_slots[i].queue.store(q, std::memory_order_release);
    g_slots[i].mask.store(installed_, std::memory_order_release);
    slot_ = i;
    break;
  }
  // No free slot (64 blocking calls at once): this call is simply not interruptible.
}

SignalWatch::~SignalWatch() {
  if (slot_ >= 0) {
    WatchSlot& s = g_slots[slot_];
    s.mask.store(0, std::memory_order_release);
    while (s.in_handler.load(std::memory_order_acquire) != 0) {
    }
    s.flag.store(nullptr, std::memory_order_release);
    s.queue.store(nullptr, std::memory_order_release);
    s.used.store(false, std::memory_order_release);
  }
  if (installed_ == 0) return;
  std::lock_guard<std::mutex> lock(g_install);
  for (int sig = 1; sig <= kMaxSignal; ++sig) {
    if (!(installed_ & (1u << sig))) continue;
    if (--g_refs[sig] != 0) continue;
    struct sigaction cur {};
    // Put the previous handler back, unless someone replaced ours meanwhile (then theirs stays).
    if (sigaction(sig, nullptr, &cur) == 0 && is_ours(cur)) (void)sigaction(sig, &g_prev[sig], nullptr);
  }
}

}  // namespace sage_binding
