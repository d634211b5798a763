#include "reactor/reactor.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <vector>

#include "util/log.h"

namespace strata {
namespace {
// user_data of the eventfd read; every other SQE carries a heap IoCallback*.
constexpr uint64_t kWakeupTag = 1;
}  // namespace

void Reactor::set_state(ReactorState next) {
  switch (next) {
    case ReactorState::kCreated: assert(false && "a reactor never returns to created"); break;
    case ReactorState::kRunning: assert(state_ == ReactorState::kCreated); break;
    case ReactorState::kStopping: assert(state_ == ReactorState::kRunning); break;
    case ReactorState::kStopped: assert(state_ == ReactorState::kStopping || state_ == ReactorState::kCreated); break;
  }
  state_ = next;
}

Reactor::~Reactor() {
  if (state_ == ReactorState::kRunning) stop();
}

Status Reactor::start() {
  // Cooperative task running: completions of socket operations wait for this thread's next
  // entry into the kernel instead of interrupting it (an IPI each), and IORING_SQ_TASKRUN tells
  // the poll loop to enter. Kernels before 5.19 refuse the flags; the ring then works as before.
  ring_flags_ = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
  int rc = io_uring_queue_init(kRingEntries, &ring_, ring_flags_);
  if (rc == -EINVAL) {
    ring_flags_ = 0;
    rc = io_uring_queue_init(kRingEntries, &ring_, 0);
  }
  if (rc < 0) {
    return Status(ErrorCode::kIoError, str("io_uring_queue_init failed: ", std::strerror(-rc),
                                           "; the kernel must allow io_uring (sysctl kernel.io_uring_disabled=0)"));
  }
  if (const char* max = std::getenv("STRATA_POLL_MAX_US"); max && *max) {
    poll_window_max_us_ = static_cast<uint32_t>(std::min<unsigned long>(std::strtoul(max, nullptr, 10), 100000));
  }
  poll_window_us_ = std::min(poll_window_us_, poll_window_max_us_);
  event_fd_ = eventfd(0, EFD_CLOEXEC);
  if (event_fd_ < 0) {
    io_uring_queue_exit(&ring_);
    return Status(ErrorCode::kIoError, str("eventfd failed: ", std::strerror(errno)));
  }
  set_state(ReactorState::kRunning);
  thread_ = std::thread([this] { run(); });
  return Status();
}

void Reactor::stop() {
  assert(!on_reactor_thread());
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_requested_ = true;
    has_mail_.store(true, std::memory_order_seq_cst);  // makes the loop take the lock and see it
  }
  set_state(ReactorState::kStopping);
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof one);
  thread_.join();
  io_uring_queue_exit(&ring_);
  close(event_fd_);
  event_fd_ = -1;
  set_state(ReactorState::kStopped);
}

void Reactor::post(Task task) {
  if (on_reactor_thread()) {
    // Runs before this reactor next polls or sleeps: no lock, no eventfd, no wakeup.
    local_inbox_.push_back(std::move(task));
    bump(posts_local_);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inbox_.push_back(std::move(task));
    has_mail_.store(true, std::memory_order_seq_cst);
    posts_remote_.fetch_add(1, std::memory_order_relaxed);
  }
  if (sleeping_.load(std::memory_order_seq_cst)) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof one);
    wakeup_writes_.fetch_add(1, std::memory_order_relaxed);
  }
}

ReactorCounters Reactor::counters() const {
  ReactorCounters c;
  c.sleeps = sleeps_.load(std::memory_order_relaxed);
  c.enters = enters_.load(std::memory_order_relaxed);
  c.completions = completions_.load(std::memory_order_relaxed);
  c.posts_remote = posts_remote_.load(std::memory_order_relaxed);
  c.posts_local = posts_local_.load(std::memory_order_relaxed);
  c.wakeup_writes = wakeup_writes_.load(std::memory_order_relaxed);
  c.polls = polls_.load(std::memory_order_relaxed);
  c.poll_hits = poll_hits_.load(std::memory_order_relaxed);
  return c;
}

io_uring_sqe* Reactor::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The SQ ring is full: push this batch to the kernel to make room.
    bump(enters_);
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

uint64_t Reactor::submit(const std::function<void(io_uring_sqe*)>& prepare, IoCallback done) {
  assert(on_reactor_thread());
  io_uring_sqe* sqe = next_sqe();
  prepare(sqe);
  auto* callback = new IoCallback(std::move(done));
  io_uring_sqe_set_data(sqe, callback);
  inflight_ops_++;
  return reinterpret_cast<uint64_t>(callback);
}

void Reactor::cancel(uint64_t tag) {
  submit([tag](io_uring_sqe* sqe) { io_uring_prep_cancel64(sqe, tag, 0); }, [](int) {});
}

void Reactor::arm_eventfd_read() {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_read(sqe, event_fd_, &event_fd_value_, sizeof event_fd_value_, 0);
  io_uring_sqe_set_data64(sqe, kWakeupTag);
}

