#pragma once
// A native thread that waits, off the JS thread, until a queue becomes readable (or writable) and
// then reports it to JS through a thread-safe function. It only reports readiness: the JS thread
// takes the message itself in the callback that learns of it (one event-loop wake per readiness
// change), so an aborted or timed-out wait can never lose one.
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "sage_ring.h"

namespace sage_binding {

class Notifier {
 public:
  // `fire` runs on the notifier thread when the condition holds (it must not block).
  Notifier(sage::Queue* q, bool for_data, std::function<void()> fire);
  ~Notifier();  // stops and joins the thread

  // Start waiting (bytes: payload size a put needs; ignored for reads). Idempotent while armed.
  // spin = false: sleep at once (JS already spun the queue's spin budget on its event loop).
  void arm(uint64_t bytes, bool spin = true);
  // Stop waiting without firing (a late fire may still arrive: callers tolerate it).
  void disarm();

 private:
  void run();

  sage::Queue* q_;
  bool for_data_;
  std::function<void()> fire_;
  std::mutex m_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool stopping_ = false;
  uint64_t bytes_ = 0;
  bool spin_ = true;
  std::atomic<bool> cancel_{false};
  std::thread thread_;
};

}  // namespace sage_binding
