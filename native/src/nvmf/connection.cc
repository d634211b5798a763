#include "nvmf/connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <optional>

#include "util/crc32c.h"
#include "util/log.h"

namespace strata::nvmf {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kRxInitialBytes = 16 * 1024;
// The largest PDU a host may send us: an H2CData with MAXH2CDATA bytes and both digests.
constexpr size_t kRxMaxPduBytes = pdu::kDataHeaderBytes + 2 * pdu::kDigestBytes + kMaxH2cDataBytes;
// An accepted socket must complete ICReq and a successful Connect within this, or it is closed:
// before Connect a peer is unauthenticated, and each such socket holds an fd and buffers.
constexpr auto kConnectTimeout = std::chrono::seconds(10);
// A Connect held back by the fence (target.h) gives up after this with Controller Busy, DNR
// clear: the host retries. Below kConnectTimeout, so the answer comes before the socket is cut.
constexpr auto kFenceTimeout = std::chrono::seconds(5);
// A discovery controller connected with KATO 0 gets this one (as Linux nvmet does): otherwise
// it, its controller id and its buffers would live as long as the peer keeps the socket open.
constexpr uint32_t kDiscoveryKatoMs = 120'000;
// Parsing (and so recv) stops while more than this waits in tx_: a peer that does not read
// its responses stops being served. Two maximal responses: one on the wire, one ready behind
// it, which keeps the socket busy; a longer queue would not send faster, only hold memory.
// A discovery or admin queue, whose commands complete as they are parsed, so holds at most
// this plus one response; an I/O queue also holds the buffers of the commands it is executing
// (SQSIZE x MDTS at most, as in any NVMe/TCP target).
constexpr size_t kTxBacklogCapBytes = 2 * size_t{kMaxTransferBytes};
// The Connect command's data (NVMe-oF): the only transfer a queue without Connect may ask for.
constexpr uint32_t kConnectDataBytes = 1024;
constexpr auto kLingerTimeout = std::chrono::seconds(2);   // after a TermReq/FIN, then the socket is cut
// From Connect to a completed DH-HMAC-CHAP transaction (the Linux host needs well under a second,
// even emulated; a host that never authenticates must not hold a queue for long).
constexpr auto kAuthTimeout = std::chrono::seconds(15);
// The largest DH-HMAC-CHAP message: a Reply with an ffdhe8192 value is 1168 bytes, a Negotiate
// at most 8 + 255 * 64; Linux reads with 4 KiB. Nothing larger is allocated for one.
constexpr uint32_t kMaxAuthMessageBytes = 64 * 1024;
constexpr auto kKeepAliveSlack = std::chrono::milliseconds(kKasUnits100Ms * 100);  // one KAS granule
constexpr long long kTimerTickNs = 500'000'000;

uint32_t digest(const uint8_t* p, size_t n) { return crc32c(0, p, n); }

enum class Direction { kNone, kHostToController, kControllerToHost, kBidirectional };

Direction direction_of(uint8_t opcode, uint8_t fctype) {
  // Bits 1:0 of the opcode (or of the Fabrics command type) give the data direction.
  switch ((opcode == opc::kFabrics ? fctype : opcode) & 0x3) {
    case 1: return Direction::kHostToController;
    case 2: return Direction::kControllerToHost;
    case 3: return Direction::kBidirectional;
    default: return Direction::kNone;
  }
}

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

}  // namespace

Connection::Connection(Target& target, Reactor& reactor, int fd, bool discovery_port, uint64_t id, std::string peer)
    : target_(target), reactor_(reactor), fd_(fd), discovery_port_(discovery_port), id_(id), peer_(std::move(peer)) {
  rx_.resize(kRxInitialBytes);
  deadline_ = Clock::now() + kConnectTimeout;
  // One slot until Connect tells us the queue size: the Connect command itself.
  requests_.push_back(std::make_unique<Request>());
  free_slots_.push_back(0);
}

Connection::~Connection() {
  if (fd_ >= 0) close(fd_);
}

void Connection::start() {
  assert(reactor_.on_reactor_thread());
  log_line(str("nvmf: connection ", id_, " from ", peer_, discovery_port_ ? " (discovery)" : ""));
  arm_recv();
  ensure_timer();
}

void Connection::close_async(const std::string& reason, bool let_closing_flush) {
  auto self = shared_from_this();
  post_to_reactor([self, reason, let_closing_flush] {
    if (let_closing_flush && self->state_ == ConnectionState::kClosing) return;
    self->begin_close(CloseMode::kAbort, reason);
  });
}

void Connection::post_to_reactor(std::function<void()> task) {
  if (test_sink_) {
    test_posted_.push_back(std::move(task));
    return;
  }
  reactor_.post(std::move(task));
}

// ---- test seam ----------------------------------------------------------------------------------

void Connection::attach_test_sink(TestSink sink) {
  assert(fd_ < 0 && "the test seam replaces the socket; it is never attached to a live one");
  test_sink_ = std::move(sink);
}

