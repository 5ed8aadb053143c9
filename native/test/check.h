#pragma once
// Minimal assertion helper for the native tests: report file:line and exit non-zero.
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

// Segments a test created, unlinked at exit even when a CHECK fails (std::exit runs atexit).
inline void remove_at_exit(const std::string& queue_name) {
  static std::vector<std::string> names;
  static bool registered = false;
  names.push_back("/sageq." + queue_name);
  if (!registered) {
    registered = true;
    std::atexit([] {
      for (const auto& n : names) shm_unlink(n.c_str());
    });
  }
}

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)

#define CHECK_EQ(a, b)                                                     \
  do {                                                                     \
    auto va_ = (a);                                                        \
    auto vb_ = (b);                                                        \
    if (!(va_ == vb_)) {                                                   \
      std::fprintf(stderr, "%s:%d: CHECK_EQ failed: %s (%lld) != %s (%lld)\n", __FILE__, __LINE__, #a, \
                   static_cast<long long>(va_), #b, static_cast<long long>(vb_)); \
      std::exit(1);                                                        \
    }                                                                      \
  } while (0)
