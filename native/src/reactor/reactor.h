// A reactor: one thread that owns one io_uring. Everything that touches a pool's runtime state
// runs on that pool's reactor, so pool code needs no locks. Other threads talk to a reactor only
// through post(), a mutex-protected queue plus an eventfd the ring is always reading, so an
// idle reactor sleeps in io_uring_submit_and_wait (≈0% CPU) and wakes on I/O or a message.
// Under load every SQE prepared during one loop turn goes out in a single io_uring_submit.
//
// Poll, then sleep: after work, the reactor keeps checking its ring and inbox for a short,
// adaptive window before it blocks, because a wakeup from io_uring_enter costs more than the
// whole user-space part of an NVMe/TCP command (docs/PERFORMANCE.md, issue 13's profile). The
// window grows while polling catches work and shrinks to nothing when it does not, so an idle
// engine still sleeps. A post from another thread writes the eventfd only when the reactor is
// (about to be) asleep; a post from the reactor's own thread never does.
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

// What a reactor did, counted since it started (monotonic; any thread may read them while it
// runs). Benchmarks divide them by the I/Os they drove: wakeups, syscalls and hops per I/O.
struct ReactorCounters {
  uint64_t sleeps = 0;         // blocking io_uring_enter calls (each ends in a wakeup)
  uint64_t enters = 0;         // io_uring_enter system calls of any kind (submit, wait, task work)
  uint64_t completions = 0;    // CQEs of operations (eventfd reads excluded)
  uint64_t posts_remote = 0;   // tasks posted from another thread (a cross-reactor hop)
  uint64_t posts_local = 0;    // tasks the reactor posted to itself (no syscall)
  uint64_t wakeup_writes = 0;  // eventfd writes, each a syscall that wakes a sleeping reactor
  uint64_t polls = 0;          // loop turns spent polling instead of sleeping
  uint64_t poll_hits = 0;      // polling windows that found work before they ran out
};

class Reactor {
 public:
  static constexpr unsigned kRingEntries = 512;
  // While completions are processed, SQEs go to the kernel in groups of this many. Measured on
  // a virtio disk at queue depth 32: waiting for the whole turn's batch cost about 25% of IOPS;
  // 1-4 were within noise of each other (docs/PERFORMANCE.md).
  static constexpr unsigned kSubmitBatch = 4;
  // The poll window's bounds. The window itself follows the gaps the reactor observes (a wakeup
  // that came sooner than the bound widens it to 1.5x that gap), so on this 2-CPU machine, where
  // a loopback NVMe/TCP round trip is ~80 us, it settles near 120 us. The bound is for slower
  // hosts: in the interop VM (software emulation) a round trip is ~1 ms and a 200 us bound never
  // polled at all (kernel host at qd1: 0.33x nvmet-tcp's IOPS; with a 3 ms bound about 0.7x).
  // Polling yields the CPU each turn, so a waiting reactor does not starve the peer it waits for.
  // STRATA_POLL_MAX_US overrides it (0 = never poll: sleep whenever idle, the behaviour before
  // polling, kept so benchmarks can compare both in one build).
  static constexpr uint32_t kPollWindowMaxUs = 1000;
  static constexpr uint32_t kPollWindowStartUs = 50;

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
  // A consistent-enough snapshot of the counters (each read is atomic; they are not read as one).
  ReactorCounters counters() const;

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
  // Submits what is queued without waiting (counts the system call when there is one).
  void submit_pending();
  // Runs posted tasks (local and remote). Returns how many ran.
  size_t run_tasks(std::deque<Task>& scratch, bool& stopping);
  // Collects the CQEs present now and runs their callbacks (no system call). Returns how many.
  size_t reap(std::vector<std::pair<uint64_t, int>>& scratch);
  // Whether the kernel holds completions it will deliver only when this thread enters it
  // (IORING_SQ_TASKRUN under cooperative task running).
  bool kernel_has_task_work() const;
  void bump(std::atomic<uint64_t>& counter) { counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }

  const int index_;
  ReactorState state_ = ReactorState::kCreated;
  io_uring ring_{};
  int event_fd_ = -1;
  uint64_t event_fd_value_ = 0;
  std::thread thread_;
  uint64_t inflight_ops_ = 0;  // reactor thread only
  unsigned ring_flags_ = 0;     // the IORING_SETUP_* flags the ring was created with
  std::deque<Task> local_inbox_;  // posts from this reactor's own thread (no lock, no wakeup)
  uint32_t poll_window_max_us_ = kPollWindowMaxUs;  // set at start
  uint32_t poll_window_us_ = kPollWindowStartUs;      // reactor thread only; adapted per window

  // Counters: written by the reactor thread only (plain increments of relaxed atomics), except
  // posts_remote and wakeup_writes, which posting threads add to under mutex_.
  std::atomic<uint64_t> sleeps_{0}, enters_{0}, completions_{0}, posts_remote_{0}, posts_local_{0}, wakeup_writes_{0}, polls_{0},
      poll_hits_{0};
  // Dekker pair with post(): the reactor sets sleeping_ then checks has_mail_; a poster sets
  // has_mail_ then checks sleeping_ (both seq_cst), so one of them always sees the other and a
  // post is never left unwoken while the reactor sleeps.
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> has_mail_{false};


  std::mutex mutex_;  // guards inbox_ and stop_requested_
  std::deque<Task> inbox_;
  bool stop_requested_ = false;
};

}  // namespace strata
