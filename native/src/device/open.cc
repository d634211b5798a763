// URI parsing, the device allow list and rules (rules.h), and opening with O_DIRECT (buffered
// fallback). The URI grammar:
//   file:///abs/path[?size_mib=N]   a regular file (created or extended with size_mib)
//   uring:///dev/NAME                a block device
//   malloc:///name[?size_mib=N]      a RAM device (created with size_mib)
//   nvmf://HOST:PORT/NQN[?...]       a remote namespace (nvmf_device.h)
//   zoned://?base=<percent-encoded URI>&zone_mib=N[&max_open=N][&max_active=N]
//                                    NVMe ZNS rules over any of the above (zoned_device.h)
//   fdp://?base=<percent-encoded URI>&handles=N[&ru_mib=N][&op_percent=N]
//                                    NVMe FDP placement handles over a plain device (fdp_device.h)
//   ftl://?cache=<percent-encoded URI>&base=<percent-encoded URI>
//                                    a CSAL tiered device (ftl/ftl_device.h); opened, never created here
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "device/device.h"
#include "device/rules.h"
#include "device/uri.h"
#include "device/file_device.h"
#include "device/malloc_device.h"
#include "device/nvmf_device.h"
#include "device/fdp_device.h"
#include "device/zoned_device.h"
#include "ftl/ftl_device.h"
#include "pool/format.h"
#include "util/aligned_buffer.h"

