#pragma once
// NativeQueue: the JS object wrapping one attached sage::Queue handle.
#include <napi.h>

#include <memory>

#include "notifier.h"
#include "read_poller.h"
#include "sage_ring.h"

namespace sage_binding {

class AddonState;

// Kinds passed to the JS notify callback (bit flags: disarm() takes a mask of them). The one list
// the enum and the addon's constants().notify table (checked against the TypeScript NotifyKind)
// are made from.
// Polled / PollExpired: the loop poller (read_poller.h) saw the queue readable / ran out of budget.
#define SAGE_NOTIFY_KINDS(X) \
  X(Readable, 1)             \
  X(Writable, 2)             \
  X(Polled, 4)               \
  X(PollExpired, 8)

struct NotifyKind {
#define SAGE_NOTIFY_KIND_CONSTANT(name, value) static constexpr int k##name = value;
  SAGE_NOTIFY_KINDS(SAGE_NOTIFY_KIND_CONSTANT)
#undef SAGE_NOTIFY_KIND_CONSTANT
};

class NativeQueue : public Napi::ObjectWrap<NativeQueue> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NativeQueue(const Napi::CallbackInfo& info);
  ~NativeQueue() override;

  // Detach: stop notifier threads, release the thread-safe function, unmap. Idempotent; must run
  // on the JS thread that opened the queue (it holds the slot's liveness lock).
  void Release();
  void ForgetAddon() { addon_ = nullptr; }

  // The JS notify callback, held WEAKLY (the wrapper object keeps it alive from JS) except while
  // a wait is armed: a dropped queue can then be collected and its finalizer release the handle.
  // The thread-safe function has no JS function of its own for the same reason: it reaches the
  // callback through `target_`, which its finalizer frees.
  struct NotifyTarget {
    Napi::FunctionReference fn;
    bool released = false;
  };

 private:
  bool Usable(const Napi::CallbackInfo& info);
  Napi::Value TryPut(const Napi::CallbackInfo& info);
  Napi::Value TryPutBatch(const Napi::CallbackInfo& info) { return PutBatch(info, false); }
  Napi::Value TryGet(const Napi::CallbackInfo& info);
  Napi::Value TryGetBatch(const Napi::CallbackInfo& info) { return GetBatch(info, false); }
  Napi::Value PutBlocking(const Napi::CallbackInfo& info) { return PutBatch(info, true); }
  Napi::Value GetBlocking(const Napi::CallbackInfo& info) { return GetBatch(info, true); }
  Napi::Value PutBatch(const Napi::CallbackInfo& info, bool blocking);
  Napi::Value GetBatch(const Napi::CallbackInfo& info, bool blocking);
  struct GetArgs {
    uint8_t* dst;
    size_t cap;
    uint32_t* lengths;
    size_t max;
  };
  size_t ParsePutArgs(const Napi::CallbackInfo& info, size_t starts_arg, const char* usage);
  GetArgs ParseGetArgs(const Napi::CallbackInfo& info, const char* usage);
  Napi::Value ArmReadable(const Napi::CallbackInfo& info);
  Napi::Value ArmWritable(const Napi::CallbackInfo& info);
  Napi::Value Disarm(const Napi::CallbackInfo& info);
  // pollReadable(spinUs) -> bool / stopPoll(): the loop poller (native_queue_poll.cpp).
  Napi::Value PollReadable(const Napi::CallbackInfo& info);
  Napi::Value StopPoll(const Napi::CallbackInfo& info);
  void PollDone(bool ready);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value ReleaseJs(const Napi::CallbackInfo& info);
  Napi::Value Qsize(const Napi::CallbackInfo& info);
  Napi::Value UsedBytes(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);
  Napi::Value IsReleased(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value SetSpinUs(const Napi::CallbackInfo& info);
  Napi::Value Needed(const Napi::CallbackInfo& info);
  Napi::Value UnlinkIfSame(const Napi::CallbackInfo& info);
  Napi::Value LastWritten(const Napi::CallbackInfo& info);
  // Explicit-ack mode (native_queue_leases.cpp).
  Napi::Value Settle(const Napi::CallbackInfo& info);
  Napi::Value SettleMany(const Napi::CallbackInfo& info);
  Napi::Value HeldLeases(const Napi::CallbackInfo& info);

  [[nodiscard]] bool EnsureTsfn(Napi::Env env);
  Napi::Value ArmReadableImpl(const Napi::CallbackInfo& info);
  Napi::Value ArmWritableImpl(const Napi::CallbackInfo& info);
  Napi::Value PollReadableImpl(const Napi::CallbackInfo& info);
  // Runs `f`; a Napi::Error it throws becomes a JS exception when the environment can still take
  // one, and is dropped when it cannot (a worker thread being terminated): a C++ exception left
  // to node-addon-api's wrapper there would abort the whole process.
  template <typename F>
  static Napi::Value GuardTermination(Napi::Env env, F&& f) {
    try {
      return f();
    } catch (const Napi::Error& e) {
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && !pending) (void)napi_throw_error(env, nullptr, e.what());
      return Napi::Value();
    }
  }
  void UpdateRef(Napi::Env env);
  void StartNotifier(std::unique_ptr<Notifier>* slot, bool for_data, int kind);

  std::unique_ptr<sage::Queue> q_;
  std::unique_ptr<Notifier> read_notifier_, write_notifier_;
  std::unique_ptr<ReadPoller> poller_;
  NotifyTarget* target_ = nullptr;
  napi_threadsafe_function tsfn_ = nullptr;
  bool strong_ = false;
  bool read_armed_ = false, write_armed_ = false;  // JS-thread view, for ref/unref
  size_t needed_ = 0;
  size_t written_ = 0;  // messages the last put call wrote (also when it returned an error)
  AddonState* addon_ = nullptr;
};

}  // namespace sage_binding
