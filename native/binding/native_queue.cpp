// NativeQueue methods. Hot-path methods return numbers (a count or length, or a negative status)
// instead of throwing: the TypeScript layer turns statuses into typed errors.
#include "native_queue.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "addon_state.h"
#include "signal_watch.h"

namespace sage_binding {

namespace {

int32_t neg(sage::Status s) { return -static_cast<int32_t>(s); }

// Data pointer and length of a Uint8Array (Buffers are Uint8Arrays). False if it is not one.
bool bytes_of(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  napi_typedarray_type type;
  void* p = nullptr;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok || type != napi_uint8_array) {
    return false;
  }
  *data = static_cast<uint8_t*>(p);
  return true;
}

bool u32s_of(napi_env env, napi_value v, uint32_t** data, size_t* count) {
  napi_typedarray_type type;
  void* p = nullptr;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, count, &p, &ab, &off) != napi_ok || type != napi_uint32_array) {
    return false;
  }
  *data = static_cast<uint32_t*>(p);
  return true;
}

// The signals (bit n = signal n) a blocking call returns ERR_INTERRUPTED for: those JS listens to.
uint32_t signals_arg(const Napi::Value& v) {
  if (!v.IsNumber()) return 0;
  const double d = v.As<Napi::Number>().DoubleValue();
  return d >= 0 && d <= 4294967295.0 ? static_cast<uint32_t>(d) : 0;
}

int64_t timeout_arg(const Napi::Value& v) {
  if (!v.IsNumber()) return -1;
  double ms = v.As<Napi::Number>().DoubleValue();
  if (!(ms >= 0)) return -1;
  return ms > 9.0e15 ? -1 : static_cast<int64_t>(ms + 0.999);  // round up: never return early
}

thread_local std::vector<sage::Slice> t_slices;

}  // namespace

Napi::Function NativeQueue::Define(Napi::Env env) {
  return DefineClass(env, "NativeQueue",
                     {
                         InstanceMethod("tryPut", &NativeQueue::TryPut),
                         InstanceMethod("tryPutBatch", &NativeQueue::TryPutBatch),
                         InstanceMethod("tryGet", &NativeQueue::TryGet),
                         InstanceMethod("tryGetBatch", &NativeQueue::TryGetBatch),
                         InstanceMethod("putBlocking", &NativeQueue::PutBlocking),
                         InstanceMethod("getBlocking", &NativeQueue::GetBlocking),
                         InstanceMethod("armReadable", &NativeQueue::ArmReadable),
                         InstanceMethod("armWritable", &NativeQueue::ArmWritable),
                         InstanceMethod("disarm", &NativeQueue::Disarm),
                         InstanceMethod("pollReadable", &NativeQueue::PollReadable),
                         InstanceMethod("stopPoll", &NativeQueue::StopPoll),
                         InstanceMethod("close", &NativeQueue::Close),
                         InstanceMethod("release", &NativeQueue::ReleaseJs),
                         InstanceMethod("qsize", &NativeQueue::Qsize),
                         InstanceMethod("usedBytes", &NativeQueue::UsedBytes),
                         InstanceMethod("isClosed", &NativeQueue::IsClosed),
                         InstanceMethod("isReleased", &NativeQueue::IsReleased),
                         InstanceMethod("stats", &NativeQueue::Stats),
                         InstanceMethod("info", &NativeQueue::Info),
                         InstanceMethod("setSpinUs", &NativeQueue::SetSpinUs),
                         InstanceMethod("needed", &NativeQueue::Needed),
                         InstanceMethod("unlinkIfSame", &NativeQueue::UnlinkIfSame),
                         InstanceMethod("lastWritten", &NativeQueue::LastWritten),
                         InstanceMethod("settle", &NativeQueue::Settle),
                         InstanceMethod("settleMany", &NativeQueue::SettleMany),
                         InstanceMethod("heldLeases", &NativeQueue::HeldLeases),
                     });
}

