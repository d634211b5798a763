#include "nvmf/rdma.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "util/log.h"

namespace strata::nvmf {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 128;
// Queue pairs one listener holds at most; a connect request beyond it is rejected (No
// Resources). Before Connect a peer is unauthenticated, and each queue pair holds its receive
// buffers (up to 128 x 8 KiB), a CQ and a completion channel fd for up to 10 s: the cap bounds
// what such peers can pin (~1 GiB at worst), as kMaxConnectionsPerListener does for TCP.
constexpr size_t kMaxQueuePairs = 1024;
// A connection must bring a successful Connect within this (as on TCP).
constexpr auto kConnectTimeout = std::chrono::seconds(10);
// After the QP went to error, posted work must have flushed within this; then the queue's
// resources are destroyed regardless.
constexpr auto kDrainTimeout = std::chrono::seconds(5);
constexpr long long kTimerTickNs = 500'000'000;
constexpr uint32_t kCqeBytes = 16;
constexpr uint32_t kSqeBytes = 64;
constexpr int kPollBatch = 32;

}  // namespace

// ---- device ---------------------------------------------------------------------------------------

Result<std::shared_ptr<RdmaDevice>> RdmaDevice::open(ibv_context* verbs) {
  auto d = std::make_shared<RdmaDevice>();
  d->verbs_ = verbs;
  if (ibv_query_device(verbs, &d->attr_) != 0) return Error{ErrorCode::kIoError, str("ibv_query_device: ", std::strerror(errno))};
  auto pd = RdmaPd::alloc(verbs);
  if (!pd.ok()) return pd.error();
  d->pd_ = pd.value();
  // The target's buffers are only ever the local side of its READs and WRITEs.
  auto pool = RdmaBufferPool::create(d->pd_, {{8 * 1024, 1024}, {128 * 1024, 192}, {kMaxTransferBytes, 12}}, IBV_ACCESS_LOCAL_WRITE);
  if (!pool.ok()) return pool.error();
  d->pool_ = pool.value();
  return d;
}

// ---- listener -------------------------------------------------------------------------------------

RdmaListener::~RdmaListener() {
  if (listen_id_ != nullptr) rdma_destroy_id(listen_id_);
  if (channel_ != nullptr) rdma_destroy_event_channel(channel_);
}

Result<uint16_t> RdmaListener::bind_and_listen(const std::string& address, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    return Error{ErrorCode::kInvalidArgument, str("RDMA listen address '", address, "' is not an IPv4 address")};
  }
  channel_ = rdma_create_event_channel();
  if (channel_ == nullptr) return Error{ErrorCode::kFailedPrecondition, str("rdma_create_event_channel: ", std::strerror(errno))};
  if (auto s = set_nonblocking(channel_->fd); !s.ok()) return s.error();
  if (rdma_create_id(channel_, &listen_id_, nullptr, RDMA_PS_TCP) != 0) return Error{ErrorCode::kFailedPrecondition, str("rdma_create_id: ", std::strerror(errno))};
  if (rdma_bind_addr(listen_id_, reinterpret_cast<sockaddr*>(&addr)) != 0) {
    return Error{ErrorCode::kFailedPrecondition, str("cannot bind RDMA to ", address, ":", port, ": ", std::strerror(errno))};
  }
  if (listen_id_->verbs == nullptr) return Error{ErrorCode::kFailedPrecondition, str("no RDMA device serves ", address)};
  auto device = RdmaDevice::open(listen_id_->verbs);
  if (!device.ok()) return device.error();
  device_ = std::move(device.value());
  if (rdma_listen(listen_id_, kListenBacklog) != 0) {
    return Error{ErrorCode::kFailedPrecondition, str("cannot listen on RDMA ", address, ":", port, ": ", std::strerror(errno))};
  }
  return static_cast<uint16_t>(ntohs(rdma_get_src_port(listen_id_)));
}

void RdmaListener::start() {
  assert(reactor_.on_reactor_thread());
  arm_poll();
}

