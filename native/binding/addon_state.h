#pragma once
// Per-addon-instance state (one per Node environment: main thread or worker thread).
#include <napi.h>

#include <unordered_set>

namespace sage_binding {

class NativeQueue;

class AddonState {
 public:
  std::unordered_set<NativeQueue*> live;
  Napi::FunctionReference queue_ctor;
};

// The AddonState of this environment (null if the addon is not initialised in it).
AddonState* GetAddonState(Napi::Env env);

// Type tag for our wrapped objects: an object from another copy of the addon is refused rather
// than reinterpreted.
extern const napi_type_tag kQueueTag;

// Throws a JS Error carrying a stable `code` (and `errno` when a system call failed).
Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message, int sys_errno = 0);

}  // namespace sage_binding
