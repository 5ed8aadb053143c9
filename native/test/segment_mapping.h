#pragma once
// Test support: a unique per-process queue name (removed at exit), a small queue created with it,
// and a second read-write mapping of a queue's whole segment, through which a test changes what
// another process could.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>

#include "check.h"
#include "sage_ring.h"

inline std::string uniq(const char* base) {
  std::string n = std::string("ctest-") + base + "-" + std::to_string(getpid());
  remove_at_exit(n);
  return n;
}

struct Mapping {
  uint8_t* base = nullptr;
  size_t size = 0;
  explicit Mapping(const std::string& name) {
    const int fd = shm_open(sage::shm_name_for(name).c_str(), O_RDWR | O_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    size = static_cast<size_t>(st.st_size);
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    CHECK(p != MAP_FAILED);
    base = static_cast<uint8_t*>(p);
  }
  ~Mapping() { munmap(base, size); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  sage::Header* header() const { return reinterpret_cast<sage::Header*>(base); }
};

// A 4 KiB queue created under `name`, sleeping at once in waits (no spin).
inline std::unique_ptr<sage::Queue> make(const std::string& name) {
  sage::CreateOptions o;
  o.capacity = 4096;
  std::unique_ptr<sage::Queue> q;
  int e = 0;
  CHECK(sage::Queue::open(name, sage::OpenMode::Create, o, &q, &e) == sage::Status::Ok);
  q->set_spin_ns(0);
  return q;
}
