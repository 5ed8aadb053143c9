// Segment lifecycle: names, create (under a private temporary name: O_EXCL, fallocate,
// initialise, "initialised" last, then link() into place), open (trust check on the descriptor,
// bounded wait for initialisation, header validation), unlink (by name, or only if the name still
// refers to this handle's segment), list, stale temporary names. Attaching a handle takes a slot
// (liveness.cpp).
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "fault_guard.h"
#include "futex.h"
#include "liveness.h"
#include "sage_ring.h"
#include "test_hooks.h"

namespace sage {

const char* const kShmPrefix = "sageq.";
const char* const kShmTempPrefix = "sageq-tmp.";

namespace {
constexpr const char* kShmDir = "/dev/shm/";
constexpr size_t kTempTagLen = 16;  // hex digits of the random part of a temporary name
}  // namespace

bool valid_queue_name(const std::string& name) {
  if (name.empty() || name.size() > kNameMax) return false;
  if (name == "." || name == "..") return false;
  if (name.find("..") != std::string::npos) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string shm_name_for(const std::string& name) { return std::string("/") + kShmPrefix + name; }

namespace {
std::string shm_path_for(const std::string& name) { return std::string(kShmDir) + kShmPrefix + name; }
}  // namespace

namespace {

Status errno_status(int e) {
  switch (e) {
    case EEXIST: return Status::Exists;
    case ENOENT: return Status::NotFound;
    case EACCES:
    case EPERM: return Status::PermissionDenied;
    case ENOSPC:
    case ENOMEM:
    case EFBIG: return Status::NoSpace;
    default: return Status::SystemError;
  }
}

uint64_t round_pow2(uint64_t v) {
  uint64_t p = kMinCapacity;
  while (p < v) p <<= 1;
  return p;
}

uint64_t data_offset() { return align_up(sizeof(Header), 4096); }

uint64_t random_nonce() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ monotonic_ns();
}

}  // namespace

Status check_trust(const struct stat& st, const TrustPolicy& policy) {
  if (!S_ISREG(st.st_mode)) return Status::NotOurs;
  const uint32_t owner = static_cast<uint32_t>(st.st_uid);
  bool trusted = owner == static_cast<uint32_t>(geteuid()) || owner == 0;
  for (uint32_t uid : policy.trusted_uids) trusted = trusted || uid == owner;
  if (!trusted) return Status::UntrustedOwner;
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !policy.allow_shared_mode) return Status::SharedMode;
  return Status::Ok;
}

Status Queue::unlink(const std::string& name, int* sys_errno) {
  if (!valid_queue_name(name)) return Status::InvalidName;
  if (shm_unlink(shm_name_for(name).c_str()) != 0) {
    if (sys_errno) *sys_errno = errno;
    return errno_status(errno);
  }
  return Status::Ok;
}

Status Queue::unlink_if_same(int* sys_errno) const {
  if (hdr_ == nullptr) return Status::InvalidArgument;
  struct stat st;
  // lstat: the name itself, whatever it is now (a symlink put in its place is another file too).
  if (lstat(shm_path_for(name_).c_str(), &st) != 0) {
    if (sys_errno) *sys_errno = errno;
    return errno_status(errno);
  }
  // Our mapping keeps our inode alive, so its number cannot have been reused by another file.
  if (st.st_dev != dev_ || st.st_ino != ino_) return Status::Replaced;
  if (shm_unlink(shm_name_for(name_).c_str()) != 0) {
    if (sys_errno) *sys_errno = errno;
    return errno_status(errno);
  }
  return Status::Ok;
}

std::vector<std::string> Queue::list() {
  std::vector<std::string> out;
  DIR* d = opendir(kShmDir);
  if (!d) return out;
  const size_t plen = strlen(kShmPrefix);
  while (dirent* e = readdir(d)) {
    if (strncmp(e->d_name, kShmPrefix, plen) == 0 && valid_queue_name(e->d_name + plen)) {
      out.emplace_back(e->d_name + plen);
    }
  }
  closedir(d);
  return out;
}

