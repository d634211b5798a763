#include "nvmf/tcp.h"

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
// Parsing (and so recv) stops while more than this waits in tx_: a peer that does not read
// its responses stops being served. Two maximal responses: one on the wire, one ready behind
// it, which keeps the socket busy; a longer queue would not send faster, only hold memory.
// A discovery or admin queue, whose commands complete as they are parsed, so holds at most
// this plus one response; an I/O queue also holds the buffers of the commands it is executing
// (SQSIZE x MDTS at most, as in any NVMe/TCP target).
constexpr size_t kTxBacklogCapBytes = 2 * size_t{kMaxTransferBytes};
constexpr auto kLingerTimeout = std::chrono::seconds(2);   // after a TermReq/FIN, then the socket is cut
constexpr long long kTimerTickNs = 500'000'000;

uint32_t digest(const uint8_t* p, size_t n) { return crc32c(0, p, n); }

}  // namespace

TcpConnection::TcpConnection(Target& target, Reactor& reactor, int fd, bool discovery_port, uint64_t id, std::string peer)
    : QueuePair(target, reactor, discovery_port, id, std::move(peer)), fd_(fd) {
  rx_.resize(kRxInitialBytes);
  deadline_ = Clock::now() + kConnectTimeout;
}

TcpConnection::~TcpConnection() {
  if (fd_ >= 0) close(fd_);
}

bool TcpConnection::serving() const { return state_ == ConnectionState::kEstablished; }

void TcpConnection::start() {
  assert(reactor_.on_reactor_thread());
  log_line(str("nvmf: connection ", id_, " from ", peer_, discovery_port_ ? " (discovery)" : ""));
  arm_recv();
  ensure_timer();
}

void TcpConnection::close_async(const std::string& reason, bool let_closing_flush) {
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  post_to_reactor([self, reason, let_closing_flush] {
    if (let_closing_flush && self->state_ == ConnectionState::kClosing) return;
    self->begin_close(CloseMode::kAbort, reason);
  });
}

void TcpConnection::post_to_reactor(std::function<void()> task) {
  if (test_sink_) {
    test_posted_.push_back(std::move(task));
    return;
  }
  reactor_.post(std::move(task));
}

void TcpConnection::attach_test_sink(TestSink sink) {
  assert(fd_ < 0 && "the test seam replaces the socket; it is never attached to a live one");
  test_sink_ = std::move(sink);
}

void TcpConnection::feed_for_test(const uint8_t* data, size_t bytes) {
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

size_t TcpConnection::run_posted_for_test() {
  size_t ran = 0;
  while (!test_posted_.empty()) {
    auto task = std::move(test_posted_.front());
    test_posted_.pop_front();
    task();
    ran++;
  }
  return ran;
}

void TcpConnection::peer_closed_for_test() {
  if (!read_shut_) on_recv(0);
}

void TcpConnection::set_state(ConnectionState next) {
  switch (next) {
    case ConnectionState::kAwaitingIcReq: assert(false && "a connection never returns to awaiting ICReq"); break;
    case ConnectionState::kEstablished: assert(state_ == ConnectionState::kAwaitingIcReq); break;
    case ConnectionState::kClosing: assert(state_ == ConnectionState::kAwaitingIcReq || state_ == ConnectionState::kEstablished); break;
    case ConnectionState::kClosed: assert(state_ == ConnectionState::kClosing); break;
  }
  state_ = next;
}

void TcpConnection::arm_recv() {
  if (recv_inflight_ || read_shut_ || state_ == ConnectionState::kClosed) return;
  if (rx_paused_ && state_ == ConnectionState::kEstablished) return;  // resume_rx() arms it
  if (test_sink_) return;  // the harness delivers bytes itself
  assert(rx_end_ < rx_.size());
  recv_inflight_ = true;
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  uint8_t* dst = rx_.data() + rx_end_;
  size_t room = rx_.size() - rx_end_;
  reactor_.submit([fd = fd_, dst, room](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, dst, room, 0); },
                  [self](int result) { self->on_recv(result); });
}

