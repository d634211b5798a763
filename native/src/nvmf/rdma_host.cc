// The host's NVMe/RDMA transport (rdma_host.h). Every response is bounds-checked (its command
// id must be one in flight) before use.
#include "nvmf/rdma_host.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "util/log.h"

namespace strata::nvmf {
namespace {

constexpr uint32_t kCqeBytes = 16;
constexpr uint32_t kSqeBytes = 64;
constexpr int kPollBatch = 32;
// wr_id: what a work request was (top byte) and its index (receive buffer or command id).
constexpr uint64_t kWorkRecv = 1ull << 56, kWorkSend = 2ull << 56, kWorkMask = 0xffull << 56;

// Blocking, with a timeout: the next CM event on the link's channel, which must be `expected`.
Status await_cm_event(RdmaHostLink& link, rdma_cm_event_type expected, uint32_t timeout_ms, const std::string& what) {
  pollfd p{link.cm_channel->fd, POLLIN, 0};
  int ready = ::poll(&p, 1, static_cast<int>(timeout_ms));
  if (ready <= 0) return Status(ErrorCode::kIoError, str(what, ": no answer within ", timeout_ms, " ms"));
  rdma_cm_event* event = nullptr;
  if (rdma_get_cm_event(link.cm_channel, &event) != 0) return Status(ErrorCode::kIoError, str(what, ": rdma_get_cm_event: ", std::strerror(errno)));
  const rdma_cm_event_type type = event->event;
  const int status = event->status;
  uint16_t reject_status = 0;
  if (type == RDMA_CM_EVENT_REJECTED && event->param.conn.private_data != nullptr && event->param.conn.private_data_len >= rdma_cm::kRejectBytes) {
    reject_status = get16(static_cast<const uint8_t*>(event->param.conn.private_data) + 2);
  }
  rdma_ack_cm_event(event);
  if (type == expected) return Status();
  if (type == RDMA_CM_EVENT_REJECTED) {
    return Status(ErrorCode::kIoError, str(what, ": the target rejected the RDMA connection",
                                           reject_status ? str(" (", rdma_cm::reject_text(reject_status), ")") : str(" (status ", status, ")")));
  }
  return Status(ErrorCode::kIoError, str(what, ": ", rdma_event_str(type), " (status ", status, ")"));
}

// Waits (blocking, bounded) for the next work completion on the link's CQ.
Result<ibv_wc> next_completion(RdmaHostLink& link, uint64_t deadline_ms) {
  for (;;) {
    ibv_wc wc{};
    const int n = ibv_poll_cq(link.cq, 1, &wc);
    if (n < 0) return Error{ErrorCode::kIoError, "ibv_poll_cq failed"};
    if (n == 1) return wc;
    const uint64_t now = host_now_ms();
    if (now >= deadline_ms) return Error{ErrorCode::kIoError, "no response from the target in time"};
    pollfd p{link.comp_channel->fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(deadline_ms - now)) <= 0) continue;
    ibv_cq* cq = nullptr;
    void* context = nullptr;
    if (ibv_get_cq_event(link.comp_channel, &cq, &context) == 0) ibv_ack_cq_events(cq, 1);
    ibv_req_notify_cq(link.cq, 0);
  }
}

}  // namespace

RdmaHostLink::~RdmaHostLink() {
  if (id != nullptr && id->qp != nullptr) rdma_destroy_qp(id);
  if (cq != nullptr) ibv_destroy_cq(cq);
  if (comp_channel != nullptr) ibv_destroy_comp_channel(comp_channel);
  if (capsules_mr != nullptr) ibv_dereg_mr(capsules_mr);
  if (responses_mr != nullptr) ibv_dereg_mr(responses_mr);
  pool.reset();
  if (id != nullptr) rdma_destroy_id(id);
  if (cm_channel != nullptr) rdma_destroy_event_channel(cm_channel);
}

Status RdmaHostLink::post_receive(uint32_t index) {
  ibv_sge sge{reinterpret_cast<uintptr_t>(&responses[size_t{index} * kCqeBytes]), kCqeBytes, responses_mr->lkey};
  ibv_recv_wr wr{};
  ibv_recv_wr* bad = nullptr;
  wr.wr_id = kWorkRecv | index;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (ibv_post_recv(id->qp, &wr, &bad) != 0) return Status(ErrorCode::kIoError, "ibv_post_recv failed");
  return Status();
}

