// The FDP device (fdp_device.h): URI parsing, pass-through I/O and the reclaim-unit media model.
#include "device/fdp_device.h"

#include <algorithm>
#include <cassert>
#include <optional>

#include "device/uri.h"

namespace strata {

namespace {
constexpr const char* kFdpGrammar = "fdp://?base=<percent-encoded device URI>&handles=N[&ru_mib=N][&op_percent=N]";
using fdp_rules::kHandlesMax;
using fdp_rules::kOpPercentDefault;
using fdp_rules::kOpPercentMax;
using fdp_rules::kRuMibDefault;
using fdp_rules::kRuMibMax;
}  // namespace

Result<std::unique_ptr<Device>> open_fdp_device(const std::string& uri, bool may_create) {
  const std::string prefix = "fdp://?";
  if (uri.rfind(prefix, 0) != 0) return Error{ErrorCode::kInvalidArgument, str("FDP device URI '", uri, "' must look like ", kFdpGrammar)};
  std::optional<std::string> base;
  std::optional<uint64_t> handles, ru_mib, op_percent;
  for (const auto& [key, value] : query_params(uri.substr(prefix.size()))) {
    if (key == "base") {
      if (base) return Error{ErrorCode::kInvalidArgument, str("FDP device URI '", uri, "' names base twice")};
      auto decoded = percent_decode(value);
      if (!decoded.ok()) return decoded.error();
      base = decoded.value();
      continue;
    }
    std::optional<uint64_t>* slot = key == "handles" ? &handles : key == "ru_mib" ? &ru_mib : key == "op_percent" ? &op_percent : nullptr;
    if (slot == nullptr) return Error{ErrorCode::kInvalidArgument, str("FDP device URI '", uri, "' has unknown parameter '", key, "'; the grammar is ", kFdpGrammar)};
    const uint64_t max = key == "handles" ? kHandlesMax : key == "ru_mib" ? kRuMibMax : kOpPercentMax;
    auto n = parse_whole_number(value, 1, max);
    if (slot->has_value() || !n) return Error{ErrorCode::kInvalidArgument, str(key, " in '", uri, "' must be given once, as an integer from 1 to ", max, ", got '", value, "'")};
    *slot = *n;
  }
  if (!base || base->empty() || !handles) return Error{ErrorCode::kInvalidArgument, str("FDP device URI '", uri, "' needs base and handles: ", kFdpGrammar)};
  for (const char* nested : {"fdp://", "zoned://", "ftl://"}) {
    if (base->rfind(nested, 0) == 0) return Error{ErrorCode::kInvalidArgument, str("FDP device URI '", uri, "' has a ", nested, " base; FDP goes over a plain device")};
  }
  auto inner = open_device(*base, may_create);
  if (!inner.ok()) return inner.error();
  DeviceDescription d = inner.value()->description();
  d.uri = str("fdp://?base=", percent_encode(d.uri), "&handles=", *handles, "&ru_mib=", ru_mib.value_or(kRuMibDefault), "&op_percent=", op_percent.value_or(kOpPercentDefault));
  return std::unique_ptr<Device>(new FdpDevice(std::move(d), std::shared_ptr<Device>(std::move(inner.value())), uint32_t(*handles),
                                               ru_mib.value_or(kRuMibDefault) * (1 << 20) / FdpDevice::kModelBlockBytes, uint32_t(op_percent.value_or(kOpPercentDefault))));
}

FdpDevice::FdpDevice(DeviceDescription description, std::shared_ptr<Device> inner, uint32_t handles, uint64_t ru_blocks, uint32_t op_percent)
    : Device(std::move(description)), inner_(std::move(inner)), handles_(handles), ru_blocks_(ru_blocks), reserve_rus_(handles + 2) {
  const uint64_t blocks = (size_bytes() + kModelBlockBytes - 1) / kModelBlockBytes;
  const uint64_t logical_rus = (blocks + ru_blocks_ - 1) / ru_blocks_;
  const uint64_t spare = std::max<uint64_t>(reserve_rus_ + handles_ + 1, logical_rus * op_percent / 100);
  ru_of_.assign(blocks, kNoRu);
  rus_.resize(logical_rus + spare);
  for (uint32_t r = 0; r < rus_.size(); r++) free_.push_back(r);
  open_.assign(handles_ + 1, kNoRu);
  stats_.handle_count = handles_;
  stats_.reclaim_unit_bytes = ru_blocks_ * kModelBlockBytes;
  stats_.reclaim_units = uint32_t(rus_.size());
  stats_.handle_write_bytes.assign(handles_, 0);
}

void FdpDevice::set_ru_state(uint32_t ru, RuState next) {
  [[maybe_unused]] const RuState prev = rus_[ru].state;
  assert((prev == RuState::kFree && next == RuState::kOpen) || (prev == RuState::kOpen && next == RuState::kFull) ||
         (prev == RuState::kFull && next == RuState::kFree));
  rus_[ru].state = next;
}

std::pair<uint64_t, uint64_t> FdpDevice::model_blocks(uint64_t offset_bytes, uint64_t length_bytes) const {
  const uint64_t first = offset_bytes / kModelBlockBytes;
  const uint64_t end = std::min<uint64_t>((offset_bytes + length_bytes + kModelBlockBytes - 1) / kModelBlockBytes, ru_of_.size());
  return {first, end > first ? end - first : 0};
}

void FdpDevice::invalidate(uint64_t first_block, uint64_t blocks) {
  for (uint64_t b = first_block; b < first_block + blocks; b++) {
    if (ru_of_[b] == kNoRu) continue;
    assert(rus_[ru_of_[b]].valid > 0);
    rus_[ru_of_[b]].valid--;
    ru_of_[b] = kNoRu;
  }
}

void FdpDevice::place(uint64_t first_block, uint64_t blocks, uint32_t stream) {
  invalidate(first_block, blocks);
  for (uint64_t b = first_block; b < first_block + blocks; b++) {
    uint32_t& open = open_[stream];
    if (open == kNoRu || rus_[open].blocks.size() >= ru_blocks_) {
      if (open != kNoRu) set_ru_state(open, RuState::kFull);
      open = kNoRu;  // take_free_ru may collect, which writes through the GC stream
      const uint32_t ru = take_free_ru();
      open_[stream] = ru;
      set_ru_state(ru, RuState::kOpen);
    }
    Ru& ru = rus_[open_[stream]];
    ru.blocks.push_back(uint32_t(b));
    ru.valid++;
    ru_of_[b] = open_[stream];
    stats_.media_write_bytes += kModelBlockBytes;
  }
}

uint32_t FdpDevice::take_free_ru() {
  if (!collecting_) {
    collecting_ = true;
    while (free_.size() < reserve_rus_) {
      const uint64_t before = free_.size();
      collect();
      if (free_.size() == before) break;  // nothing to collect: the model has no invalid block left
    }
    collecting_ = false;
  }
  assert(!free_.empty());
  const uint32_t ru = free_.front();
  free_.pop_front();
  return ru;
}

void FdpDevice::collect() {
  uint32_t victim = kNoRu;
  for (uint32_t r = 0; r < rus_.size(); r++) {
    if (rus_[r].state == RuState::kFull && rus_[r].valid < ru_blocks_ && (victim == kNoRu || rus_[r].valid < rus_[victim].valid)) victim = r;
  }
  if (victim == kNoRu) return;
  const std::vector<uint32_t> blocks = std::move(rus_[victim].blocks);
  rus_[victim].blocks.clear();
  for (uint32_t b : blocks) {
    if (ru_of_[b] != victim) continue;
    stats_.gc_relocated_bytes += kModelBlockBytes;
    place(b, 1, handles_);
  }
  assert(rus_[victim].valid == 0);
  set_ru_state(victim, RuState::kFree);
  free_.push_back(victim);
}

void FdpDevice::host_write(uint64_t offset_bytes, uint64_t length_bytes, uint32_t handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto [first, blocks] = model_blocks(offset_bytes, length_bytes);
  stats_.host_write_bytes += length_bytes;
  stats_.handle_write_bytes[handle] += length_bytes;
  place(first, blocks, handle);
}

void FdpDevice::forget(uint64_t offset_bytes, uint64_t length_bytes) {
  // Like a drive's Write Zeroes with deallocate: no media is written for it.
  std::lock_guard<std::mutex> lock(mutex_);
  const auto [first, blocks] = model_blocks(offset_bytes, length_bytes);
  invalidate(first, blocks);
}

void FdpDevice::write_placed(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, uint32_t handle, IoCallback done) {
  if (handle >= handles_) return done(-EINVAL);  // Invalid Placement Handle, for the host's own good
  host_write(offset_bytes, length_bytes, handle);
  inner_->write(reactor, offset_bytes, length_bytes, buffer, std::move(done));
}

Status FdpDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  host_write(offset_bytes, length_bytes, 0);
  return inner_->write_sync(offset_bytes, length_bytes, buffer);
}

void FdpDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  forget(offset_bytes, length_bytes);
  inner_->write_zeroes(reactor, offset_bytes, length_bytes, std::move(done));
}

void FdpDevice::deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  forget(offset_bytes, length_bytes);
  inner_->deallocate(reactor, offset_bytes, length_bytes, std::move(done));
}

PlacementStats FdpDevice::placement_stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  PlacementStats s = stats_;
  s.free_reclaim_units = uint32_t(free_.size());
  return s;
}

}  // namespace strata