void Connection::feed_for_test(const uint8_t* data, size_t bytes) {
  assert(test_sink_);
  // Same path as on_recv, in chunks no larger than the room a recv would have had, so buffer
  // growth and PDUs split across reads are exercised as on a socket.
  while (bytes > 0 && !read_shut_) {
    if (state_ == ConnectionState::kClosing || state_ == ConnectionState::kClosed) return;
    size_t room = rx_.size() - rx_end_;
    size_t n = bytes < room ? bytes : room;
    std::memcpy(rx_.data() + rx_end_, data, n);
    data += n;
    bytes -= n;
    on_recv(static_cast<int>(n));
  }
}

size_t Connection::run_posted_for_test() {
  size_t ran = 0;
  while (!test_posted_.empty()) {
    auto task = std::move(test_posted_.front());
    test_posted_.pop_front();
    task();
    ran++;
  }
  return ran;
}

void Connection::peer_closed_for_test() {
  if (!read_shut_) on_recv(0);
}

void Connection::fence_lifted() {
  auto self = shared_from_this();
  post_to_reactor([self] {
    if (self->state_ != ConnectionState::kEstablished || self->queue_state_ != QueueState::kUnbound) return;
    for (auto& r : self->requests_) {
      if (r->state != RequestState::kFenced) continue;
      self->set_request_state(*r, RequestState::kExecuting);
      return self->execute_connect(*r);
    }
  });
}

// ---- state changes ------------------------------------------------------------------------------

void Connection::set_state(ConnectionState next) {
  switch (next) {
    case ConnectionState::kAwaitingIcReq: assert(false && "a connection never returns to awaiting ICReq"); break;
    case ConnectionState::kEstablished: assert(state_ == ConnectionState::kAwaitingIcReq); break;
    case ConnectionState::kClosing: assert(state_ == ConnectionState::kAwaitingIcReq || state_ == ConnectionState::kEstablished); break;
    case ConnectionState::kClosed: assert(state_ == ConnectionState::kClosing); break;
  }
  state_ = next;
}

void Connection::set_queue_state(QueueState next) {
  switch (next) {
    case QueueState::kUnbound: assert(false && "a queue never returns to unbound"); break;
    case QueueState::kAdmin:
    case QueueState::kIo: assert(queue_state_ == QueueState::kUnbound); break;
    case QueueState::kDetached: assert(queue_state_ != QueueState::kDetached); break;
  }
  queue_state_ = next;
}

void Connection::set_request_state(Request& r, RequestState next) {
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

// ---- receive ------------------------------------------------------------------------------------

void Connection::arm_recv() {
  if (recv_inflight_ || read_shut_ || state_ == ConnectionState::kClosed) return;
  if (rx_paused_ && state_ == ConnectionState::kEstablished) return;  // resume_rx() arms it
  if (test_sink_) return;  // the harness delivers bytes itself
  assert(rx_end_ < rx_.size());
  recv_inflight_ = true;
  auto self = shared_from_this();
  uint8_t* dst = rx_.data() + rx_end_;
  size_t room = rx_.size() - rx_end_;
  reactor_.submit([fd = fd_, dst, room](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, dst, room, 0); },
                  [self](int result) { self->on_recv(result); });
}

void Connection::on_recv(int result) {
  recv_inflight_ = false;
  if (result <= 0) {
    read_shut_ = true;
    if (state_ == ConnectionState::kAwaitingIcReq || state_ == ConnectionState::kEstablished) {
      begin_close(CloseMode::kAbort, result == 0 ? "the host closed the connection" : str("recv failed: ", std::strerror(-result)));
    }
    maybe_finish_close();
    return;
  }
  if (state_ == ConnectionState::kClosing || state_ == ConnectionState::kClosed) {
    rx_start_ = rx_end_ = 0;  // draining until the host hangs up: nothing is parsed any more
    arm_recv();
    return;
  }
  rx_end_ += static_cast<size_t>(result);
  parse();
  arm_recv();
}

bool Connection::rx_must_pause(uint8_t next_pdu_type) const {
  if (tx_bytes_ > kTxBacklogCapBytes) return true;
  // The host may see a response before on_sent has freed its slot: wait for it rather than
  // call its next command an SQ overflow.
  return next_pdu_type == pdu::kCapsuleCmd && free_slots_.empty() && sending_requests_ > 0;
}

void Connection::resume_rx() {
  if (!rx_paused_ || state_ != ConnectionState::kEstablished || rx_must_pause(rx_end_ - rx_start_ >= 1 ? rx_[rx_start_] : pdu::kCapsuleCmd)) return;
  rx_paused_ = false;
  parse();
  arm_recv();
}

