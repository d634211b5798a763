// A zoned device: wraps any device and enforces the NVMe ZNS rules (device/zones.h) on it, so a
// flash translation layer can be proven to issue only writes a ZNS drive would accept.
//
//   zoned://?base=<percent-encoded device URI>&zone_mib=N[&max_open=N][&max_active=N]
//
// The inner device is cut into zones of zone_mib; its first zone-sized area holds the zone
// metadata (below) and the rest are this device's zones 0, 1, ...; a last partial zone is not
// exposed. Zone capacity = zone size. max_open / max_active absent = no limit.
//
// What the rules say, per command:
// - write / write_zeroes: start exactly at the zone's write pointer (Zone Invalid Write), end
//   within the zone (Zone Boundary Error), not in a Full zone (Zone Is Full); an Empty or Closed
//   zone opens implicitly, which needs an open resource (an implicitly opened zone is closed to
//   free one, else Too Many Open Zones) and, from Empty, an active one (Too Many Active Zones).
// - Zone Append: the same, at the write pointer; completes with where it wrote.
// - read: anywhere; below what was written returns the data, above it zeros (a zone finished
//   early reads zeros past its last write).
// - deallocate: whole zones only, and it resets them (a partial range is Invalid Field): a ZNS
//   zone cannot lose blocks below its write pointer, so freeing space means a reset.
// - Open / Close / Finish / Reset as the ZNS state machine allows; anything else is Zone
//   Invalid State Transition.
//
// Zone states and write pointers persist in the metadata area (magic, version, CRC32C, checked
// at open), rewritten before any state-changing command completes and made durable by the
// device's flush together with the data. Deriving write pointers at open instead (scan for the
// last non-zero block) is unsafe: data that ends in zero blocks would move the pointer back and
// the next write would overwrite acknowledged data, and Full-by-Finish or Explicitly Opened
// states leave no trace in the data at all. Reopening keeps every state, open ones included
// (reopening is not a controller reset). One opener at a time: two open handles on the same
// inner device do not see each other's state.
//
// Zone state belongs to the one reactor that does the device's I/O (metadata writes are issued
// on it); the *_sync calls are for the control thread while no reactor uses the device. Every
// state change rewrites the whole metadata record (24 bytes a zone, 4 KiB for up to 168 zones):
// a verification device, not a fast one.
//
// A write that fails on the inner device leaves the write pointer advanced over undefined
// blocks, as a drive's failed media write would (a real drive might take the zone offline).
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "device/device.h"
#include "device/zones.h"
#include "util/aligned_buffer.h"

namespace strata {

namespace zoned_format {
// Header, little-endian: magic[8] @0, version u32 @8, crc32c u32 @12 (over metadata_bytes with
// this field zero), zone_size_bytes u64 @16, zone_count u32 @24, max_open u32 @28, max_active
// u32 @32, block_size_bytes u32 @36, metadata_bytes u32 @40, zeros to 64. Then one entry per
// zone at 64 + 24 * i: state u8 @0, zeros to 8, write_pointer_bytes u64 @8 and written_bytes
// u64 @16, both from the zone start. metadata_bytes is that rounded up to 4 KiB.
constexpr char kMagic[8] = {'S', 'T', 'R', 'Z', 'O', 'N', 'E', 'D'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kCrcOffset = 12;
constexpr uint32_t kHeaderBytes = 64;
constexpr uint32_t kEntryBytes = 24;
constexpr uint32_t kAlignmentBytes = 4096;
}  // namespace zoned_format

struct ZonedGeometry {
  uint64_t zone_size_bytes = 0;
  uint32_t max_open = 0;    // 0: no limit
  uint32_t max_active = 0;  // 0: no limit
};

// Parses a zoned:// URI, opens its base with open_device(base, may_create) and the zoned
// device over it.
Result<std::unique_ptr<Device>> open_zoned_device(const std::string& uri, bool may_create);

class ZonedDevice final : public Device, public Zones {
 public:
  // Reads the metadata; a first zone of zeros is a new device (every zone Empty, written at the
  // first change); refuses an area holding anything else, a bad CRC, another version or other
  // geometry.
  static Result<std::unique_ptr<Device>> open(std::shared_ptr<Device> inner, ZonedGeometry geometry);

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override { inner_->flush(reactor, std::move(done)); }
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  void deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override;
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  // The zones are fixed when the metadata is written: a grown inner device adds none.
  Result<uint64_t> refresh_size() override { return description_.size_bytes; }
  bool is_remote() const override { return inner_->is_remote(); }
  uint32_t max_io_bytes() const override { return inner_->max_io_bytes(); }
  Reactor* home_reactor() const override { return inner_->home_reactor(); }
  std::string lost_reason() const override { return inner_->lost_reason(); }
  Zones* zoned() override { return this; }

  uint64_t zone_size_bytes() const override { return geometry_.zone_size_bytes; }
  ZoneReportData report() const override;
  void manage(Reactor& reactor, ZoneAction action, uint64_t zone_start_bytes, IoCallback done) override;
  void append(Reactor& reactor, uint64_t zone_start_bytes, uint32_t length_bytes, const void* buffer, AppendCallback done) override;

 private:
  struct Zone {
    ZoneState state = ZoneState::kEmpty;
    uint64_t write_pointer_bytes = 0;  // from the zone start; the capacity when Full
    uint64_t written_bytes = 0;        // reads below this return data, above it zeros
  };
  ZonedDevice(DeviceDescription description, std::shared_ptr<Device> inner, ZonedGeometry geometry, uint32_t zone_count);

  // The one place a zone's state changes: asserts the ZNS transition is legal and keeps the
  // open and active counts.
  void set_state(Zone& zone, ZoneState next);
  // Checks a write (append: at the write pointer, wherever it is) against the rules and, when
  // it may go, takes the resources, moves the write pointer and sets `at_bytes` to where the
  // data goes; else returns the status the command fails with.
  std::optional<ZoneStatus> admit_write(uint64_t offset_bytes, uint64_t length_bytes, bool append, uint64_t* at_bytes);
  // An open resource for `zone`, closing an implicitly opened zone when all are taken.
  std::optional<ZoneStatus> take_open_resource(const Zone& zone);
  std::optional<ZoneStatus> check_range(uint64_t offset_bytes, uint64_t length_bytes) const;
  std::optional<ZoneStatus> apply_action(Zone& zone, ZoneAction action);
  uint64_t inner_offset(uint64_t offset_bytes) const { return geometry_.zone_size_bytes + offset_bytes; }

  void serialize(uint8_t* out) const;
  Status load(const uint8_t* in, uint32_t length_bytes);
  // Writes the current state and runs `done` once a write that began after this call
  // completed: one metadata write in flight, so an older state never lands after a newer one.
  void persist(Reactor& reactor, IoCallback done);
  void start_persist(Reactor& reactor);
  Status persist_sync();
  // Resets zones [first, first + count): deallocates their space, then empties them.
  void reset_zones(Reactor& reactor, uint32_t first, uint32_t count, IoCallback done);

  std::shared_ptr<Device> inner_;
  const ZonedGeometry geometry_;
  uint32_t metadata_bytes_;
  std::vector<Zone> zones_;
  uint32_t open_count_ = 0, active_count_ = 0;

  AlignedBuffer persist_buffer_;
  bool persist_in_flight_ = false;
  std::vector<IoCallback> persist_waiting_;    // to start after the write in flight
  std::vector<IoCallback> persist_in_flight_done_;
};

}  // namespace strata
