// A Device: the block layer under a pool. Async I/O runs on a reactor (the caller's) and
// completes there with bytes-or-(-errno); the *_sync calls are for the control thread while no
// reactor uses the device (format, import, export). Offsets and lengths are multiples of
// block_size_bytes; buffers come from AlignedBuffer (O_DIRECT).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "reactor/reactor.h"
#include "util/status.h"

namespace strata {

enum class DeviceKind { kFile, kBlock, kMalloc };
const char* device_kind_name(DeviceKind kind);

struct DeviceDescription {
  std::string uri;  // as given, normalised (file:///abs/path, uring:///dev/x, malloc:///name)
  DeviceKind kind;
  std::string path;         // empty for malloc
  std::string identity;     // what makes two URIs the same device: realpath, or malloc:name
  uint64_t size_bytes;
  uint32_t block_size_bytes;
  std::string major_minor;  // empty for malloc
  bool direct_io;
};

class Device {
 public:
  virtual ~Device() = default;
  const DeviceDescription& description() const { return description_; }
  uint64_t size_bytes() const { return description_.size_bytes; }

  virtual void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) = 0;
  virtual void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) = 0;
  // fdatasync: everything written before is durable when `done` runs.
  virtual void flush(Reactor& reactor, IoCallback done) = 0;
  // After completion the range reads as zeros (file: punch hole; block: zero writes; malloc: memset).
  virtual void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) = 0;

  virtual Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) = 0;
  // Writes and makes durable (pwrite + fdatasync).
  virtual Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) = 0;
  // Re-reads the size (a file extended with truncate, a grown LUN). Control thread only.
  virtual Result<uint64_t> refresh_size() = 0;

 protected:
  explicit Device(DeviceDescription description) : description_(std::move(description)) {}
  DeviceDescription description_;
};

// Opens a device by URI. `may_create`: a file:// URI with ?size_mib=N creates or extends the
// file, and a malloc:// URI with size_mib creates the RAM device; without it nothing is created.
Result<std::unique_ptr<Device>> open_device(const std::string& uri, bool may_create);

// Lists malloc devices that exist in this process (they outlive pools, as RAM disks do).
std::vector<DeviceDescription> list_malloc_devices();

}  // namespace strata