std::vector<std::string> Queue::collect_stale_temps(const std::vector<std::string>* only, bool dry_run) {
  std::vector<std::string> out;
  DIR* d = opendir(kShmDir);
  if (!d) return out;
  const size_t plen = strlen(kShmTempPrefix);
  while (dirent* e = readdir(d)) {
    const char* file = e->d_name;
    if (strncmp(file, kShmTempPrefix, plen) != 0) continue;
    const char* rest = file + plen;  // "<16 hex>.<queue name>"
    if (strlen(rest) < kTempTagLen + 2 || rest[kTempTagLen] != '.') continue;
    const std::string queue(rest + kTempTagLen + 1);
    if (!valid_queue_name(queue)) continue;
    if (only != nullptr && std::find(only->begin(), only->end(), queue) == only->end()) continue;
    // O_NONBLOCK|O_NOFOLLOW: whatever else was put under such a name is neither waited on nor followed.
    const int fd = openat(dirfd(d), file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    // A live creator holds the lock from just after creating the file until it has linked the
    // segment into place and removed this name: a free lock means the creator died. (A creator
    // that has created the file but not locked it yet finds its name gone when it links, and
    // starts over.)
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0) {
      if (dry_run || unlinkat(dirfd(d), file, 0) == 0) out.emplace_back(file);
    }
    ::close(fd);
  }
  closedir(d);
  return out;
}

