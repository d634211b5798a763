// An FDP device (NVMe Flexible Data Placement, TP 4146) over any device:
//
//   fdp://?base=<percent-encoded device URI>&handles=N[&ru_mib=N][&op_percent=N]
//
// Data goes to the base device unchanged, at the same offsets. Beside it, the device keeps the
// model of a drive's media that FDP exists to change: reclaim units (RUs) of ru_mib (default 8),
// op_percent (default 7) more of them than the logical space needs, and one open RU per
// placement handle plus one for the drive's own GC. A write fills its handle's RU; an overwrite
// or a deallocate leaves the old copy invalid in its RU; when free RUs run low, the drive
// collects the full RU with the fewest valid blocks (greedy), copying those into its GC RU. The
// statistics are the FDP log page's: host bytes written (HBMW) and media bytes written (MBMW).
// So a host that keeps data it invalidates together in one handle sees MBMW = HBMW, and one that
// mixes them sees the copies.
//
// The media model is volatile: it starts empty at each open and counts from there (blocks written
// before are in no RU). It exists so the FTL's hot/cold separation is measured where it matters,
// not for timing.
#pragma once
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device/device.h"
#include "device/placement.h"

namespace strata {

Result<std::unique_ptr<Device>> open_fdp_device(const std::string& uri, bool may_create);

class FdpDevice final : public Device, public Placement {
 public:
  FdpDevice(DeviceDescription description, std::shared_ptr<Device> inner, uint32_t handles, uint64_t ru_blocks, uint32_t op_percent);

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override {
    inner_->read(reactor, offset_bytes, length_bytes, buffer, std::move(done));
  }
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override {
    write_placed(reactor, offset_bytes, length_bytes, buffer, 0, std::move(done));
  }
  void flush(Reactor& reactor, IoCallback done) override { inner_->flush(reactor, std::move(done)); }
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  void deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override { return inner_->read_sync(offset_bytes, length_bytes, buffer); }
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  Result<uint64_t> refresh_size() override { return description_.size_bytes; }
  uint32_t max_io_bytes() const override { return inner_->max_io_bytes(); }
  Reactor* home_reactor() const override { return inner_->home_reactor(); }
  Placement* placement() override { return this; }

  uint32_t handle_count() const override { return handles_; }
  uint64_t reclaim_unit_bytes() const override { return ru_blocks_ * kModelBlockBytes; }
  void write_placed(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, uint32_t handle, IoCallback done) override;
  PlacementStats placement_stats() const override;

  static constexpr uint64_t kModelBlockBytes = 4096;  // the media model's unit

 private:
  enum class RuState {
    kFree,  // erased: no valid block
    kOpen,  // being filled by one stream (a handle, or the drive's GC)
    kFull,  // filled; waits for GC (or holds data until overwritten)
  };
  struct Ru {
    RuState state = RuState::kFree;
    uint32_t valid = 0;
    std::vector<uint32_t> blocks;  // written, in order (a block moved on stays here, invalid)
  };
  static constexpr uint32_t kNoRu = ~uint32_t{0};
  void set_ru_state(uint32_t ru, RuState next);
  // Under mutex_: the media model's side of a write through `stream` (< handles_: a handle; ==
  // handles_: the drive's GC), and of an overwrite or deallocate.
  void place(uint64_t first_block, uint64_t blocks, uint32_t stream);
  void invalidate(uint64_t first_block, uint64_t blocks);
  // Take mutex_: a host write through `handle`, and a range the host deallocated or zeroed.
  void host_write(uint64_t offset_bytes, uint64_t length_bytes, uint32_t handle);
  void forget(uint64_t offset_bytes, uint64_t length_bytes);
  uint32_t take_free_ru();
  void collect();
  // The model's blocks an I/O covers (partial blocks at the edges count whole).
  std::pair<uint64_t, uint64_t> model_blocks(uint64_t offset_bytes, uint64_t length_bytes) const;

  std::shared_ptr<Device> inner_;
  const uint32_t handles_;
  const uint64_t ru_blocks_;
  const uint32_t reserve_rus_;  // GC keeps this many RUs free: one per stream, and one spare
  mutable std::mutex mutex_;
  std::vector<uint32_t> ru_of_;  // per model block: the RU holding its valid copy, or kNoRu
  std::vector<Ru> rus_;
  std::vector<uint32_t> open_;   // per stream: its open RU, or kNoRu
  std::deque<uint32_t> free_;
  bool collecting_ = false;
  PlacementStats stats_;
};

}  // namespace strata