namespace strata {
namespace {

constexpr const char* kSupportedSchemes = "file:///path[?size_mib=N], uring:///dev/NAME, malloc:///name?size_mib=N, nvmf://HOST:PORT/NQN, nvmf+rdma://HOST:PORT/NQN, zoned://?base=URI&zone_mib=N, fdp://?base=URI&handles=N, ftl://?cache=URI&base=URI";
constexpr const char* kAllowRule =
    "only regular files and block devices with major 7, 8, 43, 259 or 240-255 may hold a pool";
constexpr uint64_t kMaxSizeMib = uint64_t{1} << 30;  // 1 PiB: a limit on everything

struct ParsedUri {
  std::string scheme;  // file, uring, malloc
  std::string path;    // file/uring: absolute path; malloc: name
  std::optional<uint64_t> size_mib;
};

Result<ParsedUri> parse_uri(const std::string& uri) {
  auto sep = uri.find("://");
  if (sep == std::string::npos) {
    return Error{ErrorCode::kInvalidArgument, str("device URI '", uri, "' has no scheme; supported: ", kSupportedSchemes)};
  }
  ParsedUri out;
  out.scheme = uri.substr(0, sep);
  if (out.scheme != "file" && out.scheme != "uring" && out.scheme != "malloc") {
    return Error{ErrorCode::kInvalidArgument,
                 str("device URI '", uri, "' has unsupported scheme '", out.scheme, "'; supported: ", kSupportedSchemes)};
  }
  std::string rest = uri.substr(sep + 3);
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.empty() || rest[0] != '/' || rest.size() < 2) {
    return Error{ErrorCode::kInvalidArgument, str("device URI '", uri, "' needs an absolute path after ", out.scheme,
                                                  ":// (three slashes), e.g. ", out.scheme == "malloc" ? "malloc:///disk0?size_mib=64" : "file:///var/lib/strata/disk.img")};
  }
  out.path = out.scheme == "malloc" ? rest.substr(1) : rest;
  if (out.scheme == "malloc" && out.path.find('/') != std::string::npos) {
    return Error{ErrorCode::kInvalidArgument, str("malloc device name '", out.path, "' in '", uri, "' must not contain '/'")};
  }
  for (const auto& [key, value] : query_params(query)) {
    if (key != "size_mib" || out.scheme == "uring") {
      return Error{ErrorCode::kInvalidArgument, str("device URI '", uri, "' has unknown parameter '", key, "'; ",
                                                    out.scheme == "uring" ? "uring:// takes none" : "the only one is size_mib")};
    }
    auto n = parse_whole_number(value, 1, kMaxSizeMib);
    if (!n) return Error{ErrorCode::kInvalidArgument, str("size_mib in '", uri, "' must be an integer from 1 to ", kMaxSizeMib, ", got '", value, "'")};
    out.size_mib = *n;
  }
  return out;
}

bool major_allowed(unsigned major_number) {
  return major_number == 7 || major_number == 8 || major_number == 43 || major_number == 259 ||
         (major_number >= 240 && major_number <= 255);
}

Status check_allowed(const std::string& path, const struct stat& st) {
  if (S_ISREG(st.st_mode)) return Status();
  if (S_ISBLK(st.st_mode)) {
    if (major_allowed(major(st.st_rdev))) return Status();
    return Status(ErrorCode::kPermissionDenied, str("device ", path, " (major ", major(st.st_rdev), ") is not allowed: ", kAllowRule));
  }
  const char* what = S_ISDIR(st.st_mode) ? "a directory" : S_ISCHR(st.st_mode) ? "a character device" : "not a regular file or block device";
  std::string numbers = S_ISCHR(st.st_mode) ? str(" (major ", major(st.st_rdev), ")") : "";
  return Status(ErrorCode::kPermissionDenied, str("device ", path, numbers, " is ", what, " and not allowed: ", kAllowRule));
}

// ---- regular files: only inside the device directories ------------------------------------

std::mutex g_device_dirs_mutex;
std::optional<std::vector<std::string>> g_device_dirs;  // resolved; nullopt: no directory rule

std::string join_dirs(const std::vector<std::string>& dirs) {
  std::string out;
  for (const auto& d : dirs) out += (out.empty() ? "" : ", ") + d;
  return out.empty() ? "none" : out;
}

// `resolved` has no symlinks; so a prefix match means the file really is inside the directory.
Status check_in_device_dirs(const std::string& path, const std::string& resolved) {
  std::lock_guard<std::mutex> lock(g_device_dirs_mutex);
  if (!g_device_dirs) return Status();
  for (const std::string& dir : *g_device_dirs) {
    if (dir == "/" || resolved == dir || resolved.rfind(dir + "/", 0) == 0) return Status();
  }
  std::string via = resolved == path ? "" : str(" (it resolves to ", resolved, ")");
  return Status(ErrorCode::kInvalidArgument,
                str("file ", path, via, " is outside the engine's device directories (", join_dirs(*g_device_dirs),
                    "): pool files must live there so a typo cannot format a system file; put the file in one of them, or start "
                    "the engine with --device-dir naming its directory"));
}

// The path with every symlink resolved; for a file that does not exist yet, its directory's.
Result<std::string> resolve_path(const std::string& path, bool may_not_exist) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) != nullptr) return std::string(resolved);
  if (errno != ENOENT || !may_not_exist) {
    if (errno == ENOENT) return Error{ErrorCode::kNotFound, str("device ", path, " does not exist")};
    return Error{ErrorCode::kIoError, str("cannot resolve ", path, ": ", std::strerror(errno))};
  }
  auto slash = path.rfind('/');
  std::string dir = slash == 0 ? "/" : path.substr(0, slash), base = path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") return Error{ErrorCode::kInvalidArgument, str("device path ", path, " does not name a file")};
  if (realpath(dir.c_str(), resolved) == nullptr) {
    return Error{errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIoError, str("directory ", dir, " of ", path, " cannot be resolved: ", std::strerror(errno))};
  }
  std::string parent(resolved);
  return parent == "/" ? "/" + base : parent + "/" + base;
}