Status Queue::open(const std::string& name, OpenMode mode, const CreateOptions& opts, std::unique_ptr<Queue>* out,
                   int* sys_errno, uint64_t init_wait_ms, const TrustPolicy& trust) {
  if (!valid_queue_name(name)) return Status::InvalidName;
  const std::string shm = shm_name_for(name);
  int err = 0;
  if (sys_errno) *sys_errno = 0;

  uint64_t cap = 0, max_msg = 0;
  const bool creating = mode == OpenMode::Create || mode == OpenMode::OpenOrCreate;
  if (creating) {
    if (opts.capacity == 0 || opts.capacity > kMaxCapacity || opts.mode > 0777 ||
        (opts.mode & 0600) != 0600 || opts.maxsize > (1ull << 48)) {
      return Status::InvalidArgument;
    }
    cap = round_pow2(opts.capacity);
    const uint64_t limit = cap / 2 - kRecordHeaderSize;
    // Explicit-ack records carry a LeaseMeta in front of the payload: the payload limit is smaller.
    const uint64_t meta = opts.ack_mode == kAckExplicit ? kLeaseMetaSize : 0;
    if (opts.ack_mode > kAckExplicit) return Status::InvalidArgument;
    if (meta != 0 && (opts.ack_timeout_ms < 1 || opts.ack_timeout_ms > 86400000ull || opts.max_deliveries < 1 ||
                      opts.max_deliveries > 1000000)) {
      return Status::InvalidArgument;
    }
    max_msg = opts.max_message_size == 0 ? cap / 4 - kRecordHeaderSize - meta : opts.max_message_size;
    if (max_msg + meta > limit) return Status::InvalidArgument;
  }

  for (int attempt = 0; attempt < 8; ++attempt) {
    if (creating) {
      Status s = create_linked(name, opts, cap, max_msg, out, &err);
      if (s == Status::Ok) return s;
      if (s != Status::Exists || mode == OpenMode::Create) {
        if (sys_errno) *sys_errno = err;
        return s;
      }
      err = 0;  // the name is taken: the existing queue wins, open it
    }

    // --- open an existing segment ---
    int fd = shm_open(shm.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      if (err == ENOENT && mode == OpenMode::OpenOrCreate) continue;  // raced with an unlink
      if (sys_errno) *sys_errno = err;
      return errno_status(err);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
      err = errno;
      ::close(fd);
      if (sys_errno) *sys_errno = err;
      return Status::SystemError;
    }
    // Trust is decided on this descriptor, before a byte of the segment is read: the name could
    // be swapped after any check on the path.
    const Status trusted = check_trust(st, trust);
    if (trusted == Status::NotOurs || (trusted != Status::Ok && mode != OpenMode::Inspect)) {
      ::close(fd);
      return trusted;
    }
    // An untrusted segment is only ever inspected, through a read-only mapping.
    const int prot = trusted == Status::Ok ? PROT_READ | PROT_WRITE : PROT_READ;
    const uint64_t deadline = monotonic_ns() + init_wait_ms * 1000000ull;
    Status result = Status::NotInitialised;
    for (;;) {
      if (fstat(fd, &st) != 0) {
        err = errno;
        result = Status::SystemError;
        break;
      }
      uint64_t magic = 0;
      if (pread(fd, &magic, sizeof magic, 0) == static_cast<ssize_t>(sizeof magic) && magic != 0 && magic != kMagic) {
        result = Status::NotOurs;  // whatever this file is, it is not one of ours
        break;
      }
      if (magic == kMagic && static_cast<uint64_t>(st.st_size) < sizeof(Header)) {
        // Ours (the creator reserves the whole size before writing the magic), then shrunk.
        result = Status::Truncated;
        break;
      }
      if (static_cast<uint64_t>(st.st_size) >= sizeof(Header)) {
        void* p = mmap(nullptr, static_cast<size_t>(st.st_size), prot, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
          err = errno;
          result = errno_status(err);
          break;
        }
        const int guard = guard_mapping(p, static_cast<size_t>(st.st_size));
        auto* h = static_cast<Header*>(p);
        if (h->initialised.load(std::memory_order_acquire) == 1) {
          const uint64_t size = static_cast<uint64_t>(st.st_size);
          if (mapping_damaged(guard)) {
            result = Status::Truncated;  // shrunk between fstat and our first look
          } else if (h->magic != kMagic) {
            result = Status::NotOurs;
          } else if (h->layout_version != SAGE_LAYOUT_VERSION || h->layout_signature != layout_signature()) {
            result = Status::VersionMismatch;
          } else if (h->segment_size > size) {
            result = Status::Truncated;  // shorter than its creator made it
          } else if (h->segment_size != size || h->capacity < kMinCapacity || h->capacity > kMaxCapacity ||
                     (h->capacity & (h->capacity - 1)) != 0 || h->data_offset != data_offset() ||
                     h->data_offset + h->capacity != size || h->ack_mode > kAckExplicit ||
                     h->max_message_size + (h->ack_mode == kAckExplicit ? kLeaseMetaSize : 0) > h->capacity / 2 - kRecordHeaderSize ||
                     h->slot_count != kMaxSlots) {
            result = Status::Corrupt;
          } else {
            std::unique_ptr<Queue> q(new Queue());
            q->hdr_ = h;
            q->guard_ = guard;
            q->data_ = static_cast<uint8_t*>(p) + h->data_offset;
            q->map_size_ = size;
            q->cap_ = h->capacity;
            q->mask_ = h->capacity - 1;
            q->max_msg_ = h->max_message_size;
            q->maxsize_ = h->maxsize;
            q->set_ack_mode(h->ack_mode == kAckExplicit, h->ack_timeout_ns);
            q->name_ = name;
            q->set_identity(st, trusted);
            result = mode == OpenMode::Inspect ? Status::Ok : q->attach_slot();
            if (result == Status::Ok && mapping_damaged(guard)) {
              q->release();  // unmaps it, or leaves it alone if a slot was attached in it
              ::close(fd);
              return Status::Truncated;
            } else if (result == Status::Ok) {
              ::close(fd);
              *out = std::move(q);
              return Status::Ok;
            } else {
              q->hdr_ = nullptr;
              q->guard_ = -1;
            }
          }
          unguard_mapping(guard);
          munmap(p, static_cast<size_t>(st.st_size));
          break;
        }
        const bool foreign = h->magic != 0 && h->magic != kMagic;
        const bool shrunk = mapping_damaged(guard);
        unguard_mapping(guard);
        munmap(p, static_cast<size_t>(st.st_size));  // nothing attached in it: safe to unmap
        if (shrunk) {
          result = Status::Truncated;
          break;
        }
        if (foreign) {
          result = Status::NotOurs;
          break;
        }
      }
      // Not initialised. This build never links an unfinished segment to a name (create_linked),
      // but a build of the same layout that created segments in place did, holding flock until
      // "initialised": if that lock is free, the creator died and waiting longer is pointless.
      if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
        struct stat st2;
        if (fstat(fd, &st2) == 0 && static_cast<uint64_t>(st2.st_size) >= sizeof(Header)) {
          void* p = mmap(nullptr, sizeof(Header), PROT_READ, MAP_SHARED, fd, 0);
          const int guard = p != MAP_FAILED ? guard_mapping(p, sizeof(Header)) : -1;
          bool init = p != MAP_FAILED && static_cast<Header*>(p)->initialised.load(std::memory_order_acquire) == 1;
          const bool shrunk = mapping_damaged(guard);
          unguard_mapping(guard);
          if (p != MAP_FAILED) munmap(p, sizeof(Header));
          if (shrunk) {
            result = Status::Truncated;
            break;
          }
          if (init) continue;  // finished between our two looks
        }
        // Its creator died before finishing (or it is a foreign empty file).
        result = Status::NotInitialised;
        break;
      }
      if (monotonic_ns() > deadline) {
        result = Status::Initialising;  // the creator still holds its lock: alive, not finished
        break;
      }
      usleep(1000);
    }
    ::close(fd);
    if (sys_errno) *sys_errno = err;
    return result;
  }
  return Status::SystemError;
}