// new NativeQueue(name, mode, { capacity, maxMessageSize, maxsize, mode, codec }, notify, initWaitMs)
NativeQueue::NativeQueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeQueue>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsObject() || !info[3].IsFunction()) {
    throw Napi::TypeError::New(env, "NativeQueue(name, mode, options, notify) expects string, string, object, function");
  }
  napi_type_tag_object(env, info.This(), &kQueueTag);
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const std::string mode_s = info[1].As<Napi::String>().Utf8Value();
  Napi::Object o = info[2].As<Napi::Object>();
  sage::CreateOptions opts;
  auto num = [&](const char* key, uint64_t fallback) -> uint64_t {
    Napi::Value v = o.Get(key);
    return v.IsNumber() ? static_cast<uint64_t>(v.As<Napi::Number>().Int64Value()) : fallback;
  };
  opts.capacity = num("capacity", opts.capacity);
  opts.max_message_size = num("maxMessageSize", 0);
  opts.maxsize = num("maxsize", 0);
  opts.mode = static_cast<uint32_t>(num("mode", 0600));
  opts.codec = static_cast<uint32_t>(num("codec", 0));
  opts.ack_mode = static_cast<uint32_t>(num("ackMode", sage::kAckAuto));
  opts.ack_timeout_ms = num("ackTimeoutMs", opts.ack_timeout_ms);
  opts.max_deliveries = static_cast<uint32_t>(num("maxDeliveries", opts.max_deliveries));
  const uint64_t init_wait = info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().Int64Value() : 1000;
  // Trust: the caller's own options only (the TypeScript layer never takes them from a descriptor).
  sage::TrustPolicy trust;
  Napi::Value uids = o.Get("trustedUids");
  if (uids.IsArray()) {
    Napi::Array a = uids.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      Napi::Value v = a.Get(i);
      if (!v.IsNumber()) throw Napi::TypeError::New(env, "options.trustedUids must hold uids (numbers)");
      const double uid = v.As<Napi::Number>().DoubleValue();
      if (!(uid >= 0 && uid <= 4294967295.0) || uid != static_cast<double>(static_cast<uint32_t>(uid))) {
        throw Napi::RangeError::New(env, "options.trustedUids must hold uids (integers 0..2^32-1)");
      }
      trust.trusted_uids.push_back(static_cast<uint32_t>(uid));
    }
  }
  trust.allow_shared_mode = o.Get("allowSharedMode").ToBoolean();
  sage::OpenMode mode = mode_s == "create"    ? sage::OpenMode::Create
                        : mode_s == "open"    ? sage::OpenMode::Open
                        : mode_s == "inspect" ? sage::OpenMode::Inspect
                                              : sage::OpenMode::OpenOrCreate;
  int err = 0;
  sage::Status s = sage::Queue::open(name, mode, opts, &q_, &err, init_wait, trust);
  if (s != sage::Status::Ok) {
    std::string msg = std::string(sage::status_message(s)) + " (queue " + name;
    struct stat st;
    if ((s == sage::Status::UntrustedOwner || s == sage::Status::SharedMode) &&
        stat(("/dev/shm/" + std::string(sage::kShmPrefix) + name).c_str(), &st) == 0) {
      // For the message only (the decision was made on the descriptor the core opened).
      char detail[96];
      snprintf(detail, sizeof detail, ": owner uid %u, mode 0%o; this process runs as uid %u", static_cast<unsigned>(st.st_uid),
               static_cast<unsigned>(st.st_mode & 07777), static_cast<unsigned>(geteuid()));
      msg += detail;
    }
    msg += ")";
    if (err != 0) msg += ": " + std::string(strerror(err));
    throw MakeError(env, sage::status_code(s), msg, err);
  }
  target_ = new NotifyTarget();
  target_->fn = Napi::Weak(info[3].As<Napi::Function>());
  info.This().As<Napi::Object>().Set("_notify", info[3]);  // the strong reference, from JS
  addon_ = GetAddonState(env);
  if (addon_) addon_->live.insert(this);
}

NativeQueue::~NativeQueue() {
  if (addon_) addon_->live.erase(this);
  Release();
}

void NativeQueue::Release() {
  poller_.reset();
  read_notifier_.reset();  // joins the threads before the queue they use goes away
  write_notifier_.reset();
  if (target_ != nullptr) {
    target_->released = true;  // calls still queued are dropped
    if (strong_) target_->fn.Unref();
    strong_ = false;
    if (tsfn_ != nullptr) {
      napi_release_threadsafe_function(tsfn_, napi_tsfn_release);  // its finalizer frees target_
      tsfn_ = nullptr;
    } else {
      delete target_;
    }
    target_ = nullptr;
  }
  if (q_) {
    q_->release();
    q_.reset();
  }
}