void Connection::parse() {
  while (state_ == ConnectionState::kAwaitingIcReq || state_ == ConnectionState::kEstablished) {
    size_t available = rx_end_ - rx_start_;
    if (available < pdu::kCommonHeaderBytes) break;
    if (!check_header(&rx_[rx_start_], available)) return;
    if (rx_must_pause(rx_[rx_start_])) {
      rx_paused_ = true;
      break;
    }
    uint32_t plen = get32(&rx_[rx_start_ + 4]);
    if (plen > rx_.size()) {
      // check_header bounded plen by the largest legal PDU, so this growth is bounded too.
      assert(plen <= kRxMaxPduBytes && !recv_inflight_);
      std::vector<uint8_t> bigger(kRxMaxPduBytes + kRxInitialBytes);
      std::memcpy(bigger.data(), &rx_[rx_start_], available);
      rx_ = std::move(bigger);
      rx_start_ = 0;
      rx_end_ = available;
    }
    if (available < plen) break;
    handle_pdu(&rx_[rx_start_], plen);
    if (state_ != ConnectionState::kEstablished) return;
    rx_start_ += plen;
  }
  if (rx_start_ == rx_end_) {
    rx_start_ = rx_end_ = 0;
  } else if (rx_start_ > 0) {
    std::memmove(rx_.data(), &rx_[rx_start_], rx_end_ - rx_start_);
    rx_end_ -= rx_start_;
    rx_start_ = 0;
  }
}

bool Connection::check_header(const uint8_t* h, size_t available) {
  const uint8_t type = h[0], hlen = h[2], pdo = h[3];
  const uint32_t plen = get32(h + 4);
  const uint32_t hd = hdgst_ ? pdu::kDigestBytes : 0, dd = ddgst_ ? pdu::kDigestBytes : 0;
  size_t copy = std::min<size_t>(available, pdu::kTermReqMaxCopiedBytes);
  auto bad = [&](Fes fes, uint32_t fei, const std::string& why) {
    fail(fes, fei, h, std::min<size_t>(copy, std::max<size_t>(hlen, pdu::kCommonHeaderBytes)), why);
    return false;
  };
  if (state_ == ConnectionState::kAwaitingIcReq && type != pdu::kIcReq) {
    return bad(Fes::kPduSequenceError, 0, str("the first PDU must be an ICReq, got type ", int(type)));
  }
  switch (type) {
    case pdu::kIcReq:
      if (state_ != ConnectionState::kAwaitingIcReq) return bad(Fes::kPduSequenceError, 0, "a second ICReq");
      if (hlen != pdu::kIcBytes) return bad(Fes::kInvalidHeaderField, 2, str("ICReq hlen ", int(hlen), " != 128"));
      if (pdo != 0) return bad(Fes::kInvalidHeaderField, 3, "ICReq pdo != 0");
      if (plen != pdu::kIcBytes) return bad(Fes::kInvalidHeaderField, 4, str("ICReq plen ", plen, " != 128"));
      return true;
    case pdu::kH2cTermReq:
      if (hlen != pdu::kTermReqHeaderBytes) return bad(Fes::kInvalidHeaderField, 2, "H2CTermReq hlen != 24");
      if (plen < hlen || plen > hlen + pdu::kTermReqMaxCopiedBytes) return bad(Fes::kInvalidHeaderField, 4, "H2CTermReq plen");
      return true;
    case pdu::kCapsuleCmd: {
      if (hlen != pdu::kCapsuleCmdHeaderBytes) return bad(Fes::kInvalidHeaderField, 2, str("CapsuleCmd hlen ", int(hlen), " != 72"));
      const uint32_t header_end = hlen + hd;
      if (plen < header_end) return bad(Fes::kInvalidHeaderField, 4, str("CapsuleCmd plen ", plen, " < ", header_end));
      if (plen == header_end) {
        if (pdo != 0) return bad(Fes::kInvalidHeaderField, 3, "CapsuleCmd without data has pdo != 0");
        return true;
      }
      // CPDA is 0: in-capsule data starts right after the header (and its digest).
      if (pdo != header_end) return bad(Fes::kInvalidHeaderField, 3, str("CapsuleCmd pdo ", int(pdo), " != ", header_end));
      if (plen <= pdo + dd || plen - pdo - dd > kInCapsuleDataBytes) {
        return bad(Fes::kInvalidHeaderField, 4, str("CapsuleCmd plen ", plen, ": in-capsule data must be 1..", kInCapsuleDataBytes, " bytes"));
      }
      return true;
    }
    case pdu::kH2cData: {
      if (hlen != pdu::kDataHeaderBytes) return bad(Fes::kInvalidHeaderField, 2, "H2CData hlen != 24");
      if (pdo != hlen + hd) return bad(Fes::kInvalidHeaderField, 3, str("H2CData pdo ", int(pdo), " != ", hlen + hd));
      if (plen <= pdo + dd) return bad(Fes::kInvalidHeaderField, 4, "H2CData without data");
      if (plen - pdo - dd > kMaxH2cDataBytes) return bad(Fes::kDataLimitExceeded, 4, str("H2CData carries more than MAXH2CDATA (", kMaxH2cDataBytes, ")"));
      return true;
    }
    default:
      return bad(Fes::kInvalidHeaderField, 0, str("PDU type ", int(type), " is not one a host may send"));
  }
}

void Connection::handle_pdu(const uint8_t* h, uint32_t plen) {
  const uint8_t type = h[0], hlen = h[2];
  if (hdgst_ && (type == pdu::kCapsuleCmd || type == pdu::kH2cData)) {
    if (digest(h, hlen) != get32(h + hlen)) return fail(Fes::kHeaderDigestError, 0, h, hlen, "header digest mismatch");
  }
  switch (type) {
    case pdu::kIcReq: return handle_ic_req(h);
    case pdu::kH2cTermReq: return begin_close(CloseMode::kAbort, str("the host sent H2CTermReq (FES ", get16(h + 8), ")"));
    case pdu::kCapsuleCmd: return handle_capsule(h, plen);
    case pdu::kH2cData: return handle_h2c_data(h, plen);
    default: assert(false && "check_header admits only the types above");
  }
}