Result<std::shared_ptr<RdmaHostLink>> rdma_connect_queue(const InitiatorOptions& o, uint16_t qid, uint16_t cntlid, uint32_t depth,
                                                         uint32_t in_capsule_bytes) {
  const std::string where = str("RDMA ", o.host, ":", o.port, " queue ", qid);
  auto link = std::make_shared<RdmaHostLink>();
  link->depth = depth;
  link->cm_channel = rdma_create_event_channel();
  if (link->cm_channel == nullptr) {
    return Error{ErrorCode::kFailedPrecondition, str(where, ": no RDMA connection manager on this host (rdma_create_event_channel: ", std::strerror(errno), ")")};
  }
  if (rdma_create_id(link->cm_channel, &link->id, nullptr, RDMA_PS_TCP) != 0) return Error{ErrorCode::kIoError, str(where, ": rdma_create_id: ", std::strerror(errno))};
  addrinfo hints{};
  hints.ai_family = AF_INET;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(o.host.c_str(), std::to_string(o.port).c_str(), &hints, &res); rc != 0) {
    return Error{ErrorCode::kInvalidArgument, str("cannot resolve ", o.host, ": ", gai_strerror(rc))};
  }
  const int resolved = rdma_resolve_addr(link->id, nullptr, res->ai_addr, static_cast<int>(o.connect_timeout_ms));
  freeaddrinfo(res);
  if (resolved != 0) return Error{ErrorCode::kIoError, str(where, ": rdma_resolve_addr: ", std::strerror(errno))};
  if (Status s = await_cm_event(*link, RDMA_CM_EVENT_ADDR_RESOLVED, o.connect_timeout_ms, str(where, ": resolving the address")); !s.ok()) {
    return Error{s.error().code, s.error().message + " (is there an RDMA device on a route to it?)"};
  }
  if (rdma_resolve_route(link->id, static_cast<int>(o.connect_timeout_ms)) != 0) return Error{ErrorCode::kIoError, str(where, ": rdma_resolve_route: ", std::strerror(errno))};
  if (Status s = await_cm_event(*link, RDMA_CM_EVENT_ROUTE_RESOLVED, o.connect_timeout_ms, str(where, ": resolving the route")); !s.ok()) return s.error();

  ibv_context* verbs = link->id->verbs;
  auto pd = RdmaPd::alloc(verbs);
  if (!pd.ok()) return pd.error();
  link->pd = pd.value();
  link->comp_channel = ibv_create_comp_channel(verbs);
  if (link->comp_channel == nullptr) return Error{ErrorCode::kIoError, str(where, ": ibv_create_comp_channel: ", std::strerror(errno))};
  if (Status s = set_nonblocking(link->comp_channel->fd); !s.ok()) return s.error();
  link->cq = ibv_create_cq(verbs, static_cast<int>(2 * depth + 4), nullptr, link->comp_channel, 0);
  if (link->cq == nullptr) return Error{ErrorCode::kIoError, str(where, ": ibv_create_cq: ", std::strerror(errno))};
  ibv_req_notify_cq(link->cq, 0);
  ibv_qp_init_attr qa{};
  qa.send_cq = link->cq;
  qa.recv_cq = link->cq;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = depth + 1;
  qa.cap.max_recv_wr = depth;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  if (rdma_create_qp(link->id, link->pd->pd, &qa) != 0) return Error{ErrorCode::kIoError, str(where, ": rdma_create_qp: ", std::strerror(errno))};

  // Command ids run 1..depth; capsule 0 is the setup exchanges'.
  link->capsule_bytes = kSqeBytes + in_capsule_bytes;
  link->capsules.assign(size_t{depth + 1} * link->capsule_bytes, 0);
  link->capsules_mr = register_memory(link->pd->pd, link->capsules.data(), link->capsules.size(), 0);
  link->responses.assign(size_t{depth} * kCqeBytes, 0);
  link->responses_mr = register_memory(link->pd->pd, link->responses.data(), link->responses.size(), IBV_ACCESS_LOCAL_WRITE);
  if (link->capsules_mr == nullptr || link->responses_mr == nullptr) return Error{ErrorCode::kIoError, str(where, ": ibv_reg_mr: ", std::strerror(errno))};
  // This queue's data buffers, the only memory its target may read or write.
  std::vector<RdmaBufferClass> classes = qid == 0 ? std::vector<RdmaBufferClass>{{8 * 1024, 8}}
                                                  : std::vector<RdmaBufferClass>{{8 * 1024, depth}, {128 * 1024, 16}, {kMaxTransferBytes, 2}};
  auto pool = RdmaBufferPool::create(link->pd, classes, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
  if (!pool.ok()) return pool.error();
  link->pool = pool.value();
  for (uint32_t i = 0; i < depth; i++) {
    if (Status s = link->post_receive(i); !s.ok()) return s.error();
  }

  ibv_device_attr attr{};
  ibv_query_device(verbs, &attr);
  std::array<uint8_t, rdma_cm::kRequestBytes> request{};
  put16(request.data(), rdma_cm::kRecfmt);
  put16(request.data() + 2, qid);
  put16(request.data() + 4, static_cast<uint16_t>(depth));      // HRQSIZE: our receive buffers
  put16(request.data() + 6, static_cast<uint16_t>(depth - 1));  // HSQSIZE: zero-based
  rdma_conn_param param{};
  param.private_data = request.data();
  param.private_data_len = static_cast<uint8_t>(request.size());
  param.initiator_depth = 0;  // the host never reads from the target
  param.responder_resources = static_cast<uint8_t>(std::min(attr.max_qp_rd_atom, 16));  // the target's READs of our data
  param.retry_count = 7;
  param.rnr_retry_count = 7;
  if (rdma_connect(link->id, &param) != 0) return Error{ErrorCode::kIoError, str(where, ": rdma_connect: ", std::strerror(errno))};
  if (Status s = await_cm_event(*link, RDMA_CM_EVENT_ESTABLISHED, o.connect_timeout_ms, str(where, ": connecting")); !s.ok()) return s.error();
  // From now on the queue's reactor reads the CM channel (a disconnect).
  if (Status s = set_nonblocking(link->cm_channel->fd); !s.ok()) return s.error();

  RdmaSetupChannel channel(*link, o.connect_timeout_ms);
  auto granted = connect_command(channel, o, qid, cntlid);
  if (!granted.ok()) return granted.error();
  link->cntlid = granted.value();
  return link;
}