bool NativeQueue::Usable(const Napi::CallbackInfo& info) {
  bool tagged = false;
  napi_check_object_type_tag(info.Env(), info.This(), &kQueueTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(info.Env(), "not a NativeQueue of this addon");
  return q_ != nullptr;
}

Napi::Value NativeQueue::TryPut(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  sage::Slice s;
  size_t len;
  uint8_t* data;
  if (!bytes_of(env, info[0], &data, &len)) throw Napi::TypeError::New(env, "tryPut expects a Uint8Array");
  if (len > UINT32_MAX) return Napi::Number::New(env, neg(sage::Status::TooLarge));
  s.data = data;
  s.length = static_cast<uint32_t>(len);
  size_t w = 0;
  sage::Status st = q_->try_put(&s, 1, &w);
  return Napi::Number::New(env, st == sage::Status::Ok ? 0 : neg(st));
}

// tryGet(slab: Uint8Array, offset) -> length (>= 0) or -status; BufferTooSmall sets needed()
Napi::Value NativeQueue::TryGet(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  uint8_t* data;
  size_t len;
  if (!bytes_of(env, info[0], &data, &len) || !info[1].IsNumber()) throw Napi::TypeError::New(env, "tryGet(slab: Uint8Array, offset)");
  size_t off = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  if (off > len) throw Napi::RangeError::New(env, "offset beyond the slab");
  uint32_t length = 0;
  size_t got = 0;
  sage::Status st = q_->try_get(data + off, len - off, &length, 1, &got, &needed_);
  if (st != sage::Status::Ok) return Napi::Number::New(env, neg(st));
  return Napi::Number::New(env, length);
}

// (data: Uint8Array, lengths: Uint32Array, count[, starts: Uint32Array, first]) → slices into
// t_slices; throws on bad arguments. Without `starts` the records lie back to back from data[0];
// with it (the gather form), record i is data[starts[first + i] .. + lengths[first + i]), so a
// codec's own output buffer is written without first copying its records together.
size_t NativeQueue::ParsePutArgs(const Napi::CallbackInfo& info, size_t starts_arg, const char* usage) {
  napi_env env = info.Env();
  uint8_t* data;
  size_t len, nlens;
  uint32_t* lens;
  if (!bytes_of(env, info[0], &data, &len) || !u32s_of(env, info[1], &lens, &nlens) || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, usage);
  }
  const size_t count = static_cast<size_t>(info[2].As<Napi::Number>().Int64Value());
  if (info.Length() > starts_arg && !info[starts_arg].IsUndefined()) {
    uint32_t* starts;
    size_t nstarts;
    if (!u32s_of(env, info[starts_arg], &starts, &nstarts) || !info[starts_arg + 1].IsNumber()) throw Napi::TypeError::New(env, usage);
    const size_t first = static_cast<size_t>(info[starts_arg + 1].As<Napi::Number>().Int64Value());
    if (first > nlens || count > nlens - first || nstarts < nlens) throw Napi::RangeError::New(env, "first + count exceeds lengths or starts");
    t_slices.resize(count);
    for (size_t i = 0; i < count; ++i) {
      const size_t at = starts[first + i], n = lens[first + i];
      if (at > len || n > len - at) throw Napi::RangeError::New(env, "a record lies outside data");
      t_slices[i] = sage::Slice{data + at, n};
    }
    return count;
  }
  if (count > nlens) throw Napi::RangeError::New(env, "count exceeds lengths");
  t_slices.resize(count);
  size_t at = 0;
  for (size_t i = 0; i < count; ++i) {
    if (lens[i] > len - at) throw Napi::RangeError::New(env, "lengths exceed data");
    t_slices[i] = sage::Slice{data + at, lens[i]};
    at += lens[i];
  }
  return count;
}

// (slab: Uint8Array, offset, lengths: Uint32Array, max) → where a batch get writes.
NativeQueue::GetArgs NativeQueue::ParseGetArgs(const Napi::CallbackInfo& info, const char* usage) {
  napi_env env = info.Env();
  uint8_t* data;
  size_t len, nlens;
  uint32_t* lens;
  if (!bytes_of(env, info[0], &data, &len) || !info[1].IsNumber() || !u32s_of(env, info[2], &lens, &nlens) ||
      !info[3].IsNumber()) {
    throw Napi::TypeError::New(env, usage);
  }
  const size_t off = static_cast<size_t>(info[1].As<Napi::Number>().Int64Value());
  const size_t max = static_cast<size_t>(info[3].As<Napi::Number>().Int64Value());
  if (off > len || max > nlens) throw Napi::RangeError::New(env, "offset or max out of range");
  return GetArgs{data + off, len - off, lens, max};
}

