// Replays every kept fuzz input (native/fuzz/corpus and native/fuzz/crashes) through the fuzz
// target's entry point, without libFuzzer: the sanitizer trees of `npm test` check each of them
// (an out-of-bounds access or undefined behaviour aborts under ASan/UBSan; a violated invariant
// aborts in the target). A watchdog turns a hang into a failure naming the input.
//
// Usage: test_fuzz_regressions [DIR_OR_FILE...]   (default: the two directories of this checkout)
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/fuzz_queue.h"
#include "check.h"

#ifndef SAGE_FUZZ_DIR
#error "SAGE_FUZZ_DIR must name native/fuzz (CMakeLists.txt passes it)"
#endif

namespace {

const char* g_current = "";

void on_alarm(int) {
  // Async-signal-safe: write(2) only.
  const char* a = "test_fuzz_regressions: input hung (watchdog): ";
  if (write(2, a, strlen(a)) < 0 || write(2, g_current, strlen(g_current)) < 0 || write(2, "\n", 1) < 0) {
  }
  sage_fuzz::cleanup();
  _exit(3);
}

void collect(const std::string& path, std::vector<std::string>* out, bool must_exist) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (must_exist) {
      std::fprintf(stderr, "test_fuzz_regressions: %s does not exist\n", path.c_str());
      std::exit(1);
    }
    return;
  }
  if (S_ISREG(st.st_mode)) {
    out->push_back(path);
    return;
  }
  DIR* d = opendir(path.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;  // ".", "..", ".gitkeep"
    const std::string p = path + "/" + e->d_name;
    if (stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) out->push_back(p);
  }
  closedir(d);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  size_t corpus = 0, crashes = 0;
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) collect(argv[i], &files, true);
  } else {
    collect(std::string(SAGE_FUZZ_DIR) + "/corpus", &files, true);
    corpus = files.size();
    collect(std::string(SAGE_FUZZ_DIR) + "/crashes", &files, false);
    crashes = files.size() - corpus;
    // An empty corpus would make this test pass vacuously (e.g. a wrong SAGE_FUZZ_DIR).
    CHECK(corpus > 0);
  }
  std::sort(files.begin(), files.end());
  signal(SIGALRM, on_alarm);
  size_t bytes = 0;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    g_current = f.c_str();
    alarm(30);
    sage_fuzz::run_one(data.data(), data.size());
    alarm(0);
    bytes += data.size();
  }
  sage_fuzz::cleanup();
  std::printf("test_fuzz_regressions: replayed %zu inputs (%zu corpus, %zu crash regressions, %zu bytes)\n", files.size(),
              corpus, crashes, bytes);
  return 0;
}