void Connection::handle_ic_req(const uint8_t* h) {
  const uint16_t pfv = get16(h + 8);
  const uint8_t hpda = h[10], dgst = h[11];
  if (pfv != 0) return fail(Fes::kUnsupportedParameter, 8, h, pdu::kIcBytes, str("ICReq PFV ", pfv, " (only 0 exists)"));
  if (hpda > 31) return fail(Fes::kInvalidHeaderField, 10, h, pdu::kIcBytes, str("ICReq HPDA ", int(hpda), " > 31"));
  hdgst_ = dgst & 0x1;
  ddgst_ = dgst & 0x2;
  hpda_ = hpda;
  host_maxr2t_ = get32(h + 12);
  OutPdu resp;
  resp.head.assign(pdu::kIcBytes, 0);
  uint8_t* p = resp.head.data();
  p[0] = pdu::kIcResp;
  p[2] = pdu::kIcBytes;
  put32(p + 4, pdu::kIcBytes);
  put16(p + 8, 0);              // PFV
  p[10] = 0;                    // CPDA: Linux accepts only 0
  p[11] = dgst & 0x3;           // echo exactly the digests the host asked for
  put32(p + 12, kMaxH2cDataBytes);
  set_state(ConnectionState::kEstablished);
  queue_pdu(std::move(resp));
}

void Connection::handle_capsule(const uint8_t* h, uint32_t plen) {
  const uint8_t* sqe = h + pdu::kCommonHeaderBytes;
  const uint32_t pdo = h[3], dd = ddgst_ ? pdu::kDigestBytes : 0;
  const uint8_t* data = pdo ? h + pdo : nullptr;
  const uint32_t data_bytes = pdo ? plen - pdo - dd : 0;
  const uint8_t opcode = sqe[0];
  if (queue_state_ == QueueState::kUnbound && !(opcode == opc::kFabrics && sqe[4] == opc::kFctypeConnect)) {
    return fail(Fes::kPduSequenceError, 0, h, pdu::kCapsuleCmdHeaderBytes, str("command opcode ", int(opcode), " before Connect"));
  }
  if (queue_state_ == QueueState::kUnbound) fence_deadline_ = {};  // a new Connect: a new fence period
  Request* r = alloc_request();
  if (r == nullptr) {
    return fail(Fes::kPduSequenceError, 0, h, pdu::kCapsuleCmdHeaderBytes, str("the host exceeded the queue size (", sqsize_ + 1, " entries)"));
  }
  sqhd_ = static_cast<uint16_t>((sqhd_ + 1) % (sqsize_ + 1u));
  r->cid = get16(sqe + 2);
  std::memcpy(r->sqe.data(), sqe, 64);
  const bool auth_command = opcode == opc::kFabrics && (sqe[4] == opc::kFctypeAuthSend || sqe[4] == opc::kFctypeAuthReceive);
  if (auth_required_ && !authenticated_ && !auth_command) {
    // Refused before any buffer or R2T: an unauthenticated host gets nothing but the refusal.
    set_request_state(*r, RequestState::kExecuting);
    return execute(*r);
  }
  const uint8_t sgl_type = sqe[24 + 15];
  const uint64_t sgl_address = get64(sqe + 24);
  const uint32_t sgl_bytes = get32(sqe + 24 + 8);
  const Direction dir = direction_of(opcode, sqe[4]);
  auto reject = [&](uint16_t status) {
    set_request_state(*r, RequestState::kExecuting);
    complete(*r, status);
  };
  if (dir == Direction::kBidirectional) return reject(sc::kInvalidOpcode);
  // NVMe over Fabrics commands describe data with SGLs (PSDT 01b), even when there is none; the
  // Linux target refuses anything else the same way, so hosts see one behaviour.
  if ((sqe[1] & 0xc0) != 0x40) return reject(sc::kInvalidField);
  if (data_bytes > 0) {
    if (dir != Direction::kHostToController) return reject(sc::kInvalidField);
    if (sgl_type != kSglDataBlockOffset) return reject(sc::kSglDescriptorTypeInvalid);
    if (sgl_address != 0) return reject(sc::kSglOffsetInvalid);  // ICDOFF is 0
    if (sgl_bytes != data_bytes) return reject(sc::kDataSglLengthInvalid);
    if (ddgst_ && digest(data, data_bytes) != get32(data + data_bytes)) return reject(sc::kTransientTransportError);
    r->buffer = std::make_shared<AlignedBuffer>(data_bytes);
    std::memcpy(r->buffer->data(), data, data_bytes);
    r->transfer_bytes = r->received_bytes = data_bytes;
    set_request_state(*r, RequestState::kExecuting);
    return execute(*r);
  }
  if (dir == Direction::kNone || sgl_bytes == 0) {
    set_request_state(*r, RequestState::kExecuting);
    return execute(*r);
  }
  if (sgl_type != kSglTransportDataBlock) return reject(sc::kSglDescriptorTypeInvalid);
  if (sgl_bytes > kMaxTransferBytes) return reject(sc::kDataSglLengthInvalid);
  // Before Connect only the Connect data may be asked for: an unauthenticated peer does not
  // get a 1 MiB buffer for an R2T it may never answer.
  if (queue_state_ == QueueState::kUnbound && sgl_bytes > kConnectDataBytes) return reject(sc::kDataSglLengthInvalid);
  if (auth_command && sgl_bytes > kMaxAuthMessageBytes) return reject(sc::kDataSglLengthInvalid);
  r->transfer_bytes = sgl_bytes;
  r->buffer = std::make_shared<AlignedBuffer>(sgl_bytes);
  if (dir == Direction::kControllerToHost) {
    set_request_state(*r, RequestState::kExecuting);
    return execute(*r);
  }
  // One R2T for the whole transfer: at most one outstanding per command, within any MAXR2T.
  set_request_state(*r, RequestState::kReceivingData);
  send_r2t(*r);
}

