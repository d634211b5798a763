// The NVMe/RDMA transport of the host (initiator) side: one RDMA CM connection and RC queue
// pair per host queue. Command capsules go by SEND (with in-capsule data on I/O queues when
// the target offers it); everything else the target moves itself with RDMA READ/WRITE against
// a keyed SGL naming a buffer of this queue's registered pool (registered once per connection:
// a target can reach only the buffers of the queues connected to it). Responses arrive by SEND
// into receive buffers posted at connect. What the commands mean is host_queue.h's.
#pragma once
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <memory>
#include <string>
#include <vector>

#include "nvmf/host_queue.h"
#include "nvmf/rdma_common.h"

namespace strata::nvmf {

// One connected queue: its CM id and channel, QP, CQ and registered memory. Destroying it
// destroys the QP first, so the device stops touching the buffers before they go.
struct RdmaHostLink {
  rdma_event_channel* cm_channel = nullptr;
  rdma_cm_id* id = nullptr;
  std::shared_ptr<RdmaPd> pd;
  ibv_comp_channel* comp_channel = nullptr;
  ibv_cq* cq = nullptr;
  std::shared_ptr<RdmaBufferPool> pool;  // data buffers the target reads and writes
  uint32_t depth = 0;                    // command ids 1..depth
  uint32_t capsule_bytes = 0;            // SQE + in-capsule data
  std::vector<uint8_t> capsules;         // one per command id (index = cid)
  ibv_mr* capsules_mr = nullptr;
  std::vector<uint8_t> responses;        // receive buffers, 16 bytes each
  ibv_mr* responses_mr = nullptr;
  uint16_t cntlid = 0;
  ~RdmaHostLink();
  Status post_receive(uint32_t index);
};

// Blocking (control or reconnect thread): resolves the target, connects a QP with the NVMe-oF
// private data, then runs Fabrics Connect for `qid`.
Result<std::shared_ptr<RdmaHostLink>> rdma_connect_queue(const InitiatorOptions& o, uint16_t qid, uint16_t cntlid, uint32_t depth,
                                                         uint32_t in_capsule_bytes);

// The setup exchanges, polling the link's CQ with a timeout.
class RdmaSetupChannel final : public SetupChannel {
 public:
  RdmaSetupChannel(RdmaHostLink& link, uint32_t timeout_ms) : link_(link), timeout_ms_(timeout_ms) {}
  Result<SyncCompletion> command(const uint8_t sqe[64], const uint8_t* in_data, uint32_t in_len, std::vector<uint8_t>* read_data) override;

 private:
  RdmaHostLink& link_;
  uint32_t timeout_ms_;
};

// A host queue over one RDMA connection.
class RdmaHostQueue final : public HostQueue {
 public:
  RdmaHostQueue(std::weak_ptr<HostController> ctrl, Reactor* reactor, uint16_t qid, uint32_t depth, uint32_t in_capsule_bytes)
      : HostQueue(std::move(ctrl), reactor, qid, depth, in_capsule_bytes) {}
  ~RdmaHostQueue() override;
  // Reactor thread: a connected link (first time or after a reconnect); pending I/Os are sent again.
  void attach(std::shared_ptr<RdmaHostLink> link);

 protected:
  void send_command(HostIo& io) override;
  void shut_down_transport() override;

 private:
  void arm_completion_poll();
  void arm_cm_poll();
  void on_completions();
  void on_cm_events();
  bool handle(const ibv_wc& wc);  // false when the connection was declared lost
  void release_link();
  void cancel_polls();

  std::shared_ptr<RdmaHostLink> link_;
  uint64_t generation_ = 0;  // bumps on every attach: polls of an old link are ignored
  bool completion_poll_inflight_ = false, cm_poll_inflight_ = false;
  uint64_t completion_poll_tag_ = 0, cm_poll_tag_ = 0;
  uint64_t poll_sequence_ = 0;  // bumps when polls are cancelled: their callbacks are then ignored
  std::vector<RdmaBufferPool::Lease> leases_;  // per command id: the buffer the target moves its data through
};

}  // namespace strata::nvmf