// tryPutBatch(data, lengths, count[, starts, first]) /
// putBlocking(data, lengths, count, timeoutMs, signals[, starts, first])
// -> written (>= 0) or -status. putBlocking blocks this thread (sync API only); `signals` (a bit
// mask) makes it return -Interrupted when one of them arrives (see signal_watch.h). After an
// error status, lastWritten() says how many messages went in before it.
Napi::Value NativeQueue::PutBatch(const Napi::CallbackInfo& info, bool blocking) {
  napi_env env = info.Env();
  written_ = 0;
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  const size_t count =
      ParsePutArgs(info, blocking ? 5 : 3,
                   blocking ? "putBlocking(data: Uint8Array, lengths: Uint32Array, count, timeoutMs, signals?, starts?: Uint32Array, first?)"
                            : "tryPutBatch(data: Uint8Array, lengths: Uint32Array, count, starts?: Uint32Array, first?)");
  size_t w = 0;
  sage::Status st;
  if (blocking) {
    SignalWatch watch(signals_arg(info[4]), q_.get());
    st = q_->put(t_slices.data(), count, &w, timeout_arg(info[3]), watch.flag(), sage::Status::Interrupted);
  } else {
    st = q_->try_put(t_slices.data(), count, &w);
  }
  written_ = w;
  if (st == sage::Status::Ok || (st == sage::Status::Full && (w > 0 || !blocking))) return Napi::Number::New(env, static_cast<double>(w));
  return Napi::Number::New(env, neg(st));
}

// tryGetBatch(slab, offset, lengths, max) / getBlocking(slab, offset, lengths, max, timeoutMs, signals)
// -> count (>= 0) or -status. getBlocking blocks this thread (sync API only); see putBlocking.
Napi::Value NativeQueue::GetBatch(const Napi::CallbackInfo& info, bool blocking) {
  napi_env env = info.Env();
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  const GetArgs a = ParseGetArgs(info, blocking ? "getBlocking(slab: Uint8Array, offset, lengths: Uint32Array, max, timeoutMs, signals?)"
                                                : "tryGetBatch(slab: Uint8Array, offset, lengths: Uint32Array, max)");
  size_t got = 0;
  sage::Status st;
  if (blocking) {
    SignalWatch watch(signals_arg(info[5]), q_.get());
    st = q_->get(a.dst, a.cap, a.lengths, a.max, &got, &needed_, timeout_arg(info[4]), watch.flag(), sage::Status::Interrupted);
  } else {
    st = q_->try_get(a.dst, a.cap, a.lengths, a.max, &got, &needed_);
  }
  if (st != sage::Status::Ok) return Napi::Number::New(env, neg(st));
  return Napi::Number::New(env, static_cast<double>(got));
}

namespace {

// Runs on the JS thread for each notification. env is null while the function is torn down.
void CallNotify(napi_env env, napi_value, void* context, void* data) {
  auto* target = static_cast<NativeQueue::NotifyTarget*>(context);
  if (env == nullptr || target == nullptr || target->released) return;
  Napi::Env e(env);
  Napi::HandleScope scope(e);
  Napi::Function fn = target->fn.Value();
  if (fn.IsEmpty()) return;
  napi_value arg = Napi::Number::New(e, static_cast<double>(reinterpret_cast<intptr_t>(data)));
  napi_value result;
  // An exception thrown by the callback stays pending and surfaces as an uncaught exception;
  // napi_cannot_run_js (a terminating worker) is ignored.
  napi_call_function(env, e.Undefined(), fn, 1, &arg, &result);
}

void FinalizeNotify(napi_env, void* data, void*) { delete static_cast<NativeQueue::NotifyTarget*>(data); }

}  // namespace

// False (with a JS exception set when the environment can still take one) if it cannot be made:
// no C++ exception, which would abort a worker thread being terminated (napi_throw fails then).
bool NativeQueue::EnsureTsfn(Napi::Env env) {
  if (tsfn_ != nullptr) return true;
  napi_value name = nullptr;
  if (napi_create_string_utf8(env, "sage-queue-notify", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, target_, FinalizeNotify, target_, CallNotify, &tsfn_) != napi_ok) {
    tsfn_ = nullptr;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && !pending) (void)napi_throw_error(env, nullptr, "sage-queue: cannot create the wait notifier");
    return false;
  }
  napi_unref_threadsafe_function(env, tsfn_);
  return true;
}

void NativeQueue::UpdateRef(Napi::Env env) {
  if (tsfn_ == nullptr || target_ == nullptr) return;
  // A pending wait keeps the process (and this queue object) alive, like a pending socket read;
  // an idle handle keeps neither.
  const bool armed = read_armed_ || write_armed_;
  if (armed) napi_ref_threadsafe_function(env, tsfn_);
  else napi_unref_threadsafe_function(env, tsfn_);
  if (armed && !strong_) target_->fn.Ref();
  if (!armed && strong_) target_->fn.Unref();
  strong_ = armed;
}

