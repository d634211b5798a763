// A Device: the block layer under a pool. Async I/O runs on a reactor (the caller's) and
// completes there with bytes-or-(-errno); the *_sync calls are for the control thread while no
// reactor uses the device (format, import, export). Offsets and lengths are multiples of
// block_size_bytes; buffers come from AlignedBuffer (O_DIRECT).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "reactor/reactor.h"
#include "util/status.h"

namespace strata {

class Zones;      // device/zones.h
class Placement;  // device/placement.h

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

  // Capabilities. Code asks the device instead of testing its type.
  // Reached over the network (an NVMe-oF namespace), not on this node.
  virtual bool is_remote() const { return false; }
  // The largest single I/O worth sending (a remote namespace's transfer limit).
  virtual uint32_t max_io_bytes() const { return 1u << 20; }
  // The reactor I/O on this device runs best on (its first NVMe/TCP queue, a nexus's own, a
  // replica's pool reactor); null when any reactor will do.
  virtual Reactor* home_reactor() const { return nullptr; }
  // Deallocate: after completion the range reads as zeros and its space may be freed.
  virtual void deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
    write_zeroes(reactor, offset_bytes, length_bytes, std::move(done));
  }
  // Which clusters hold data (cluster bytes, one flag per cluster from offset 0), delivered on
  // `caller`; UNIMPLEMENTED for devices that cannot tell (everything then counts as written).
  using AllocationMap = std::pair<uint64_t, std::vector<bool>>;
  virtual void allocation_map(Reactor& caller, std::function<void(Result<AllocationMap>)> done) {
    (void)caller;
    done(Error{ErrorCode::kUnimplemented, str(description_.uri, " has no allocation map")});
  }
  // Why the device can no longer serve I/O (a lost NVMe/TCP association it will not re-establish
  // by itself); empty while it can. Any thread.
  virtual std::string lost_reason() const { return {}; }
  // A zoned namespace (device/zones.h): its zones, write pointers and zone management; null
  // for a conventional device, where any block may be written at any time.
  virtual Zones* zoned() { return nullptr; }
  // Flexible Data Placement (device/placement.h): writes that name a placement handle; null for
  // a device without FDP.
  virtual Placement* placement() { return nullptr; }
  // Fault injection: end the device's network connections as a network failure would.
  virtual Status drop_connections(const std::string& why) {
    (void)why;
    return Status(ErrorCode::kFailedPrecondition, str(description_.uri, " has no network connection to drop"));
  }

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