void RdmaListener::arm_poll() {
  if (shutting_down_) return;
  poll_inflight_ = true;
  auto self = shared_from_this();
  poll_tag_ = reactor_.submit([fd = channel_->fd](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, POLLIN); },
                              [self](int) {
                                self->poll_inflight_ = false;
                                if (self->shutting_down_) {
                                  if (auto done = std::move(self->shutdown_done_)) {
                                    self->closed_ = true;
                                    done();
                                  }
                                  return;
                                }
                                self->on_events();
                                self->arm_poll();
                              });
}

void RdmaListener::on_events() {
  for (;;) {
    rdma_cm_event* event = nullptr;
    if (rdma_get_cm_event(channel_, &event) != 0) return;  // EAGAIN: drained
    rdma_cm_id* id = event->id;
    const rdma_cm_event_type type = event->event;
    if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
      on_connect_request(id, event->param.conn);
      rdma_ack_cm_event(event);
      continue;
    }
    std::shared_ptr<RdmaQueuePair> queue;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = queues_.find(id); it != queues_.end()) queue = it->second.lock();
    }
    const int status = event->status;
    rdma_ack_cm_event(event);
    if (!queue) {
      if (id == listen_id_) log_line(str("nvmf: RDMA listener event ", rdma_event_str(type), " (status ", status, ")"));
      continue;
    }
    switch (type) {
      case RDMA_CM_EVENT_ESTABLISHED:
        queue->post_to_reactor([queue] {
          if (queue->state_ == RdmaQueueState::kConnecting) queue->set_state(RdmaQueueState::kServing);
        });
        break;
      case RDMA_CM_EVENT_DISCONNECTED: queue->close_async("the host disconnected", true); break;
      case RDMA_CM_EVENT_TIMEWAIT_EXIT: break;
      default: queue->close_async(str("RDMA CM event ", rdma_event_str(type), " (status ", status, ")")); break;
    }
  }
}

void RdmaListener::reject(rdma_cm_id* id, uint16_t status, const std::string& why) {
  log_line(str("nvmf: RDMA connect request from ", address_of(rdma_get_peer_addr(id)), " rejected: ", why));
  std::array<uint8_t, rdma_cm::kRejectBytes> data{};
  put16(data.data(), rdma_cm::kRecfmt);
  put16(data.data() + 2, status);
  rdma_reject(id, data.data(), data.size());
  rdma_destroy_id(id);
}

void RdmaListener::on_connect_request(rdma_cm_id* id, const rdma_conn_param& param) {
  if (shutting_down_ || listen_id_ == nullptr) return reject(id, rdma_cm::kNoResources, "the target is stopping");
  if (param.private_data == nullptr || param.private_data_len < rdma_cm::kRequestBytes) {
    return reject(id, rdma_cm::kInvalidLength, str("private data of ", int(param.private_data_len), " bytes, need ", rdma_cm::kRequestBytes));
  }
  const auto* p = static_cast<const uint8_t*>(param.private_data);
  if (get16(p) != rdma_cm::kRecfmt) return reject(id, rdma_cm::kInvalidRecfmt, str("record format ", get16(p)));
  const uint16_t qid = get16(p + 2), hrqsize = get16(p + 4), hsqsize = get16(p + 6);
  if (qid > kIoQueuesMax) return reject(id, rdma_cm::kInvalidQid, str("queue id ", qid));
  if (hsqsize == 0 || hsqsize >= kQueueEntriesMax) return reject(id, rdma_cm::kInvalidHsqsize, str("HSQSIZE ", hsqsize, " (must be 1..", kQueueEntriesMax - 1, ")"));
  if (hrqsize == 0 || hrqsize > kQueueEntriesMax) return reject(id, rdma_cm::kInvalidHrqsize, str("HRQSIZE ", hrqsize));
  bool full = false;
  uint64_t refused = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    full = queues_.size() >= kMaxQueuePairs;
    if (full) refused = ++refused_;
  }
  if (full) {
    // Logged on the first refusal and every 1000th after, so a flood cannot flood the log.
    if (refused % 1000 == 1) log_line(str("nvmf: ", kMaxQueuePairs, " RDMA queue pairs are open; refusing more (", refused, " so far)"));
    rdma_cm_id* rejected = id;
    std::array<uint8_t, rdma_cm::kRejectBytes> data{};
    put16(data.data() + 2, rdma_cm::kNoResources);
    rdma_reject(rejected, data.data(), data.size());
    rdma_destroy_id(rejected);
    return;
  }
  const uint64_t connection_id = target_.next_connection_id();
  auto queue = std::make_shared<RdmaQueuePair>(target_, target_.next_reactor(), connection_id, address_of(rdma_get_peer_addr(id)), shared_from_this(), id);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queues_[id] = queue;
  }
  if (auto s = queue->setup(static_cast<uint16_t>(hsqsize + 1), param); !s.ok()) {
    forget(id);
    queue->abandon_setup();  // destroys what setup made, leaves the CM id to the rejection
    return reject(id, rdma_cm::kNoResources, s.error().message);
  }
  const bool adopted = target_.adopt_connection(connection_id, queue);
  queue->reactor().post([queue] { queue->start(); });
  if (!adopted) queue->close_async("the target is stopping");
}

