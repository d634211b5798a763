// A local replica as a Device (replica:///<uuid>): how a nexus reaches a child on its own node
// without the network. The pool lives on its own reactor; I/O is posted there and the
// completion posted back to the caller's reactor (or run inline when they are the same).
#pragma once
#include <memory>

#include "device/device.h"
#include "pool/pool.h"

namespace strata {

class ReplicaDevice : public Device {
 public:
  static std::unique_ptr<ReplicaDevice> open(std::shared_ptr<Pool> pool, const ReplicaInfoData& replica);

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override;
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override;
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  // Asks the pool (on its reactor) for the replica's size now: it grows with ResizeReplica.
  Result<uint64_t> refresh_size() override;

  const std::string& replica_uuid() const { return replica_uuid_; }
  // Reactor `caller`: the replica's allocation map, delivered on `caller`.
  void allocation_map(Reactor& caller, std::function<void(Result<AllocationMap>)> done) override;
  Reactor* home_reactor() const override { return &pool_->reactor(); }

 private:
  ReplicaDevice(DeviceDescription d, std::shared_ptr<Pool> pool, std::string uuid)
      : Device(std::move(d)), pool_(std::move(pool)), replica_uuid_(std::move(uuid)) {}
  void io(Reactor& caller, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer, IoCallback done);
  Status io_sync(IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer);

  std::shared_ptr<Pool> pool_;
  const std::string replica_uuid_;
};

// -errno for a pool status: ENOSPC for a full pool (the nexus reports Capacity Exceeded), EIO else.
int errno_of(const Status& status);

}  // namespace strata
