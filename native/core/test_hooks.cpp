// Test-only stop points (see test_hooks.h); empty unless SAGE_TEST_HOOKS is defined.
#include "test_hooks.h"

#ifdef SAGE_TEST_HOOKS
#include <unistd.h>

#include <cstdio>

namespace sage {

namespace {
const struct {
  const char* name;
  HookPoint point;
} kHookNames[] = {{"none", HookPoint::None},           {"after-claim", HookPoint::AfterClaim},
                  {"mid-copy", HookPoint::MidCopy},     {"before-commit", HookPoint::BeforeCommit},
                  {"after-take", HookPoint::AfterTake}, {"mid-read", HookPoint::MidRead},
                  {"in-prod-lock", HookPoint::InProdLock}, {"in-cons-lock", HookPoint::InConsLock},
                  {"mid-create", HookPoint::MidCreate},
                  {"in-settle", HookPoint::InSettle}, {"in-scan", HookPoint::InScan},
                  {"mid-take", HookPoint::MidTake}};
}  // namespace

namespace detail {
std::atomic<int> g_test_hook{0};

void park_at_hook(HookPoint p) {
  const char* name = "?";
  for (const auto& e : kHookNames) {
    if (e.point == p) name = e.name;
  }
  char line[64];
  const int n = snprintf(line, sizeof line, "SAGE_HOOK %s\n", name);
  // The test learns of the stop from this line; if stderr is gone there is nobody to tell, and
  // parking is still right (the test kills us on its deadline).
  if (n > 0 && write(2, line, static_cast<size_t>(n)) < 0) {
  }
  for (;;) pause();  // wait here to be killed
}
}  // namespace detail

void set_test_hook(HookPoint p) { detail::g_test_hook.store(static_cast<int>(p), std::memory_order_relaxed); }

bool parse_hook_point(const std::string& name, HookPoint* out) {
  for (const auto& e : kHookNames) {
    if (name == e.name) {
      *out = e.point;
      return true;
    }
  }
  return false;
}

}  // namespace sage
#endif  // SAGE_TEST_HOOKS
