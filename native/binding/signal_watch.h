#pragma once
// SignalWatch: lets a synchronous blocking put/get -- which holds the JS thread inside native code
// -- return when the process receives a signal that JavaScript listens for (process.on('SIGINT')),
// so the listener can run.
//
// Node handles signals on its event loop: libuv's handler only writes to a pipe, and the JS
// listener runs when the loop next turns, which it cannot while this thread waits. So for the
// duration of a blocking call that may sleep, the watch wraps the current handler of each signal
// JS listens for (the mask comes from JS: process.listenerCount) with one that (1) sets the
// call's cancel flag and wakes the queue's futex words (both async-signal-safe: an atomic store
// and FUTEX_WAKE), then (2) calls the previous handler, so libuv still sees the signal and the JS
// listener runs as soon as the call returns ERR_INTERRUPTED. Whichever thread the kernel
// delivers the signal to, the waiting thread wakes within one futex sleep (or one 10 ms lock
// slice). The previous handler is put back when the last watch of that signal ends (unless
// someone replaced ours meanwhile). Cost: two sigaction calls per watched signal per blocking
// call that reaches native code, and nothing at all when JS listens for no signal.
#include <atomic>
#include <cstdint>

#include "sage_ring.h"

namespace sage_binding {

class SignalWatch {
 public:
  // mask: bit n set = watch signal n (1..31). A signal whose handler is SIG_DFL or SIG_IGN is not
  // wrapped (it terminates the process or does nothing, as before).
  SignalWatch(uint32_t mask, sage::Queue* q);
  ~SignalWatch();
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;

  // The cancel flag to hand to the blocking call; true once a watched signal arrived.
  const std::atomic<bool>* flag() const { return &fired_; }
  bool fired() const { return fired_.load(std::memory_order_acquire); }

 private:
  int slot_ = -1;
  uint32_t installed_ = 0;
  std::atomic<bool> fired_{false};
};

}  // namespace sage_binding