Result<SyncCompletion> RdmaSetupChannel::command(const uint8_t sqe[64], const uint8_t* in_data, uint32_t in_len, std::vector<uint8_t>* read_data) {
  RdmaHostLink& l = link_;
  uint8_t* capsule = l.capsules.data();  // capsule 0
  std::memcpy(capsule, sqe, kSqeBytes);
  capsule[1] = static_cast<uint8_t>((capsule[1] & 0x3f) | 0x40);  // PSDT: SGL
  // Setup data always moves by keyed SGL: the Linux target takes no in-capsule data on admin queues.
  const uint32_t bytes = std::max<uint32_t>(in_len, read_data ? static_cast<uint32_t>(read_data->size()) : 0);
  RdmaBufferPool::Lease lease;
  if (bytes > 0) {
    lease = l.pool->take(bytes);
    if (!lease.buffer) return Error{ErrorCode::kIoError, "no registered buffer for a setup command"};
    if (in_len) std::memcpy(lease.buffer->data(), in_data, in_len);
    put_keyed_sgl(capsule, reinterpret_cast<uintptr_t>(lease.buffer->data()), bytes, lease.rkey);
  } else {
    put_keyed_sgl(capsule, 0, 0, 0);
  }
  const uint16_t cid = get16(capsule + 2);
  ibv_sge sge{reinterpret_cast<uintptr_t>(capsule), kSqeBytes, l.capsules_mr->lkey};
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = kWorkSend;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (ibv_post_send(l.id->qp, &wr, &bad) != 0) return Error{ErrorCode::kIoError, "posting a setup command failed"};
  const uint64_t deadline = host_now_ms() + timeout_ms_;
  for (;;) {
    auto wc = next_completion(l, deadline);
    if (!wc.ok()) return wc.error();
    const ibv_wc& c = wc.value();
    if (c.status != IBV_WC_SUCCESS) return Error{ErrorCode::kIoError, str("RDMA ", (c.wr_id & kWorkMask) == kWorkRecv ? "receive" : "send", " failed: ", ibv_wc_status_str(c.status))};
    if ((c.wr_id & kWorkMask) != kWorkRecv) continue;
    const auto index = static_cast<uint32_t>(c.wr_id & ~kWorkMask);
    if (index >= l.depth || c.byte_len < kCqeBytes) return Error{ErrorCode::kIoError, "malformed response during setup"};
    const uint8_t* cqe = &l.responses[size_t{index} * kCqeBytes];
    const uint16_t status = get16(cqe + 14) >> 1;
    const uint32_t dw0 = get32(cqe);
    const uint16_t response_cid = get16(cqe + 12);
    if (Status s = l.post_receive(index); !s.ok()) return s.error();
    if (response_cid != cid) return Error{ErrorCode::kIoError, str("response for command ", response_cid, ", expected ", cid)};
    if (read_data && status == 0) std::memcpy(read_data->data(), lease.buffer->data(), read_data->size());
    return SyncCompletion{status, dw0};
  }
}

