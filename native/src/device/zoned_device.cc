#include "device/zoned_device.h"
#include "device/uri.h"
#include "util/bytes.h"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "util/crc32c.h"

namespace strata {

// ---- zone statuses ----------------------------------------------------------------------------

const char* zone_state_name(ZoneState state) {
  switch (state) {
    case ZoneState::kEmpty: return "empty";
    case ZoneState::kImplicitlyOpened: return "implicitly_opened";
    case ZoneState::kExplicitlyOpened: return "explicitly_opened";
    case ZoneState::kClosed: return "closed";
    case ZoneState::kFull: return "full";
  }
  return "empty";
}

namespace {

const char* zone_status_name(ZoneStatus status) {
  switch (status) {
    case ZoneStatus::kInvalidField: return "Invalid Field in Command";
    case ZoneStatus::kLbaOutOfRange: return "LBA Out of Range";
    case ZoneStatus::kBoundaryError: return "Zone Boundary Error";
    case ZoneStatus::kZoneIsFull: return "Zone Is Full";
    case ZoneStatus::kInvalidWrite: return "Zone Invalid Write";
    case ZoneStatus::kTooManyActive: return "Too Many Active Zones";
    case ZoneStatus::kTooManyOpen: return "Too Many Open Zones";
    case ZoneStatus::kInvalidTransition: return "Zone Invalid State Transition";
  }
  return "unknown";
}

constexpr ZoneStatus kAllStatuses[] = {ZoneStatus::kInvalidField, ZoneStatus::kLbaOutOfRange, ZoneStatus::kBoundaryError,
                                       ZoneStatus::kZoneIsFull,   ZoneStatus::kInvalidWrite,  ZoneStatus::kTooManyActive,
                                       ZoneStatus::kTooManyOpen,  ZoneStatus::kInvalidTransition};

bool is_open(ZoneState s) { return s == ZoneState::kImplicitlyOpened || s == ZoneState::kExplicitlyOpened; }
bool is_active(ZoneState s) { return is_open(s) || s == ZoneState::kClosed; }

void post_result(Reactor& reactor, int result, IoCallback done) {
  reactor.post([result, done = std::move(done)] { done(result); });
}

}  // namespace

std::string zone_status_text(ZoneStatus status) {
  const unsigned value = static_cast<unsigned>(status);
  char sc[8];
  std::snprintf(sc, sizeof sc, "0x%02X", value & 0xFF);
  return str(zone_status_name(status), " (NVMe SCT ", value >> 8, "h SC ", sc, ")");
}

std::optional<ZoneStatus> zone_status_of(int result) {
  if (result >= 0) return std::nullopt;
  const int value = -result - kZoneStatusResultBase;
  for (ZoneStatus s : kAllStatuses) {
    if (static_cast<int>(s) == value) return s;
  }
  return std::nullopt;
}

std::string io_result_text(int result) {
  if (auto status = zone_status_of(result)) return zone_status_text(*status);
  return std::strerror(-result);
}

ErrorCode io_result_code(int result) {
  auto status = zone_status_of(result);
  if (!status) return ErrorCode::kIoError;
  if (*status == ZoneStatus::kInvalidField) return ErrorCode::kInvalidArgument;
  if (*status == ZoneStatus::kLbaOutOfRange) return ErrorCode::kOutOfRange;
  return ErrorCode::kFailedPrecondition;
}

// ---- the URI ----------------------------------------------------------------------------------

namespace {

constexpr const char* kZonedGrammar = "zoned://?base=<percent-encoded device URI>&zone_mib=N[&max_open=N][&max_active=N]";
constexpr uint64_t kMaxZoneMib = 1 << 16;   // 64 GiB zones: beyond any drive's
constexpr uint64_t kMaxResources = 1 << 20;  // max_open / max_active


std::string zoned_uri(const std::string& base_uri, const ZonedGeometry& g) {
  std::string uri = str("zoned://?base=", percent_encode(base_uri), "&zone_mib=", g.zone_size_bytes >> 20);
  if (g.max_open) uri += str("&max_open=", g.max_open);
  if (g.max_active) uri += str("&max_active=", g.max_active);
  return uri;
}

}  // namespace

Result<std::unique_ptr<Device>> open_zoned_device(const std::string& uri, bool may_create) {
  const std::string prefix = "zoned://?";
  if (uri.rfind(prefix, 0) != 0) return Error{ErrorCode::kInvalidArgument, str("zoned device URI '", uri, "' must look like ", kZonedGrammar)};
  std::string query = uri.substr(prefix.size());
  std::optional<std::string> base;
  std::optional<uint64_t> zone_mib, max_open, max_active;
  for (const auto& [key, value] : query_params(query)) {
    if (key == "base") {
      if (base) return Error{ErrorCode::kInvalidArgument, str("zoned device URI '", uri, "' names base twice")};
      auto decoded = percent_decode(value);
      if (!decoded.ok()) return decoded.error();
      base = decoded.value();
      continue;
    }
    std::optional<uint64_t>* slot = key == "zone_mib" ? &zone_mib : key == "max_open" ? &max_open : key == "max_active" ? &max_active : nullptr;
    if (slot == nullptr) {
      return Error{ErrorCode::kInvalidArgument, str("zoned device URI '", uri, "' has unknown parameter '", key, "'; the grammar is ", kZonedGrammar)};
    }
    const uint64_t max = key == "zone_mib" ? kMaxZoneMib : kMaxResources;
    auto n = parse_whole_number(value, 1, max);
    if (slot->has_value() || !n) {
      return Error{ErrorCode::kInvalidArgument, str(key, " in '", uri, "' must be given once, as an integer from 1 to ", max, ", got '", value, "'")};
    }
    *slot = *n;
  }
  if (!base || base->empty() || !zone_mib) {
    return Error{ErrorCode::kInvalidArgument, str("zoned device URI '", uri, "' needs base and zone_mib: ", kZonedGrammar)};
  }
  if (base->rfind("zoned://", 0) == 0) {
    return Error{ErrorCode::kInvalidArgument, str("zoned device URI '", uri, "' has a zoned base; its metadata writes would break the inner zones' rules")};
  }
  if (max_open && max_active && *max_open > *max_active) {
    return Error{ErrorCode::kInvalidArgument, str("max_open ", *max_open, " exceeds max_active ", *max_active, " in '", uri,
                                                  "': every open zone is active (NVMe: MOR <= MAR)")};
  }
  auto inner = open_device(*base, may_create);
  if (!inner.ok()) return inner.error();
  ZonedGeometry g;
  g.zone_size_bytes = *zone_mib << 20;
  g.max_open = static_cast<uint32_t>(max_open.value_or(0));
  g.max_active = static_cast<uint32_t>(max_active.value_or(0));
  return ZonedDevice::open(std::shared_ptr<Device>(std::move(inner.value())), g);
}

// ---- the device -------------------------------------------------------------------------------

namespace {
uint32_t metadata_crc(const uint8_t* data, uint32_t length_bytes) {
  const uint8_t zero[4] = {0, 0, 0, 0};
  uint32_t crc = crc32c(0, data, zoned_format::kCrcOffset);
  crc = crc32c(crc, zero, 4);
  return crc32c(crc, data + zoned_format::kCrcOffset + 4, length_bytes - zoned_format::kCrcOffset - 4);
}
}  // namespace

ZonedDevice::ZonedDevice(DeviceDescription description, std::shared_ptr<Device> inner, ZonedGeometry geometry, uint32_t zone_count)
    : Device(std::move(description)), inner_(std::move(inner)), geometry_(geometry), zones_(zone_count) {
  const uint64_t bytes = zoned_format::kHeaderBytes + uint64_t{zoned_format::kEntryBytes} * zone_count;
  metadata_bytes_ = static_cast<uint32_t>((bytes + zoned_format::kAlignmentBytes - 1) / zoned_format::kAlignmentBytes * zoned_format::kAlignmentBytes);
  persist_buffer_ = AlignedBuffer(metadata_bytes_);
}

Result<std::unique_ptr<Device>> ZonedDevice::open(std::shared_ptr<Device> inner, ZonedGeometry geometry) {
  const DeviceDescription& id = inner->description();
  const uint64_t zs = geometry.zone_size_bytes;
  if (zs % id.block_size_bytes != 0 || zs % zoned_format::kAlignmentBytes != 0) {
    return Error{ErrorCode::kInvalidArgument, str("zone size ", zs, " is not a multiple of the block size of ", id.uri)};
  }
  const uint64_t inner_zones = id.size_bytes / zs;
  const uint64_t max_zones = (zs - zoned_format::kHeaderBytes) / zoned_format::kEntryBytes;
  if (inner_zones < 2 || inner_zones - 1 > max_zones) {
    return Error{ErrorCode::kInvalidArgument, str(id.uri, " holds ", inner_zones, " zones of ", zs >> 20, " MiB; a zoned device needs 2 to ",
                                                  max_zones + 1, " (the first holds the zone metadata)")};
  }
  const auto zone_count = static_cast<uint32_t>(inner_zones - 1);
  DeviceDescription d = id;
  d.uri = zoned_uri(id.uri, geometry);
  d.size_bytes = zone_count * zs;
  std::unique_ptr<ZonedDevice> dev(new ZonedDevice(std::move(d), inner, geometry, zone_count));

  AlignedBuffer area(dev->metadata_bytes_);
  if (Status s = inner->read_sync(0, area.size(), area.data()); !s.ok()) return s.error();
  if (std::memcmp(area.data(), zoned_format::kMagic, 8) != 0) {
    // The whole reserved zone, not only the metadata's length: data anywhere in it is someone's.
    bool all_zero = true;
    AlignedBuffer chunk(std::min<uint64_t>(zs, 1 << 20));
    for (uint64_t at = 0; at < zs && all_zero; at += chunk.size()) {
      if (Status s = inner->read_sync(at, chunk.size(), chunk.data()); !s.ok()) return s.error();
      all_zero = std::all_of(chunk.data(), chunk.data() + chunk.size(), [](uint8_t b) { return b == 0; });
    }
    if (!all_zero) {
      return Error{ErrorCode::kFailedPrecondition,
                   str("the first ", zs >> 20, " MiB of ", id.uri, " hold data that is not zoned-device metadata (no magic); a zoned device ",
                       "over it would destroy that data. Use a device that is all zeros, or zero its first zone if the data is not needed")};
    }
    // A new zoned device, every zone Empty. Nothing is written until a zone changes, so opening
    // (a probe, a refused pool create) leaves the device as it was.
    return std::unique_ptr<Device>(std::move(dev));
  }
  // The stored length decides what the CRC covers; a longer record than this geometry's is read whole.
  const uint32_t stored_bytes = get_u32(area.data() + 40);
  if (stored_bytes != dev->metadata_bytes_) {
    if (stored_bytes < zoned_format::kHeaderBytes || stored_bytes > zs || stored_bytes % zoned_format::kAlignmentBytes != 0) {
      return Error{ErrorCode::kDataLoss, str("zoned metadata on ", id.uri, " is corrupt: its length ", stored_bytes, " is impossible; refusing to open ", dev->description_.uri)};
    }
    area = AlignedBuffer(stored_bytes);
    if (Status s = inner->read_sync(0, area.size(), area.data()); !s.ok()) return s.error();
  }
  if (Status s = dev->load(area.data(), stored_bytes); !s.ok()) return s.error();
  return std::unique_ptr<Device>(std::move(dev));
}

Status ZonedDevice::load(const uint8_t* in, uint32_t length_bytes) {
  const std::string& inner_uri = inner_->description().uri;
  const uint32_t stored_crc = get_u32(in + zoned_format::kCrcOffset), crc = metadata_crc(in, length_bytes);
  if (stored_crc != crc) {
    char text[64];
    std::snprintf(text, sizeof text, "stored 0x%08X, computed 0x%08X", stored_crc, crc);
    return Status(ErrorCode::kDataLoss, str("zoned metadata on ", inner_uri, " fails its CRC32C (", text, "): its write pointers cannot be ",
                                            "trusted, so ", description_.uri, " is not opened"));
  }
  const uint32_t version = get_u32(in + 8);
  if (version != zoned_format::kVersion) {
    return Status(ErrorCode::kUnimplemented, str("zoned metadata on ", inner_uri, " has version ", version, "; this build reads version ", zoned_format::kVersion));
  }
  ZonedGeometry stored{get_u64(in + 16), get_u32(in + 28), get_u32(in + 32)};
  const uint32_t stored_zones = get_u32(in + 24), stored_block = get_u32(in + 36);
  if (stored.zone_size_bytes != geometry_.zone_size_bytes || stored.max_open != geometry_.max_open || stored.max_active != geometry_.max_active ||
      stored_zones != zones_.size() || stored_block != description_.block_size_bytes || length_bytes != metadata_bytes_) {
    return Status(ErrorCode::kInvalidArgument,
                  str(inner_uri, " was made a zoned device as ", zoned_uri(inner_uri, stored), " (", stored_zones, " zones of ", stored_block,
                      "-byte blocks), not as ", description_.uri, " (", zones_.size(), " zones of ", description_.block_size_bytes,
                      "-byte blocks); open it with the URI it was made with"));
  }
  const uint64_t zs = geometry_.zone_size_bytes, bs = description_.block_size_bytes;
  open_count_ = active_count_ = 0;
  for (size_t i = 0; i < zones_.size(); i++) {
    const uint8_t* e = in + zoned_format::kHeaderBytes + i * zoned_format::kEntryBytes;
    const auto state = static_cast<ZoneState>(e[0]);
    Zone z{state, get_u64(e + 8), get_u64(e + 16)};
    bool valid = z.write_pointer_bytes % bs == 0 && z.written_bytes % bs == 0 && z.written_bytes <= z.write_pointer_bytes;
    switch (state) {
      case ZoneState::kEmpty: valid = valid && z.write_pointer_bytes == 0; break;
      case ZoneState::kImplicitlyOpened:
      case ZoneState::kExplicitlyOpened:
      case ZoneState::kClosed: valid = valid && z.write_pointer_bytes < zs && z.written_bytes == z.write_pointer_bytes; break;
      case ZoneState::kFull: valid = valid && z.write_pointer_bytes == zs; break;
      default: valid = false;
    }
    if (!valid) {
      return Status(ErrorCode::kDataLoss, str("zoned metadata on ", inner_uri, " is corrupt: zone ", i, " has state 0x", std::hex, unsigned{e[0]}, std::dec,
                                              ", write pointer ", z.write_pointer_bytes, " and ", z.written_bytes, " bytes written"));
    }
    zones_[i] = z;
    open_count_ += is_open(state);
    active_count_ += is_active(state);
  }
  if ((geometry_.max_open && open_count_ > geometry_.max_open) || (geometry_.max_active && active_count_ > geometry_.max_active)) {
    return Status(ErrorCode::kDataLoss, str("zoned metadata on ", inner_uri, " is corrupt: ", open_count_, " open and ", active_count_,
                                            " active zones exceed its limits"));
  }
  return Status();
}

void ZonedDevice::serialize(uint8_t* out) const {
  std::memset(out, 0, metadata_bytes_);
  std::memcpy(out, zoned_format::kMagic, 8);
  put_u32(out + 8, zoned_format::kVersion);
  put_u64(out + 16, geometry_.zone_size_bytes);
  put_u32(out + 24, static_cast<uint32_t>(zones_.size()));
  put_u32(out + 28, geometry_.max_open);
  put_u32(out + 32, geometry_.max_active);
  put_u32(out + 36, description_.block_size_bytes);
  put_u32(out + 40, metadata_bytes_);
  for (size_t i = 0; i < zones_.size(); i++) {
    uint8_t* e = out + zoned_format::kHeaderBytes + i * zoned_format::kEntryBytes;
    e[0] = static_cast<uint8_t>(zones_[i].state);
    put_u64(e + 8, zones_[i].write_pointer_bytes);
    put_u64(e + 16, zones_[i].written_bytes);
  }
  put_u32(out + zoned_format::kCrcOffset, metadata_crc(out, metadata_bytes_));
}

Status ZonedDevice::persist_sync() {
  AlignedBuffer out(metadata_bytes_);
  serialize(out.data());
  return inner_->write_sync(0, out.size(), out.data());
}

void ZonedDevice::persist(Reactor& reactor, IoCallback done) {
  persist_waiting_.push_back(std::move(done));
  if (!persist_in_flight_) start_persist(reactor);
}

void ZonedDevice::start_persist(Reactor& reactor) {
  persist_in_flight_ = true;
  persist_in_flight_done_ = std::move(persist_waiting_);
  persist_waiting_.clear();
  serialize(persist_buffer_.data());
  inner_->write(reactor, 0, metadata_bytes_, persist_buffer_.data(), [this, &reactor](int res) {
    persist_in_flight_ = false;
    std::vector<IoCallback> finished = std::move(persist_in_flight_done_);
    persist_in_flight_done_.clear();
    if (!persist_waiting_.empty()) start_persist(reactor);
    for (auto& d : finished) d(res < 0 ? res : 0);
  });
}

// ---- the state machine ------------------------------------------------------------------------

void ZonedDevice::set_state(Zone& zone, ZoneState next) {
  const ZoneState prev = zone.state;
  bool legal = false;
  switch (prev) {
    case ZoneState::kEmpty:
      legal = next == ZoneState::kImplicitlyOpened || next == ZoneState::kExplicitlyOpened || next == ZoneState::kFull;
      break;
    case ZoneState::kImplicitlyOpened:
      legal = next == ZoneState::kExplicitlyOpened || next == ZoneState::kClosed || next == ZoneState::kFull || next == ZoneState::kEmpty;
      break;
    case ZoneState::kExplicitlyOpened: legal = next == ZoneState::kClosed || next == ZoneState::kFull || next == ZoneState::kEmpty; break;
    case ZoneState::kClosed:
      legal = next == ZoneState::kImplicitlyOpened || next == ZoneState::kExplicitlyOpened || next == ZoneState::kFull || next == ZoneState::kEmpty;
      break;
    case ZoneState::kFull: legal = next == ZoneState::kEmpty; break;
  }
  assert(legal && "illegal zone state transition");
  (void)legal;
  open_count_ = open_count_ - is_open(prev) + is_open(next);
  active_count_ = active_count_ - is_active(prev) + is_active(next);
  assert((geometry_.max_open == 0 || open_count_ <= geometry_.max_open) && (geometry_.max_active == 0 || active_count_ <= geometry_.max_active));
  zone.state = next;
}

std::optional<ZoneStatus> ZonedDevice::take_open_resource(const Zone& zone) {
  assert(zone.state == ZoneState::kEmpty || zone.state == ZoneState::kClosed);
  if (geometry_.max_active && zone.state == ZoneState::kEmpty && active_count_ >= geometry_.max_active) return ZoneStatus::kTooManyActive;
  if (geometry_.max_open && open_count_ >= geometry_.max_open) {
    // All open resources taken: the controller may close an implicitly opened zone to free one
    // (the lowest-numbered here); explicitly opened ones are the host's to close.
    for (Zone& other : zones_) {
      if (&other != &zone && other.state == ZoneState::kImplicitlyOpened) {
        set_state(other, ZoneState::kClosed);
        return std::nullopt;
      }
    }
    return ZoneStatus::kTooManyOpen;
  }
  return std::nullopt;
}

std::optional<ZoneStatus> ZonedDevice::check_range(uint64_t offset_bytes, uint64_t length_bytes) const {
  const uint32_t bs = description_.block_size_bytes;
  if (length_bytes == 0 || offset_bytes % bs != 0 || length_bytes % bs != 0) return ZoneStatus::kInvalidField;
  if (offset_bytes >= size_bytes() || length_bytes > size_bytes() - offset_bytes) return ZoneStatus::kLbaOutOfRange;
  return std::nullopt;
}

std::optional<ZoneStatus> ZonedDevice::admit_write(uint64_t offset_bytes, uint64_t length_bytes, bool append, uint64_t* at_bytes) {
  const uint64_t zs = geometry_.zone_size_bytes;
  if (append) {
    if (offset_bytes % zs != 0 || length_bytes == 0 || length_bytes % description_.block_size_bytes != 0) return ZoneStatus::kInvalidField;
    if (offset_bytes >= size_bytes()) return ZoneStatus::kLbaOutOfRange;
  } else if (auto s = check_range(offset_bytes, length_bytes)) {
    return s;
  }
  Zone& zone = zones_[offset_bytes / zs];
  const uint64_t in_zone = append ? zone.write_pointer_bytes : offset_bytes % zs;
  if (zone.state == ZoneState::kFull) return ZoneStatus::kZoneIsFull;
  if (in_zone != zone.write_pointer_bytes) return ZoneStatus::kInvalidWrite;
  if (length_bytes > zs - in_zone) return ZoneStatus::kBoundaryError;
  if (zone.state == ZoneState::kEmpty || zone.state == ZoneState::kClosed) {
    if (auto s = take_open_resource(zone)) return s;
    set_state(zone, ZoneState::kImplicitlyOpened);
  }
  zone.write_pointer_bytes += length_bytes;
  zone.written_bytes = zone.write_pointer_bytes;
  if (zone.write_pointer_bytes == zs) set_state(zone, ZoneState::kFull);  // written to capacity
  *at_bytes = offset_bytes - offset_bytes % zs + in_zone;
  return std::nullopt;
}

std::optional<ZoneStatus> ZonedDevice::apply_action(Zone& zone, ZoneAction action) {
  const ZoneState s = zone.state;
  switch (action) {
    case ZoneAction::kOpen:
      if (s == ZoneState::kFull) return ZoneStatus::kInvalidTransition;
      if (s == ZoneState::kEmpty || s == ZoneState::kClosed) {
        if (auto status = take_open_resource(zone)) return status;
      }
      if (s != ZoneState::kExplicitlyOpened) set_state(zone, ZoneState::kExplicitlyOpened);
      return std::nullopt;
    case ZoneAction::kClose:
      if (s == ZoneState::kEmpty || s == ZoneState::kFull) return ZoneStatus::kInvalidTransition;
      if (s != ZoneState::kClosed) set_state(zone, ZoneState::kClosed);
      return std::nullopt;
    case ZoneAction::kFinish:
      if (s == ZoneState::kFull) return std::nullopt;
      // From Empty the zone passes through an active state on its way to Full.
      if (s == ZoneState::kEmpty && geometry_.max_active && active_count_ >= geometry_.max_active) return ZoneStatus::kTooManyActive;
      set_state(zone, ZoneState::kFull);
      zone.write_pointer_bytes = geometry_.zone_size_bytes;  // written_bytes stays: the rest reads as zeros
      return std::nullopt;
    case ZoneAction::kReset:
      if (s != ZoneState::kEmpty) set_state(zone, ZoneState::kEmpty);
      zone.write_pointer_bytes = zone.written_bytes = 0;
      return std::nullopt;
  }
  return ZoneStatus::kInvalidField;
}

// ---- I/O ---------------------------------------------------------------------------------------

void ZonedDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  if (auto s = check_range(offset_bytes, length_bytes)) return post_result(reactor, zone_status_result(*s), std::move(done));
  struct Pending {
    uint32_t remaining = 1;  // one for the issuing loop, so no part completes the read early
    int first_error = 0;
    uint32_t length_bytes;
    IoCallback done;
  };
  auto pending = std::make_shared<Pending>(Pending{1, 0, length_bytes, std::move(done)});
  auto part_done = [pending](int res) {
    if (res < 0 && pending->first_error == 0) pending->first_error = res;
    if (--pending->remaining == 0) pending->done(pending->first_error < 0 ? pending->first_error : static_cast<int>(pending->length_bytes));
  };
  const uint64_t zs = geometry_.zone_size_bytes, end = offset_bytes + length_bytes;
  auto* out = static_cast<uint8_t*>(buffer);
  bool any_inner = false;
  for (uint64_t at = offset_bytes; at < end;) {
    const uint64_t zone_start = at - at % zs, part_end = std::min(end, zone_start + zs);
    const uint64_t data_end = std::min(part_end, zone_start + zones_[at / zs].written_bytes);
    if (at < data_end) {
      pending->remaining++;
      any_inner = true;
      inner_->read(reactor, inner_offset(at), static_cast<uint32_t>(data_end - at), out + (at - offset_bytes), part_done);
    }
    const uint64_t zero_from = std::max(at, data_end);
    if (zero_from < part_end) std::memset(out + (zero_from - offset_bytes), 0, part_end - zero_from);
    at = part_end;
  }
  if (!any_inner) return reactor.post([part_done] { part_done(0); });  // completions are never inline
  part_done(0);
}

void ZonedDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  uint64_t at = 0;
  if (auto s = admit_write(offset_bytes, length_bytes, false, &at)) return post_result(reactor, zone_status_result(*s), std::move(done));
  inner_->write(reactor, inner_offset(at), length_bytes, buffer, [this, &reactor, done = std::move(done)](int res) mutable {
    if (res < 0) return done(res);
    persist(reactor, [res, done = std::move(done)](int persisted) { done(persisted < 0 ? persisted : res); });
  });
}

void ZonedDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  uint64_t at = 0;
  if (auto s = admit_write(offset_bytes, length_bytes, false, &at)) return post_result(reactor, zone_status_result(*s), std::move(done));
  inner_->write_zeroes(reactor, inner_offset(at), length_bytes, [this, &reactor, done = std::move(done)](int res) mutable {
    if (res < 0) return done(res);
    persist(reactor, std::move(done));
  });
}

void ZonedDevice::deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  const uint64_t zs = geometry_.zone_size_bytes;
  if (auto s = check_range(offset_bytes, length_bytes)) return post_result(reactor, zone_status_result(*s), std::move(done));
  if (offset_bytes % zs != 0 || length_bytes % zs != 0) return post_result(reactor, zone_status_result(ZoneStatus::kInvalidField), std::move(done));
  reset_zones(reactor, static_cast<uint32_t>(offset_bytes / zs), static_cast<uint32_t>(length_bytes / zs), std::move(done));
}