void RdmaListener::forget(rdma_cm_id* id) {
  std::lock_guard<std::mutex> lock(mutex_);
  queues_.erase(id);
}

void RdmaListener::stop_accepting_async() {
  auto self = shared_from_this();
  reactor_.post([self] {
    if (self->listen_id_ != nullptr) {
      rdma_destroy_id(self->listen_id_);
      self->listen_id_ = nullptr;
    }
  });
}

void RdmaListener::shutdown_async(std::function<void()> done) {
  auto self = shared_from_this();
  reactor_.post([self, done = std::move(done)]() mutable {
    self->shutting_down_ = true;
    if (self->listen_id_ != nullptr) {
      rdma_destroy_id(self->listen_id_);
      self->listen_id_ = nullptr;
    }
    if (self->poll_inflight_) {
      self->shutdown_done_ = std::move(done);
      self->reactor_.cancel(self->poll_tag_);
    } else {
      self->closed_ = true;
      done();
    }
  });
}

// ---- queue pair -----------------------------------------------------------------------------------

RdmaQueuePair::RdmaQueuePair(Target& target, Reactor& reactor, uint64_t id, std::string peer, std::shared_ptr<RdmaListener> listener,
                             rdma_cm_id* cm_id)
    : QueuePair(target, reactor, false, id, std::move(peer)), listener_(std::move(listener)), cm_id_(cm_id), device_(listener_->device()) {
  deadline_ = Clock::now() + kConnectTimeout;
}

RdmaQueuePair::~RdmaQueuePair() {
  if (state_ != RdmaQueueState::kClosed) destroy_resources();
}

void RdmaQueuePair::set_state(RdmaQueueState next) {
  switch (next) {
    case RdmaQueueState::kConnecting: assert(false && "the initial state"); break;
    case RdmaQueueState::kServing: assert(state_ == RdmaQueueState::kConnecting); break;
    case RdmaQueueState::kDraining: assert(state_ == RdmaQueueState::kConnecting || state_ == RdmaQueueState::kServing); break;
    case RdmaQueueState::kClosed: assert(state_ == RdmaQueueState::kDraining); break;
  }
  state_ = next;
}