void Connection::handle_h2c_data(const uint8_t* h, uint32_t plen) {
  const uint16_t cccid = get16(h + 8), ttag = get16(h + 10);
  const uint32_t datao = get32(h + 12), datal = get32(h + 16);
  const uint32_t pdo = h[3], dd = ddgst_ ? pdu::kDigestBytes : 0;
  if (datal != plen - pdo - dd) return fail(Fes::kInvalidHeaderField, 16, h, pdu::kDataHeaderBytes, "H2CData DATAL disagrees with PLEN");
  if (ttag >= requests_.size() || requests_[ttag]->state != RequestState::kReceivingData || requests_[ttag]->cid != cccid) {
    return fail(Fes::kInvalidHeaderField, 10, h, pdu::kDataHeaderBytes, str("H2CData for unknown transfer tag ", ttag, " / command ", cccid));
  }
  Request& r = *requests_[ttag];
  if (datao != r.received_bytes) {
    return fail(Fes::kDataOutOfRange, 12, h, pdu::kDataHeaderBytes, str("H2CData offset ", datao, ", expected ", r.received_bytes));
  }
  if (datal > r.transfer_bytes - r.received_bytes) {
    return fail(Fes::kDataOutOfRange, 16, h, pdu::kDataHeaderBytes, str("H2CData beyond the R2T (", r.transfer_bytes, " bytes)"));
  }
  const uint8_t* data = h + pdo;
  if (ddgst_ && digest(data, datal) != get32(data + datal)) r.data_digest_error = true;
  std::memcpy(r.buffer->data() + datao, data, datal);
  r.received_bytes += datal;
  const bool last = h[1] & pdu::kFlagLast;
  if (r.received_bytes < r.transfer_bytes) {
    if (last) return fail(Fes::kInvalidHeaderField, 1, h, pdu::kDataHeaderBytes, "H2CData LAST before all data arrived");
    return;
  }
  set_request_state(r, RequestState::kExecuting);
  if (r.data_digest_error) return complete(r, sc::kTransientTransportError);
  execute(r);
}

void Connection::fail(Fes fes, uint32_t fei, const uint8_t* header, size_t header_bytes, const std::string& why) {
  if (state_ != ConnectionState::kAwaitingIcReq && state_ != ConnectionState::kEstablished) return;
  header_bytes = std::min<size_t>(header_bytes, pdu::kTermReqMaxCopiedBytes);
  OutPdu term;
  term.head.assign(pdu::kTermReqHeaderBytes + header_bytes, 0);
  uint8_t* p = term.head.data();
  p[0] = pdu::kC2hTermReq;
  p[2] = pdu::kTermReqHeaderBytes;
  put32(p + 4, static_cast<uint32_t>(term.head.size()));
  put16(p + 8, static_cast<uint16_t>(fes));
  put32(p + 10, fei);
  std::memcpy(p + pdu::kTermReqHeaderBytes, header, header_bytes);
  queue_pdu(std::move(term));
  begin_close(CloseMode::kFlush, str("fatal transport error ", static_cast<int>(fes), ": ", why));
}

// ---- requests -----------------------------------------------------------------------------------

Request* Connection::alloc_request() {
  if (free_slots_.empty()) return nullptr;
  uint16_t slot = free_slots_.back();
  free_slots_.pop_back();
  Request& r = *requests_[slot];
  assert(r.state == RequestState::kFree);
  r.slot = slot;
  return &r;
}

void Connection::free_request(Request& r) {
  set_request_state(r, RequestState::kFree);
  r.buffer.reset();
  r.generation++;
  r.transfer_bytes = r.received_bytes = 0;
  r.data_digest_error = false;
  r.parts_pending = 0;
  r.first_error_status = 0;
  free_slots_.push_back(r.slot);
}

