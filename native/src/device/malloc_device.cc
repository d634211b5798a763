#include "device/malloc_device.h"

#include <cstring>
#include <map>
#include <mutex>

namespace strata {
namespace {
std::mutex g_stores_mutex;
std::map<std::string, std::shared_ptr<MallocStore>>& stores() {
  static auto* map = new std::map<std::string, std::shared_ptr<MallocStore>>();  // process lifetime
  return *map;
}
}  // namespace

std::shared_ptr<MallocStore> malloc_store(const std::string& name, uint64_t size_bytes, bool create) {
  std::lock_guard<std::mutex> lock(g_stores_mutex);
  auto it = stores().find(name);
  if (it != stores().end()) return it->second;
  if (!create) return nullptr;
  auto store = std::make_shared<MallocStore>(MallocStore{name, AlignedBuffer(size_bytes)});
  stores()[name] = store;
  return store;
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