Status RdmaQueuePair::setup(uint16_t receive_entries, const rdma_conn_param& request) {
  ibv_context* verbs = device_->verbs();
  channel_ = ibv_create_comp_channel(verbs);
  if (channel_ == nullptr) return Error{ErrorCode::kFailedPrecondition, str("ibv_create_comp_channel: ", std::strerror(errno))};
  if (auto s = set_nonblocking(channel_->fd); !s.ok()) return s;
  // Each request holds at most two send-queue entries at once: a READ, or a WRITE and its SEND.
  const uint32_t send_entries = 2u * kQueueEntriesMax + 2;
  cq_ = ibv_create_cq(verbs, static_cast<int>(send_entries + receive_entries), nullptr, channel_, 0);
  if (cq_ == nullptr) return Error{ErrorCode::kFailedPrecondition, str("ibv_create_cq: ", std::strerror(errno))};
  if (ibv_req_notify_cq(cq_, 0) != 0) return Error{ErrorCode::kFailedPrecondition, "ibv_req_notify_cq failed"};
  ibv_qp_init_attr qa{};
  qa.send_cq = cq_;
  qa.recv_cq = cq_;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = send_entries;
  qa.cap.max_recv_wr = receive_entries;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  if (rdma_create_qp(cm_id_, device_->pd(), &qa) != 0) return Error{ErrorCode::kFailedPrecondition, str("rdma_create_qp: ", std::strerror(errno))};

  receive_bytes_ = kSqeBytes + kInCapsuleDataBytes;
  receive_region_.assign(size_t{receive_entries} * receive_bytes_, 0);
  receive_mr_ = register_memory(device_->pd(), receive_region_.data(), receive_region_.size(), IBV_ACCESS_LOCAL_WRITE);
  response_region_.assign(size_t{kQueueEntriesMax} * kCqeBytes, 0);
  response_mr_ = register_memory(device_->pd(), response_region_.data(), response_region_.size(), 0);
  if (receive_mr_ == nullptr || response_mr_ == nullptr) return Error{ErrorCode::kFailedPrecondition, str("ibv_reg_mr: ", std::strerror(errno))};
  transfers_.assign(kQueueEntriesMax, Transfer{});
  for (uint32_t i = 0; i < receive_entries; i++) {
    if (!post_one_receive(i)) return Error{ErrorCode::kFailedPrecondition, "ibv_post_recv failed"};
  }

  const ibv_device_attr& attr = device_->attr();
  max_reads_inflight_ = std::max<uint32_t>(1, std::min<uint32_t>(request.responder_resources, attr.max_qp_init_rd_atom));
  std::array<uint8_t, rdma_cm::kAcceptBytes> reply{};
  put16(reply.data(), rdma_cm::kRecfmt);
  put16(reply.data() + 2, receive_entries);  // CRQSIZE
  rdma_conn_param accept{};
  accept.private_data = reply.data();
  accept.private_data_len = static_cast<uint8_t>(reply.size());
  accept.initiator_depth = static_cast<uint8_t>(max_reads_inflight_);
  accept.responder_resources = static_cast<uint8_t>(std::min<int>(request.initiator_depth, attr.max_qp_rd_atom));
  accept.rnr_retry_count = 7;
  if (rdma_accept(cm_id_, &accept) != 0) return Error{ErrorCode::kFailedPrecondition, str("rdma_accept: ", std::strerror(errno))};
  return Status{};
}

void RdmaQueuePair::abandon_setup() {
  rdma_cm_id* id = cm_id_;
  if (id->qp != nullptr) rdma_destroy_qp(id);
  cm_id_ = nullptr;  // the listener rejects and destroys it
  destroy_resources();
  state_ = RdmaQueueState::kClosed;  // never served: no close sequence to run
}

void RdmaQueuePair::start() {
  assert(reactor_.on_reactor_thread());
  log_line(str("nvmf: RDMA connection ", id_, " from ", peer_, " on ", device_->name()));
  if (state_ == RdmaQueueState::kClosed) return;
  arm_poll();
  ensure_timer();
}

void RdmaQueuePair::close_async(const std::string& reason, bool let_closing_flush) {
  auto self = std::static_pointer_cast<RdmaQueuePair>(shared_from_this());
  post_to_reactor([self, reason, let_closing_flush] {
    if (let_closing_flush && self->state_ == RdmaQueueState::kDraining) return;
    self->begin_close(CloseMode::kAbort, reason);
  });
}

void RdmaQueuePair::arm_poll() {
  if (poll_inflight_ || state_ == RdmaQueueState::kClosed) return;
  poll_inflight_ = true;
  auto self = std::static_pointer_cast<RdmaQueuePair>(shared_from_this());
  poll_tag_ = reactor_.submit([fd = channel_->fd](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, POLLIN); },
                              [self](int) {
                                self->poll_inflight_ = false;
                                self->on_completion_event();
                              });
}

