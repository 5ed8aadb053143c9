#pragma once
// Fault guard: a truncated (shrunk) segment must not kill the process with SIGBUS.
//
// Another process can ftruncate a segment we have mapped; touching a page past the new end of
// the file then raises SIGBUS. Checking the file size before every access would cost a syscall
// on the hot path. Instead every mapping of a segment is registered here, and a SIGBUS handler
// (installed once, chained to any previous handler for faults outside our mappings) that finds
// the faulting address inside a registered mapping maps anonymous zero pages over the rest of
// that mapping (MAP_FIXED) and marks it damaged; the faulting instruction is then retried and
// reads zeros. The queue checks the damaged mark (one relaxed load of process-local memory)
// before and after each operation and reports Status::Truncated; whatever it read from the zero
// pages is discarded. A damaged mapping is never unmapped (its robust mutexes may still be
// linked in a thread's robust list): the handle only stops using it.
#include <cstddef>

namespace sage {

// Registers [p, p+len) and installs the handler if needed. Returns a guard id (>= 0), or -1 when
// the table is full (the mapping is then unguarded, as before).
[[nodiscard]] int guard_mapping(void* p, size_t len);
// Forgets a registration (before munmap). Ignores -1.
void unguard_mapping(int id);
// True once a fault inside the mapping was repaired with zero pages.
[[nodiscard]] bool mapping_damaged(int id);

}  // namespace sage
