// Node-API binding of the sage-queue native core. Per-instance state lives in the Addon object so
// the addon can be loaded in several worker threads / contexts at once.
#include <napi.h>

#include "version.h"

namespace {

class SageAddon : public Napi::Addon<SageAddon> {
 public:
  SageAddon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
        InstanceMethod("version", &SageAddon::Version),
        InstanceMethod("capabilities", &SageAddon::Capabilities),
    });
  }

 private:
  Napi::Value Version(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), SAGE_NATIVE_VERSION);
  }

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
    return caps;
  }
};

}  // namespace

NODE_API_ADDON(SageAddon)
