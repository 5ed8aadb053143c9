#pragma once
// The fuzz entry point over the native core, shared by the libFuzzer target (fuzz_main.cpp,
// built by scripts/fuzz.sh with clang) and by the regression replay test
// (native/test/test_fuzz_regressions.cpp, built by every ctest tree without libFuzzer).
#include <cstddef>
#include <cstdint>

namespace sage_fuzz {

// Runs one input. Never returns on a violated invariant: it prints what went wrong and aborts,
// so libFuzzer (or the replay test) keeps the input. Returns 0 otherwise.
int run_one(const uint8_t* data, size_t size);

// Removes any segment the target created in this process (idempotent; also run at exit).
void cleanup();

}  // namespace sage_fuzz