void RdmaQueuePair::on_completion_event() {
  if (state_ == RdmaQueueState::kClosed) return;
  ibv_cq* cq = nullptr;
  void* context = nullptr;
  if (ibv_get_cq_event(channel_, &cq, &context) == 0) {
    ibv_ack_cq_events(cq, 1);
  }
  // Re-arm before draining: a completion that lands after the last poll raises a new event.
  ibv_req_notify_cq(cq_, 0);
  std::array<ibv_wc, kPollBatch> wcs;
  for (;;) {
    const int n = ibv_poll_cq(cq_, kPollBatch, wcs.data());
    if (n <= 0) break;
    for (int i = 0; i < n && state_ != RdmaQueueState::kClosed; i++) handle_completion(wcs[i]);
    if (state_ == RdmaQueueState::kClosed) return;
  }
  maybe_finish_close();
  arm_poll();
}

void RdmaQueuePair::handle_completion(const ibv_wc& wc) {
  const auto work = static_cast<Work>(wc.wr_id >> 56);
  const auto slot = static_cast<uint16_t>(wc.wr_id >> 32);
  const auto generation = static_cast<uint32_t>(wc.wr_id);
  const bool ok = wc.status == IBV_WC_SUCCESS;
  auto failed = [&](const char* what) {
    if (wc.status != IBV_WC_WR_FLUSH_ERR) fail(str(what, " failed: ", ibv_wc_status_str(wc.status)));
  };
  switch (work) {
    case Work::kRecv:
      posted_receives_--;
      if (!ok) return failed("receive");
      if (!serving()) return;
      return handle_capsule(slot, wc.byte_len);
    case Work::kRead: {
      posted_signaled_sends_--;
      reads_inflight_--;
      Request* r = request_at(slot);
      // The device is done writing into the buffer only now, whatever became of the request.
      if (slot < transfers_.size()) transfers_[slot].dma_hold.reset();
      if (!ok) return failed("RDMA READ of the host's data");
      if (r != nullptr && r->generation == generation && r->state == RequestState::kReceivingData) {
        r->received_bytes = r->transfer_bytes;
        transfers_[slot].dma_hold.reset();
        set_request_state(*r, RequestState::kExecuting);
        execute(*r);
      }
      return pump_reads();
    }
    case Work::kWrite:  // unsignaled: only an error completes it
      return failed("RDMA WRITE of the host's data");
    case Work::kSend: {
      posted_signaled_sends_--;
      Request* r = request_at(slot);
      if (r != nullptr && r->generation == generation && r->state == RequestState::kSending) retire(*r);
      if (!ok) return failed("response SEND");
      // A slot came free: capsules that waited for one run now, in arrival order.
      while (!stashed_.empty() && has_free_slot() && serving()) {
        auto [index, bytes] = stashed_.front();
        stashed_.pop_front();
        handle_capsule(index, bytes);
      }
      return;
    }
  }
  fail(str("completion of unknown work ", wc.wr_id));
}

bool RdmaQueuePair::post_one_receive(uint32_t index) {
  ibv_sge sge{reinterpret_cast<uintptr_t>(&receive_region_[size_t{index} * receive_bytes_]), receive_bytes_, receive_mr_->lkey};
  ibv_recv_wr wr{};
  ibv_recv_wr* bad = nullptr;
  wr.wr_id = wr_id(Work::kRecv, static_cast<uint16_t>(index), 0);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  if (ibv_post_recv(cm_id_->qp, &wr, &bad) != 0) return false;
  posted_receives_++;
  return true;
}

void RdmaQueuePair::post_receive(uint32_t index) {
  if (serving() && !post_one_receive(index)) fail("ibv_post_recv failed");
}

