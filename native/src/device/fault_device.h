// Fault injection: a Device wrapper that fails or delays chosen I/Os of the device it wraps.
// Only built into a nexus child when the engine runs with fault injection enabled (a test
// flag), so production I/O never pays for it. Rules are changed on the owning reactor only.
#pragma once
#include <memory>
#include <vector>

#include "device/device.h"

namespace strata {

enum class FaultOp { kRead, kWrite, kAny };

struct FaultRule {
  FaultOp op = FaultOp::kAny;
  int error = 0;             // errno to fail with (EIO, ENOSPC, ...); 0 = no error (a pure delay)
  uint32_t delay_ms = 0;     // held this long before issuing (or failing)
  uint64_t offset_bytes = 0;  // the range of the wrapped device the rule applies to
  uint64_t length_bytes = 0;  // 0 = to the end of the device
  uint64_t remaining = 0;     // matching I/Os left to fault; 0 = unlimited
};

class FaultDevice : public Device, public std::enable_shared_from_this<FaultDevice> {
 public:
  // `timeout_ms`: an injected delay at least this long completes with -ETIMEDOUT at the timeout
  // and the I/O is never issued, as a device whose command timed out would behave.
  FaultDevice(std::shared_ptr<Device> inner, uint32_t timeout_ms)
      : Device(inner->description()), inner_(std::move(inner)), timeout_ms_(timeout_ms) {}

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override;
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override { return inner_->read_sync(offset_bytes, length_bytes, buffer); }
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override {
    return inner_->write_sync(offset_bytes, length_bytes, buffer);
  }
  Result<uint64_t> refresh_size() override {
    auto size = inner_->refresh_size();
    if (size.ok()) description_.size_bytes = size.value();
    return size;
  }
  bool is_remote() const override { return inner_->is_remote(); }
  uint32_t max_io_bytes() const override { return inner_->max_io_bytes(); }
  Reactor* home_reactor() const override { return inner_->home_reactor(); }
  // Deallocate is a write for the rules (it changes what reads return).
  void deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  void allocation_map(Reactor& caller, std::function<void(Result<AllocationMap>)> done) override { inner_->allocation_map(caller, std::move(done)); }
  std::string lost_reason() const override { return inner_->lost_reason(); }
  Status drop_connections(const std::string& why) override { return inner_->drop_connections(why); }

  Device& inner() { return *inner_; }
  std::shared_ptr<Device> inner_shared() const { return inner_; }
  // Reactor thread of the owner.
  void add_rule(FaultRule rule) { rules_.push_back(rule); }
  void clear_rules() { rules_.clear(); }
  size_t rule_count() const { return rules_.size(); }

 private:
  // The first rule matching (op, range), its `remaining` consumed; nullptr when none matches.
  const FaultRule* match(bool is_write, uint64_t offset_bytes, uint64_t length_bytes);
  void apply(Reactor& reactor, bool is_write, uint64_t offset_bytes, uint64_t length_bytes, std::function<void(IoCallback)> issue, IoCallback done);

  std::shared_ptr<Device> inner_;
  const uint32_t timeout_ms_;
  std::vector<FaultRule> rules_;
  FaultRule fired_;  // copy of the rule that matched last (rules_ may drop it)
};

// Runs `task` on `reactor` after `delay_ms` (a timeout SQE); reactor thread only.
void run_after(Reactor& reactor, uint32_t delay_ms, std::function<void()> task);

}  // namespace strata
