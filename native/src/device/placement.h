// Flexible Data Placement (NVMe FDP, TP 4146): what an FDP device offers beyond a Device. Code
// asks `device.placement()` (null for devices without FDP) instead of testing the device's type.
//
// A write names a placement handle (the Directive Type 2h / DSPEC of an NVMe Write); the drive
// puts the data of each handle into its own reclaim units (RUs, its erase units), so data the
// host will invalidate together does not share an RU with data it keeps. When the host then
// deallocates it, whole RUs are empty and the drive's own garbage collection copies nothing:
// media bytes written (MBMW in the FDP statistics log page) stay equal to host bytes (HBMW).
#pragma once
#include <cstdint>
#include <vector>

#include "reactor/reactor.h"

namespace strata {

// The fdp:// device's limits (fdp_device.h); common/csal-rules.ts has the same, tested equal.
namespace fdp_rules {
constexpr uint64_t kHandlesMax = 8;
constexpr uint64_t kRuMibDefault = 8, kRuMibMax = 1024;
constexpr uint64_t kOpPercentDefault = 7, kOpPercentMax = 50;
}  // namespace fdp_rules

struct PlacementStats {
  uint32_t handle_count = 0;
  uint64_t reclaim_unit_bytes = 0;
  uint32_t reclaim_units = 0;
  uint32_t free_reclaim_units = 0;
  uint64_t host_write_bytes = 0;   // HBMW: what hosts wrote
  uint64_t media_write_bytes = 0;  // MBMW: that plus what the drive's GC copied between RUs
  uint64_t gc_relocated_bytes = 0;
  std::vector<uint64_t> handle_write_bytes;  // host bytes by placement handle
};

class Placement {
 public:
  virtual ~Placement() = default;
  virtual uint32_t handle_count() const = 0;
  virtual uint64_t reclaim_unit_bytes() const = 0;
  // A write placed through `handle` (< handle_count). Plain Device::write uses handle 0.
  virtual void write_placed(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, uint32_t handle, IoCallback done) = 0;
  // Any thread.
  virtual PlacementStats placement_stats() const = 0;
};

}  // namespace strata
