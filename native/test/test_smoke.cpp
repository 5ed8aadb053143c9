// Smoke test of the build wiring: the core's include directory reaches the tests, and the
// version macros the addon reports are sane. Exits non-zero on the first failed check.
#include <cstdio>
#include <cstring>

#include "version.h"

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  static_assert(SAGE_LAYOUT_VERSION >= 1, "the layout version starts at 1");
  check(SAGE_LAYOUT_VERSION >= 1, "SAGE_LAYOUT_VERSION >= 1");

  const char* version = SAGE_NATIVE_VERSION;
  check(version != nullptr && std::strlen(version) > 0, "SAGE_NATIVE_VERSION is non-empty");
  // "major.minor.patch": at least one dot, and it starts with a digit.
  check(version != nullptr && version[0] >= '0' && version[0] <= '9', "SAGE_NATIVE_VERSION starts with a digit");
  check(version != nullptr && std::strchr(version, '.') != nullptr, "SAGE_NATIVE_VERSION contains a '.'");

  if (failures != 0) {
    std::fprintf(stderr, "test_smoke: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_smoke: ok (native %s, layout %d)\n", version, SAGE_LAYOUT_VERSION);
  return 0;
}
