// A reactor: one thread that owns one io_uring. Everything that touches a pool's runtime state
// runs on that pool's reactor, so pool code needs no locks. Other threads talk to a reactor only
// through post(), a mutex-protected queue plus an eventfd the ring is always reading, so an
// idle reactor sleeps in io_uring_submit_and_wait (≈0% CPU) and wakes on I/O or a message.
// Under load every SQE prepared during one loop turn goes out in a single io_uring_submit.
#pragma once
#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "util/status.h"

namespace strata {

// Completion of one io_uring operation: bytes transferred or -errno.
using IoCallback = std::function<void(int result)>;
using Task = std::function<void()>;

enum class ReactorState {
  kCreated,   // constructed; no ring, no thread
  kRunning,   // thread runs the loop and accepts posts
  kStopping,  // stop requested; finishes queued tasks and in-flight I/O, then exits
  kStopped,   // thread joined, ring closed
};

class Reactor {
 public:
  static constexpr unsigned kRingEntries = 512;
  // While completions are processed, SQEs go to the kernel in groups of this many. Measured on
  // a virtio disk at queue depth 32: waiting for the whole turn's batch cost about 25% of IOPS;
  // 1-4 were within noise of each other (docs/PERFORMANCE.md).
  static constexpr unsigned kSubmitBatch = 4;

  explicit Reactor(int index) : index_(index) {}
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  Status start();
  // Blocks until queued tasks and in-flight I/O are done and the thread has exited.
  // Must not be called on this reactor's thread.
  void stop();
  // Runs `task` on the reactor thread. Any thread.
  void post(Task task);
  bool on_reactor_thread() const { return std::this_thread::get_id() == thread_.get_id(); }
  int index() const { return index_; }

  // Reactor thread only: queues one SQE (prepared by `prepare`); `done` runs on completion.
  // The SQE is submitted with the rest of this loop turn's batch. Returns the operation's tag
  // for cancel().
  uint64_t submit(const std::function<void(io_uring_sqe*)>& prepare, IoCallback done);
  // Reactor thread only: asks the kernel to cancel the operation `tag` (a poll on an fd about
  // to be closed, which would otherwise never complete). Only for an operation whose callback
  // has not run yet; its callback then runs with -ECANCELED (or its own result if it won).
  void cancel(uint64_t tag);

 private:
  void set_state(ReactorState next);
  void run();
  void arm_eventfd_read();
  io_uring_sqe* next_sqe();

  const int index_;
  ReactorState state_ = ReactorState::kCreated;
  io_uring ring_{};
  int event_fd_ = -1;
  uint64_t event_fd_value_ = 0;
  std::thread thread_;
  uint64_t inflight_ops_ = 0;  // reactor thread only


  std::mutex mutex_;  // guards inbox_ and stop_requested_
  std::deque<Task> inbox_;
  bool stop_requested_ = false;
};

}  // namespace strata
