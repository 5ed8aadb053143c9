// libFuzzer entry point (built by scripts/fuzz.sh: clang++ -fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>

#include "fuzz_queue.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return sage_fuzz::run_one(data, size); }
