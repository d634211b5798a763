// The NVMe/RDMA transport (NVMe-oF RDMA binding, RoCE through rdma-core): one RDMA CM
// connection and one reliable-connected queue pair carry one NVMe queue (queue_pair.h).
//
//   RdmaListener   the RDMA CM listener on one address: answers connect requests with the
//                  NVMe-oF private data, routes CM events (disconnects) to its queue pairs.
//   RdmaDevice     what one RDMA device lends every queue on it: the protection domain and the
//                  registered pool of data buffers (registered once, never per I/O).
//   RdmaQueuePair  one queue: receives command capsules by SEND into receive buffers it
//                  registered at connect, moves data with RDMA READ (host writes) and RDMA WRITE
//                  (host reads) against the host's keyed SGL, answers by SEND (with invalidate
//                  when the host's descriptor asked for it).
//
// Completion channels and the CM event channel are file descriptors polled by the reactors'
// io_uring (one poll SQE each), so an idle engine sleeps. A queue pair lives on one reactor;
// the listener's CM events are handled on the listener's reactor and posted to the queue's.
//
// What a peer can break is its own queue: a malformed capsule, a descriptor outside the host's
// registered memory (the READ/WRITE fails with a remote access error) or a mid-transfer
// disconnect moves that one QP to error; its posted work flushes and it is destroyed.
#pragma once
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <array>
#include <atomic>
#include <functional>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nvmf/queue_pair.h"
#include "nvmf/rdma_common.h"

namespace strata::nvmf {

// What one RDMA device lends every queue of the target on it: the protection domain and
// registered data buffers (registered once, never per I/O; rdma_common.h).
class RdmaDevice {
 public:
  static Result<std::shared_ptr<RdmaDevice>> open(ibv_context* verbs);
  RdmaBufferPool::Lease take(size_t bytes) { return pool_->take(bytes); }  // any thread
  ibv_context* verbs() const { return verbs_; }
  ibv_pd* pd() const { return pd_->pd; }
  const ibv_device_attr& attr() const { return attr_; }
  std::string name() const { return ibv_get_device_name(verbs_->device); }

 private:
  ibv_context* verbs_ = nullptr;
  std::shared_ptr<RdmaPd> pd_;
  ibv_device_attr attr_{};
  std::shared_ptr<RdmaBufferPool> pool_;
};

class RdmaQueuePair;

class RdmaListener : public std::enable_shared_from_this<RdmaListener> {
 public:
  RdmaListener(Target& target, Reactor& reactor) : target_(target), reactor_(reactor) {}
  ~RdmaListener();
  // Control thread: binds address:port (port 0 = ephemeral) and listens. Returns the port.
  Result<uint16_t> bind_and_listen(const std::string& address, uint16_t port);
  void start();  // listener's reactor thread: arms the CM channel poll
  // Any thread: new connect requests are rejected from now on (the listening id goes).
  void stop_accepting_async();
  // Any thread, once every queue pair of this listener has closed: the CM channel goes, then
  // `done` runs on the listener's reactor.
  void shutdown_async(std::function<void()> done);
  bool closed() const { return closed_; }
  Reactor& reactor() { return reactor_; }
  const std::shared_ptr<RdmaDevice>& device() const { return device_; }

  // Queue pairs' reactor threads: forget a CM id before it is destroyed.
  void forget(rdma_cm_id* id);

 private:
  void arm_poll();
  void on_events();
  void on_connect_request(rdma_cm_id* id, const rdma_conn_param& param);
  void reject(rdma_cm_id* id, uint16_t status, const std::string& why);

  Target& target_;
  Reactor& reactor_;
  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* listen_id_ = nullptr;
  std::shared_ptr<RdmaDevice> device_;
  bool poll_inflight_ = false;  // reactor thread only
  uint64_t poll_tag_ = 0;
  bool shutting_down_ = false;  // reactor thread only
  std::function<void()> shutdown_done_;
  std::atomic<bool> closed_{false};
  std::mutex mutex_;  // guards queues_ and refused_
  std::map<rdma_cm_id*, std::weak_ptr<RdmaQueuePair>> queues_;
  uint64_t refused_ = 0;  // connect requests refused at the queue pair cap
};

enum class RdmaQueueState {
  kConnecting,  // accepted; capsules may arrive once the host sees the connection established
  kServing,     // capsules and data flow
  kDraining,    // closing: the QP is moved to error; posted work flushes (a kFlush close first lets its responses leave)
  kClosed,      // QP, CQ, channel and CM id destroyed
};

class RdmaQueuePair final : public QueuePair {
 public:
  RdmaQueuePair(Target& target, Reactor& reactor, uint64_t id, std::string peer, std::shared_ptr<RdmaListener> listener, rdma_cm_id* cm_id);
  ~RdmaQueuePair() override;
  // Listener's thread, before the queue is known to anyone: creates the CQ, QP and receive
  // buffers for `receive_entries` capsules and posts them; then accepts with CRQSIZE.
  Status setup(uint16_t receive_entries, const rdma_conn_param& request);
  // Listener's thread, when setup failed: undoes it, leaving the CM id to the caller.
  void abandon_setup();
  void start();  // queue's reactor thread
  void close_async(const std::string& reason, bool let_closing_flush = false) override;
  uint32_t transport_sgl_support() const override { return 1u << 2; }  // keyed SGL data blocks

