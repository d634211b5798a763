// A nexus as a Device (nexus:///<uuid>): the load generator, deviceIo and copyDevice drive a
// nexus through the same interface as any other device, with no network in between.
#pragma once
#include <algorithm>
#include <climits>
#include <memory>

#include "device/device.h"
#include "device/replica_device.h"
#include "nexus/nexus.h"

namespace strata {

class NexusDevice : public Device {
 public:
  explicit NexusDevice(std::shared_ptr<nexus::Nexus> n)
      : Device(DeviceDescription{str("nexus:///", n->uuid()), DeviceKind::kBlock, "", str("nexus:", n->uuid()), n->size_bytes(), 512, "", true}),
        nexus_(std::move(n)) {}
  void read(Reactor& r, uint64_t off, uint32_t len, void* buf, IoCallback done) override { io(r, IoKind::kRead, off, len, static_cast<uint8_t*>(buf), std::move(done)); }
  void write(Reactor& r, uint64_t off, uint32_t len, const void* buf, IoCallback done) override {
    io(r, IoKind::kWrite, off, len, const_cast<uint8_t*>(static_cast<const uint8_t*>(buf)), std::move(done));
  }
  void flush(Reactor& r, IoCallback done) override { io(r, IoKind::kFlush, 0, 0, nullptr, std::move(done)); }
  void write_zeroes(Reactor& r, uint64_t off, uint64_t len, IoCallback done) override { io(r, IoKind::kWriteZeroes, off, len, nullptr, std::move(done)); }
  Status read_sync(uint64_t, size_t, void*) override { return Status(ErrorCode::kUnimplemented, "nexus devices have no synchronous I/O"); }
  Status write_sync(uint64_t, size_t, const void*) override { return Status(ErrorCode::kUnimplemented, "nexus devices have no synchronous I/O"); }
  Result<uint64_t> refresh_size() override { return description_.size_bytes; }
  Reactor* home_reactor() const override { return &nexus_->reactor(); }

 private:
  void io(Reactor& caller, IoKind kind, uint64_t off, uint64_t len, uint8_t* buf, IoCallback done) {
    auto n = nexus_;
    auto result = [len](const Status& s) { return s.ok() ? static_cast<int>(std::min<uint64_t>(len, INT32_MAX)) : errno_of(s); };
    if (&n->reactor() == &caller) return n->io(kind, off, len, buf, [done = std::move(done), result](Status s) { done(result(s)); });
    n->reactor().post([n, kind, off, len, buf, caller = &caller, done = std::move(done), result]() mutable {
      n->io(kind, off, len, buf, [caller, done = std::move(done), result](Status s) mutable {
        caller->post([done = std::move(done), res = result(s)] { done(res); });
      });
    });
  }
  std::shared_ptr<nexus::Nexus> nexus_;
};

}  // namespace strata
