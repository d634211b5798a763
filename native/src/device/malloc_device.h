// A RAM device. Its memory lives in a process-wide store keyed by name, so exporting and
// re-importing a pool on malloc:///name finds the same bytes (as a RAM disk would).
#pragma once
#include <memory>

#include "device/device.h"
#include "util/aligned_buffer.h"

namespace strata {

struct MallocStore {
  std::string name;
  AlignedBuffer bytes;
};

class MallocDevice final : public Device {
 public:
  MallocDevice(DeviceDescription description, std::shared_ptr<MallocStore> store)
      : Device(std::move(description)), store_(std::move(store)) {}

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override;
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override;
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  Result<uint64_t> refresh_size() override { return description_.size_bytes; }

 private:
  std::shared_ptr<MallocStore> store_;
};

// All malloc devices together may hold at most this fraction of the node's memory (util/memory.h):
// they are test and benchmark devices, and the rest is for the engine and the host.
constexpr uint64_t kMallocDevicesMemoryDivisor = 2;
uint64_t malloc_devices_max_bytes();

// Finds (create=false) or creates the named store. NOT_FOUND when missing and not created;
// NO_SPACE when creating it would pass malloc_devices_max_bytes() or memory runs out.
Result<std::shared_ptr<MallocStore>> malloc_store(const std::string& name, uint64_t size_bytes, bool create);

}  // namespace strata
