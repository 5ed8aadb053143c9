#pragma once
// Test-only stop points in the data path, compiled in only when SAGE_TEST_HOOKS is defined (the
// hooks-enabled addon that the JS crash tests load, see `npm run build:test-addon`). Production
// builds (binding.gyp, prebuildify, the default CMake targets) do not define it: there the
// SAGE_HOOK(...) marks expand to nothing and none of these declarations exist.
//
// When a point is armed, the process writes "SAGE_HOOK <name>\n" to stderr and sleeps forever
// there, so a test can SIGKILL it at exactly that instant.
#ifdef SAGE_TEST_HOOKS
#include <atomic>
#include <string>

namespace sage {

enum class HookPoint : int { None = 0, AfterClaim, MidCopy, BeforeCommit, AfterTake, MidRead, InProdLock, InConsLock, MidCreate, InSettle, InScan, MidTake };

void set_test_hook(HookPoint p);
[[nodiscard]] bool parse_hook_point(const std::string& name, HookPoint* out);

namespace detail {
extern std::atomic<int> g_test_hook;
[[noreturn]] void park_at_hook(HookPoint p);
}  // namespace detail

inline bool test_hook_armed(HookPoint p) {
  return __builtin_expect(detail::g_test_hook.load(std::memory_order_relaxed) == static_cast<int>(p), 0);
}

inline void test_hook(HookPoint p) {
  if (test_hook_armed(p)) detail::park_at_hook(p);
}

}  // namespace sage

// Parks here when `point` is armed.
#define SAGE_HOOK(point) ::sage::test_hook(::sage::HookPoint::point)
// True when `point` is armed (for hooks that first do half of something, e.g. half a copy).
#define SAGE_HOOK_ARMED(point) ::sage::test_hook_armed(::sage::HookPoint::point)
#else
#define SAGE_HOOK(point) ((void)0)
#define SAGE_HOOK_ARMED(point) false
#endif