// ---- block devices: not mounted, not in use ------------------------------------------------

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// The device itself and its partitions: sysfs lists each partition as a child directory of the
// disk holding a "partition" file and a "dev" file (major:minor).
std::set<std::string> device_and_partitions(unsigned major_number, unsigned minor_number) {
  std::set<std::string> out{str(major_number, ":", minor_number)};
  char resolved[PATH_MAX];
  if (realpath(str("/sys/dev/block/", major_number, ":", minor_number).c_str(), resolved) == nullptr) return out;
  DIR* dir = opendir(resolved);
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string child = str(resolved, "/", entry->d_name);
    if (access((child + "/partition").c_str(), F_OK) != 0) continue;
    std::string dev = read_line(child + "/dev");
    if (!dev.empty()) out.insert(dev);
  }
  closedir(dir);
  return out;
}

// Where the device or one of its partitions is mounted. mountinfo's third field is the
// filesystem's major:minor; btrfs (and others) report an anonymous 0:N there, so the mount
// source after " - fstype " is compared too when it is a block device node.
std::optional<std::string> mounted_at(unsigned major_number, unsigned minor_number) {
  const std::set<std::string> ours = device_and_partitions(major_number, minor_number);
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    if (!(fields >> id >> parent >> dev >> root >> mount_point)) continue;
    if (ours.count(dev)) return str(mount_point, " (device ", dev, ")");
    auto separator = line.find(" - ");
    if (separator == std::string::npos) continue;
    std::istringstream tail(line.substr(separator + 3));
    std::string fstype, source;
    struct stat st {};
    if (tail >> fstype >> source && source.rfind("/dev/", 0) == 0 && stat(source.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
      const std::string source_dev = str(major(st.st_rdev), ":", minor(st.st_rdev));
      if (ours.count(source_dev)) return str(mount_point, " (device ", source_dev, ")");
    }
  }
  return std::nullopt;
}

Result<std::unique_ptr<Device>> open_malloc(const std::string& uri, const ParsedUri& parsed, bool may_create) {
  uint64_t size_bytes = parsed.size_mib.value_or(0) << 20;
  auto store_or = malloc_store(parsed.path, size_bytes, may_create && parsed.size_mib.has_value());
  if (!store_or.ok()) {
    if (store_or.error().code != ErrorCode::kNotFound) return store_or.error();
    return Error{ErrorCode::kNotFound, str("malloc device '", parsed.path, "' does not exist",
                                           may_create ? "; add ?size_mib=N to create it" : "")};
  }
  std::shared_ptr<MallocStore> store = store_or.value();
  if (parsed.size_mib && store->bytes.size() != size_bytes) {
    return Error{ErrorCode::kInvalidArgument, str("malloc device '", parsed.path, "' exists with ", store->bytes.size() >> 20,
                                                  " MiB, not ", *parsed.size_mib, " MiB; drop size_mib or use the existing size")};
  }
  (void)uri;
  DeviceDescription d{"malloc:///" + parsed.path, DeviceKind::kMalloc, "", "malloc:" + parsed.path, store->bytes.size(), 512, "", false};
  return std::unique_ptr<Device>(new MallocDevice(std::move(d), std::move(store)));
}

}  // namespace

Status set_file_device_dirs(const std::optional<std::vector<std::string>>& dirs) {
  std::optional<std::vector<std::string>> resolved;
  if (dirs) {
    resolved.emplace();
    for (const std::string& dir : *dirs) {
      char buf[PATH_MAX];
      struct stat st {};
      if (dir.empty() || dir[0] != '/') return Status(ErrorCode::kInvalidArgument, str("device directory '", dir, "' must be an absolute path"));
      if (realpath(dir.c_str(), buf) == nullptr || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return Status(ErrorCode::kInvalidArgument, str("device directory ", dir, " is not a directory that exists; create it first"));
      }
      resolved->push_back(buf);
    }
  }
  std::lock_guard<std::mutex> lock(g_device_dirs_mutex);
  g_device_dirs = std::move(resolved);
  return Status();
}

