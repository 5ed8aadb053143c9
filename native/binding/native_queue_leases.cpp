// NativeQueue's explicit-ack methods (sage::Queue::settle, held_leases). Like the data path they
// return numbers (a count, or a negative status) and throw only for malformed arguments.
#include "native_queue.h"

#include <vector>

namespace sage_binding {

namespace {

int32_t neg(sage::Status s) { return -static_cast<int32_t>(s); }

bool u32_arg(const Napi::Value& v, uint32_t* out) {
  if (!v.IsNumber()) return false;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) return false;
  *out = static_cast<uint32_t>(d);
  return true;
}

bool op_arg(const Napi::Value& v, sage::Queue::Settle* op) {
  uint32_t n;
  if (!u32_arg(v, &n) || n > 2) return false;
  *op = n == 0 ? sage::Queue::Settle::Ack : n == 1 ? sage::Queue::Settle::Nack : sage::Queue::Settle::Extend;
  return true;
}

}  // namespace

// settle(positionLo, positionHi, deliveries, op: 0 ack | 1 nack | 2 extend, delayMs) -> 0 or -status
Napi::Value NativeQueue::Settle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  uint32_t lo, hi, deliveries, delay;
  sage::Queue::Settle op;
  if (!u32_arg(info[0], &lo) || !u32_arg(info[1], &hi) || !u32_arg(info[2], &deliveries) || !op_arg(info[3], &op) ||
      !u32_arg(info[4], &delay)) {
    throw Napi::TypeError::New(env, "settle(positionLo, positionHi, deliveries, op, delayMs) expects uint32s");
  }
  const uint64_t position = (static_cast<uint64_t>(hi) << 32) | lo;
  return Napi::Number::New(env, neg(q_->settle(position, deliveries, op, delay)));
}

// settleMany(ids: Uint32Array of (lo, hi, deliveries) triples, count, op, statuses: Uint8Array)
// -> how many succeeded; statuses[i] = the status of id i (0 = Ok).
Napi::Value NativeQueue::SettleMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  if (!info[0].IsTypedArray() || !info[3].IsTypedArray()) throw Napi::TypeError::New(env, "settleMany(ids, count, op, statuses)");
  Napi::TypedArray ids_v = info[0].As<Napi::TypedArray>();
  Napi::TypedArray out_v = info[3].As<Napi::TypedArray>();
  uint32_t count;
  sage::Queue::Settle op;
  if (ids_v.TypedArrayType() != napi_uint32_array || out_v.TypedArrayType() != napi_uint8_array ||
      !u32_arg(info[1], &count) || !op_arg(info[2], &op)) {
    throw Napi::TypeError::New(env, "settleMany(ids: Uint32Array, count, op, statuses: Uint8Array)");
  }
  Napi::Uint32Array ids = ids_v.As<Napi::Uint32Array>();
  Napi::Uint8Array out = out_v.As<Napi::Uint8Array>();
  if (static_cast<size_t>(count) * 3 > ids.ElementLength() || count > out.ElementLength()) {
    throw Napi::RangeError::New(env, "settleMany: count exceeds ids or statuses");
  }
  thread_local std::vector<sage::LeasePrefix> leases;
  thread_local std::vector<sage::Status> statuses;
  leases.resize(count);
  statuses.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    leases[i] = sage::LeasePrefix{(static_cast<uint64_t>(ids[3 * i + 1]) << 32) | ids[3 * i], ids[3 * i + 2], 0};
  }
  const size_t ok = q_->settle_many(leases.data(), count, op, statuses.data());
  for (uint32_t i = 0; i < count; ++i) out[i] = static_cast<uint8_t>(statuses[i]);
  return Napi::Number::New(env, static_cast<double>(ok));
}

// heldLeases(timeoutMs) -> leases this handle holds, or -status (Empty/TimedOut: the lock was busy).
Napi::Value NativeQueue::HeldLeases(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return Napi::Number::New(env, neg(sage::Status::InvalidArgument));
  uint32_t timeout;
  if (!u32_arg(info[0], &timeout)) throw Napi::TypeError::New(env, "heldLeases(timeoutMs: uint32)");
  uint64_t count = 0;
  const sage::Status s = q_->held_leases(&count, timeout);
  if (s != sage::Status::Ok) return Napi::Number::New(env, neg(s));
  return Napi::Number::New(env, static_cast<double>(count));
}

}  // namespace sage_binding