void Reactor::submit_pending() {
  if (io_uring_sq_ready(&ring_) == 0) return;
  bump(enters_);
  io_uring_submit(&ring_);
}

bool Reactor::kernel_has_task_work() const {
  return (ring_flags_ & IORING_SETUP_TASKRUN_FLAG) && (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_TASKRUN);
}

size_t Reactor::run_tasks(std::deque<Task>& scratch, bool& stopping) {
  size_t ran = 0;
  // Local posts first: they are this thread's own continuations, and may post more.
  while (!local_inbox_.empty()) {
    Task task = std::move(local_inbox_.front());
    local_inbox_.pop_front();
    task();
    ran++;
  }
  if (has_mail_.load(std::memory_order_acquire)) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      scratch.swap(inbox_);
      has_mail_.store(false, std::memory_order_relaxed);
      stopping = stop_requested_;
    }
    for (auto& task : scratch) task();
    ran += scratch.size();
    scratch.clear();
  }
  return ran;
}

size_t Reactor::reap(std::vector<std::pair<uint64_t, int>>& completions) {
  // Pending task work is run by the caller's kernel entry (the loop's submit_and_get_events, or
  // the blocking wait), not here: one entry per turn.
  // Collect first, then run callbacks: callbacks may queue (and, when the SQ is full, submit) more.
  unsigned head;
  io_uring_cqe* cqe;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    completions.emplace_back(cqe->user_data, cqe->res);
    seen++;
  }
  io_uring_cq_advance(&ring_, seen);
  for (auto [user_data, res] : completions) {
    if (user_data == kWakeupTag) {
      arm_eventfd_read();
      continue;
    }
    auto* callback = reinterpret_cast<IoCallback*>(user_data);
    inflight_ops_--;
    bump(completions_);
    (*callback)(res);
    delete callback;
    // Submit in small batches while completions are still being processed: the device starts
    // on new work sooner than if the whole turn's batch waited for the last callback, and
    // each io_uring_enter still carries several SQEs.
    if (io_uring_sq_ready(&ring_) >= kSubmitBatch) submit_pending();
  }
  completions.clear();
  return seen;
}

namespace {
uint64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}
}  // namespace

void Reactor::run() {
  std::string name = str("strata-r", index_);
  pthread_setname_np(pthread_self(), name.c_str());
  arm_eventfd_read();
  std::deque<Task> tasks;
  std::vector<std::pair<uint64_t, int>> completions;
  bool stopping = false;
  // When the current poll window began (0: not polling).
  uint64_t window_start_us = 0;
  for (;;) {
    size_t work = run_tasks(tasks, stopping);
    if (stopping && inflight_ops_ == 0 && local_inbox_.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (inbox_.empty()) break;
      continue;
    }
    // One system call both submits this turn's SQEs and runs the completions the kernel holds
    // for this thread (task work); neither needed, none made.
    if (io_uring_sq_ready(&ring_) > 0 || kernel_has_task_work()) {
      bump(enters_);
      io_uring_submit_and_get_events(&ring_);
    }
    work += reap(completions);
    if (work > 0 || !local_inbox_.empty()) {
      if (window_start_us != 0) bump(poll_hits_);  // polling caught work a sleep would have waited for
      window_start_us = 0;
      continue;
    }
    const uint64_t now = now_us();
    if (window_start_us == 0) window_start_us = now;
    if (!stopping && now - window_start_us < poll_window_us_) {
      bump(polls_);
      // Give the CPU to another runnable thread (on a 2-CPU machine, often the peer whose
      // reply this reactor waits for) rather than spin against it.
      sched_yield();
      continue;
    }
    // Nothing came within the window (or there was none): spinning longer was wasted, so the
    // window halves; it reaches 0 on an idle reactor, which then sleeps at once.
    if (poll_window_us_ > 0) poll_window_us_ /= 2;
    window_start_us = 0;
    sleeping_.store(true, std::memory_order_seq_cst);
    if (has_mail_.load(std::memory_order_seq_cst)) {
      sleeping_.store(false, std::memory_order_relaxed);
      continue;
    }
    bump(sleeps_);
    bump(enters_);
    const uint64_t slept_at_us = now_us();
    int rc = io_uring_submit_and_wait(&ring_, 1);
    sleeping_.store(false, std::memory_order_relaxed);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      log_line(str("reactor ", index_, ": io_uring_submit_and_wait: ", std::strerror(-rc)));
    }
    // Learn from the gap: work that came within the bound would have been caught by a window
    // as long as the gap (plus half, for jitter); a longer gap was worth sleeping through.
    const uint64_t gap_us = now_us() - slept_at_us;
    if (gap_us < poll_window_max_us_) {
      poll_window_us_ = std::max<uint32_t>(poll_window_us_, std::min<uint64_t>(poll_window_max_us_, gap_us + gap_us / 2 + 1));
    }
    reap(completions);
  }
}

}  // namespace strata
