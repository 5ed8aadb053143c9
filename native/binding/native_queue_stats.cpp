// NativeQueue's read-only reports: info() (what the handle opened) and stats() (the segment's
// shared counters and attached processes).
#include "addon_state.h"
#include "native_queue.h"

namespace sage_binding {

Napi::Value NativeQueue::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", q_->name());
  o.Set("capacity", Napi::Number::New(env, static_cast<double>(q_->capacity())));
  o.Set("maxMessageSize", Napi::Number::New(env, static_cast<double>(q_->max_message_size())));
  o.Set("maxsize", Napi::Number::New(env, static_cast<double>(q_->maxsize())));
  o.Set("codec", Napi::Number::New(env, q_->codec()));
  o.Set("nonce", Napi::String::New(env, std::to_string(q_->nonce())));
  o.Set("ackMode", Napi::Number::New(env, q_->explicit_ack() ? sage::kAckExplicit : sage::kAckAuto));
  o.Set("ackTimeoutMs", Napi::Number::New(env, static_cast<double>(q_->ack_timeout_ms())));
  o.Set("maxDeliveries", Napi::Number::New(env, q_->max_deliveries()));
  return o;
}

Napi::Value NativeQueue::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Usable(info)) return env.Null();
  if (q_->damaged()) {
    throw MakeError(env, sage::status_code(sage::Status::Truncated),
                    std::string(sage::status_message(sage::Status::Truncated)) + " (queue " + q_->name() + ")", 0);
  }
  sage::Stats s = q_->stats();
  if (q_->damaged()) {  // found while reading the stats
    throw MakeError(env, sage::status_code(sage::Status::Truncated),
                    std::string(sage::status_message(sage::Status::Truncated)) + " (queue " + q_->name() + ")", 0);
  }
  auto n = [&](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", q_->name());
  o.Set("capacity", n(s.capacity));
  o.Set("maxMessageSize", n(s.max_message_size));
  o.Set("maxsize", n(s.maxsize));
  o.Set("depth", n(s.depth_msgs));
  o.Set("depthBytes", n(s.depth_bytes));
  o.Set("usedBytes", n(s.used_bytes));
  o.Set("enqueued", n(s.enqueued));
  o.Set("dequeued", n(s.dequeued));
  o.Set("abandonedClaims", n(s.abandoned_claims));
  o.Set("lostInRead", n(s.lost_in_read));
  o.Set("wakeCalls", n(s.wake_calls));
  o.Set("waits", n(s.waits));
  o.Set("lockRecoveries", n(s.lock_recoveries));
  o.Set("slotsReaped", n(s.slots_reaped));
  o.Set("waiterHeals", n(s.waiter_heals));
  o.Set("dataWaiters", n(s.data_waiters));
  o.Set("spaceWaiters", n(s.space_waiters));
  o.Set("codec", n(s.codec));
  o.Set("mode", n(s.mode));
  o.Set("createdMs", Napi::Number::New(env, static_cast<double>(s.created_ns) / 1e6));
  o.Set("nonce", Napi::String::New(env, std::to_string(s.nonce)));
  o.Set("closed", Napi::Boolean::New(env, s.closed));
  o.Set("fileUid", n(s.file_uid));
  o.Set("fileMode", n(s.file_mode));
  if (s.ack_mode == sage::kAckExplicit) {
    Napi::Object a = Napi::Object::New(env);
    a.Set("ackTimeoutMs", n(s.ack_timeout_ms));
    a.Set("maxDeliveries", n(s.max_deliveries));
    a.Set("acks", n(s.acks));
    a.Set("nacks", n(s.nacks));
    a.Set("staleSettles", n(s.stale_settles));
    a.Set("redeliveries", n(s.redeliveries));
    a.Set("expiredLeases", n(s.expired_leases));
    a.Set("deadLeases", n(s.dead_leases));
    a.Set("redeliverable", n(s.redeliverable));
    a.Set("unackedBytes", n(s.unacked_bytes));
    o.Set("leases", a);
  } else {
    o.Set("leases", env.Null());
  }
  if (s.trust == sage::Status::Ok) o.Set("untrusted", env.Null());
  else o.Set("untrusted", Napi::String::New(env, sage::status_code(s.trust)));
  Napi::Array procs = Napi::Array::New(env, s.slots.size());
  for (size_t i = 0; i < s.slots.size(); ++i) {
    const sage::SlotInfo& si = s.slots[i];
    Napi::Object p = Napi::Object::New(env);
    p.Set("slot", n(si.index));
    p.Set("pid", Napi::Number::New(env, si.pid));
    Napi::Array roles = Napi::Array::New(env);
    uint32_t r = 0;
    if (si.role & sage::kRoleCreator) roles.Set(r++, "creator");
    if (si.role & sage::kRoleProducer) roles.Set(r++, "producer");
    if (si.role & sage::kRoleConsumer) roles.Set(r++, "consumer");
    p.Set("roles", roles);
    p.Set("alive", Napi::Boolean::New(env, si.alive));
    p.Set("attachedMs", Napi::Number::New(env, static_cast<double>(si.attached_ns) / 1e6));
    p.Set("waiting", n(si.data_waiters + si.space_waiters));
    procs.Set(static_cast<uint32_t>(i), p);
  }
  o.Set("processes", procs);
  return o;
}

}  // namespace sage_binding