void NativeQueue::StartNotifier(std::unique_ptr<Notifier>* slot, bool for_data, int kind) {
  if (*slot) return;
  napi_threadsafe_function tsfn = tsfn_;
  *slot = std::make_unique<Notifier>(q_.get(), for_data, [tsfn, kind]() {
    napi_call_threadsafe_function(tsfn, reinterpret_cast<void*>(static_cast<intptr_t>(kind)), napi_tsfn_nonblocking);
  });
}

Napi::Value NativeQueue::ArmReadable(const Napi::CallbackInfo& info) {
  return GuardTermination(info.Env(), [&] { return ArmReadableImpl(info); });
}

Napi::Value NativeQueue::ArmReadableImpl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return env.Undefined();
  if (!EnsureTsfn(env)) return env.Undefined();
  StartNotifier(&read_notifier_, true, NotifyKind::kReadable);
  read_armed_ = true;
  UpdateRef(env);
  read_notifier_->arm(0, info.Length() < 1 || info[0].ToBoolean());  // armReadable(spin = true)
  return env.Undefined();
}

Napi::Value NativeQueue::ArmWritable(const Napi::CallbackInfo& info) {
  return GuardTermination(info.Env(), [&] { return ArmWritableImpl(info); });
}

Napi::Value NativeQueue::ArmWritableImpl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return env.Undefined();
  if (!EnsureTsfn(env)) return env.Undefined();
  StartNotifier(&write_notifier_, false, NotifyKind::kWritable);
  write_armed_ = true;
  UpdateRef(env);
  uint64_t bytes = info[0].IsNumber() ? static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()) : 0;
  write_notifier_->arm(bytes);
  return env.Undefined();
}

// disarm(kind): 1 readable, 2 writable. Also called by JS after each notification it handled.
Napi::Value NativeQueue::Disarm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return env.Undefined();
  int kind = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 3;
  bool cancel = info.Length() < 2 || info[1].ToBoolean();  // false: it already fired
  if (kind & NotifyKind::kReadable) {
    if (read_notifier_ && cancel) read_notifier_->disarm();
    read_armed_ = false;
  }
  if (kind & NotifyKind::kWritable) {
    if (write_notifier_ && cancel) write_notifier_->disarm();
    write_armed_ = false;
  }
  UpdateRef(env);
  return env.Undefined();
}

Napi::Value NativeQueue::Close(const Napi::CallbackInfo& info) {
  if (Usable(info)) q_->close();
  return info.Env().Undefined();
}

Napi::Value NativeQueue::ReleaseJs(const Napi::CallbackInfo& info) {
  bool tagged = false;
  napi_check_object_type_tag(info.Env(), info.This(), &kQueueTag, &tagged);
  if (!tagged) throw Napi::TypeError::New(info.Env(), "not a NativeQueue of this addon");
  Release();
  return info.Env().Undefined();
}

Napi::Value NativeQueue::Qsize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Usable(info) ? static_cast<double>(q_->qsize()) : 0);
}

Napi::Value NativeQueue::UsedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Usable(info) ? static_cast<double>(q_->used_bytes()) : 0);
}

Napi::Value NativeQueue::IsClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Usable(info) && q_->closed());
}

Napi::Value NativeQueue::IsReleased(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !Usable(info));
}

// unlinkIfSame() -> 0, or -status (NotFound: the name is gone; Replaced: it refers to another
// segment now, which was left alone).
Napi::Value NativeQueue::UnlinkIfSame(const Napi::CallbackInfo& info) {
  if (!Usable(info)) return Napi::Number::New(info.Env(), neg(sage::Status::InvalidArgument));
  int err = 0;
  const sage::Status st = q_->unlink_if_same(&err);
  return Napi::Number::New(info.Env(), st == sage::Status::Ok ? 0 : neg(st));
}

Napi::Value NativeQueue::Needed(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(needed_));
}

Napi::Value NativeQueue::LastWritten(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(written_));
}

Napi::Value NativeQueue::SetSpinUs(const Napi::CallbackInfo& info) {
  if (Usable(info) && info[0].IsNumber()) {
    double us = info[0].As<Napi::Number>().DoubleValue();
    q_->set_spin_ns(us > 0 ? static_cast<uint64_t>(us * 1000.0) : 0);
  }
  return info.Env().Undefined();
}

}  // namespace sage_binding
