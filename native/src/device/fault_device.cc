#include "device/fault_device.h"

#include <liburing.h>

#include <cerrno>

namespace strata {

void run_after(Reactor& reactor, uint32_t delay_ms, std::function<void()> task) {
  // The timespec must live until the kernel reads it: keep it in the completion's closure.
  auto ts = std::make_shared<__kernel_timespec>();
  ts->tv_sec = delay_ms / 1000;
  ts->tv_nsec = static_cast<long long>(delay_ms % 1000) * 1'000'000;
  reactor.submit([ts](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, ts.get(), 0, 0); },
                 [ts, task = std::move(task)](int) { task(); });
}

const FaultRule* FaultDevice::match(bool is_write, uint64_t offset_bytes, uint64_t length_bytes) {
  for (size_t i = 0; i < rules_.size(); i++) {
    FaultRule& r = rules_[i];
    if (r.op == FaultOp::kRead && is_write) continue;
    if (r.op == FaultOp::kWrite && !is_write) continue;
    if (length_bytes == 0) {
      if (r.length_bytes != 0) continue;  // a flush has no range: only whole-device rules apply
    } else {
      const uint64_t end = r.length_bytes == 0 ? UINT64_MAX : r.offset_bytes + r.length_bytes;
      if (offset_bytes + length_bytes <= r.offset_bytes || offset_bytes >= end) continue;
    }
    fired_ = r;
    if (r.remaining > 0 && --r.remaining == 0) rules_.erase(rules_.begin() + static_cast<long>(i));
    return &fired_;
  }
  return nullptr;
}

void FaultDevice::apply(Reactor& reactor, bool is_write, uint64_t offset_bytes, uint64_t length_bytes, std::function<void(IoCallback)> issue,
                        IoCallback done) {
  const FaultRule* rule = match(is_write, offset_bytes, length_bytes);
  if (rule == nullptr) return issue(std::move(done));
  const int error = rule->error;
  if (rule->delay_ms >= timeout_ms_ && timeout_ms_ > 0) {
    return run_after(reactor, timeout_ms_, [done = std::move(done)] { done(-ETIMEDOUT); });
  }
  auto finish = [error, issue = std::move(issue), done = std::move(done)]() mutable {
    if (error != 0) return done(-error);
    issue(std::move(done));
  };
  if (rule->delay_ms == 0) return finish();
  // The wrapped device must outlive the delayed issue.
  run_after(reactor, rule->delay_ms, [self = shared_from_this(), finish = std::move(finish)]() mutable { finish(); });
}

void FaultDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  apply(reactor, false, offset_bytes, length_bytes,
        [inner = inner_, &reactor, offset_bytes, length_bytes, buffer](IoCallback d) { inner->read(reactor, offset_bytes, length_bytes, buffer, std::move(d)); },
        std::move(done));
}

void FaultDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  apply(reactor, true, offset_bytes, length_bytes,
        [inner = inner_, &reactor, offset_bytes, length_bytes, buffer](IoCallback d) { inner->write(reactor, offset_bytes, length_bytes, buffer, std::move(d)); },
        std::move(done));
}

void FaultDevice::flush(Reactor& reactor, IoCallback done) {
  apply(reactor, true, 0, 0, [inner = inner_, &reactor](IoCallback d) { inner->flush(reactor, std::move(d)); }, std::move(done));
}

void FaultDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  apply(reactor, true, offset_bytes, length_bytes,
        [inner = inner_, &reactor, offset_bytes, length_bytes](IoCallback d) { inner->write_zeroes(reactor, offset_bytes, length_bytes, std::move(d)); },
        std::move(done));
}

void FaultDevice::deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  apply(reactor, true, offset_bytes, length_bytes,
        [inner = inner_, &reactor, offset_bytes, length_bytes](IoCallback d) { inner->deallocate(reactor, offset_bytes, length_bytes, std::move(d)); },
        std::move(done));
}

}  // namespace strata