void Connection::execute(Request& r) {
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

void Connection::execute_fabrics(Request& r) {
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

void Connection::execute_connect(Request& r) {
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

void Connection::execute_auth_send(Request& r) {
  if (!auth_command_valid(r)) return complete(r, sc::kInvalidField);
  auth_->on_send(r.buffer->data(), r.transfer_bytes);
  complete(r, sc::kSuccess);
  auth_finished_step();
}

void Connection::execute_auth_receive(Request& r) {
  if (!auth_command_valid(r)) return complete(r, sc::kInvalidField);
  std::vector<uint8_t> message = auth_->on_receive(r.transfer_bytes);
  reply_data(r, message);
  auth_finished_step();
}

void Connection::auth_finished_step() {
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

void Connection::execute_property_get(Request& r) {
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

void Connection::execute_property_set(Request& r) {
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

void Connection::execute_admin(Request& r) {
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

void Connection::reply_data(Request& r, const std::vector<uint8_t>& content) {
  if (r.transfer_bytes == 0 || !r.buffer) return complete(r, sc::kDataSglLengthInvalid);
  std::memset(r.buffer->data(), 0, r.transfer_bytes);
  // An empty slice (Get Log Page offset past the log's end) has a null data(): memcpy from
  // null is undefined even for 0 bytes (found by native/fuzz).
  if (!content.empty()) std::memcpy(r.buffer->data(), content.data(), std::min<size_t>(content.size(), r.transfer_bytes));
  complete(r, sc::kSuccess, 0, r.transfer_bytes);
}

void Connection::execute_identify(Request& r) {
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
      put32(p + 536, 1u | (1u << 20));         // SGLS: supported, offset addressing for in-capsule data
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

void Connection::execute_get_log_page(Request& r) {
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

void Connection::execute_features(Request& r, bool set) {
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

void Connection::execute_io(Request& r) {
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

void Connection::execute_dsm(Request& r) {
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

void Connection::backend_io(Request& r, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes) {
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

void Connection::backend_done(uint16_t slot, uint32_t generation, Status status, IoKind kind) {
  if (!status.ok()) log_line(str("nvmf: connection ", id_, ": I/O failed: ", status.error().message));
  finish_backend(slot, generation, status_of(status, kind), kind == IoKind::kRead && status.ok() ? requests_[slot]->transfer_bytes : 0);
}

void Connection::finish_backend(uint16_t slot, uint32_t generation, uint16_t st, uint32_t data_bytes) {
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

void Connection::aen_ready() {
  auto self = shared_from_this();
  post_to_reactor([self] { self->deliver_pending_aen(); });
}

void Connection::deliver_pending_aen() {
  if (state_ != ConnectionState::kEstablished || queue_state_ != QueueState::kAdmin || !controller_ || controller_->discovery) return;
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

void Connection::complete_held_aers(uint16_t status) {
  for (auto& r : requests_) {
    if (r->state == RequestState::kHeld) complete(*r, status);
  }
}

void Connection::complete(Request& r, uint16_t status, uint64_t result, uint32_t data_bytes) {
  assert(r.state == RequestState::kExecuting || r.state == RequestState::kHeld);
  if (state_ != ConnectionState::kEstablished) return free_request(r);
  set_request_state(r, RequestState::kSending);
  const uint32_t hd = hdgst_ ? pdu::kDigestBytes : 0;
  bool response_implied = false;
  if (data_bytes > 0) {
    // SUCCESS (with LAST) replaces the CapsuleResp only when the host turned SQ flow control
    // off and the completion has nothing else to say.
    response_implied = sq_flow_disabled_ && status == sc::kSuccess && result == 0;
    const uint32_t alignment = (hpda_ + 1u) * 4;
    const uint32_t pdo = (pdu::kDataHeaderBytes + hd + alignment - 1) / alignment * alignment;
    OutPdu data;
    data.head.assign(pdo, 0);
    uint8_t* p = data.head.data();
    p[0] = pdu::kC2hData;
    p[1] = static_cast<uint8_t>(pdu::kFlagLast | (response_implied ? pdu::kFlagSuccess : 0) | (hdgst_ ? pdu::kFlagHdgst : 0) |
                                (ddgst_ ? pdu::kFlagDdgst : 0));
    p[2] = pdu::kDataHeaderBytes;
    p[3] = static_cast<uint8_t>(pdo);
    put32(p + 4, pdo + data_bytes + (ddgst_ ? pdu::kDigestBytes : 0));
    put16(p + 8, r.cid);
    put32(p + 12, 0);
    put32(p + 16, data_bytes);
    if (hdgst_) put32(p + pdu::kDataHeaderBytes, digest(p, pdu::kDataHeaderBytes));
    data.body = r.buffer;
    data.body_bytes = data_bytes;
    if (ddgst_) {
      put32(data.tail.data(), digest(r.buffer->data(), data_bytes));
      data.tail_bytes = pdu::kDigestBytes;
    }
    if (response_implied) {
      data.retires_request = true;
      data.slot = r.slot;
      data.generation = r.generation;
    }
    // With the test sink this sends (and may retire r) at once: r is not touched after the last queue_pdu.
    queue_pdu(std::move(data));
  }
  if (!response_implied) {
    OutPdu resp;
    resp.head.assign(pdu::kCapsuleRespHeaderBytes + hd, 0);
    uint8_t* p = resp.head.data();
    p[0] = pdu::kCapsuleResp;
    p[1] = hdgst_ ? pdu::kFlagHdgst : 0;
    p[2] = pdu::kCapsuleRespHeaderBytes;
    put32(p + 4, pdu::kCapsuleRespHeaderBytes + hd);
    put64(p + 8, result);  // DW0, DW1
    put16(p + 16, sqhd_);
    put16(p + 18, qid_);
    put16(p + 20, r.cid);
    put16(p + 22, status);
    if (hdgst_) put32(p + pdu::kCapsuleRespHeaderBytes, digest(p, pdu::kCapsuleRespHeaderBytes));
    resp.retires_request = true;
    resp.slot = r.slot;
    resp.generation = r.generation;
    queue_pdu(std::move(resp));
  }
}

// ---- send ---------------------------------------------------------------------------------------

void Connection::send_r2t(Request& r) {
  const uint32_t hd = hdgst_ ? pdu::kDigestBytes : 0;
  OutPdu pdu;
  pdu.head.assign(pdu::kDataHeaderBytes + hd, 0);
  uint8_t* p = pdu.head.data();
  p[0] = pdu::kR2t;
  p[1] = hdgst_ ? pdu::kFlagHdgst : 0;
  p[2] = pdu::kDataHeaderBytes;
  put32(p + 4, pdu::kDataHeaderBytes + hd);
  put16(p + 8, r.cid);
  put16(p + 10, r.slot);  // TTAG
  put32(p + 12, 0);       // R2TO
  put32(p + 16, r.transfer_bytes);
  if (hdgst_) put32(p + pdu::kDataHeaderBytes, digest(p, pdu::kDataHeaderBytes));
  queue_pdu(std::move(pdu));
}

void Connection::queue_pdu(OutPdu pdu) {
  tx_bytes_ += pdu.total();
  tx_.push_back(std::move(pdu));
  flush_tx();
}

void Connection::drop_tx() {
  for (const OutPdu& p : tx_) {
    if (p.retires_request) free_request(*requests_[p.slot]);
  }
  tx_.clear();
  tx_bytes_ = 0;
  tx_sent_in_front_ = 0;
}

void Connection::flush_tx() {
  if (test_sink_) {
    // The harness "sends" synchronously and completely.
    while (!write_shut_ && !tx_.empty()) {
      const OutPdu& p = tx_.front();
      test_sink_(p.head.data(), p.head.size());
      if (p.body && p.body_bytes > 0) test_sink_(p.body->data() + p.body_offset, p.body_bytes);
      if (p.tail_bytes > 0) test_sink_(p.tail.data(), p.tail_bytes);
      tx_bytes_ -= p.total();
      OutPdu sent = std::move(tx_.front());
      tx_.pop_front();
      if (sent.retires_request) {
        Request& r = *requests_[sent.slot];
        assert(r.state == RequestState::kSending && r.generation == sent.generation);
        free_request(r);
      }
    }
    if (state_ == ConnectionState::kClosing && tx_.empty()) write_shut_ = true;
    return;
  }
  if (send_inflight_ || tx_.empty() || write_shut_ || fd_ < 0) return;
  size_t count = 0, skip = tx_sent_in_front_;
  auto add = [&](const uint8_t* p, size_t bytes) {
    if (bytes == 0) return;
    if (skip >= bytes) {
      skip -= bytes;
      return;
    }
    iov_[count++] = iovec{const_cast<uint8_t*>(p + skip), bytes - skip};
    skip = 0;
  };
  for (const OutPdu& p : tx_) {
    if (count + 3 > kMaxIovecs) break;
    add(p.head.data(), p.head.size());
    if (p.body) add(p.body->data() + p.body_offset, p.body_bytes);
    add(p.tail.data(), p.tail_bytes);
  }
  msg_ = msghdr{};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = count;
  send_inflight_ = true;
  auto self = shared_from_this();
  reactor_.submit([fd = fd_, msg = &msg_](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL); },
                  [self](int result) { self->on_sent(result); });
}

void Connection::on_sent(int result) {
  send_inflight_ = false;
  if (result < 0) {
    write_shut_ = true;
    drop_tx();
    if (state_ == ConnectionState::kAwaitingIcReq || state_ == ConnectionState::kEstablished) {
      begin_close(CloseMode::kAbort, str("send failed: ", std::strerror(-result)));
    }
    maybe_finish_close();
    return;
  }
  size_t sent = tx_sent_in_front_ + static_cast<size_t>(result);
  assert(static_cast<size_t>(result) <= tx_bytes_);
  tx_bytes_ -= static_cast<size_t>(result);
  while (!tx_.empty() && sent >= tx_.front().total()) {
    sent -= tx_.front().total();
    OutPdu done = std::move(tx_.front());
    tx_.pop_front();
    if (done.retires_request) {
      // The whole response has left: only now may the host's next command take this slot.
      Request& r = *requests_[done.slot];
      assert(r.state == RequestState::kSending && r.generation == done.generation);
      free_request(r);
    }
  }
  tx_sent_in_front_ = sent;
  if (write_shut_) drop_tx();
  if (state_ == ConnectionState::kClosing && tx_.empty() && !write_shut_) {
    // Everything, including a TermReq, is on the wire: FIN after it, then wait for the host to hang up.
    ::shutdown(fd_, SHUT_WR);
    write_shut_ = true;
  }
  flush_tx();
  maybe_finish_close();
  resume_rx();
}

// ---- lifecycle ----------------------------------------------------------------------------------

void Connection::begin_close(CloseMode mode, const std::string& reason) {
  if (state_ == ConnectionState::kClosed) return;
  if (state_ == ConnectionState::kClosing) {
    if (mode == CloseMode::kAbort && fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
      write_shut_ = true;
      if (!send_inflight_) drop_tx();
    }
    return;
  }
  set_state(ConnectionState::kClosing);
  close_reason_ = reason;
  deadline_ = Clock::now() + kLingerTimeout;
  log_line(str("nvmf: connection ", id_, " from ", peer_, " closing: ", reason));
  if (controller_) {
    if (queue_state_ == QueueState::kAdmin) {
      target_.delete_controller(controller_, str("its admin queue closed (", reason, ")"));
    } else {
      target_.detach_queue(controller_, qid_);
    }
  }
  set_queue_state(QueueState::kDetached);
  rx_start_ = rx_end_ = 0;  // nothing is parsed any more (and a recv paused on a full buffer may be armed)
  for (auto& r : requests_) {
    if (r->state == RequestState::kReceivingData || r->state == RequestState::kHeld || r->state == RequestState::kFenced) free_request(*r);
  }
  if (mode == CloseMode::kAbort) {
    ::shutdown(fd_, SHUT_RDWR);
    write_shut_ = true;
    if (!send_inflight_) drop_tx();
  } else if (tx_.empty() && !send_inflight_) {
    ::shutdown(fd_, SHUT_WR);
    write_shut_ = true;
  }
  // Reading may have been paused for the backlog: a recv is what notices the host hang up.
  arm_recv();
  ensure_timer();
  maybe_finish_close();
}

void Connection::maybe_finish_close() {
  if (state_ != ConnectionState::kClosing || recv_inflight_ || send_inflight_ || !read_shut_) return;
  close(fd_);
  fd_ = -1;
  drop_tx();
  set_state(ConnectionState::kClosed);
  controller_.reset();
  target_.connection_closed(id_);
}

bool Connection::timer_needed() const {
  switch (state_) {
    case ConnectionState::kAwaitingIcReq:
    case ConnectionState::kClosing: return true;
    case ConnectionState::kEstablished:
      return queue_state_ == QueueState::kUnbound || (queue_state_ == QueueState::kAdmin && kato_ms_ > 0) || (auth_required_ && !authenticated_);
    case ConnectionState::kClosed: return false;
  }
  return false;
}

void Connection::ensure_timer() {
  if (test_sink_) return;  // no ring: the harness has no clock-driven behaviour
  if (timer_inflight_ || !timer_needed()) return;
  timer_inflight_ = true;
  timer_ts_.tv_sec = 0;
  timer_ts_.tv_nsec = kTimerTickNs;
  auto self = shared_from_this();
  reactor_.submit([ts = &timer_ts_](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, ts, 0, 0); },
                  [self](int) {
                    self->timer_inflight_ = false;
                    self->on_timer();
                  });
}

void Connection::on_timer() {
  const auto now = Clock::now();
  switch (state_) {
    case ConnectionState::kAwaitingIcReq:
      if (now > deadline_) begin_close(CloseMode::kAbort, "no ICReq within 10 s");
      break;
    case ConnectionState::kClosing:
      if (now > deadline_ && fd_ >= 0) begin_close(CloseMode::kAbort, "linger expired");
      break;
    case ConnectionState::kEstablished:
      if (queue_state_ == QueueState::kUnbound) {
        for (auto& r : requests_) {
          if (r->state != RequestState::kFenced || now <= fence_deadline_) continue;
          log_line(str("nvmf: connection ", id_, ": Connect still fenced after 5 s; refused with Controller Busy so the host retries"));
          fence_deadline_ = {};
          set_request_state(*r, RequestState::kExecuting);
          complete(*r, sc::kConnectControllerBusyRetry);
        }
        // A fenced Connect is bounded by kFenceTimeout instead, so the host gets its answer.
        if (now > deadline_ && fence_deadline_ == Clock::time_point{}) begin_close(CloseMode::kAbort, "no successful Connect within 10 s of the connection");
        break;
      }
      if (auth_required_ && !authenticated_ && now > auth_deadline_) {
        begin_close(CloseMode::kAbort, "the host did not authenticate within 15 s");
        break;
      }
      if (queue_state_ == QueueState::kAdmin && kato_ms_ > 0 && now - last_keep_alive_ > std::chrono::milliseconds(kato_ms_) + kKeepAliveSlack) {
        begin_close(CloseMode::kAbort, str("keep-alive timeout (KATO ", kato_ms_, " ms)"));
      }
      break;
    case ConnectionState::kClosed: break;
  }
  ensure_timer();
}

}  // namespace strata::nvmf