namespace {

// Bytes read from the start of a device to look for signatures: past btrfs's superblock at
// 64 KiB and swap's label at the end of a 64 KiB page.
constexpr uint64_t kSignatureProbeBytes = 128 * 1024;

bool bytes_at(const uint8_t* buf, uint64_t have_bytes, uint64_t offset, const void* magic, size_t magic_bytes) {
  return offset + magic_bytes <= have_bytes && std::memcmp(buf + offset, magic, magic_bytes) == 0;
}

std::optional<std::string> match_signature(const uint8_t* b, uint64_t n, uint32_t block_size_bytes) {
  // GPT header at LBA 1 (512- or 4096-byte sectors). Checked before MBR: a GPT disk also has a
  // protective MBR, and "GPT" is the better name for it.
  for (uint64_t lba1 : {uint64_t{512}, uint64_t{4096}, uint64_t{block_size_bytes}}) {
    if (bytes_at(b, n, lba1, "EFI PART", 8)) return str("a GPT partition table (\"EFI PART\" at byte ", lba1, ")");
  }
  if (n >= 512 && b[510] == 0x55 && b[511] == 0xAA) {
    for (int i = 0; i < 4; i++) {
      const uint8_t* entry = b + 446 + 16 * i;
      if (entry[4] != 0) {
        char type[8];
        std::snprintf(type, sizeof type, "0x%02X", entry[4]);
        return str("an MBR partition table (0x55AA at byte 510, partition ", i + 1, " of type ", type, ")");
      }
    }
  }
  if (n >= 1082 && b[1080] == 0x53 && b[1081] == 0xEF) return std::string("an ext2/3/4 filesystem (magic 0xEF53 at byte 1080)");
  if (bytes_at(b, n, 0, "XFSB", 4)) return std::string("an XFS filesystem (\"XFSB\" at byte 0)");
  if (bytes_at(b, n, 65536 + 64, "_BHRfS_M", 8)) return std::string("a btrfs filesystem (\"_BHRfS_M\" at byte 65600)");
  for (uint64_t sector = 0; sector < 4; sector++) {
    if (bytes_at(b, n, sector * 512, "LABELONE", 8)) return str("an LVM2 physical volume (\"LABELONE\" at byte ", sector * 512, ")");
  }
  if (bytes_at(b, n, 0, "LUKS\xba\xbe", 6)) return std::string("a LUKS encrypted volume (magic at byte 0)");
  const uint8_t md_magic[4] = {0xfc, 0x4e, 0x2b, 0xa9};  // 0xa92b4efc little-endian: MD RAID superblock 1.1 / 1.2
  for (uint64_t offset : {uint64_t{0}, uint64_t{4096}}) {
    if (bytes_at(b, n, offset, md_magic, 4)) return str("an MD RAID member (superblock magic 0xa92b4efc at byte ", offset, ")");
  }
  for (uint64_t page : {uint64_t{4096}, uint64_t{8192}, uint64_t{16384}, uint64_t{65536}}) {
    for (const char* magic : {"SWAPSPACE2", "SWAP-SPACE"}) {
      if (bytes_at(b, n, page - 10, magic, 10)) return str("a swap area (\"", magic, "\" at byte ", page - 10, ")");
    }
  }
  return std::nullopt;
}

}  // namespace

Result<std::optional<std::string>> find_foreign_signature(Device& device) {
  const uint32_t block = device.description().block_size_bytes;
  uint64_t probe_bytes = std::min(kSignatureProbeBytes, device.size_bytes());
  probe_bytes -= probe_bytes % block;
  if (probe_bytes == 0) return std::optional<std::string>();
  AlignedBuffer buf(probe_bytes);
  if (Status s = device.read_sync(0, probe_bytes, buf.data()); !s.ok()) return s.error();
  if (std::memcmp(buf.data(), format::kSuperblockMagic, 8) == 0) return std::optional<std::string>();  // ours
  return match_signature(buf.data(), probe_bytes, block);
}

const char* device_kind_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kFile: return "file";
    case DeviceKind::kBlock: return "block";
    case DeviceKind::kMalloc: return "malloc";
  }
  return "file";
}

