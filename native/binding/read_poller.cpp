#include "read_poller.h"

#include <algorithm>

#include "futex.h"

namespace sage_binding {

namespace {
// How long OnIdle re-checks the ring per loop iteration. 1-4 us measured alike (p50 of the async
// ping-pong 7.9 -> 6.0 us with the sync one at 3.1, under load); 0 (one check) was the slowest.
constexpr uint64_t kSliceNs = 2000;
// Once OnIdle has handed a message to JS and JS asked for the next one at once (a getter still
// waits: the next await of a request/response loop), it goes on polling in the same loop
// iteration, for up to kPatienceNs per message and kTurnNs since the callback began. Going round
// the loop first costs the epoll_wait syscall and every other phase (~2-3 us on a VM: as long as
// the reply takes to come), and that was most of what async ping-pong paid over the sync one
// (2.0-2.3x -> ~1.15x). Timers and I/O wait at most the turn plus the JS callbacks it ran, as
// they wait for any callback of the loop; a turn without messages still ends after kSliceNs.
constexpr uint64_t kPatienceNs = 10000;
constexpr uint64_t kTurnNs = 20000;
}  // namespace

// Owned by itself once created: freed in its close callback, which may run after the poller is
// gone. At environment teardown an async cleanup hook closes it (Node waits for the close), so a
// worker's loop never ends with the handle open.
struct ReadPoller::Handle {
  uv_idle_t idle{};
  napi_async_cleanup_hook_handle hook = nullptr;
  ReadPoller* owner = nullptr;
  bool closing = false;

  static void OnClosed(uv_handle_t* h) {
    auto* self = static_cast<Handle*>(h->data);
    if (self->hook != nullptr) (void)napi_remove_async_cleanup_hook(self->hook);
    delete self;
  }

  void Close() {
    if (closing) return;
    closing = true;
    if (owner != nullptr) owner->handle_ = nullptr;
    owner = nullptr;
    (void)uv_idle_stop(&idle);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle), OnClosed);
  }

  static void OnEnvTeardown(napi_async_cleanup_hook_handle, void* arg) { static_cast<Handle*>(arg)->Close(); }
};

ReadPoller::ReadPoller(napi_env env, sage::Queue* q, std::function<void(bool)> done) : env_(env), q_(q), done_(std::move(done)) {}

ReadPoller::~ReadPoller() {
  if (handle_ != nullptr) handle_->Close();
}

bool ReadPoller::start(uint64_t budget_ns) {
  if (handle_ == nullptr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env_, &loop) != napi_ok || loop == nullptr) return false;
    auto* h = new Handle();
    if (uv_idle_init(loop, &h->idle) != 0) {
      delete h;
      return false;
    }
    h->idle.data = h;
    h->owner = this;
    handle_ = h;
    if (napi_add_async_cleanup_hook(env_, Handle::OnEnvTeardown, h, &h->hook) != napi_ok) h->hook = nullptr;
  }
  deadline_ns_ = uv_hrtime() + budget_ns;
  return uv_idle_start(&handle_->idle, OnIdle) == 0;
}

void ReadPoller::stop() {
  if (handle_ != nullptr) (void)uv_idle_stop(&handle_->idle);
}

void ReadPoller::OnIdle(uv_idle_t* idle) {
  const uint64_t turn_end = uv_hrtime() + kTurnNs;
  uint64_t slice_ns = kSliceNs;
  for (;;) {
    auto* h = static_cast<Handle*>(idle->data);
    ReadPoller* self = h->owner;
    if (self == nullptr) {
      (void)uv_idle_stop(idle);
      return;
    }
    sage::Queue* q = self->q_;
    auto readable = [q] { return q->qsize() > 0 || q->closed() || q->damaged(); };
    bool ready = readable();
    // Re-check for a short slice before the loop goes on to its I/O poll: a message landing in the
    // slice is seen at once rather than after the epoll_wait syscall (~1.5 us on a VM). Other
    // callbacks wait at most the slice (a few microseconds, less than a typical JS callback).
    const uint64_t slice_end = std::min(uv_hrtime() + slice_ns, self->deadline_ns_);
    while (!ready && uv_hrtime() < slice_end) {
      for (int i = 0; i < 16; ++i) sage::cpu_relax();
      ready = readable();
    }
    if (!ready && uv_hrtime() < self->deadline_ns_) return;
    (void)uv_idle_stop(idle);
    {
      // `done` may release the queue and destroy this poller: nothing of `self` is used after
      // it. The handle `h` stays allocated until its close callback, in a later loop phase.
      std::function<void(bool)> done = self->done_;
      done(ready);
    }
    if (!ready) return;  // the budget ran out: JS parks or polls anew from the next iteration
    // Polled again (the next getter waits) and the turn is not over: poll on in this iteration.
    if (h->closing || h->owner == nullptr || uv_is_active(reinterpret_cast<uv_handle_t*>(idle)) == 0) return;
    const uint64_t now = uv_hrtime();
    if (now >= turn_end) return;
    slice_ns = std::min(kPatienceNs, turn_end - now);
  }
}

}  // namespace sage_binding
