// Zoned namespaces (NVMe ZNS, TP 4053 / the NVMe Zoned Namespace Command Set): what a zoned
// device offers beyond a Device. Code asks `device.zoned()` (null for conventional devices)
// instead of testing the device's type. A flash translation layer written against this only
// issues writes a real ZNS drive would take: each zone is written sequentially at its write
// pointer, never across its end, and at most max_open / max_active zones hold resources.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "reactor/reactor.h"
#include "util/status.h"

namespace strata {

// Zone states, with the values of the Zone State field of a zone descriptor (Report Zones).
// Read Only and Offline are not modelled: no zone here ever loses media.
enum class ZoneState : uint8_t {
  kEmpty = 0x1,             // ZSE: write pointer at the zone start; holds no open or active resource
  kImplicitlyOpened = 0x2,  // ZSIO: opened by a write; the device may close it to free an open resource
  kExplicitlyOpened = 0x3,  // ZSEO: opened by Open Zone; stays open until the host closes, finishes or resets it
  kClosed = 0x4,            // ZSC: partly written; holds an active resource but no open one
  kFull = 0xE,              // ZSF: written to capacity or finished; only Reset makes it writable again
};
const char* zone_state_name(ZoneState state);

// Status codes a zoned device completes commands with: (Status Code Type << 8) | Status Code,
// as Linux's include/linux/nvme.h spells them (NVME_SC_ZONE_*). The zone ones are SCT 1h
// (command specific); the two generic ones are SCT 0h.
enum class ZoneStatus : uint16_t {
  kInvalidField = 0x002,       // Invalid Field in Command: misaligned, a partial-zone deallocate, not a zone start
  kLbaOutOfRange = 0x080,      // LBA Out of Range
  kBoundaryError = 0x1B8,      // Zone Boundary Error: the write would cross the zone's end
  kZoneIsFull = 0x1B9,         // Zone Is Full
  kInvalidWrite = 0x1BC,       // Zone Invalid Write: not at the write pointer
  kTooManyActive = 0x1BD,      // Too Many Active Zones
  kTooManyOpen = 0x1BE,        // Too Many Open Zones
  kInvalidTransition = 0x1BF,  // Zone Invalid State Transition
};
// "Zone Invalid Write (NVMe SCT 1h SC 0xBC)": the name and the numbers a caller can test.
std::string zone_status_text(ZoneStatus status);

// I/O completions carry bytes or -errno; a zone status travels as -(kZoneStatusResultBase +
// status), above every errno, so it passes unchanged through code that only forwards results.
constexpr int kZoneStatusResultBase = 1 << 16;
inline int zone_status_result(ZoneStatus status) { return -(kZoneStatusResultBase + static_cast<int>(status)); }
std::optional<ZoneStatus> zone_status_of(int result);
// An I/O result as words: a zone status's text, or strerror.
std::string io_result_text(int result);
// A zone status is the caller breaking a rule (FAILED_PRECONDITION; INVALID_ARGUMENT for the
// generic ones); anything else is the device failing (IO_ERROR).
ErrorCode io_result_code(int result);

struct ZoneInfo {
  uint64_t start_bytes;
  uint64_t capacity_bytes;
  // Absolute, like the ZSLBA; for a Full zone start + capacity (the spec leaves it undefined).
  uint64_t write_pointer_bytes;
  ZoneState state;
};

struct ZoneReportData {
  uint64_t zone_size_bytes;
  uint32_t block_size_bytes;
  uint32_t max_open;    // 0: no limit
  uint32_t max_active;  // 0: no limit
  uint32_t open_count, active_count;
  std::vector<ZoneInfo> zones;
};

// Where a Zone Append wrote: the byte offset and the logical block (what the command returns).
struct ZoneAppendData {
  uint64_t offset_bytes;
  uint64_t lba;
};

// Zone Management Send actions.
enum class ZoneAction { kOpen, kClose, kFinish, kReset };

// Everything runs on the reactor that does the device's I/O, like the I/O itself.
class Zones {
 public:
  virtual ~Zones() = default;
  virtual uint64_t zone_size_bytes() const = 0;
  virtual ZoneReportData report() const = 0;
  // `zone_start_bytes` must be a zone's first byte (else Invalid Field). Completes with 0 or a
  // zone status once the new state is persisted.
  virtual void manage(Reactor& reactor, ZoneAction action, uint64_t zone_start_bytes, IoCallback done) = 0;
  // Zone Append: writes at the zone's write pointer, whatever it is, and reports where.
  using AppendCallback = std::function<void(int result, uint64_t offset_bytes)>;
  virtual void append(Reactor& reactor, uint64_t zone_start_bytes, uint32_t length_bytes, const void* buffer, AppendCallback done) = 0;
};

}  // namespace strata
