#include "device/replica_device.h"

#include <cerrno>
#include <future>
#include <optional>

namespace strata {

int errno_of(const Status& status) {
  if (status.ok()) return 0;
  switch (status.error().code) {
    case ErrorCode::kNoSpace: return -ENOSPC;
    case ErrorCode::kNotFound: return -ENODEV;
    case ErrorCode::kOutOfRange:
    case ErrorCode::kInvalidArgument: return -EINVAL;
    default: return -EIO;
  }
}

std::unique_ptr<ReplicaDevice> ReplicaDevice::open(std::shared_ptr<Pool> pool, const ReplicaInfoData& replica) {
  DeviceDescription d{str("replica:///", replica.uuid), DeviceKind::kBlock, "", str("replica:", replica.uuid), replica.size_bytes, 512, "", true};
  return std::unique_ptr<ReplicaDevice>(new ReplicaDevice(std::move(d), std::move(pool), replica.uuid));
}

void ReplicaDevice::io(Reactor& caller, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer, IoCallback done) {
  Reactor& home = pool_->reactor();
  if (&home == &caller) {
    // Same thread: no hop either way (the common case for a nexus placed on its pool's reactor).
    return pool_->io(replica_uuid_, kind, offset_bytes, length_bytes, buffer, [done = std::move(done), length_bytes](Status s) {
      done(s.ok() ? static_cast<int>(std::min<uint64_t>(length_bytes, INT32_MAX)) : errno_of(s));
    });
  }
  home.post([pool = pool_, id = replica_uuid_, kind, offset_bytes, length_bytes, buffer, caller = &caller, done = std::move(done)]() mutable {
    pool->io(id, kind, offset_bytes, length_bytes, buffer, [caller, done = std::move(done), length_bytes](Status s) mutable {
      int res = s.ok() ? static_cast<int>(std::min<uint64_t>(length_bytes, INT32_MAX)) : errno_of(s);
      caller->post([done = std::move(done), res] { done(res); });
    });
  });
}

void ReplicaDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  io(reactor, IoKind::kRead, offset_bytes, length_bytes, static_cast<uint8_t*>(buffer), std::move(done));
}
void ReplicaDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  io(reactor, IoKind::kWrite, offset_bytes, length_bytes, const_cast<uint8_t*>(static_cast<const uint8_t*>(buffer)), std::move(done));
}
void ReplicaDevice::flush(Reactor& reactor, IoCallback done) { io(reactor, IoKind::kFlush, 0, 0, nullptr, std::move(done)); }
void ReplicaDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  io(reactor, IoKind::kWriteZeroes, offset_bytes, length_bytes, nullptr, std::move(done));
}

Status ReplicaDevice::io_sync(IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer) {
  std::promise<Status> p;
  auto f = p.get_future();
  pool_->reactor().post([&] { pool_->io(replica_uuid_, kind, offset_bytes, length_bytes, buffer, [&p](Status s) { p.set_value(s); }); });
  return f.get();
}

Status ReplicaDevice::read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) {
  return io_sync(IoKind::kRead, offset_bytes, length_bytes, static_cast<uint8_t*>(buffer));
}

Status ReplicaDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  if (Status s = io_sync(IoKind::kWrite, offset_bytes, length_bytes, const_cast<uint8_t*>(static_cast<const uint8_t*>(buffer))); !s.ok()) return s;
  return io_sync(IoKind::kFlush, 0, 0, nullptr);
}

Result<uint64_t> ReplicaDevice::refresh_size() {
  std::promise<std::optional<uint64_t>> found;
  pool_->reactor().post([&] {
    std::optional<uint64_t> size;
    for (auto& r : pool_->list_replicas()) {
      if (r.uuid == replica_uuid_) size = r.size_bytes;
    }
    found.set_value(size);
  });
  auto size = found.get_future().get();
  if (!size) return Error{ErrorCode::kNotFound, str("replica ", replica_uuid_, " is gone from its pool")};
  description_.size_bytes = *size;
  return *size;
}

void ReplicaDevice::allocation_map(Reactor& caller, std::function<void(Result<AllocationMap>)> done) {
  pool_->reactor().post([pool = pool_, id = replica_uuid_, caller = &caller, done = std::move(done)]() mutable {
    auto map = pool->allocation_map(id);
    caller->post([map = std::move(map), done = std::move(done)]() mutable { done(std::move(map)); });
  });
}

}  // namespace strata