void RdmaQueuePair::handle_capsule(uint32_t index, uint32_t bytes) {
  if (!has_free_slot()) {
    // The host may send its next command as soon as it has our response, before our SEND
    // completion gave the slot back: the capsule keeps its receive buffer until a slot frees.
    stashed_.emplace_back(index, bytes);
    return;
  }
  if (bytes < kSqeBytes) return fail(str("a capsule of ", bytes, " bytes, shorter than a command"));
  const uint8_t* sqe = &receive_region_[size_t{index} * receive_bytes_];
  const uint8_t* in_capsule = sqe + kSqeBytes;
  const uint32_t in_capsule_bytes = bytes - kSqeBytes;
  std::string refusal;
  Request* accepted = accept_command(sqe, &refusal);
  if (accepted == nullptr) return fail(refusal);
  Request& r = *accepted;
  const uint8_t sgl_type = sqe[24 + 15];
  const uint64_t sgl_address = get64(sqe + 24);
  const uint32_t keyed_bytes = uint32_t{sqe[32]} | uint32_t{sqe[33]} << 8 | uint32_t{sqe[34]} << 16;
  const uint32_t keyed_key = get32(sqe + 35);
  const uint32_t block_bytes = get32(sqe + 32);
  const Direction dir = direction_of(sqe[0], sqe[4]);

  // Everything needed from the receive buffer is taken below before it is posted again.
  uint16_t refuse = 0;
  bool read_from_host = false;
  transfers_[r.slot].invalidate = false;
  if (refused_before_data(r)) {
    // An unauthenticated host gets nothing but the refusal: no buffer, no transfer.
  } else if (dir == Direction::kBidirectional) {
    refuse = sc::kInvalidOpcode;
  } else if ((sqe[1] & 0xc0) != 0x40) {
    refuse = sc::kInvalidField;  // fabrics commands describe data with SGLs (PSDT 01b)
  } else if (sgl_type == kSglDataBlockOffset) {
    if (block_bytes > 0 && dir != Direction::kHostToController) {
      refuse = sc::kInvalidField;
    } else if (sgl_address > in_capsule_bytes || block_bytes > in_capsule_bytes - sgl_address) {
      refuse = sgl_address > in_capsule_bytes ? sc::kSglOffsetInvalid : sc::kDataSglLengthInvalid;
    } else if (block_bytes > 0) {
      if (!transfer_allowed(r, block_bytes)) {
        refuse = sc::kDataSglLengthInvalid;
      } else if (lease_buffer(r, block_bytes)) {
        std::memcpy(r.buffer->data(), in_capsule + sgl_address, block_bytes);
        r.transfer_bytes = r.received_bytes = block_bytes;
      } else {
        refuse = sc::kInternalError;
      }
    }
  } else if (sgl_type == kSglKeyedDataBlock || sgl_type == kSglKeyedDataBlockInvalidate) {
    Transfer& t = transfers_[r.slot];
    t.remote_address = sgl_address;
    t.remote_key = keyed_key;
    t.invalidate = sgl_type == kSglKeyedDataBlockInvalidate;
    if (keyed_bytes > 0 && dir != Direction::kNone) {
      if (!transfer_allowed(r, keyed_bytes)) {
        refuse = sc::kDataSglLengthInvalid;
      } else if (lease_buffer(r, keyed_bytes)) {
        r.transfer_bytes = keyed_bytes;
        read_from_host = dir == Direction::kHostToController;
      } else {
        refuse = sc::kInternalError;
      }
    }
  } else {
    refuse = sc::kSglDescriptorTypeInvalid;
  }
  post_receive(index);
  if (refuse != 0) return reject(r, refuse);
  if (read_from_host) {
    set_request_state(r, RequestState::kReceivingData);
    return start_read(r);
  }
  set_request_state(r, RequestState::kExecuting);
  execute(r);
}

bool RdmaQueuePair::lease_buffer(Request& r, uint32_t bytes) {
  RdmaBufferPool::Lease lease = device_->take(bytes);
  if (!lease.buffer) return false;
  r.buffer = std::move(lease.buffer);
  transfers_[r.slot].local_key = lease.lkey;
  return true;
}