 protected:
  void send_completion(Request& r, const Completion& c) override;
  bool serving() const override { return state_ == RdmaQueueState::kConnecting || state_ == RdmaQueueState::kServing; }
  void begin_close(CloseMode mode, const std::string& reason) override;
  void post_to_reactor(std::function<void()> task) override { reactor_.post(std::move(task)); }
  friend class RdmaListener;  // CM events: established, disconnected
  void ensure_timer() override;

 private:
  // What a work request was, in its wr_id's top byte; the rest says which.
  enum class Work : uint8_t { kRecv = 1, kRead = 2, kWrite = 3, kSend = 4 };
  static uint64_t wr_id(Work w, uint16_t slot, uint32_t generation) {
    return (uint64_t(w) << 56) | (uint64_t(slot) << 32) | generation;
  }
  // Per request slot: where the host's data lives, and our buffer's key.
  struct Transfer {
    uint64_t remote_address = 0;
    uint32_t remote_key = 0;
    bool invalidate = false;  // answer with SEND with invalidate of remote_key
    uint32_t local_key = 0;
    std::shared_ptr<AlignedBuffer> dma_hold;  // the buffer an RDMA READ is writing into
  };

  void set_state(RdmaQueueState next);
  void arm_poll();
  void on_completion_event();
  void handle_completion(const ibv_wc& wc);
  void handle_capsule(uint32_t receive_index, uint32_t bytes);
  void post_receive(uint32_t receive_index);  // while serving; a failure ends the queue pair
  bool post_one_receive(uint32_t receive_index);
  // Takes a registered buffer for r; false (after refusing r) when none could be had.
  bool lease_buffer(Request& r, uint32_t bytes);
  void start_read(Request& r);
  void pump_reads();
  void reject(Request& r, uint16_t status);
  void fail(const std::string& why);
  void maybe_finish_close();
  void destroy_resources();
  void on_timer();

  std::shared_ptr<RdmaListener> listener_;
  rdma_cm_id* cm_id_;
  std::shared_ptr<RdmaDevice> device_;
  RdmaQueueState state_ = RdmaQueueState::kConnecting;
  std::string close_reason_;
  std::chrono::steady_clock::time_point deadline_;  // Connect deadline, then the drain deadline
  bool flush_before_disconnect_ = false;

  ibv_comp_channel* channel_ = nullptr;
  ibv_cq* cq_ = nullptr;
  bool poll_inflight_ = false;
  uint64_t poll_tag_ = 0;

  // Receive buffers: one capsule (SQE + in-capsule data) each, registered once.
  uint32_t receive_bytes_ = 0;
  std::vector<uint8_t> receive_region_;
  ibv_mr* receive_mr_ = nullptr;
  std::deque<std::pair<uint32_t, uint32_t>> stashed_;  // capsules waiting for a free request slot: (receive index, bytes)
  // Responses: one 16-byte CQE per request slot.
  std::vector<uint8_t> response_region_;
  ibv_mr* response_mr_ = nullptr;
  std::vector<Transfer> transfers_;

  uint32_t posted_receives_ = 0;
  uint32_t posted_signaled_sends_ = 0;  // READs and SENDs (WRITEs ride unsignaled before their SEND)
  uint32_t reads_inflight_ = 0;
  uint32_t max_reads_inflight_ = 1;  // the initiator depth agreed in the CM exchange
  std::deque<std::pair<uint16_t, uint32_t>> reads_waiting_;  // (slot, generation)

  bool timer_inflight_ = false;
  __kernel_timespec timer_ts_{};
};

}  // namespace strata::nvmf