// ---- a queue on a reactor ------------------------------------------------------------------------

RdmaHostQueue::~RdmaHostQueue() { leases_.clear(); }

void RdmaHostQueue::cancel_polls() {
  // Only a poll whose callback has not run is cancelled (a stale tag could name another operation).
  if (completion_poll_inflight_) reactor_->cancel(completion_poll_tag_);
  if (cm_poll_inflight_) reactor_->cancel(cm_poll_tag_);
  completion_poll_inflight_ = cm_poll_inflight_ = false;
  poll_sequence_++;  // callbacks of the cancelled polls change nothing
}

void RdmaHostQueue::release_link() {
  cancel_polls();
  // The QP goes first (with the link), then the buffers the target may still have been moving.
  link_.reset();
  leases_.clear();
}

void RdmaHostQueue::attach(std::shared_ptr<RdmaHostLink> link) {
  release_link();
  if (is_closed()) return;
  link_ = std::move(link);
  leases_.assign(link_->depth + 1, RdmaBufferPool::Lease{});
  generation_++;
  arm_completion_poll();
  arm_cm_poll();
  connected();
}

void RdmaHostQueue::arm_completion_poll() {
  if (completion_poll_inflight_ || !link_) return;
  completion_poll_inflight_ = true;
  auto self = std::static_pointer_cast<RdmaHostQueue>(shared_from_this());
  const uint64_t gen = generation_, seq = poll_sequence_;
  completion_poll_tag_ = reactor_->submit([fd = link_->comp_channel->fd](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, POLLIN); },
                                          [self, gen, seq](int) {
                                            if (seq != self->poll_sequence_) return;
                                            self->completion_poll_inflight_ = false;
                                            if (gen != self->generation_ || !self->link_) return;
                                            self->on_completions();
                                          });
}

void RdmaHostQueue::arm_cm_poll() {
  if (cm_poll_inflight_ || !link_) return;
  cm_poll_inflight_ = true;
  auto self = std::static_pointer_cast<RdmaHostQueue>(shared_from_this());
  const uint64_t gen = generation_, seq = poll_sequence_;
  cm_poll_tag_ = reactor_->submit([fd = link_->cm_channel->fd](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, POLLIN); },
                                  [self, gen, seq](int) {
                                    if (seq != self->poll_sequence_) return;
                                    self->cm_poll_inflight_ = false;
                                    if (gen != self->generation_ || !self->link_) return;
                                    self->on_cm_events();
                                  });
}

void RdmaHostQueue::on_cm_events() {
  for (;;) {
    rdma_cm_event* event = nullptr;
    if (rdma_get_cm_event(link_->cm_channel, &event) != 0) break;
    const rdma_cm_event_type type = event->event;
    rdma_ack_cm_event(event);
    if (type == RDMA_CM_EVENT_TIMEWAIT_EXIT) continue;
    if (is_connected()) lost(str("the target ended the RDMA connection (", rdma_event_str(type), ")"));
    return;  // lost: the link is replaced or the queue closed; no more polling of it
  }
  if (!is_closed()) arm_cm_poll();
}

void RdmaHostQueue::on_completions() {
  ibv_cq* cq = nullptr;
  void* context = nullptr;
  if (ibv_get_cq_event(link_->comp_channel, &cq, &context) == 0) ibv_ack_cq_events(cq, 1);
  ibv_req_notify_cq(link_->cq, 0);
  const uint64_t gen = generation_;
  std::array<ibv_wc, kPollBatch> wcs;
  for (;;) {
    const int n = ibv_poll_cq(link_->cq, kPollBatch, wcs.data());
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      if (!handle(wcs[i]) || gen != generation_ || !link_) return;
    }
  }
  if (!is_closed()) arm_completion_poll();
}

