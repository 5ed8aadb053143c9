// Segment identity and trust in the core: the trust policy checked on the open descriptor (owner,
// group/other write), Inspect of an untrusted segment (read-only, slots not probed),
// unlink_if_same against a replaced name, and the temporary names of atomic creation (never
// listed; collected only when their creator's lock is free).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "sage_ring.h"

using sage::OpenMode;
using sage::Queue;
using sage::Status;
using sage::TrustPolicy;

namespace {

std::string path_of(const std::string& name) { return "/dev/shm/sageq." + name; }

bool listed(const std::string& name) {
  const std::vector<std::string> names = Queue::list();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::unique_ptr<Queue> create(const std::string& name, uint32_t mode = 0600) {
  std::unique_ptr<Queue> q;
  int err = 0;
  sage::CreateOptions o;
  o.capacity = 4096;
  o.mode = mode;
  CHECK(Queue::open(name, OpenMode::Create, o, &q, &err) == Status::Ok);
  return q;
}

Status open_with(const std::string& name, OpenMode mode, const TrustPolicy& t, std::unique_ptr<Queue>* q) {
  int err = 0;
  return Queue::open(name, mode, sage::CreateOptions{}, q, &err, 0, t);
}

void trust_policy() {
  const std::string name = "test-trust-" + std::to_string(getpid());
  remove_at_exit(name);
  auto owner = create(name);
  std::unique_ptr<Queue> q;

  // Group/other may write: refused unless allowed.
  CHECK(chmod(path_of(name).c_str(), 0666) == 0);
  CHECK(open_with(name, OpenMode::Open, TrustPolicy{}, &q) == Status::SharedMode);
  CHECK(open_with(name, OpenMode::OpenOrCreate, TrustPolicy{}, &q) == Status::SharedMode);
  TrustPolicy shared;
  shared.allow_shared_mode = true;
  CHECK(open_with(name, OpenMode::Open, shared, &q) == Status::Ok);
  q.reset();
  CHECK(chmod(path_of(name).c_str(), 0640) == 0);  // group may read: not a write, allowed
  CHECK(open_with(name, OpenMode::Open, TrustPolicy{}, &q) == Status::Ok);
  q.reset();

  // Another owner (needs root to give the file away).
  if (geteuid() == 0) {
    CHECK(chown(path_of(name).c_str(), 65534, 65534) == 0);
    CHECK(open_with(name, OpenMode::Open, TrustPolicy{}, &q) == Status::UntrustedOwner);
    CHECK(open_with(name, OpenMode::OpenOrCreate, TrustPolicy{}, &q) == Status::UntrustedOwner);
    TrustPolicy other;
    other.trusted_uids = {1234, 65534};
    CHECK(open_with(name, OpenMode::Open, other, &q) == Status::Ok);
    q.reset();
    // The owner is checked before the mode.
    CHECK(chmod(path_of(name).c_str(), 0666) == 0);
    CHECK(open_with(name, OpenMode::Open, shared, &q) == Status::UntrustedOwner);
    CHECK(open_with(name, OpenMode::Open, other, &q) == Status::SharedMode);

    // Inspect still shows it, read-only, with the reason, and probes no slot.
    CHECK(open_with(name, OpenMode::Inspect, TrustPolicy{}, &q) == Status::Ok);
    sage::Stats st = q->stats();
    CHECK(st.trust == Status::UntrustedOwner);
    CHECK_EQ(st.file_uid, 65534u);
    CHECK_EQ(st.file_mode, 0666u);
    CHECK_EQ(st.slots.size(), 1u);
    CHECK(!st.slots[0].alive);  // not probed (its creator, `owner`, is alive)
    q.reset();
    CHECK(chown(path_of(name).c_str(), 0, 0) == 0);
    CHECK(chmod(path_of(name).c_str(), 0600) == 0);
    CHECK(open_with(name, OpenMode::Inspect, TrustPolicy{}, &q) == Status::Ok);
    st = q->stats();
    CHECK(st.trust == Status::Ok);
    CHECK(st.slots[0].alive);
    q.reset();
  } else {
    std::printf("test_segment_trust: not root, owner checks skipped\n");
  }
  owner.reset();
  int err = 0;
  CHECK(Queue::unlink(name, &err) == Status::Ok);
}

void unlink_if_same() {
  const std::string name = "test-replaced-" + std::to_string(getpid());
  remove_at_exit(name);
  auto stale = create(name);
  int err = 0;
  CHECK(Queue::unlink(name, &err) == Status::Ok);
  CHECK(stale->unlink_if_same(&err) == Status::NotFound);
  auto fresh = create(name);
  CHECK(stale->unlink_if_same(&err) == Status::Replaced);  // someone else's queue now
  CHECK(listed(name));
  CHECK(fresh->unlink_if_same(&err) == Status::Ok);
  CHECK(!listed(name));
}

void temporary_names() {
  const std::string name = "test-temp-" + std::to_string(getpid());
  remove_at_exit(name);
  const std::string dead = "sageq-tmp.00000000000000aa." + name;
  const std::string live = "sageq-tmp.00000000000000bb." + name;
  const std::string other = "sageq-tmp.00000000000000cc." + name + "x";
  for (const std::string& f : {dead, live, other}) {
    int fd = open(("/dev/shm/" + f).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    close(fd);
  }
  // A live creator holds its temp's lock (another open file description: flock is per description).
  int held = open(("/dev/shm/" + live).c_str(), O_RDWR | O_CLOEXEC);
  CHECK(held >= 0);
  CHECK(flock(held, LOCK_EX) == 0);
  CHECK(!listed(name));

  const std::vector<std::string> only = {name};
  std::vector<std::string> found = Queue::collect_stale_temps(&only, true);
  CHECK(found == std::vector<std::string>{dead});
  CHECK(access(("/dev/shm/" + dead).c_str(), F_OK) == 0);  // dry run
  found = Queue::collect_stale_temps(&only, false);
  CHECK(found == std::vector<std::string>{dead});
  CHECK(access(("/dev/shm/" + dead).c_str(), F_OK) != 0);
  CHECK(access(("/dev/shm/" + live).c_str(), F_OK) == 0);
  CHECK(access(("/dev/shm/" + other).c_str(), F_OK) == 0);  // another queue's, not asked for
  close(held);
  const std::vector<std::string> both = {name, name + "x"};
  found = Queue::collect_stale_temps(&both, false);
  std::sort(found.begin(), found.end());
  CHECK((found == std::vector<std::string>{live, other}));

  // A creation leaves no temporary name behind, and a taken name makes Create fail cleanly.
  auto q = create(name);
  std::unique_ptr<Queue> again;
  int err = 0;
  sage::CreateOptions o;
  o.capacity = 4096;
  CHECK(Queue::open(name, OpenMode::Create, o, &again, &err) == Status::Exists);
  CHECK(Queue::open(name, OpenMode::OpenOrCreate, o, &again, &err) == Status::Ok);
  CHECK(again->stats().slots.size() == 2);
  CHECK(Queue::collect_stale_temps(&only, true).empty());
  again.reset();
  q.reset();
  CHECK(Queue::unlink(name, &err) == Status::Ok);
}

}  // namespace

int main() {
  trust_policy();
  unlink_if_same();
  temporary_names();
  std::printf("test_segment_trust: ok\n");
  return 0;
}
