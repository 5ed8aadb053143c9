// NativeQueue's loop poller methods (see read_poller.h).
#include "native_queue.h"

namespace sage_binding {

// pollReadable(spinUs) -> true if polling (restarts a poll in progress), false if it cannot poll.
Napi::Value NativeQueue::PollReadable(const Napi::CallbackInfo& info) {
  return GuardTermination(info.Env(), [&] { return PollReadableImpl(info); });
}

Napi::Value NativeQueue::PollReadableImpl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info) || !info[0].IsNumber()) return Napi::Boolean::New(env, false);
  const double us = info[0].As<Napi::Number>().DoubleValue();
  const uint64_t budget_ns = us > 0 ? static_cast<uint64_t>(us * 1000.0) : 0;
  if (!poller_) poller_ = std::make_unique<ReadPoller>(env, q_.get(), [this](bool ready) { PollDone(ready); });
  return Napi::Boolean::New(env, poller_->start(budget_ns));
}

Napi::Value NativeQueue::StopPoll(const Napi::CallbackInfo& info) {
  if (Usable(info) && poller_) poller_->stop();
  return info.Env().Undefined();
}

// From the loop (not from JS): call the notify callback as any callback from the loop is called,
// so the promises it settles run their continuations before the loop goes on.
void NativeQueue::PollDone(bool ready) {
  if (target_ == nullptr || target_->released) return;
  // Raw Node-API with every status checked: this runs from the loop, outside any JS frame, and
  // while a worker is being terminated the calls fail (napi_cannot_run_js / pending exception):
  // then there is nobody to notify, and a C++ exception here would abort the process.
  napi_env env = Env();
  napi_handle_scope scope = nullptr;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn = nullptr;
  napi_value self = nullptr;
  try {
    self = Value();  // this wrapper's JS object (throws when the environment cannot give it)
  } catch (const Napi::Error&) {
    self = nullptr;
  }
  napi_value arg = nullptr;
  napi_valuetype type = napi_undefined;
  if (napi_get_reference_value(env, static_cast<napi_ref>(target_->fn), &fn) == napi_ok && fn != nullptr && napi_typeof(env, fn, &type) == napi_ok &&
      type == napi_function && self != nullptr &&
      napi_create_uint32(env, ready ? NotifyKind::kPolled : NotifyKind::kPollExpired, &arg) == napi_ok) {
    napi_value result = nullptr;
    if (napi_make_callback(env, nullptr, self, fn, 1, &arg, &result) == napi_pending_exception) {
      napi_value error = nullptr;
      // Nobody up the stack can catch it: report it as uncaught, like an exception in a timer.
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) (void)napi_fatal_exception(env, error);
    }
  }
  (void)napi_close_handle_scope(env, scope);
}

}  // namespace sage_binding
