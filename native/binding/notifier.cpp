#include "notifier.h"

namespace sage_binding {

Notifier::Notifier(sage::Queue* q, bool for_data, std::function<void()> fire)
    : q_(q), for_data_(for_data), fire_(std::move(fire)), thread_([this] { run(); }) {}

Notifier::~Notifier() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = true;
    cancel_.store(true, std::memory_order_release);
  }
  cv_.notify_one();
  q_->wake_all();  // kick it out of a futex sleep
  thread_.join();
}

void Notifier::arm(uint64_t bytes, bool spin) {
  {
    std::lock_guard<std::mutex> lock(m_);
    if (armed_) {
      bytes_ = bytes;  // a wait in progress fires for the old size; JS re-arms if that is not enough
      return;
    }
    armed_ = true;
    bytes_ = bytes;
    spin_ = spin;
    cancel_.store(false, std::memory_order_release);
  }
  cv_.notify_one();
}

void Notifier::disarm() {
  bool was_armed;
  {
    std::lock_guard<std::mutex> lock(m_);
    was_armed = armed_;
    armed_ = false;
    cancel_.store(true, std::memory_order_release);
  }
  // Wakes every waiter of this queue (they re-check and sleep again): the price of a prompt
  // cancel, paid only when a wait is abandoned.
  if (was_armed) q_->wake_all();
}

void Notifier::run() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [this] { return armed_ || stopping_; });
    if (stopping_) return;
    const uint64_t bytes = bytes_;
    const bool spin = spin_;
    lock.unlock();
    sage::Status s = for_data_ ? q_->wait_readable(-1, &cancel_, spin) : q_->wait_writable(bytes, -1, &cancel_, spin);
    lock.lock();
    if (stopping_) return;
    if (s == sage::Status::Cancelled && !armed_) continue;  // disarmed
    if (s == sage::Status::Cancelled) continue;             // re-armed with new bytes: wait again
    armed_ = false;
    lock.unlock();
    fire_();
    lock.lock();
  }
}

}  // namespace sage_binding