void ZonedDevice::reset_zones(Reactor& reactor, uint32_t first, uint32_t count, IoCallback done) {
  const uint64_t zs = geometry_.zone_size_bytes;
  // Space first, state second: a write admitted meanwhile counts as before the reset, and
  // whatever it leaves on the inner device reads as zeros once written_bytes is 0.
  inner_->deallocate(reactor, inner_offset(first * zs), count * zs, [this, &reactor, first, count, done = std::move(done)](int res) mutable {
    if (res < 0) return done(res);
    for (uint32_t i = first; i < first + count; i++) apply_action(zones_[i], ZoneAction::kReset);
    persist(reactor, std::move(done));
  });
}

Status ZonedDevice::read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) {
  if (auto s = check_range(offset_bytes, length_bytes)) {
    return Status(io_result_code(zone_status_result(*s)), str("reading ", length_bytes, " bytes at ", offset_bytes, " of ", description_.uri, ": ", zone_status_text(*s)));
  }
  const uint64_t zs = geometry_.zone_size_bytes, end = offset_bytes + length_bytes;
  auto* out = static_cast<uint8_t*>(buffer);
  for (uint64_t at = offset_bytes; at < end;) {
    const uint64_t zone_start = at - at % zs, part_end = std::min(end, zone_start + zs);
    const uint64_t data_end = std::min(part_end, zone_start + zones_[at / zs].written_bytes);
    if (at < data_end) {
      if (Status s = inner_->read_sync(inner_offset(at), data_end - at, out + (at - offset_bytes)); !s.ok()) return s;
    }
    const uint64_t zero_from = std::max(at, data_end);
    if (zero_from < part_end) std::memset(out + (zero_from - offset_bytes), 0, part_end - zero_from);
    at = part_end;
  }
  return Status();
}

