// Node-API entry point. Per-instance state lives in the addon instance (Napi::Addon) so the addon
// can be loaded by several worker threads at once; an environment cleanup hook releases every
// handle still attached when a worker thread or the process exits (finalizers cover GC).
#include <napi.h>

#include <cerrno>
#include <cstring>

#include "addon_state.h"
#include "native_queue.h"
#include "sage_ring.h"
#include "test_hooks.h"
#include "version.h"

namespace sage_binding {

const napi_type_tag kQueueTag = {0x5a6e1d3b8c2f4a71ull, 0x9e3779b97f4a7c15ull};

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message, int sys_errno) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  if (sys_errno != 0) e.Set("errno", Napi::Number::New(env, sys_errno));
  return e;
}

}  // namespace sage_binding

using sage_binding::AddonState;
using sage_binding::MakeError;
using sage_binding::NativeQueue;

// The addon instance is the environment's instance data (Napi::Addon stores it there); it is
// also the AddonState every NativeQueue of this environment registers with.
class SageAddon : public Napi::Addon<SageAddon>, public AddonState {
 public:
  SageAddon(Napi::Env env, Napi::Object exports) {
    Napi::Function ctor = NativeQueue::Define(env);
    queue_ctor = Napi::Persistent(ctor);
    env.AddCleanupHook([this]() {
      // Environment teardown (worker exit, process exit): release everything still attached,
      // so other processes see this handle go away cleanly instead of as a death.
      for (NativeQueue* q : live) {
        q->ForgetAddon();
        q->Release();
      }
      live.clear();
    });
    DefineAddon(exports, {
                             InstanceMethod("version", &SageAddon::Version),
                             InstanceMethod("capabilities", &SageAddon::Capabilities),
                             InstanceMethod("statuses", &SageAddon::Statuses),
                             InstanceMethod("constants", &SageAddon::Constants),
                             InstanceMethod("validName", &SageAddon::ValidName),
                             InstanceMethod("unlink", &SageAddon::Unlink),
                             InstanceMethod("list", &SageAddon::List),
                             InstanceMethod("collectTemps", &SageAddon::CollectTemps),
                             InstanceMethod("setTestHook", &SageAddon::SetTestHook),
                             InstanceValue("NativeQueue", ctor),
                         });
  }

