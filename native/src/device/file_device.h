// Regular files and allowed block devices, through io_uring on a file descriptor.
#pragma once
#include "device/device.h"

namespace strata {

class FileDevice final : public Device {
 public:
  FileDevice(DeviceDescription description, int fd) : Device(std::move(description)), fd_(fd) {}
  ~FileDevice() override;

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override;
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override;
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  Result<uint64_t> refresh_size() override;

 private:
  void write_zero_buffers(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done);
  const int fd_;
  bool punch_hole_supported_ = true;
};

}  // namespace strata