// Builds a complete segment under a private temporary name in /dev/shm and links it to the
// queue's name without replacing anything: Exists when the name is taken (the temporary name is
// removed and nothing of ours stays). The temporary file is flock()ed from creation until it is
// linked and its temporary name removed, so `collect_stale_temps` can tell a live creator's temp
// from a dead one's.
Status Queue::create_linked(const std::string& name, const CreateOptions& opts, uint64_t cap, uint64_t max_msg,
                            std::unique_ptr<Queue>* out, int* sys_errno) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    char tag[kTempTagLen + 1];
    snprintf(tag, sizeof tag, "%016llx", static_cast<unsigned long long>(random_nonce()));
    const std::string temp = std::string(kShmTempPrefix) + tag + "." + name;
    const std::string temp_shm = "/" + temp;
    const std::string temp_path = std::string(kShmDir) + temp;
    int fd = shm_open(temp_shm.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, opts.mode);
    if (fd < 0) {
      if (errno == EEXIST) continue;  // 64 random bits taken: draw again
      *sys_errno = errno;
      return errno_status(errno);
    }
    // Undoes everything: the temporary name and descriptor (the mapping is the caller's).
    auto abandon = [&](int e) {
      shm_unlink(temp_shm.c_str());
      ::close(fd);
      *sys_errno = e;
    };
    // fchmod: the umask must not weaken or widen the requested mode. A failure of either on the
    // descriptor we just created is a system error.
    if (flock(fd, LOCK_EX) != 0 || fchmod(fd, opts.mode) != 0) {
      abandon(errno);
      return Status::SystemError;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
      abandon(errno);
      return Status::SystemError;
    }
    const uint64_t size = data_offset() + cap;
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(size));
    void* p = rc == 0 ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (p == MAP_FAILED) {
      const int e = rc != 0 ? rc : errno;
      abandon(e);
      return e == ENOSPC || e == ENOMEM || e == EFBIG ? Status::NoSpace : errno_status(e);
    }
    // Guarded from here on: a truncation by another process is a typed error, not SIGBUS.
    const int guard = guard_mapping(p, size);
    auto* h = static_cast<Header*>(p);
    h->magic = kMagic;
    h->layout_version = SAGE_LAYOUT_VERSION;
    h->layout_signature = layout_signature();
    h->segment_size = size;
    h->capacity = cap;
    h->max_message_size = max_msg;
    h->maxsize = opts.maxsize;
    h->nonce = random_nonce();
    h->created_ns = realtime_ns();
    h->codec = opts.codec;
    h->mode = opts.mode;
    h->ack_mode = opts.ack_mode;
    h->max_deliveries = opts.ack_mode == kAckExplicit ? opts.max_deliveries : 0;
    h->ack_timeout_ns = opts.ack_mode == kAckExplicit ? opts.ack_timeout_ms * 1000000ull : 0;
    h->data_offset = static_cast<uint32_t>(data_offset());
    h->slot_count = kMaxSlots;
    memcpy(h->name, name.data(), name.size());
    if (!init_robust_mutex(&h->prod_lock) || !init_robust_mutex(&h->cons_lock)) {
      unguard_mapping(guard);
      munmap(p, size);
      abandon(0);
      return Status::SystemError;
    }
    std::unique_ptr<Queue> q(new Queue());
    q->hdr_ = h;
    q->guard_ = guard;
    q->data_ = static_cast<uint8_t*>(p) + data_offset();
    q->map_size_ = size;
    q->cap_ = cap;
    q->mask_ = cap - 1;
    q->max_msg_ = max_msg;
    q->maxsize_ = opts.maxsize;
    q->set_ack_mode(h->ack_mode == kAckExplicit, h->ack_timeout_ns);
    q->name_ = name;
    q->set_identity(st, Status::Ok);
    Status s = q->attach_slot();
    if (s != Status::Ok) {
      q->hdr_ = nullptr;
      q->guard_ = -1;
      unguard_mapping(guard);
      munmap(p, size);
      abandon(0);
      return s;
    }
    q->hdr_->slots[q->slot_].role.fetch_or(kRoleCreator, std::memory_order_relaxed);
    SAGE_HOOK(MidCreate);  // test builds: park here, half made, to be killed
    h->initialised.store(1, std::memory_order_release);  // last: openers acquire this

    // The name appears only now, pointing at the finished segment; link() never replaces.
    const int linked = link(temp_path.c_str(), shm_path_for(name).c_str());
    const int link_errno = linked == 0 ? 0 : errno;
    shm_unlink(temp_shm.c_str());  // either way the temporary name goes
    flock(fd, LOCK_UN);
    ::close(fd);
    if (linked == 0) {
      *out = std::move(q);
      return Status::Ok;
    }
    q->release();  // gives the slot back and unmaps; the file goes with its last name
    // ENOENT: a collector took our temporary file for a dead creator's before we locked it.
    if (link_errno == ENOENT) continue;
    *sys_errno = link_errno;
    return link_errno == EEXIST ? Status::Exists : errno_status(link_errno);
  }
  return Status::SystemError;
}

void Queue::set_identity(const struct stat& st, Status trust) {
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  file_uid_ = static_cast<uint32_t>(st.st_uid);
  file_mode_ = static_cast<uint32_t>(st.st_mode & 07777);
  trust_ = trust;
}

Status Queue::attach_slot() {
  watch_forks();
  fork_gen_ = fork_generation();
  pid_ = getpid();
  SlotClaim claim;
  switch (claim_slot(hdr_, &claim)) {
    case ClaimResult::Ok:
      slot_ = claim.index;
      owner_ = claim.owner;
      attached_ = true;
      // Explicit acks: a handle that attaches (e.g. a replacement for a consumer that died) scans
      // the leases on its first get, so a dead holder's messages come before anything newer.
      if (ack_) hdr_->lease_check_ns.store(0, std::memory_order_release);
      return Status::Ok;
    case ClaimResult::NoSlots: return Status::NoSlots;
    case ClaimResult::SystemError: return Status::SystemError;
  }
  return Status::SystemError;
}

}  // namespace sage
