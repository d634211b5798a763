#include "device/malloc_device.h"

#include <cstring>
#include <map>
#include <mutex>
#include <new>

#include "util/memory.h"

namespace strata {
namespace {
std::mutex g_stores_mutex;
std::map<std::string, std::shared_ptr<MallocStore>>& stores() {
  static auto* map = new std::map<std::string, std::shared_ptr<MallocStore>>();  // process lifetime
  return *map;
}
}  // namespace

uint64_t malloc_devices_max_bytes() { return node_memory_bytes() / kMallocDevicesMemoryDivisor; }

Result<std::shared_ptr<MallocStore>> malloc_store(const std::string& name, uint64_t size_bytes, bool create) {
  std::lock_guard<std::mutex> lock(g_stores_mutex);
  auto it = stores().find(name);
  if (it != stores().end()) return it->second;
  if (!create) return Error{ErrorCode::kNotFound, str("malloc device '", name, "' does not exist")};
  // RAM devices are allocated and zeroed up front: past the cap that is the OOM killer (or
  // std::bad_alloc) for the whole engine, not an error for this one request.
  uint64_t held_bytes = 0;
  for (auto& [other, store] : stores()) held_bytes += store->bytes.size();
  const uint64_t max_bytes = malloc_devices_max_bytes();
  if (size_bytes > max_bytes || held_bytes + size_bytes > max_bytes) {
    return Error{ErrorCode::kNoSpace, str("malloc device '", name, "' of ", size_bytes >> 20, " MiB does not fit in memory: malloc devices may hold ",
                                          max_bytes >> 20, " MiB in all (1/", kMallocDevicesMemoryDivisor, " of this node's ",
                                          node_memory_bytes() >> 20, " MiB of RAM) and already hold ", held_bytes >> 20,
                                          " MiB; use a smaller size_mib, or a file:// or uring:// device")};
  }
  try {
    auto store = std::make_shared<MallocStore>(MallocStore{name, AlignedBuffer(size_bytes)});
    stores()[name] = store;
    return store;
  } catch (const std::bad_alloc&) {
    return Error{ErrorCode::kNoSpace, str("not enough memory for malloc device '", name, "' of ", size_bytes >> 20, " MiB; use a smaller size_mib")};
  }
}

std::vector<DeviceDescription> list_malloc_devices() {
  std::lock_guard<std::mutex> lock(g_stores_mutex);
  std::vector<DeviceDescription> out;
  for (auto& [name, store] : stores()) {
    out.push_back(DeviceDescription{"malloc:///" + name, DeviceKind::kMalloc, "", "malloc:" + name, store->bytes.size(), 512, "", false});
  }
  return out;
}

// Completions are posted, never run inline, so callers see the same ordering as real I/O.
void MallocDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  std::memcpy(buffer, store_->bytes.data() + offset_bytes, length_bytes);
  reactor.post([done = std::move(done), length_bytes] { done(static_cast<int>(length_bytes)); });
}

void MallocDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  std::memcpy(store_->bytes.data() + offset_bytes, buffer, length_bytes);
  reactor.post([done = std::move(done), length_bytes] { done(static_cast<int>(length_bytes)); });
}

void MallocDevice::flush(Reactor& reactor, IoCallback done) {
  reactor.post([done = std::move(done)] { done(0); });
}

void MallocDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  std::memset(store_->bytes.data() + offset_bytes, 0, length_bytes);
  reactor.post([done = std::move(done)] { done(0); });
}

Status MallocDevice::read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) {
  std::memcpy(buffer, store_->bytes.data() + offset_bytes, length_bytes);
  return Status();
}

Status MallocDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  std::memcpy(store_->bytes.data() + offset_bytes, buffer, length_bytes);
  return Status();
}

}  // namespace strata
