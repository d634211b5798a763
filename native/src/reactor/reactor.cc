#include "reactor/reactor.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
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
  int rc = io_uring_queue_init(kRingEntries, &ring_, 0);
  if (rc < 0) {
    return Status(ErrorCode::kIoError, str("io_uring_queue_init failed: ", std::strerror(-rc),
                                           "; the kernel must allow io_uring (sysctl kernel.io_uring_disabled=0)"));
  }
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
  {
    std::lock_guard<std::mutex> lock(mutex_);
    inbox_.push_back(std::move(task));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(event_fd_, &one, sizeof one);
}

io_uring_sqe* Reactor::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // The SQ ring is full: push this batch to the kernel to make room.
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

void Reactor::run() {
  std::string name = str("strata-r", index_);
  pthread_setname_np(pthread_self(), name.c_str());
  arm_eventfd_read();
  std::deque<Task> tasks;
  std::vector<std::pair<uint64_t, int>> completions;
  for (;;) {
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks.swap(inbox_);
      stopping = stop_requested_;
    }
    for (auto& task : tasks) task();
    tasks.clear();
    if (stopping && inflight_ops_ == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (inbox_.empty()) break;
      continue;
    }
    int rc = io_uring_submit_and_wait(&ring_, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      log_line(str("reactor ", index_, ": io_uring_submit_and_wait: ", std::strerror(-rc)));
    }
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
      (*callback)(res);
      delete callback;
      // Submit in small batches while completions are still being processed: the device starts
      // on new work sooner than if the whole turn's batch waited for the last callback, and
      // each io_uring_enter still carries several SQEs.
      if (io_uring_sq_ready(&ring_) >= kSubmitBatch) io_uring_submit(&ring_);
    }
    completions.clear();
  }
}

}  // namespace strata