bool RdmaHostQueue::handle(const ibv_wc& wc) {
  const bool receive = (wc.wr_id & kWorkMask) == kWorkRecv;
  if (wc.status != IBV_WC_SUCCESS) {
    if (!is_connected()) return true;  // flushed after we ended the connection
    lost(str("RDMA ", receive ? "receive" : "send", " failed: ", ibv_wc_status_str(wc.status)));
    return false;
  }
  if (!receive) return true;  // a capsule left; its command completes with the response
  const auto index = static_cast<uint32_t>(wc.wr_id & ~kWorkMask);
  if (index >= link_->depth || wc.byte_len < kCqeBytes) {
    lost(str("a malformed response (", wc.byte_len, " bytes)"));
    return false;
  }
  const uint8_t* cqe = &link_->responses[size_t{index} * kCqeBytes];
  const uint16_t cid = get16(cqe + 12);
  const uint16_t status = get16(cqe + 14) >> 1;
  HostIo* io = find(cid);
  if (io == nullptr || cid >= leases_.size()) {
    lost(str("a response for unknown command ", cid));
    return false;
  }
  if (Status s = link_->post_receive(index); !s.ok()) {
    lost(s.error().message);
    return false;
  }
  RdmaBufferPool::Lease lease = std::move(leases_[cid]);
  leases_[cid] = {};
  if (status == 0 && io->read) {
    if (!lease.buffer) {
      lost(str("read command ", cid, " completed without its data buffer"));
      return false;
    }
    std::memcpy(io->data, lease.buffer->data(), io->length);
  }
  // Capacity Exceeded (a full thin pool on the target) stays distinguishable from a failure.
  complete(cid, status == 0 ? static_cast<int>(io->length) : (status & 0x7ff) == 0x81 ? -ENOSPC : -EIO);
  return true;
}

void RdmaHostQueue::send_command(HostIo& io) {
  const uint16_t cid = get16(io.sqe + 2);
  if (!link_ || cid == 0 || cid > link_->depth) return lost(str("command id ", cid, " outside the queue"));
  uint8_t* capsule = &link_->capsules[size_t{cid} * link_->capsule_bytes];
  std::memcpy(capsule, io.sqe, kSqeBytes);
  capsule[1] = static_cast<uint8_t>((capsule[1] & 0x3f) | 0x40);  // PSDT: SGL
  const uint8_t* source = io.inline_data.empty() ? io.data : io.inline_data.data();
  const uint32_t bytes = io.inline_data.empty() ? io.length : static_cast<uint32_t>(io.inline_data.size());
  uint32_t capsule_length = kSqeBytes;
  leases_[cid] = {};
  if (bytes == 0 || (!io.read && io.length == 0 && io.inline_data.empty())) {
    put_keyed_sgl(capsule, 0, 0, 0);
  } else if (!io.read && io.in_capsule && kSqeBytes + bytes <= link_->capsule_bytes) {
    std::memcpy(capsule + kSqeBytes, source, bytes);
    uint8_t* d = capsule + 24;
    put64(d, 0);  // offset into the in-capsule data
    put32(d + 8, bytes);
    std::memset(d + 12, 0, 3);
    d[15] = kSglDataBlockOffset;
    capsule_length += bytes;
  } else {
    RdmaBufferPool::Lease lease = link_->pool->take(bytes);
    if (!lease.buffer) return lost("no registered buffer for a command's data");
    if (!io.read) std::memcpy(lease.buffer->data(), source, bytes);
    put_keyed_sgl(capsule, reinterpret_cast<uintptr_t>(lease.buffer->data()), bytes, lease.rkey);
    leases_[cid] = std::move(lease);
  }
  ibv_sge sge{reinterpret_cast<uintptr_t>(capsule), capsule_length, link_->capsules_mr->lkey};
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = kWorkSend | cid;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (ibv_post_send(link_->id->qp, &wr, &bad) != 0) return lost(str("posting a command failed: ", std::strerror(errno)));
}

void RdmaHostQueue::shut_down_transport() {
  if (!link_) return;
  rdma_disconnect(link_->id);
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (link_->id->qp != nullptr) ibv_modify_qp(link_->id->qp, &attr, IBV_QP_STATE);
  // No completion of this link matters any more: stop watching it (attach() or the destructor
  // destroys it).
  generation_++;
  cancel_polls();
}

}  // namespace strata::nvmf
