// URI parsing, the device allow list, and opening with O_DIRECT (buffered fallback).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "device/device.h"
#include "device/file_device.h"
#include "device/malloc_device.h"
#include "device/nvmf_device.h"

namespace strata {
namespace {

constexpr const char* kSupportedSchemes = "file:///path[?size_mib=N], uring:///dev/NAME, malloc:///name?size_mib=N, nvmf://HOST:PORT/NQN";
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
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string pair = query.substr(0, amp);
    query = amp == std::string::npos ? "" : query.substr(amp + 1);
    auto eq = pair.find('=');
    std::string key = pair.substr(0, eq), value = eq == std::string::npos ? "" : pair.substr(eq + 1);
    if (key != "size_mib" || out.scheme == "uring") {
      return Error{ErrorCode::kInvalidArgument, str("device URI '", uri, "' has unknown parameter '", key, "'; ",
                                                    out.scheme == "uring" ? "uring:// takes none" : "the only one is size_mib")};
    }
    char* end = nullptr;
    errno = 0;
    unsigned long long n = std::strtoull(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || n == 0 || n > kMaxSizeMib) {
      return Error{ErrorCode::kInvalidArgument, str("size_mib in '", uri, "' must be an integer from 1 to ", kMaxSizeMib, ", got '", value, "'")};
    }
    out.size_mib = n;
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

Result<std::unique_ptr<Device>> open_malloc(const std::string& uri, const ParsedUri& parsed, bool may_create) {
  uint64_t size_bytes = parsed.size_mib.value_or(0) << 20;
  auto store = malloc_store(parsed.path, size_bytes, may_create && parsed.size_mib.has_value());
  if (!store) {
    return Error{ErrorCode::kNotFound, str("malloc device '", parsed.path, "' does not exist",
                                           may_create ? "; add ?size_mib=N to create it" : "")};
  }
  if (parsed.size_mib && store->bytes.size() != size_bytes) {
    return Error{ErrorCode::kInvalidArgument, str("malloc device '", parsed.path, "' exists with ", store->bytes.size() >> 20,
                                                  " MiB, not ", *parsed.size_mib, " MiB; drop size_mib or use the existing size")};
  }
  (void)uri;
  DeviceDescription d{"malloc:///" + parsed.path, DeviceKind::kMalloc, "", "malloc:" + parsed.path, store->bytes.size(), 512, "", false};
  return std::unique_ptr<Device>(new MallocDevice(std::move(d), std::move(store)));
}

}  // namespace

const char* device_kind_name(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kFile: return "file";
    case DeviceKind::kBlock: return "block";
    case DeviceKind::kMalloc: return "malloc";
  }
  return "file";
}

Result<std::unique_ptr<Device>> open_device(const std::string& uri, bool may_create) {
  if (uri.rfind("nvmf://", 0) == 0) return NvmfDevice::open(uri);  // remote namespace through the NVMe/TCP initiator
  auto parsed_or = parse_uri(uri);
  if (!parsed_or.ok()) return parsed_or.error();
  const ParsedUri& parsed = parsed_or.value();
  if (parsed.scheme == "malloc") return open_malloc(uri, parsed, may_create);

  const std::string& path = parsed.path;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Error{ErrorCode::kIoError, str("cannot stat ", path, ": ", std::strerror(errno))};
    if (parsed.scheme == "uring" || !parsed.size_mib) {
      return Error{ErrorCode::kNotFound, str("device ", path, " does not exist",
                                             parsed.scheme == "file" && may_create ? "; add ?size_mib=N to the URI to create the file" : "")};
    }
    if (!may_create) return Error{ErrorCode::kNotFound, str("device ", path, " does not exist")};
    int fd = open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return Error{ErrorCode::kIoError, str("cannot create ", path, ": ", std::strerror(errno))};
    close(fd);
    if (stat(path.c_str(), &st) != 0) return Error{ErrorCode::kIoError, str("cannot stat ", path, ": ", std::strerror(errno))};
  }
  if (Status allowed = check_allowed(path, st); !allowed.ok()) return allowed.error();
  if (parsed.scheme == "uring" && !S_ISBLK(st.st_mode)) {
    return Error{ErrorCode::kInvalidArgument, str(path, " is a regular file; uring:// is for block devices, use file://", path)};
  }
  if (parsed.scheme == "file" && S_ISBLK(st.st_mode)) {
    return Error{ErrorCode::kInvalidArgument, str(path, " is a block device; use uring://", path)};
  }

  bool direct = true;
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_DIRECT);
  if (fd < 0 && errno == EINVAL) {
    // The filesystem refuses O_DIRECT (tmpfs, some FUSE): buffered I/O still works; flush makes it durable.
    direct = false;
    fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  }
  if (fd < 0) {
    ErrorCode code = errno == EACCES || errno == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kIoError;
    return Error{code, str("cannot open ", path, " read-write: ", std::strerror(errno))};
  }
  auto fail = [&](Error e) -> Result<std::unique_ptr<Device>> {
    close(fd);
    return e;
  };

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
    // size_mib creates or extends; it never shrinks a file that may hold data.
    if (ftruncate(fd, static_cast<off_t>(*parsed.size_mib << 20)) != 0) {
      return fail(Error{ErrorCode::kIoError, str("cannot extend ", path, " to ", *parsed.size_mib, " MiB: ", std::strerror(errno))});
    }
    size_bytes = *parsed.size_mib << 20;
  }
  size_bytes -= size_bytes % block_size_bytes;
  char resolved[PATH_MAX];
  std::string identity = realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
  DeviceDescription d{parsed.scheme + "://" + path, kind, path, identity, size_bytes, block_size_bytes, major_minor, direct};
  return std::unique_ptr<Device>(new FileDevice(std::move(d), fd));
}

}  // namespace strata
