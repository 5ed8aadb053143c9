#pragma once
// Polls a queue for readability from the JS thread's own event loop, without entering JS on each
// check: an active uv_idle handle makes the loop poll for I/O without sleeping, and its callback
// (once per loop iteration, between the loop's other work) checks the ring with a few atomic
// loads. It reports once per start(): "a get could make progress" (a message, or the queue is
// closed or damaged), or "the budget ran out". Waking an event loop asleep in epoll costs ~30 us
// on a VM; a loop that polls takes the message in the iteration that sees it, without ever
// blocking other callbacks. When the JS callback that took a message asks for the next one at
// once (request/response), the same idle callback polls on for a bounded turn (read_poller.cpp:
// kPatienceNs per message, kTurnNs in all) instead of going round the loop first.
#include <node_api.h>
#include <uv.h>

#include <cstdint>
#include <functional>

#include "sage_ring.h"

namespace sage_binding {

class ReadPoller {
 public:
  // `done(ready)` runs on the JS thread, from the loop, once per start(): ready = true when a get
  // could make progress, false when the budget ran out. It may destroy the poller.
  ReadPoller(napi_env env, sage::Queue* q, std::function<void(bool)> done);
  ~ReadPoller();  // stops; the loop handle is closed (and freed) asynchronously
  ReadPoller(const ReadPoller&) = delete;
  ReadPoller& operator=(const ReadPoller&) = delete;

  // Starts (or restarts) polling for budget_ns. False if the loop handle could not be set up.
  [[nodiscard]] bool start(uint64_t budget_ns);
  void stop();

  struct Handle;  // the uv handle and its teardown state (read_poller.cpp)

 private:
  static void OnIdle(uv_idle_t* idle);
  friend struct Handle;

  napi_env env_;
  sage::Queue* q_;
  std::function<void(bool)> done_;
  Handle* handle_ = nullptr;
  uint64_t deadline_ns_ = 0;
};

}  // namespace sage_binding