void RdmaQueuePair::start_read(Request& r) {
  if (reads_inflight_ >= max_reads_inflight_) {
    reads_waiting_.emplace_back(r.slot, r.generation);
    return;
  }
  const Transfer& t = transfers_[r.slot];
  ibv_sge sge{reinterpret_cast<uintptr_t>(r.buffer->data()), r.transfer_bytes, t.local_key};
  ibv_send_wr wr{};
  ibv_send_wr* bad = nullptr;
  wr.wr_id = wr_id(Work::kRead, r.slot, r.generation);
  wr.opcode = IBV_WR_RDMA_READ;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.wr.rdma.remote_addr = t.remote_address;
  wr.wr.rdma.rkey = t.remote_key;
  if (ibv_post_send(cm_id_->qp, &wr, &bad) != 0) return fail(str("posting an RDMA READ failed: ", std::strerror(errno)));
  // A closing queue frees the request before the READ flushes: the buffer stays ours until then.
  transfers_[r.slot].dma_hold = r.buffer;
  reads_inflight_++;
  posted_signaled_sends_++;
}

void RdmaQueuePair::pump_reads() {
  while (!reads_waiting_.empty() && reads_inflight_ < max_reads_inflight_ && serving()) {
    auto [slot, generation] = reads_waiting_.front();
    reads_waiting_.pop_front();
    Request* r = request_at(slot);
    if (r != nullptr && r->generation == generation && r->state == RequestState::kReceivingData) start_read(*r);
  }
}

void RdmaQueuePair::reject(Request& r, uint16_t status) {
  set_request_state(r, RequestState::kExecuting);
  complete(r, status);
}

void RdmaQueuePair::send_completion(Request& r, const Completion& c) {
  uint8_t* cqe = &response_region_[size_t{r.slot} * kCqeBytes];
  put64(cqe, c.result);  // DW0, DW1
  put16(cqe + 8, c.sqhd);
  put16(cqe + 10, c.qid);
  put16(cqe + 12, r.cid);
  put16(cqe + 14, c.status);
  const Transfer& t = transfers_[r.slot];
  ibv_sge data_sge{}, cqe_sge{reinterpret_cast<uintptr_t>(cqe), kCqeBytes, response_mr_->lkey};
  ibv_send_wr write{}, send{};
  send.wr_id = wr_id(Work::kSend, r.slot, r.generation);
  send.sg_list = &cqe_sge;
  send.num_sge = 1;
  send.send_flags = IBV_SEND_SIGNALED;
  send.opcode = IBV_WR_SEND;
  if (t.invalidate) {
    // The host registered its buffer for this command alone and asked us to invalidate it
    // with the response (saving it a local invalidate).
    send.opcode = IBV_WR_SEND_WITH_INV;
    send.invalidate_rkey = t.remote_key;
  }
  ibv_send_wr* first = &send;
  if (c.data_bytes > 0) {
    assert(r.buffer && c.data_bytes <= r.transfer_bytes);
    data_sge = ibv_sge{reinterpret_cast<uintptr_t>(r.buffer->data()), std::min(c.data_bytes, r.transfer_bytes), t.local_key};
    write.wr_id = wr_id(Work::kWrite, r.slot, r.generation);
    write.opcode = IBV_WR_RDMA_WRITE;
    write.sg_list = &data_sge;
    write.num_sge = 1;
    write.wr.rdma.remote_addr = t.remote_address;
    write.wr.rdma.rkey = t.remote_key;
    write.next = &send;  // RC keeps order: the data lands before the host sees the response
    first = &write;
  }
  ibv_send_wr* bad = nullptr;
  if (ibv_post_send(cm_id_->qp, first, &bad) != 0) {
    retire(r);
    return fail(str("posting a response failed: ", std::strerror(errno)));
  }
  posted_signaled_sends_++;
}

void RdmaQueuePair::fail(const std::string& why) {
  if (!serving()) return;
  begin_close(CloseMode::kAbort, why);
}