void TcpConnection::on_recv(int result) {
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

bool TcpConnection::rx_must_pause(uint8_t next_pdu_type) const {
  if (tx_bytes_ > kTxBacklogCapBytes) return true;
  // The host may see a response before on_sent has freed its slot: wait for it rather than
  // call its next command an SQ overflow.
  return next_pdu_type == pdu::kCapsuleCmd && !has_free_slot() && sending_requests() > 0;
}

void TcpConnection::resume_rx() {
  if (!rx_paused_ || state_ != ConnectionState::kEstablished || rx_must_pause(rx_end_ - rx_start_ >= 1 ? rx_[rx_start_] : pdu::kCapsuleCmd)) return;
  rx_paused_ = false;
  parse();
  arm_recv();
}

void TcpConnection::parse() {
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

bool TcpConnection::check_header(const uint8_t* h, size_t available) {
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

void TcpConnection::handle_pdu(const uint8_t* h, uint32_t plen) {
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

void TcpConnection::handle_ic_req(const uint8_t* h) {
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

void TcpConnection::handle_capsule(const uint8_t* h, uint32_t plen) {
  const uint8_t* sqe = h + pdu::kCommonHeaderBytes;
  const uint32_t pdo = h[3], dd = ddgst_ ? pdu::kDigestBytes : 0;
  const uint8_t* data = pdo ? h + pdo : nullptr;
  const uint32_t data_bytes = pdo ? plen - pdo - dd : 0;
  std::string refusal;
  Request* r = accept_command(sqe, &refusal);
  if (r == nullptr) return fail(Fes::kPduSequenceError, 0, h, pdu::kCapsuleCmdHeaderBytes, refusal);
  if (refused_before_data(*r)) {
    // Refused before any buffer or R2T: an unauthenticated host gets nothing but the refusal.
    set_request_state(*r, RequestState::kExecuting);
    return execute(*r);
  }
  const uint8_t sgl_type = sqe[24 + 15];
  const uint64_t sgl_address = get64(sqe + 24);
  const uint32_t sgl_bytes = get32(sqe + 24 + 8);
  const Direction dir = direction_of(sqe[0], sqe[4]);
  if (dir == Direction::kBidirectional) return reject(*r, sc::kInvalidOpcode);
  // NVMe over Fabrics commands describe data with SGLs (PSDT 01b), even when there is none; the
  // Linux target refuses anything else the same way, so hosts see one behaviour.
  if ((sqe[1] & 0xc0) != 0x40) return reject(*r, sc::kInvalidField);
  if (data_bytes > 0) {
    if (dir != Direction::kHostToController) return reject(*r, sc::kInvalidField);
    if (sgl_type != kSglDataBlockOffset) return reject(*r, sc::kSglDescriptorTypeInvalid);
    if (sgl_address != 0) return reject(*r, sc::kSglOffsetInvalid);  // ICDOFF is 0
    if (sgl_bytes != data_bytes) return reject(*r, sc::kDataSglLengthInvalid);
    if (ddgst_ && digest(data, data_bytes) != get32(data + data_bytes)) return reject(*r, sc::kTransientTransportError);
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
  if (sgl_type != kSglTransportDataBlock) return reject(*r, sc::kSglDescriptorTypeInvalid);
  if (!transfer_allowed(*r, sgl_bytes)) return reject(*r, sc::kDataSglLengthInvalid);
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

void TcpConnection::reject(Request& r, uint16_t status) {
  set_request_state(r, RequestState::kExecuting);
  complete(r, status);
}

void TcpConnection::handle_h2c_data(const uint8_t* h, uint32_t plen) {
  const uint16_t cccid = get16(h + 8), ttag = get16(h + 10);
  const uint32_t datao = get32(h + 12), datal = get32(h + 16);
  const uint32_t pdo = h[3], dd = ddgst_ ? pdu::kDigestBytes : 0;
  if (datal != plen - pdo - dd) return fail(Fes::kInvalidHeaderField, 16, h, pdu::kDataHeaderBytes, "H2CData DATAL disagrees with PLEN");
  Request* tagged = request_at(ttag);
  if (tagged == nullptr || tagged->state != RequestState::kReceivingData || tagged->cid != cccid) {
    return fail(Fes::kInvalidHeaderField, 10, h, pdu::kDataHeaderBytes, str("H2CData for unknown transfer tag ", ttag, " / command ", cccid));
  }
  Request& r = *tagged;
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

void TcpConnection::fail(Fes fes, uint32_t fei, const uint8_t* header, size_t header_bytes, const std::string& why) {
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

void TcpConnection::send_completion(Request& r, const Completion& c) {
  const uint16_t status = c.status;
  const uint64_t result = c.result;
  const uint32_t data_bytes = c.data_bytes;
  const uint32_t hd = hdgst_ ? pdu::kDigestBytes : 0;
  bool response_implied = false;
  if (data_bytes > 0) {
    // SUCCESS (with LAST) replaces the CapsuleResp only when the host turned SQ flow control
    // off and the completion has nothing else to say.
    response_implied = c.sq_flow_disabled && status == sc::kSuccess && result == 0;
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
    put16(p + 16, c.sqhd);
    put16(p + 18, c.qid);
    put16(p + 20, r.cid);
    put16(p + 22, status);
    if (hdgst_) put32(p + pdu::kCapsuleRespHeaderBytes, digest(p, pdu::kCapsuleRespHeaderBytes));
    resp.retires_request = true;
    resp.slot = r.slot;
    resp.generation = r.generation;
    queue_pdu(std::move(resp));
  }
}

void TcpConnection::send_r2t(Request& r) {
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

void TcpConnection::queue_pdu(OutPdu pdu) {
  tx_bytes_ += pdu.total();
  tx_.push_back(std::move(pdu));
  flush_tx();
}

void TcpConnection::drop_tx() {
  for (const OutPdu& p : tx_) {
    if (p.retires_request) retire(*request_at(p.slot));
  }
  tx_.clear();
  tx_bytes_ = 0;
  tx_sent_in_front_ = 0;
}

void TcpConnection::flush_tx() {
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
        Request& r = *request_at(sent.slot);
        assert(r.state == RequestState::kSending && r.generation == sent.generation);
        retire(r);
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
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  reactor_.submit([fd = fd_, msg = &msg_](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL); },
                  [self](int result) { self->on_sent(result); });
}

void TcpConnection::on_sent(int result) {
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
      Request& r = *request_at(done.slot);
      assert(r.state == RequestState::kSending && r.generation == done.generation);
      retire(r);
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

void TcpConnection::begin_close(CloseMode mode, const std::string& reason) {
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
  detach(reason);
  rx_start_ = rx_end_ = 0;  // nothing is parsed any more (and a recv paused on a full buffer may be armed)
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

void TcpConnection::maybe_finish_close() {
  if (state_ != ConnectionState::kClosing || recv_inflight_ || send_inflight_ || !read_shut_) return;
  close(fd_);
  fd_ = -1;
  drop_tx();
  set_state(ConnectionState::kClosed);
  closed();
}

bool TcpConnection::timer_needed() const {
  switch (state_) {
    case ConnectionState::kAwaitingIcReq:
    case ConnectionState::kClosing: return true;
    case ConnectionState::kEstablished: return deadlines_pending();
    case ConnectionState::kClosed: return false;
  }
  return false;
}

void TcpConnection::ensure_timer() {
  if (test_sink_) return;  // no ring: the harness has no clock-driven behaviour
  if (timer_inflight_ || !timer_needed()) return;
  timer_inflight_ = true;
  timer_ts_.tv_sec = 0;
  timer_ts_.tv_nsec = kTimerTickNs;
  auto self = std::static_pointer_cast<TcpConnection>(shared_from_this());
  reactor_.submit([ts = &timer_ts_](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, ts, 0, 0); },
                  [self](int) {
                    self->timer_inflight_ = false;
                    self->on_timer();
                  });
}

void TcpConnection::on_timer() {
  const auto now = Clock::now();
  switch (state_) {
    case ConnectionState::kAwaitingIcReq:
      if (now > deadline_) begin_close(CloseMode::kAbort, "no ICReq within 10 s");
      break;
    case ConnectionState::kClosing:
      if (now > deadline_ && fd_ >= 0) begin_close(CloseMode::kAbort, "linger expired");
      break;
    case ConnectionState::kEstablished: check_deadlines(now, deadline_); break;
    case ConnectionState::kClosed: break;
  }
  ensure_timer();
}

}  // namespace strata::nvmf
