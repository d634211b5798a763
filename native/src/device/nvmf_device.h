// A Device backed by a remote NVMe/TCP namespace: nvmf://HOST:PORT/NQN[?hostnqn=..&io_timeout_ms=..&io_queues=..].
#pragma once
#include <memory>

#include "device/device.h"
#include "nvmf/initiator.h"

namespace strata {

class NvmfDevice : public Device {
 public:
  static Result<std::unique_ptr<Device>> open(const std::string& uri);
  ~NvmfDevice() override;

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override;
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  // Deallocate (DSM): the range reads as zeros afterwards on our target.
  void deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override;
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  // Identify Namespace again: a replica grown on its node (ResizeReplica) shows here.
  Result<uint64_t> refresh_size() override {
    auto size = controller_->refresh_size();
    if (size.ok()) description_.size_bytes = size.value();
    return size;
  }
  bool is_remote() const override { return true; }
  uint32_t max_io_bytes() const override { return kMaxIoBytes; }
  Reactor* home_reactor() const override { return controller_->io_reactor(); }
  std::string lost_reason() const override { return controller_->lost_reason(); }
  Status drop_connections(const std::string& why) override {
    controller_->drop_connections(why);
    return Status();
  }

  // What one command moves at most: 128 KiB keeps a child's queue fair and below every
  // target's MDTS we meet (Linux nvmet advertises more).
  static constexpr uint32_t kMaxIoBytes = 128u << 10;

  nvmf::HostController& controller() { return *controller_; }

 private:
  NvmfDevice(DeviceDescription d, std::shared_ptr<nvmf::HostController> c) : Device(std::move(d)), controller_(std::move(c)) {}
  std::shared_ptr<nvmf::HostController> controller_;
};

}  // namespace strata