void RdmaQueuePair::begin_close(CloseMode mode, const std::string& reason) {
  if (state_ == RdmaQueueState::kClosed) return;
  if (state_ == RdmaQueueState::kDraining) {
    if (mode == CloseMode::kAbort && flush_before_disconnect_) {
      flush_before_disconnect_ = false;
      rdma_disconnect(cm_id_);
      maybe_finish_close();
    }
    return;
  }
  set_state(RdmaQueueState::kDraining);
  close_reason_ = reason;
  deadline_ = Clock::now() + kDrainTimeout;
  log_line(str("nvmf: RDMA connection ", id_, " from ", peer_, " closing: ", reason));
  detach(reason);
  stashed_.clear();
  reads_waiting_.clear();
  if (mode == CloseMode::kFlush && posted_signaled_sends_ > 0) {
    flush_before_disconnect_ = true;  // the last responses (a refusal) leave first
  } else {
    rdma_disconnect(cm_id_);
  }
  // A queue that never got established does not go to error by disconnecting: make sure.
  if (!flush_before_disconnect_ && cm_id_->qp != nullptr) {
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_ERR;
    ibv_modify_qp(cm_id_->qp, &attr, IBV_QP_STATE);
  }
  ensure_timer();
  maybe_finish_close();
}

void RdmaQueuePair::maybe_finish_close() {
  if (state_ != RdmaQueueState::kDraining) return;
  if (flush_before_disconnect_ && posted_signaled_sends_ == 0) {
    flush_before_disconnect_ = false;
    rdma_disconnect(cm_id_);
    ibv_qp_attr attr{};
    attr.qp_state = IBV_QPS_ERR;
    ibv_modify_qp(cm_id_->qp, &attr, IBV_QP_STATE);
  }
  if (posted_receives_ > 0 || posted_signaled_sends_ > 0) return;
  destroy_resources();
  set_state(RdmaQueueState::kClosed);
  closed();
}

void RdmaQueuePair::destroy_resources() {
  if (poll_inflight_) reactor_.cancel(poll_tag_);  // its callback finds the queue closed
  if (cm_id_ != nullptr && cm_id_->qp != nullptr) rdma_destroy_qp(cm_id_);
  if (cq_ != nullptr) ibv_destroy_cq(cq_);
  cq_ = nullptr;
  if (channel_ != nullptr) ibv_destroy_comp_channel(channel_);
  channel_ = nullptr;
  if (receive_mr_ != nullptr) ibv_dereg_mr(receive_mr_);
  if (response_mr_ != nullptr) ibv_dereg_mr(response_mr_);
  receive_mr_ = response_mr_ = nullptr;
  if (cm_id_ != nullptr) {
    listener_->forget(cm_id_);
    rdma_destroy_id(cm_id_);
    cm_id_ = nullptr;
  }
  // Work that never flushed (the drain deadline passed) is gone with the QP: its requests too.
  for_each_request([this](Request& r) {
    if (r.state == RequestState::kSending) retire(r);
  });
  for (auto& t : transfers_) t.dma_hold.reset();
}

void RdmaQueuePair::ensure_timer() {
  const bool needed = state_ == RdmaQueueState::kConnecting || state_ == RdmaQueueState::kDraining ||
                      (state_ == RdmaQueueState::kServing && deadlines_pending());
  if (timer_inflight_ || !needed) return;
  timer_inflight_ = true;
  timer_ts_.tv_sec = 0;
  timer_ts_.tv_nsec = kTimerTickNs;
  auto self = std::static_pointer_cast<RdmaQueuePair>(shared_from_this());
  reactor_.submit([ts = &timer_ts_](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, ts, 0, 0); },
                  [self](int) {
                    self->timer_inflight_ = false;
                    self->on_timer();
                  });
}

void RdmaQueuePair::on_timer() {
  const auto now = Clock::now();
  switch (state_) {
    case RdmaQueueState::kConnecting:
    case RdmaQueueState::kServing: check_deadlines(now, deadline_); break;
    case RdmaQueueState::kDraining:
      if (now > deadline_) {
        log_line(str("nvmf: RDMA connection ", id_, ": posted work did not flush within 5 s; destroying the queue pair"));
        posted_receives_ = posted_signaled_sends_ = 0;
        if (flush_before_disconnect_) rdma_disconnect(cm_id_);
        flush_before_disconnect_ = false;
        maybe_finish_close();
      }
      break;
    case RdmaQueueState::kClosed: break;
  }
  ensure_timer();
}

}  // namespace strata::nvmf
