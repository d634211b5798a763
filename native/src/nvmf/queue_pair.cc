// The transport-independent queue pair (queue_pair.h): Connect, authentication, properties,
// admin and I/O commands, and the deadlines of an unbound, unauthenticated or silent queue.
#include "nvmf/queue_pair.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <optional>

#include "util/log.h"

namespace strata::nvmf {
namespace {

using Clock = std::chrono::steady_clock;

// A Connect held back by the fence (target.h) gives up after this with Controller Busy, DNR
// clear: the host retries. Below a transport's connect timeout, so the answer comes first.
constexpr auto kFenceTimeout = std::chrono::seconds(5);
// A discovery controller connected with KATO 0 gets this one (as Linux nvmet does): otherwise
// it, its controller id and its buffers would live as long as the peer keeps the queue open.
constexpr uint32_t kDiscoveryKatoMs = 120'000;
// The Connect command's data (NVMe-oF): the only transfer a queue without Connect may ask for.
constexpr uint32_t kConnectDataBytes = 1024;
// From Connect to a completed DH-HMAC-CHAP transaction (the Linux host needs well under a second,
// even emulated; a host that never authenticates must not hold a queue for long).
constexpr auto kAuthTimeout = std::chrono::seconds(15);
// The largest DH-HMAC-CHAP message: a Reply with an ffdhe8192 value is 1168 bytes, a Negotiate
// at most 8 + 255 * 64; Linux reads with 4 KiB. Nothing larger is allocated for one.
constexpr uint32_t kMaxAuthMessageBytes = 64 * 1024;
constexpr auto kKeepAliveSlack = std::chrono::milliseconds(kKasUnits100Ms * 100);  // one KAS granule

uint16_t status_of(const Status& s, IoKind kind) {
  if (s.ok()) return sc::kSuccess;
  switch (s.error().code) {
    case ErrorCode::kOutOfRange: return sc::kLbaOutOfRange;
    case ErrorCode::kNoSpace: return sc::kCapacityExceeded;
    case ErrorCode::kIoError: return kind == IoKind::kRead ? sc::kUnrecoveredReadError : sc::kWriteFault;
    default: return sc::kInternalError;
  }
}

std::optional<std::string> nqn_field(const uint8_t* p) {
  size_t n = strnlen(reinterpret_cast<const char*>(p), 256);
  if (n == 0 || n == 256) return std::nullopt;  // empty or not NUL-terminated inside its 256 bytes
  return std::string(reinterpret_cast<const char*>(p), n);
}

bool is_auth_command(const uint8_t* sqe) { return sqe[0] == opc::kFabrics && (sqe[4] == opc::kFctypeAuthSend || sqe[4] == opc::kFctypeAuthReceive); }

}  // namespace

Direction direction_of(uint8_t opcode, uint8_t fctype) {
  // Bits 1:0 of the opcode (or of the Fabrics command type) give the data direction.
  switch ((opcode == opc::kFabrics ? fctype : opcode) & 0x3) {
    case 1: return Direction::kHostToController;
    case 2: return Direction::kControllerToHost;
    case 3: return Direction::kBidirectional;
    default: return Direction::kNone;
  }
}

QueuePair::QueuePair(Target& target, Reactor& reactor, bool discovery_port, uint64_t id, std::string peer)
    : target_(target), reactor_(reactor), discovery_port_(discovery_port), id_(id), peer_(std::move(peer)) {
  // One slot until Connect tells us the queue size: the Connect command itself.
  requests_.push_back(std::make_unique<Request>());
  free_slots_.push_back(0);
}

// ---- what transports call ------------------------------------------------------------------------

Request* QueuePair::accept_command(const uint8_t* sqe, std::string* refusal) {
  const uint8_t opcode = sqe[0];
  if (queue_state_ == QueueState::kUnbound && !(opcode == opc::kFabrics && sqe[4] == opc::kFctypeConnect)) {
    *refusal = str("command opcode ", int(opcode), " before Connect");
    return nullptr;
  }
  if (queue_state_ == QueueState::kUnbound) fence_deadline_ = {};  // a new Connect: a new fence period
  if (free_slots_.empty()) {
    *refusal = str("the host exceeded the queue size (", sqsize_ + 1, " entries)");
    return nullptr;
  }
  const uint16_t slot = free_slots_.back();
  free_slots_.pop_back();
  Request& r = *requests_[slot];
  assert(r.state == RequestState::kFree);
  r.slot = slot;
  sqhd_ = static_cast<uint16_t>((sqhd_ + 1) % (sqsize_ + 1u));
  r.cid = get16(sqe + 2);
  std::memcpy(r.sqe.data(), sqe, 64);
  return &r;
}

bool QueuePair::refused_before_data(const Request& r) const { return auth_required_ && !authenticated_ && !is_auth_command(r.sqe.data()); }

bool QueuePair::transfer_allowed(const Request& r, uint32_t bytes) const {
  if (bytes > kMaxTransferBytes) return false;
  // Before Connect only the Connect data may be asked for: an unauthenticated peer does not
  // get a 1 MiB buffer for a transfer it may never make.
  if (queue_state_ == QueueState::kUnbound && bytes > kConnectDataBytes) return false;
  if (is_auth_command(r.sqe.data()) && bytes > kMaxAuthMessageBytes) return false;
  return true;
}

void QueuePair::retire(Request& r) {
  assert(r.state != RequestState::kFree);
  free_request(r);
}

void QueuePair::detach(const std::string& reason) {
  if (controller_) {
    if (queue_state_ == QueueState::kAdmin) {
      target_.delete_controller(controller_, str("its admin queue closed (", reason, ")"));
    } else {
      target_.detach_queue(controller_, qid_);
    }
  }
  set_queue_state(QueueState::kDetached);
  for (auto& r : requests_) {
    if (r->state == RequestState::kReceivingData || r->state == RequestState::kHeld || r->state == RequestState::kFenced) free_request(*r);
  }
}

void QueuePair::closed() {
  controller_.reset();
  target_.connection_closed(id_);
}

bool QueuePair::deadlines_pending() const {
  return queue_state_ == QueueState::kUnbound || (queue_state_ == QueueState::kAdmin && kato_ms_ > 0) || (auth_required_ && !authenticated_);
}

void QueuePair::check_deadlines(Clock::time_point now, Clock::time_point connect_deadline) {
  if (queue_state_ == QueueState::kUnbound) {
    for (auto& r : requests_) {
      if (r->state != RequestState::kFenced || now <= fence_deadline_) continue;
      log_line(str("nvmf: connection ", id_, ": Connect still fenced after 5 s; refused with Controller Busy so the host retries"));
      fence_deadline_ = {};
      set_request_state(*r, RequestState::kExecuting);
      complete(*r, sc::kConnectControllerBusyRetry);
    }
    // A fenced Connect is bounded by kFenceTimeout instead, so the host gets its answer.
    if (now > connect_deadline && fence_deadline_ == Clock::time_point{}) begin_close(CloseMode::kAbort, "no successful Connect within 10 s of the connection");
    return;
  }
  if (auth_required_ && !authenticated_ && now > auth_deadline_) {
    begin_close(CloseMode::kAbort, "the host did not authenticate within 15 s");
    return;
  }
  if (queue_state_ == QueueState::kAdmin && kato_ms_ > 0 && now - last_keep_alive_ > std::chrono::milliseconds(kato_ms_) + kKeepAliveSlack) {
    begin_close(CloseMode::kAbort, str("keep-alive timeout (KATO ", kato_ms_, " ms)"));
  }
}

void QueuePair::complete(Request& r, uint16_t status, uint64_t result, uint32_t data_bytes) {
  assert(r.state == RequestState::kExecuting || r.state == RequestState::kHeld);
  if (!serving()) return free_request(r);
  set_request_state(r, RequestState::kSending);
  send_completion(r, Completion{status, result, data_bytes, sqhd_, qid_, sq_flow_disabled_});
}

// ---- commands -----------------------------------------------------------------------------------

void QueuePair::fence_lifted() {
  auto self = shared_from_this();
  post_to_reactor([self] {
    if (!self->serving() || self->queue_state_ != QueueState::kUnbound) return;
    for (auto& r : self->requests_) {
      if (r->state != RequestState::kFenced) continue;
      self->set_request_state(*r, RequestState::kExecuting);
      return self->execute_connect(*r);
    }
  });
}

void QueuePair::set_queue_state(QueueState next) {
  switch (next) {
    case QueueState::kUnbound: assert(false && "a queue never returns to unbound"); break;
    case QueueState::kAdmin:
    case QueueState::kIo: assert(queue_state_ == QueueState::kUnbound); break;
    case QueueState::kDetached: assert(queue_state_ != QueueState::kDetached); break;
  }
  queue_state_ = next;
}

void QueuePair::set_request_state(Request& r, RequestState next) {
  switch (next) {
    case RequestState::kFree: assert(r.state != RequestState::kFree); break;
    case RequestState::kReceivingData: assert(r.state == RequestState::kFree); break;
    case RequestState::kExecuting: assert(r.state == RequestState::kFree || r.state == RequestState::kReceivingData || r.state == RequestState::kFenced); break;
    case RequestState::kHeld: assert(r.state == RequestState::kExecuting); break;
    case RequestState::kFenced: assert(r.state == RequestState::kExecuting); break;
    case RequestState::kSending: assert(r.state == RequestState::kExecuting || r.state == RequestState::kHeld); break;
  }
  if (r.state == RequestState::kSending) sending_requests_--;
  if (next == RequestState::kSending) sending_requests_++;
  r.state = next;
}

void QueuePair::free_request(Request& r) {
  set_request_state(r, RequestState::kFree);
  r.buffer.reset();
  r.generation++;
  r.transfer_bytes = r.received_bytes = 0;
  r.data_digest_error = false;
  r.parts_pending = 0;
  r.first_error_status = 0;
  free_slots_.push_back(r.slot);
}

void QueuePair::execute(Request& r) {
  assert(r.state == RequestState::kExecuting);
  if (auth_required_ && !authenticated_) {
    const bool auth_command = r.sqe[0] == opc::kFabrics && (r.sqe[4] == opc::kFctypeAuthSend || r.sqe[4] == opc::kFctypeAuthReceive);
    if (!auth_command) {
      // A host that skips authentication is refused: the command fails and the queue ends.
      log_line(str("nvmf: connection ", id_, ": command opcode ", int(r.sqe[0]), " before authentication; refusing the host"));
      complete(r, sc::kAuthRequired);
      return begin_close(CloseMode::kFlush, "the host did not authenticate (DH-HMAC-CHAP required)");
    }
  }
  if (r.sqe[0] == opc::kFabrics) return execute_fabrics(r);
  if (queue_state_ == QueueState::kAdmin) return execute_admin(r);
  if (queue_state_ == QueueState::kIo) return execute_io(r);
  complete(r, sc::kCommandSequenceError);
}

void QueuePair::execute_fabrics(Request& r) {
  switch (r.sqe[4]) {
    case opc::kFctypeConnect:
      if (queue_state_ != QueueState::kUnbound) return complete(r, sc::kCommandSequenceError);
      return execute_connect(r);
    case opc::kFctypePropertyGet:
      if (queue_state_ != QueueState::kAdmin) return complete(r, sc::kInvalidField);
      return execute_property_get(r);
    case opc::kFctypePropertySet:
      if (queue_state_ != QueueState::kAdmin) return complete(r, sc::kInvalidField);
      return execute_property_set(r);
    case opc::kFctypeAuthSend:
      if (!auth_) return complete(r, sc::kInvalidField);  // nothing to authenticate on this queue
      return execute_auth_send(r);
    case opc::kFctypeAuthReceive:
      if (!auth_) return complete(r, sc::kInvalidField);
      return execute_auth_receive(r);
    default: return complete(r, sc::kInvalidOpcode);
  }
}

void QueuePair::execute_connect(Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint16_t recfmt = get16(s + 40), qid = get16(s + 42), sqsize = get16(s + 44);
  const uint8_t cattr = s[46];
  uint32_t kato_ms = get32(s + 48);
  auto invalid = [&](bool in_data, uint16_t offset, const std::string& why) {
    log_line(str("nvmf: connection ", id_, ": Connect refused: ", why));
    complete(r, sc::kConnectInvalidParameters, (in_data ? 1u << 16 : 0u) | offset);
  };
  if (recfmt != 0) return complete(r, sc::kConnectIncompatibleFormat);
  if (!r.buffer || r.transfer_bytes < kConnectDataBytes) return complete(r, sc::kDataSglLengthInvalid);
  const uint8_t* d = r.buffer->data();
  UuidBytes host_id;
  std::memcpy(host_id.data(), d, 16);
  const uint16_t cntlid = get16(d + 16);
  auto subnqn = nqn_field(d + 256);
  if (!subnqn) return invalid(true, 256, "SUBNQN is empty or not NUL-terminated");
  auto hostnqn = nqn_field(d + 512);
  if (!hostnqn) return invalid(true, 512, "HOSTNQN is empty or not NUL-terminated");
  if (sqsize == 0 || sqsize >= kQueueEntriesMax) return invalid(false, 44, str("SQSIZE ", sqsize, " must be 1..", kQueueEntriesMax - 1));
  std::shared_ptr<Controller> ctrl;
  const auth::HostKeys* keys = nullptr;
  if (*subnqn == kDiscoveryNqn) {
    if (qid != 0) return invalid(false, 42, "the discovery controller has only an admin queue");
    if (cntlid != 0xFFFF && cntlid != 0xFFFE) return invalid(true, 16, "CNTLID must be 0xFFFF (dynamic)");
    if (kato_ms == 0) kato_ms = kDiscoveryKatoMs;
    if (target_.create_controller(true, nullptr, *hostnqn, host_id, kato_ms, weak_from_this(), &ctrl) != Target::Admission::kCreated) {
      return complete(r, sc::kConnectControllerBusy);
    }
    set_queue_state(QueueState::kAdmin);
  } else {
    if (discovery_port_) return invalid(true, 256, "the discovery listener serves only the discovery subsystem");
    auto sub = target_.find_subsystem(*subnqn);
    if (!sub) return invalid(true, 256, str("no subsystem ", *subnqn));
    if (!sub->allowed_host_nqns.count(*hostnqn)) {
      log_line(str("nvmf: connection ", id_, ": host ", *hostnqn, " is not allowed on ", *subnqn));
      return complete(r, sc::kConnectInvalidHost);
    }
    if (auto k = sub->host_keys.find(*hostnqn); k != sub->host_keys.end()) keys = &k->second;
    if (qid == 0) {
      if (cntlid != 0xFFFF) return invalid(true, 16, "an admin queue Connect must ask for a dynamic controller (CNTLID 0xFFFF)");
      switch (target_.create_controller(false, sub, *hostnqn, host_id, kato_ms, weak_from_this(), &ctrl)) {
        case Target::Admission::kCreated: break;
        case Target::Admission::kBusy: return complete(r, sc::kConnectControllerBusy);
        case Target::Admission::kFenced:
          // Parked until fence_lifted() or, after kFenceTimeout, refused retryably (on_timer).
          if (fence_deadline_ == Clock::time_point{}) {
            log_line(str("nvmf: connection ", id_, ": Connect of ", *hostnqn, " to ", *subnqn, " waits for its deleted controller's commands to finish"));
            fence_deadline_ = Clock::now() + kFenceTimeout;
          }
          set_request_state(r, RequestState::kFenced);
          return ensure_timer();
      }
      set_queue_state(QueueState::kAdmin);
    } else {
      std::string why = target_.attach_io_queue(cntlid, qid, *subnqn, *hostnqn, host_id, weak_from_this(), &ctrl);
      if (!why.empty()) return invalid(true, 16, why);
      set_queue_state(QueueState::kIo);
    }
    subsystem_ = std::move(sub);
  }
  controller_ = ctrl;
  qid_ = qid;
  sqsize_ = sqsize;
  sqhd_ = 1;  // the Connect consumed entry 0
  sq_flow_disabled_ = cattr & 0x04;
  kato_ms_ = qid == 0 ? kato_ms : 0;
  last_keep_alive_ = Clock::now();
  // The queue size is known now: one request slot per SQ entry (slot 0 holds this Connect).
  for (size_t i = requests_.size(); i <= sqsize; i++) {
    requests_.push_back(std::make_unique<Request>());
    requests_.back()->slot = static_cast<uint16_t>(i);
    free_slots_.push_back(static_cast<uint16_t>(i));
  }
  if (keys) {
    // Answer with ATR set, as Linux nvmet does: the host must now run DH-HMAC-CHAP on this queue.
    auth_required_ = true;
    auth_ = std::make_unique<auth::ControllerTransaction>(*keys, *hostnqn, *subnqn);
    auth_deadline_ = Clock::now() + kAuthTimeout;
  }
  log_line(str("nvmf: connection ", id_, ": ", *hostnqn, " connected qid ", qid, " of controller ", ctrl->cntlid, " on ", *subnqn,
               keys ? " (authentication required)" : ""));
  complete(r, sc::kSuccess, ctrl->cntlid | (keys ? kConnectAuthRequired : 0u));
  ensure_timer();
}

// AUTH_Send / AUTH_Receive share SECP (DH-HMAC-CHAP), SPSP0/1 = 1 and a length (TL / AL) that
// must equal the data the SGL describes.
static bool auth_command_valid(const Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint32_t length = get32(s + auth::kSqeLength);
  return s[auth::kSqeSecp] == auth::kSecpDhchap && s[auth::kSqeSpsp0] == 0x01 && s[auth::kSqeSpsp1] == 0x01 && length > 0 && r.buffer &&
         r.transfer_bytes == length;
}

void QueuePair::execute_auth_send(Request& r) {
  if (!auth_command_valid(r)) return complete(r, sc::kInvalidField);
  auth_->on_send(r.buffer->data(), r.transfer_bytes);
  complete(r, sc::kSuccess);
  auth_finished_step();
}

void QueuePair::execute_auth_receive(Request& r) {
  if (!auth_command_valid(r)) return complete(r, sc::kInvalidField);
  std::vector<uint8_t> message = auth_->on_receive(r.transfer_bytes);
  reply_data(r, message);
  auth_finished_step();
}

void QueuePair::auth_finished_step() {
  const bool was = authenticated_;
  authenticated_ = auth_->authenticated();
  if (auth_->failed()) {
    // Never the secret: only which check failed.
    log_line(str("nvmf: connection ", id_, " from ", peer_, ": authentication of qid ", qid_, " failed: ", auth_->failure()));
    return begin_close(CloseMode::kFlush, str("authentication failed: ", auth_->failure()));
  }
  if (authenticated_ && !was) {
    log_line(str("nvmf: connection ", id_, ": qid ", qid_, " of controller ", controller_ ? controller_->cntlid : 0, " authenticated (DH-HMAC-CHAP)"));
    ensure_timer();
  }
}

void QueuePair::execute_property_get(Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint32_t offset = get32(s + 44);
  uint64_t value = 0;
  std::lock_guard<std::mutex> lock(target_.mutex());
  switch (offset) {
    case 0x00:  // CAP
      value = (kQueueEntriesMax - 1)  // MQES (zero-based)
              | (uint64_t{1} << 16)   // CQR: queues must be contiguous (required over fabrics)
              | (uint64_t{15} << 24)  // TO: 7.5 s for CSTS.RDY
              | (uint64_t{1} << 37);  // CSS: NVM command set; MPSMIN = MPSMAX = 0 (4 KiB)
      break;
    case 0x08: value = kVersion13; break;
    case 0x14: value = controller_->cc; break;
    case 0x1C: {  // CSTS: RDY bit 0, SHST bits 3:2 (2 = shutdown complete)
      const ControllerState st = controller_->state;
      value = (st == ControllerState::kEnabled ? 1u : 0u) | (st == ControllerState::kShutdown ? 2u << 2 : 0u);
      break;
    }
    default:
      return complete(r, sc::kInvalidField);
  }
  if ((s[40] & 0x1) == 0) value &= 0xFFFFFFFF;  // a 4-byte read
  complete(r, sc::kSuccess, value);
}

void QueuePair::execute_property_set(Request& r) {
  const uint8_t* s = r.sqe.data();
  if (get32(s + 44) != 0x14) return complete(r, sc::kInvalidField);  // only CC is writable
  const uint32_t cc = get32(s + 48);
  bool shut_down = false;
  {
    std::lock_guard<std::mutex> lock(target_.mutex());
    Controller& c = *controller_;
    if (c.state == ControllerState::kDeleted) return complete(r, sc::kCommandSequenceError);
    const bool was_enabled = c.cc & 0x1, enable = cc & 0x1;
    const uint32_t shn = (cc >> 14) & 0x3;
    c.cc = cc;
    if (shn != 0) {
      target_.set_controller_state(c, ControllerState::kShutdown);
      shut_down = true;
    } else if (enable && !was_enabled && c.state == ControllerState::kDisabled) {
      target_.set_controller_state(c, ControllerState::kEnabled);
    } else if (!enable && c.state != ControllerState::kDisabled) {
      target_.set_controller_state(c, ControllerState::kDisabled);  // controller reset
    }
  }
  if (shut_down) complete_held_aers(sc::kAbortedSqDeletion);
  complete(r, sc::kSuccess);
}

void QueuePair::execute_admin(Request& r) {
  last_keep_alive_ = Clock::now();  // any admin traffic proves the host alive
  switch (r.sqe[0]) {
    case opc::kIdentify: return execute_identify(r);
    case opc::kGetLogPage: return execute_get_log_page(r);
    case opc::kSetFeatures: return execute_features(r, true);
    case opc::kGetFeatures: return execute_features(r, false);
    case opc::kKeepAlive: return complete(r, sc::kSuccess);
    case opc::kAbort: return complete(r, sc::kSuccess, 1);  // bit 0 set: the command was not aborted
    case opc::kAsyncEventRequest: {
      size_t held = 0;
      for (auto& q : requests_) held += q->state == RequestState::kHeld;
      if (held > kAerlZeroBased) return complete(r, sc::kAerLimitExceeded);
      set_request_state(r, RequestState::kHeld);
      return deliver_pending_aen();  // a notice may be waiting for just this request
    }
    default: return complete(r, sc::kInvalidOpcode);
  }
}

void QueuePair::reply_data(Request& r, const std::vector<uint8_t>& content) {
  if (r.transfer_bytes == 0 || !r.buffer) return complete(r, sc::kDataSglLengthInvalid);
  std::memset(r.buffer->data(), 0, r.transfer_bytes);
  // An empty slice (Get Log Page offset past the log's end) has a null data(): memcpy from
  // null is undefined even for 0 bytes (found by native/fuzz).
  if (!content.empty()) std::memcpy(r.buffer->data(), content.data(), std::min<size_t>(content.size(), r.transfer_bytes));
  complete(r, sc::kSuccess, 0, r.transfer_bytes);
}

void QueuePair::execute_identify(Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint8_t cns = s[40];
  const uint8_t csi = s[47];
  const uint32_t nsid = get32(s + 4);
  const bool discovery = controller_->discovery;
  std::vector<uint8_t> page(4096, 0);
  uint8_t* p = page.data();
  if (discovery && cns != 0x01) return complete(r, sc::kInvalidField);
  switch (cns) {
    case 0x01: {  // controller
      const std::string serial = discovery ? "strata-discovery" : subsystem_->serial;
      put_text(p + 4, 20, serial, ' ');
      put_text(p + 24, 40, discovery ? "Strata discovery controller" : "Strata replica", ' ');
      put_text(p + 64, 8, "0.1.0", ' ');
      p[72] = 6;                               // RAB
      p[76] = discovery ? 0 : 0x02;            // CMIC: a subsystem may have several controllers
      p[77] = kMdts;
      put16(p + 78, controller_->cntlid);
      put32(p + 80, kVersion13);
      put32(p + 92, discovery ? 0 : 1u << 8);  // OAES: namespace attribute notices
      p[111] = discovery ? 2 : 1;              // CNTRLTYPE
      p[258] = 3;                              // ACL (zero-based)
      p[259] = kAerlZeroBased;
      p[261] = 0x04;                           // LPA: extended data (log page offsets)
      put16(p + 320, kKasUnits100Ms);          // KAS
      p[512] = 0x66;                           // SQES: 64 bytes
      p[513] = 0x44;                           // CQES: 16 bytes
      put16(p + 514, kQueueEntriesMax);        // MAXCMD
      put32(p + 516, discovery ? 0 : 1);       // NN
      put16(p + 520, discovery ? 0 : (1 << 2) | (1 << 3));  // ONCS: Dataset Management, Write Zeroes
      p[525] = discovery ? 0 : 1;              // VWC: present, so hosts send Flush
      put32(p + 536, 1u | (1u << 20) | transport_sgl_support());  // SGLS: supported, offset addressing for in-capsule data
      put_text(p + 768, 256, discovery ? kDiscoveryNqn : subsystem_->nqn, '\0');
      put32(p + 1792, kIoccsz);                // IOCCSZ
      put32(p + 1796, 1);                      // IORCSZ
      put16(p + 1800, 0);                      // ICDOFF
      p[1802] = 0;                             // FCATT: dynamic controller model
      p[1803] = 1;                             // MSDBD
      break;
    }
    case 0x00: {  // namespace
      if (nsid != 1) {
        if (nsid == 0 || nsid == 0xFFFFFFFF) return complete(r, sc::kInvalidNamespace);
        break;  // an inactive NSID: all zeros
      }
      const uint64_t blocks = subsystem_->size_bytes() / kBlockBytes;
      put64(p + 0, blocks);   // NSZE
      put64(p + 8, blocks);   // NCAP (0 would mean the namespace is gone)
      put64(p + 16, blocks);  // NUSE
      p[24] = 0x01;           // NSFEAT: thin provisioning
      p[30] = 0x01;           // NMIC: may be attached to several controllers
      p[33] = 0x01;           // DLFEAT: deallocated blocks read as zeros
      std::memcpy(p + 104, subsystem_->replica_uuid_bytes.data(), 16);  // NGUID
      for (int i = 0; i < 8; i++) p[120 + i] = subsystem_->replica_uuid_bytes[i] ^ subsystem_->replica_uuid_bytes[15 - i];  // EUI64
      p[130] = kLbads;        // LBAF0: 4 KiB, no metadata
      break;
    }
    case 0x02:  // active namespace list: NSIDs above the given one
      if (nsid >= 0xFFFFFFFE) return complete(r, sc::kInvalidNamespace);
      if (nsid < 1) put32(p, 1);
      break;
    case 0x03: {  // namespace identification descriptors
      if (nsid != 1) return complete(r, sc::kInvalidNamespace);
      size_t o = 0;
      auto add = [&](uint8_t type, const uint8_t* id, uint8_t bytes) {
        p[o] = type;
        p[o + 1] = bytes;
        std::memcpy(p + o + 4, id, bytes);
        o += 4 + bytes;
      };
      uint8_t eui[8];
      for (int i = 0; i < 8; i++) eui[i] = subsystem_->replica_uuid_bytes[i] ^ subsystem_->replica_uuid_bytes[15 - i];
      uint8_t nvm_csi = 0;
      add(1, eui, 8);
      add(2, subsystem_->replica_uuid_bytes.data(), 16);
      add(3, subsystem_->replica_uuid_bytes.data(), 16);
      add(4, &nvm_csi, 1);
      break;
    }
    case 0x05:  // I/O command set specific namespace: nothing beyond the NVM base
      if (nsid != 1 || csi != 0) return complete(r, sc::kInvalidField);
      break;
    case 0x06:  // I/O command set specific controller (NVM): no extra limits
      if (csi != 0) return complete(r, sc::kInvalidField);
      break;
    default:
      return complete(r, sc::kInvalidField);
  }
  reply_data(r, page);
}

void QueuePair::execute_get_log_page(Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint8_t lid = s[40];
  const uint64_t offset = get64(s + 48);
  if (offset % 4 != 0) return complete(r, sc::kInvalidField);
  std::vector<uint8_t> log;
  if (controller_->discovery) {
    if (lid != 0x70) return complete(r, sc::kInvalidLogPage);
    log = target_.discovery_log(controller_->host_nqn);
  } else {
    switch (lid) {
      case 0x01: log.assign(64, 0); break;    // error information: no errors
      case 0x02:                              // SMART / health
        log.assign(512, 0);
        put16(&log[1], 293);                  // composite temperature, kelvin
        log[3] = 100;                         // available spare %
        log[4] = 10;                          // spare threshold %
        break;
      case 0x03: log.assign(512, 0); break;   // firmware slots
      case kLogChangedNamespaces: {
        // NSID 1 when its attributes (size) changed since the log was last read. RAE (CDW10 bit
        // 15) clear: the read consumes the list and unmasks the notice, so the next change is
        // announced again; RAE set: both stay as they are. Only a read from offset 0 (the part
        // holding the list) consumes it.
        const bool rae = get32(s + 40) & (1u << 15);
        log.assign(kChangedNamespaceLogBytes, 0);
        std::lock_guard<std::mutex> lock(target_.mutex());
        Controller& c = *controller_;
        if (c.changed_ns) put32(log.data(), 1);
        if (!rae && offset == 0) {
          c.changed_ns = false;
          c.ns_aen_pending = false;
          c.ns_aen_masked = false;
        }
        break;
      }
      default: return complete(r, sc::kInvalidLogPage);
    }
  }
  std::vector<uint8_t> slice;
  if (offset < log.size()) slice.assign(log.begin() + static_cast<long>(offset), log.end());
  reply_data(r, slice);
}

void QueuePair::execute_features(Request& r, bool set) {
  const uint8_t* s = r.sqe.data();
  const uint8_t fid = s[40];
  const uint32_t value = get32(s + 44);
  std::lock_guard<std::mutex> lock(target_.mutex());
  Controller& c = *controller_;
  switch (fid) {
    case 0x07: {  // number of queues
      if (c.discovery) return complete(r, sc::kInvalidField);
      if (set) {
        const uint16_t nsqr = value & 0xFFFF, ncqr = value >> 16;
        if (nsqr == 0xFFFF || ncqr == 0xFFFF) return complete(r, sc::kInvalidField);
        c.io_queues_granted_zero_based = std::min<uint16_t>(std::min(nsqr, ncqr), kIoQueuesMax - 1);
      }
      const uint32_t granted = c.io_queues_granted_zero_based;
      return complete(r, sc::kSuccess, granted | (granted << 16));
    }
    case 0x0B:  // asynchronous event configuration
      if (set) c.async_event_config = value;
      return complete(r, sc::kSuccess, c.async_event_config);
    case 0x0F:  // keep alive timer
      if (set) {
        c.kato_ms = value == 0 && c.discovery ? kDiscoveryKatoMs : value;  // as at Connect
        kato_ms_ = c.kato_ms;
        last_keep_alive_ = Clock::now();
      }
      complete(r, sc::kSuccess, c.kato_ms);
      return ensure_timer();
    case 0x06:  // volatile write cache: always on
      if (c.discovery) return complete(r, sc::kInvalidField);
      return complete(r, sc::kSuccess, 1);
    default:
      return complete(r, sc::kInvalidField);
  }
}

void QueuePair::execute_io(Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint8_t opcode = s[0];
  const uint32_t nsid = get32(s + 4);
  const uint64_t blocks = subsystem_->size_bytes() / kBlockBytes;
  if (opcode == opc::kFlush) {
    if (nsid != 1 && nsid != 0xFFFFFFFF) return complete(r, sc::kInvalidNamespace);
    return backend_io(r, IoKind::kFlush, 0, 0);
  }
  if (nsid != 1) return complete(r, sc::kInvalidNamespace);
  switch (opcode) {
    case opc::kRead:
    case opc::kWrite:
    case opc::kWriteZeroes: {
      const uint64_t slba = get64(s + 40);
      const uint64_t nlb = (get32(s + 48) & 0xFFFF) + 1;
      if (slba > blocks || nlb > blocks - slba) return complete(r, sc::kLbaOutOfRange);
      const uint64_t bytes = nlb * kBlockBytes;
      if (opcode == opc::kWriteZeroes) return backend_io(r, IoKind::kWriteZeroes, slba * kBlockBytes, bytes);
      if (bytes != r.transfer_bytes) return complete(r, sc::kDataSglLengthInvalid);
      return backend_io(r, opcode == opc::kRead ? IoKind::kRead : IoKind::kWrite, slba * kBlockBytes, bytes);
    }
    case opc::kDatasetManagement: return execute_dsm(r);
    default: return complete(r, sc::kInvalidOpcode);
  }
}

void QueuePair::execute_dsm(Request& r) {
  const uint8_t* s = r.sqe.data();
  const uint32_t ranges = (get32(s + 40) & 0xFF) + 1;
  const bool deallocate = get32(s + 44) & 0x4;
  if (!deallocate) return complete(r, sc::kSuccess);  // attributes only: hints we may ignore
  if (!r.buffer || r.transfer_bytes < ranges * 16) return complete(r, sc::kDataSglLengthInvalid);
  const uint64_t blocks = subsystem_->size_bytes() / kBlockBytes;
  const uint8_t* d = r.buffer->data();
  uint32_t parts = 0;
  for (uint32_t i = 0; i < ranges; i++) {
    const uint64_t nlb = get32(d + 16 * i + 4), slba = get64(d + 16 * i + 8);
    if (slba > blocks || nlb > blocks - slba) return complete(r, sc::kLbaOutOfRange);
    parts += nlb > 0;
  }
  if (parts == 0) return complete(r, sc::kSuccess);
  r.parts_pending = parts;
  for (uint32_t i = 0; i < ranges; i++) {
    const uint64_t nlb = get32(d + 16 * i + 4), slba = get64(d + 16 * i + 8);
    if (nlb > 0) backend_io(r, IoKind::kDeallocate, slba * kBlockBytes, nlb * kBlockBytes);
  }
}

void QueuePair::backend_io(Request& r, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes) {
  backend_inflight_++;
  auto self = shared_from_this();
  const uint16_t slot = r.slot;
  const uint32_t generation = r.generation;
  std::shared_ptr<Controller> ctrl = controller_;
  if (!target_.backend_command_starting(*ctrl)) {
    // The controller was deleted (the fence in target.h): nothing new reaches the backend.
    // Its queues are being closed, so the command gets no answer: the host sees the
    // connection end, as for the commands it had in flight, and retries on its new one.
    return post_to_reactor([self, slot, generation] {
      self->backend_inflight_--;
      Request& r = *self->requests_[slot];
      if (r.generation == generation && r.state == RequestState::kExecuting) self->free_request(r);
    });
  }
  std::shared_ptr<AlignedBuffer> buffer = (kind == IoKind::kRead || kind == IoKind::kWrite) ? r.buffer : nullptr;
  target_.backend()(*subsystem_, kind, offset_bytes, length_bytes, std::move(buffer), [self, ctrl, slot, generation, kind](Status s) {
    // Counted off here, where the backend is done, not on our reactor: a fenced Connect waits for this.
    self->target_.backend_command_finished(ctrl);
    // The pool may live on another reactor: come back to ours before touching the connection.
    self->post_to_reactor([self, slot, generation, kind, s] { self->backend_done(slot, generation, s, kind); });
  });
}

void QueuePair::backend_done(uint16_t slot, uint32_t generation, Status status, IoKind kind) {
  if (!status.ok()) log_line(str("nvmf: connection ", id_, ": I/O failed: ", status.error().message));
  finish_backend(slot, generation, status_of(status, kind), kind == IoKind::kRead && status.ok() ? requests_[slot]->transfer_bytes : 0);
}

void QueuePair::finish_backend(uint16_t slot, uint32_t generation, uint16_t st, uint32_t data_bytes) {
  backend_inflight_--;
  Request& r = *requests_[slot];
  if (r.generation != generation || r.state != RequestState::kExecuting) return;
  if (r.parts_pending > 0) {
    if (st != sc::kSuccess && r.first_error_status == sc::kSuccess) r.first_error_status = st;
    if (--r.parts_pending > 0) return;
    return complete(r, r.first_error_status);
  }
  complete(r, st, 0, st == sc::kSuccess ? data_bytes : 0);
}

void QueuePair::aen_ready() {
  auto self = shared_from_this();
  post_to_reactor([self] { self->deliver_pending_aen(); });
}

void QueuePair::deliver_pending_aen() {
  if (!serving() || queue_state_ != QueueState::kAdmin || !controller_ || controller_->discovery) return;
  Request* held = nullptr;
  for (auto& r : requests_) {
    if (r->state == RequestState::kHeld) {
      held = r.get();
      break;
    }
  }
  if (!held) return;  // stays pending until the host's next AER (execute_admin)
  {
    std::lock_guard<std::mutex> lock(target_.mutex());
    Controller& c = *controller_;
    if (!c.ns_aen_pending || c.state != ControllerState::kEnabled) return;
    c.ns_aen_pending = false;
    c.ns_aen_masked = true;  // until the host reads log page 0x04 with RAE clear
  }
  log_line(str("nvmf: connection ", id_, ": namespace attribute notice to controller ", controller_->cntlid));
  complete(*held, sc::kSuccess, kAenNamespaceAttributeChanged);
}

void QueuePair::complete_held_aers(uint16_t status) {
  for (auto& r : requests_) {
    if (r->state == RequestState::kHeld) complete(*r, status);
  }
}

}  // namespace strata::nvmf
