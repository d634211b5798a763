// Which units of a child were written but are not yet proven durable on it.
//
// A child acknowledges a write when it is in its volatile cache; only a completed flush makes
// it durable (our target advertises a volatile write cache). If the child's node loses power
// before the next flush, those writes are gone from it although the nexus saw them succeed. So
// when a child leaves the write set, what it may lack is what it missed while away *plus* what
// it acknowledged since its last completed flush; a partial rebuild copies both.
//
// NVMe semantics: a flush covers the writes that completed before the flush was submitted. A
// write that completes while a flush is in flight is not covered by it.
#pragma once
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace strata::nexus {

class UnflushedUnits {
 public:
  // Beyond this many units (64 GiB of 64 KiB units written without a flush) the set stops
  // growing and says so: the child then needs a full rebuild if it leaves. Bounds memory.
  static constexpr size_t kMaxUnits = 1u << 20;

  // A write covering `unit` completed on the child.
  void written(uint64_t unit) {
    if (!overflowed_ && units_.size() >= kMaxUnits && !units_.count(unit)) {
      overflowed_ = true;
      units_.clear();
    }
    if (overflowed_) {
      dropped_at_ = flushes_started_;  // untracked: only a flush submitted after now covers it
      return;
    }
    units_[unit] = flushes_started_;
  }
  // A flush is being submitted: the returned ticket goes to flush_completed.
  uint64_t flush_started() { return ++flushes_started_; }
  // The flush with `ticket` completed successfully: writes completed before it was submitted
  // are durable.
  void flush_completed(uint64_t ticket) {
    assert(ticket >= 1 && ticket <= flushes_started_);
    // Every untracked write completed before this flush was submitted: all durable now.
    if (overflowed_ && dropped_at_ < ticket) overflowed_ = false;
    std::erase_if(units_, [ticket](const auto& entry) { return entry.second < ticket; });
  }
  // True when the set lost track (too many units): treat every unit as unflushed.
  bool overflowed() const { return overflowed_; }
  template <typename F>
  void for_each(F f) const {
    for (const auto& [unit, seq] : units_) f(unit);
  }
  size_t size() const { return units_.size(); }
  void clear() {
    units_.clear();
    overflowed_ = false;
  }

 private:
  std::unordered_map<uint64_t, uint64_t> units_;  // unit -> flushes started when its write completed
  uint64_t flushes_started_ = 0;
  bool overflowed_ = false;
  uint64_t dropped_at_ = 0;  // flushes started when the last untracked write completed
};

}  // namespace strata::nexus