Result<std::unique_ptr<Device>> open_device(const std::string& uri, bool may_create) {
  if (uri.rfind("nvmf://", 0) == 0 || uri.rfind("nvmf+rdma://", 0) == 0) return NvmfDevice::open(uri);  // remote namespace through the initiator
  if (uri.rfind("zoned://", 0) == 0) return open_zoned_device(uri, may_create);  // ZNS rules over another device
  if (uri.rfind("fdp://", 0) == 0) return open_fdp_device(uri, may_create);      // FDP placement over another device
  if (uri.rfind("ftl://", 0) == 0) return open_ftl_device(uri, may_create);      // CSAL tiered device (ftl/ftl_device.h)
  auto parsed_or = parse_uri(uri);
  if (!parsed_or.ok()) return parsed_or.error();
  const ParsedUri& parsed = parsed_or.value();
  if (parsed.scheme == "malloc") return open_malloc(uri, parsed, may_create);

  const std::string& path = parsed.path;
  // Everything below works on the resolved path, so the directory rule judges the file that is
  // really opened, not a symlink to it.
  auto resolved_or = resolve_path(path, /*may_not_exist=*/true);
  if (!resolved_or.ok()) return resolved_or.error();
  const std::string resolved = resolved_or.value();
  struct stat st {};
  if (stat(resolved.c_str(), &st) != 0) {
    if (errno != ENOENT) return Error{ErrorCode::kIoError, str("cannot stat ", path, ": ", std::strerror(errno))};
    if (parsed.scheme == "uring" || !parsed.size_mib) {
      return Error{ErrorCode::kNotFound, str("device ", path, " does not exist",
                                             parsed.scheme == "file" && may_create ? "; add ?size_mib=N to the URI to create the file" : "")};
    }
    if (!may_create) return Error{ErrorCode::kNotFound, str("device ", path, " does not exist")};
    if (Status in_dirs = check_in_device_dirs(path, resolved); !in_dirs.ok()) return in_dirs.error();
    int fd = open(resolved.c_str(), O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return Error{ErrorCode::kIoError, str("cannot create ", path, ": ", std::strerror(errno))};
    close(fd);
    if (stat(resolved.c_str(), &st) != 0) return Error{ErrorCode::kIoError, str("cannot stat ", path, ": ", std::strerror(errno))};
  }
  if (S_ISREG(st.st_mode)) {
    if (Status in_dirs = check_in_device_dirs(path, resolved); !in_dirs.ok()) return in_dirs.error();
  }
  if (Status allowed = check_allowed(path, st); !allowed.ok()) return allowed.error();
  if (parsed.scheme == "uring" && !S_ISBLK(st.st_mode)) {
    return Error{ErrorCode::kInvalidArgument, str(path, " is a regular file; uring:// is for block devices, use file://", path)};
  }
  if (parsed.scheme == "file" && S_ISBLK(st.st_mode)) {
    return Error{ErrorCode::kInvalidArgument, str(path, " is a block device; use uring://", path)};
  }
  if (S_ISBLK(st.st_mode)) {
    if (auto where = mounted_at(major(st.st_rdev), minor(st.st_rdev))) {
      return Error{ErrorCode::kFailedPrecondition, str("block device ", path, " is mounted at ", *where,
                                                       "; a pool would destroy that filesystem. Unmount it first if it really is meant for Strata "
                                                       "(force does not override this)")};
    }
  }

  // O_EXCL on a block device fails with EBUSY while anyone else holds it exclusively: a mounted
  // filesystem, swap, RAID/LVM/device-mapper, another pool. O_NOFOLLOW: the resolved path has no
  // symlink left, so one appearing now is a race to be refused.
  const int exclusive = S_ISBLK(st.st_mode) ? O_EXCL : 0;
  bool direct = true;
  int fd = open(resolved.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT | O_NOFOLLOW | exclusive);
  if (fd < 0 && errno == EINVAL) {
    // The filesystem refuses O_DIRECT (tmpfs, some FUSE): buffered I/O still works; flush makes it durable.
    direct = false;
    fd = open(resolved.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | exclusive);
  }
  if (fd < 0) {
    if (errno == EBUSY && exclusive) {
      return Error{ErrorCode::kFailedPrecondition, str("block device ", path, " is in use (mounted, swap, part of RAID/LVM/device-mapper, ",
                                                       "or opened exclusively by another program or pool); free it first (lsblk, ",
                                                       "/proc/swaps, dmsetup ls show who holds it)")};
    }
    if (errno == ELOOP) return Error{ErrorCode::kFailedPrecondition, str(path, " changed into a symlink while being opened; try again")};
    ErrorCode code = errno == EACCES || errno == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kIoError;
    return Error{code, str("cannot open ", path, " read-write: ", std::strerror(errno))};
  }
  auto fail = [&](Error e) -> Result<std::unique_ptr<Device>> {
    close(fd);
    return e;
  };
  // What was opened must be what was judged: a directory component swapped for a symlink
  // between the checks and open() would otherwise slip past the directory rule.
  struct stat opened {};
  if (fstat(fd, &opened) != 0 || opened.st_dev != st.st_dev || opened.st_ino != st.st_ino) {
    return fail(Error{ErrorCode::kFailedPrecondition, str(path, " changed while being opened; try again")});
  }

  uint64_t size_bytes = static_cast<uint64_t>(st.st_size);
  uint32_t block_size_bytes = 512;
  std::string major_minor = str(major(st.st_dev), ":", minor(st.st_dev));
  DeviceKind kind = DeviceKind::kFile;
  if (S_ISBLK(st.st_mode)) {
    kind = DeviceKind::kBlock;
    major_minor = str(major(st.st_rdev), ":", minor(st.st_rdev));
    int logical = 0;
    if (ioctl(fd, BLKGETSIZE64, &size_bytes) != 0 || ioctl(fd, BLKSSZGET, &logical) != 0) {
      return fail(Error{ErrorCode::kIoError, str("cannot query the size of ", path, ": ", std::strerror(errno))});
    }
    block_size_bytes = static_cast<uint32_t>(logical);
  } else if (parsed.size_mib && may_create && size_bytes < (*parsed.size_mib << 20)) {
    // size_mib creates or extends; it never shrinks a file that may hold data, and it extends
    // only an empty file (one it created) or a pool's file: anything else is someone's data.
    if (size_bytes > 0) {
      AlignedBuffer head(format::kSuperblockBytes);
      ssize_t n = pread(fd, head.data(), head.size(), 0);
      if (n < 0) return fail(Error{ErrorCode::kIoError, str("cannot read ", path, ": ", std::strerror(errno))});
      if (n < 8 || std::memcmp(head.data(), format::kSuperblockMagic, 8) != 0) {
        return fail(Error{ErrorCode::kFailedPrecondition,
                          str("file ", path, " already exists with ", size_bytes, " bytes that are not a Strata pool; size_mib=", *parsed.size_mib,
                              " would extend it, and size_mib only creates new files or grows pool files, so it was left unchanged. "
                              "Choose a new path, or remove the file if its contents are not needed")});
      }
    }
    if (ftruncate(fd, static_cast<off_t>(*parsed.size_mib << 20)) != 0) {
      return fail(Error{ErrorCode::kIoError, str("cannot extend ", path, " to ", *parsed.size_mib, " MiB: ", std::strerror(errno))});
    }
    size_bytes = *parsed.size_mib << 20;
  }
  size_bytes -= size_bytes % block_size_bytes;
  DeviceDescription d{parsed.scheme + "://" + path, kind, path, resolved, size_bytes, block_size_bytes, major_minor, direct};
  return std::unique_ptr<Device>(new FileDevice(std::move(d), fd));
}

}  // namespace strata