 private:
  Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), SAGE_NATIVE_VERSION); }

  Napi::Value Capabilities(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object caps = Napi::Object::New(env);
    caps.Set("version", SAGE_NATIVE_VERSION);
    caps.Set("layoutVersion", Napi::Number::New(env, SAGE_LAYOUT_VERSION));
    caps.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
    caps.Set("platform", "linux");
    caps.Set("futex", Napi::Boolean::New(env, true));
    caps.Set("robustLocks", Napi::Boolean::New(env, true));
    caps.Set("sharedMemory", Napi::Boolean::New(env, true));
    caps.Set("maxHandlesPerQueue", Napi::Number::New(env, sage::kMaxSlots));
    caps.Set("shmPrefix", sage::kShmPrefix);
    caps.Set("shmTempPrefix", sage::kShmTempPrefix);
#ifdef SAGE_TEST_HOOKS
    caps.Set("testHooks", Napi::Boolean::New(env, true));
#else
    caps.Set("testHooks", Napi::Boolean::New(env, false));
#endif
    return caps;
  }

  // [{ status, code, message }] indexed by the numeric status the hot-path methods return.
  Napi::Value Statuses(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    for (int i = 0; i <= static_cast<int>(sage::kLastStatus); ++i) {
      auto s = static_cast<sage::Status>(i);
      Napi::Object o = Napi::Object::New(env);
      o.Set("status", Napi::Number::New(env, i));
      o.Set("code", sage::status_code(s));
      o.Set("message", sage::status_message(s));
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  }

  // { status: { Ok: 0, Empty: 1, ... }, notify: { Readable: 1, Writable: 2 } }, made from the
  // same lists as the C++ enums (SAGE_STATUSES, SAGE_NOTIFY_KINDS), so the TypeScript copies can
  // be checked against it (test/native/contract.test.ts).
  Napi::Value Constants(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object status = Napi::Object::New(env);
    for (int i = 0; i <= static_cast<int>(sage::kLastStatus); ++i) {
      status.Set(sage::status_name(static_cast<sage::Status>(i)), Napi::Number::New(env, i));
    }
    Napi::Object notify = Napi::Object::New(env);
#define SAGE_NOTIFY_KIND_ENTRY(name, value) \
  notify.Set(#name, Napi::Number::New(env, sage_binding::NotifyKind::k##name));
    SAGE_NOTIFY_KINDS(SAGE_NOTIFY_KIND_ENTRY)
#undef SAGE_NOTIFY_KIND_ENTRY
    Napi::Object out = Napi::Object::New(env);
    out.Set("status", status);
    out.Set("notify", notify);
    return out;
  }

  Napi::Value ValidName(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), info[0].IsString() && sage::valid_queue_name(info[0].As<Napi::String>().Utf8Value()));
  }

  Napi::Value Unlink(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "unlink(name: string)");
    const std::string name = info[0].As<Napi::String>().Utf8Value();
    int err = 0;
    sage::Status s = sage::Queue::unlink(name, &err);
    if (s != sage::Status::Ok) {
      std::string msg = std::string(sage::status_message(s)) + " (queue " + name + ")";
      if (err != 0) msg += ": " + std::string(strerror(err));
      throw MakeError(env, sage::status_code(s), msg, err);
    }
    return env.Undefined();
  }

  Napi::Value List(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<std::string> names = sage::Queue::list();
    Napi::Array out = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) out.Set(static_cast<uint32_t>(i), names[i]);
    return out;
  }

  // collectTemps(only: string[] | undefined, dryRun: boolean) -> file names of the temporary
  // names of dead creators, removed unless dryRun (see Queue::collect_stale_temps).
  Napi::Value CollectTemps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<std::string> only;
    const bool filtered = info.Length() > 0 && info[0].IsArray();
    if (filtered) {
      Napi::Array a = info[0].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value v = a.Get(i);
        if (v.IsString()) only.push_back(v.As<Napi::String>().Utf8Value());
      }
    }
    const bool dry_run = info.Length() > 1 && info[1].ToBoolean();
    std::vector<std::string> files = sage::Queue::collect_stale_temps(filtered ? &only : nullptr, dry_run);
    Napi::Array out = Napi::Array::New(env, files.size());
    for (size_t i = 0; i < files.size(); ++i) out.Set(static_cast<uint32_t>(i), files[i]);
    return out;
  }

  // Test-only: stop this process at a named point of the data path (see native/core/test_hooks.h).
  // Only the hooks-enabled test build (SAGE_TEST_HOOKS) has the hooks; in a production build the
  // method exists only to say so.
  Napi::Value SetTestHook(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
#ifdef SAGE_TEST_HOOKS
    sage::HookPoint p;
    if (!info[0].IsString() || !sage::parse_hook_point(info[0].As<Napi::String>().Utf8Value(), &p)) {
      throw Napi::TypeError::New(env, "unknown hook point");
    }
    sage::set_test_hook(p);
    return env.Undefined();
#else
    (void)info;
    throw MakeError(env, "ERR_TEST_HOOKS_DISABLED",
                    "setTestHook: this build of the sage-queue addon has no test hooks (production builds never "
                    "do); build the test addon with `npm run build:test-addon` and point SAGE_QUEUE_NATIVE_ADDON "
                    "at it");
#endif
  }

};

sage_binding::AddonState* sage_binding::GetAddonState(Napi::Env env) {
  return static_cast<AddonState*>(env.GetInstanceData<SageAddon>());
}

NODE_API_ADDON(SageAddon)