Status ZonedDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  uint64_t at = 0;
  if (auto s = admit_write(offset_bytes, length_bytes, false, &at)) {
    return Status(io_result_code(zone_status_result(*s)), str("writing ", length_bytes, " bytes at ", offset_bytes, " of ", description_.uri, ": ", zone_status_text(*s)));
  }
  if (Status s = inner_->write_sync(inner_offset(at), length_bytes, buffer); !s.ok()) return s;
  return persist_sync();
}

// ---- zone management ---------------------------------------------------------------------------

ZoneReportData ZonedDevice::report() const {
  ZoneReportData r{geometry_.zone_size_bytes, description_.block_size_bytes, geometry_.max_open, geometry_.max_active, open_count_, active_count_, {}};
  r.zones.reserve(zones_.size());
  for (size_t i = 0; i < zones_.size(); i++) {
    const uint64_t start = i * geometry_.zone_size_bytes;
    r.zones.push_back(ZoneInfo{start, geometry_.zone_size_bytes, start + zones_[i].write_pointer_bytes, zones_[i].state});
  }
  return r;
}

void ZonedDevice::manage(Reactor& reactor, ZoneAction action, uint64_t zone_start_bytes, IoCallback done) {
  const uint64_t zs = geometry_.zone_size_bytes;
  if (zone_start_bytes % zs != 0) return post_result(reactor, zone_status_result(ZoneStatus::kInvalidField), std::move(done));
  if (zone_start_bytes >= size_bytes()) return post_result(reactor, zone_status_result(ZoneStatus::kLbaOutOfRange), std::move(done));
  const auto index = static_cast<uint32_t>(zone_start_bytes / zs);
  if (action == ZoneAction::kReset) return reset_zones(reactor, index, 1, std::move(done));
  if (auto s = apply_action(zones_[index], action)) return post_result(reactor, zone_status_result(*s), std::move(done));
  persist(reactor, std::move(done));
}

void ZonedDevice::append(Reactor& reactor, uint64_t zone_start_bytes, uint32_t length_bytes, const void* buffer, AppendCallback done) {
  uint64_t at = 0;
  if (auto s = admit_write(zone_start_bytes, length_bytes, true, &at)) {
    return reactor.post([result = zone_status_result(*s), done = std::move(done)] { done(result, 0); });
  }
  inner_->write(reactor, inner_offset(at), length_bytes, buffer, [this, &reactor, at, done = std::move(done)](int res) mutable {
    if (res < 0) return done(res, 0);
    persist(reactor, [res, at, done = std::move(done)](int persisted) { done(persisted < 0 ? persisted : res, at); });
  });
}

}  // namespace strata
