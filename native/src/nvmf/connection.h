// One NVMe/TCP connection = one queue (admin or I/O) of one controller. Lives on one reactor:
// every method below runs on that reactor's thread except close_async(). Keeps at most one
// recv, one sendmsg and one timeout SQE in flight; each completion callback holds a
// shared_ptr, so the object outlives its SQEs.
//
// Received bytes are parsed only after the common header was validated against the PDU type
// (hlen, pdo, plen limits), so a hostile plen can neither make us read past the PDU nor grow
// the receive buffer beyond the largest legal PDU.
//
// What a peer can make one connection hold is bounded: a request slot (and its data buffer)
// is freed only after its response PDUs have left (on_sent), so a queue holds at most SQSIZE
// commands' buffers; and parsing (hence recv) stops while more than kTxBacklogCapBytes wait
// to be sent, so a peer that does not read its responses stops being served instead of
// growing our transmit queue. Reading resumes when the backlog drains.
#pragma once
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/time_types.h>

#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nvmf/auth.h"
#include "nvmf/protocol.h"
#include "nvmf/target.h"

namespace strata::nvmf {

enum class ConnectionState {
  kAwaitingIcReq,  // accepted; the first PDU must be an ICReq
  kEstablished,    // ICResp sent; capsules and data flow
  kClosing,        // fatal error, peer close or teardown: PDUs are no longer parsed; sends drain, socket shuts down
  kClosed,         // socket closed and unregistered; late completions only release memory
};

enum class QueueState {
  kUnbound,   // no Connect yet: only a Fabrics Connect is accepted
  kAdmin,     // admin queue (qid 0) of a controller
  kIo,        // I/O queue (qid >= 1) of a controller
  kDetached,  // its controller is gone or the connection is closing
};

enum class RequestState {
  kFree,            // slot unused
  kReceivingData,   // R2T sent; waiting for the host's H2CData PDUs
  kExecuting,       // handed to the admin logic or the replica (Pool::io)
  kHeld,            // an Async Event Request parked until an event or shutdown
  kFenced,          // an admin Connect parked until the host's deleted controllers of that subsystem finished their backend commands
  kSending,         // response queued in tx_; slot and buffer stay taken until on_sent retires its last PDU
};

struct Request {
  RequestState state = RequestState::kFree;
  uint16_t slot = 0;           // also the R2T transfer tag
  uint32_t generation = 0;     // bumps on every reuse: late completions of an old use are dropped
  uint16_t cid = 0;
  std::array<uint8_t, 64> sqe{};
  std::shared_ptr<AlignedBuffer> buffer;  // command data (either direction)
  uint32_t transfer_bytes = 0;   // from the SGL descriptor
  uint32_t received_bytes = 0;   // H2CData bytes so far
  bool data_digest_error = false;
  uint32_t parts_pending = 0;    // Dataset Management: deallocate ranges in flight
  uint16_t first_error_status = 0;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Target& target, Reactor& reactor, int fd, bool discovery_port, uint64_t id, std::string peer);
  ~Connection();
  void start();                                   // reactor thread
  // Any thread. With `let_closing_flush`, a connection that is already closing (flushing a
  // TermReq or lingering for the host's FIN) is left to finish that on its own; its linger
  // timer still bounds it.
  void close_async(const std::string& reason, bool let_closing_flush = false);
  uint64_t id() const { return id_; }
  Reactor& reactor() { return reactor_; }

  // Socket-less seam for the fuzzers (native/fuzz) and other in-process tests: after
  // attach_test_sink() the connection never touches its fd or the reactor's ring (the Reactor
  // need not be started). feed_for_test() delivers bytes exactly as a recv completion would;
  // every byte we would send goes to the sink; work that would be posted back to the reactor
  // (backend completions, close_async) is queued and run by run_posted_for_test(), so a
  // harness controls when "asynchronous" completions arrive. Not for production paths.
  using TestSink = std::function<void(const uint8_t* data, size_t bytes)>;
  void attach_test_sink(TestSink sink);
  void feed_for_test(const uint8_t* data, size_t bytes);
  size_t run_posted_for_test();
  void peer_closed_for_test();  // as recv returning 0

  // Any thread: a deleted controller this connection's parked Connect waited for has drained;
  // the Connect is evaluated again on the reactor.
  void fence_lifted();
  // Any thread: this (admin) queue's controller may have a notice to send (Target::resize); on
  // the reactor, a held Asynchronous Event Request completes with it.
  void aen_ready();
  bool closed_for_test() const { return state_ == ConnectionState::kClosing || state_ == ConnectionState::kClosed; }

 private:
  enum class CloseMode { kFlush, kAbort };
  struct OutPdu {
    std::vector<uint8_t> head;
    std::shared_ptr<AlignedBuffer> body;
    size_t body_offset = 0, body_bytes = 0;
    std::array<uint8_t, 4> tail{};
    size_t tail_bytes = 0;
    // The last PDU of a response names its request: the slot is freed when this PDU has left.
    bool retires_request = false;
    uint16_t slot = 0;
    uint32_t generation = 0;
    size_t total() const { return head.size() + body_bytes + tail_bytes; }
  };

  void set_state(ConnectionState next);
  void set_queue_state(QueueState next);
  void set_request_state(Request& r, RequestState next);

  // receive and parse
  void arm_recv();
  void on_recv(int result);
  void parse();
  // Returns false (after failing the connection) when the header is not acceptable.
  bool check_header(const uint8_t* h, size_t available);
  void handle_pdu(const uint8_t* h, uint32_t plen);
  void handle_ic_req(const uint8_t* h);
  void handle_capsule(const uint8_t* h, uint32_t plen);
  void handle_h2c_data(const uint8_t* h, uint32_t plen);
  void fail(Fes fes, uint32_t fei, const uint8_t* header, size_t header_bytes, const std::string& why);

  // commands
  Request* alloc_request();
  void free_request(Request& r);
  void execute(Request& r);
  void execute_fabrics(Request& r);
  void execute_connect(Request& r);
  void execute_property_get(Request& r);
  void execute_property_set(Request& r);
  void execute_auth_send(Request& r);
  void execute_auth_receive(Request& r);
  void auth_finished_step();  // after an AUTH_Send/Receive: log success, close on failure
  void execute_admin(Request& r);
  void execute_identify(Request& r);
  void execute_get_log_page(Request& r);
  void execute_features(Request& r, bool set);
  void execute_io(Request& r);
  void execute_dsm(Request& r);
  void backend_io(Request& r, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes);
  void backend_done(uint16_t slot, uint32_t generation, Status status, IoKind kind);
  void finish_backend(uint16_t slot, uint32_t generation, uint16_t status, uint32_t data_bytes);
  void complete_held_aers(uint16_t status);
  // Reactor thread: completes one held AER with the controller's pending notice, if both exist.
  void deliver_pending_aen();
  // Sends data (if any, `data_bytes` from r.buffer) then the response; the request is freed
  // when the response has left (kSending until then), or at once if the connection is closing.
  void complete(Request& r, uint16_t status, uint64_t result = 0, uint32_t data_bytes = 0);
  void reply_data(Request& r, const std::vector<uint8_t>& content);

  // send
  void queue_pdu(OutPdu pdu);
  void send_r2t(Request& r);
  void flush_tx();
  void on_sent(int result);
  void drop_tx();  // forgets unsent PDUs and frees the requests waiting for them
  // Whether parse() must stop before the next PDU: too much waiting to be sent, or a capsule
  // that needs a slot while every free one is only waiting for its response to leave.
  bool rx_must_pause(uint8_t next_pdu_type) const;
  void resume_rx();
  void post_to_reactor(std::function<void()> task);

  // lifecycle
  void begin_close(CloseMode mode, const std::string& reason);
  void maybe_finish_close();
  void ensure_timer();
  bool timer_needed() const;
  void on_timer();

  Target& target_;
  Reactor& reactor_;
  int fd_;
  const bool discovery_port_;
  const uint64_t id_;
  const std::string peer_;
  ConnectionState state_ = ConnectionState::kAwaitingIcReq;
  QueueState queue_state_ = QueueState::kUnbound;
  std::chrono::steady_clock::time_point deadline_;  // ICReq + Connect deadline, then linger deadline while closing
  std::chrono::steady_clock::time_point fence_deadline_;  // while a Connect is kFenced: when it gives up
  std::string close_reason_;

  // negotiated in ICReq/Connect
  bool hdgst_ = false, ddgst_ = false;
  uint32_t host_maxr2t_ = 0;
  uint8_t hpda_ = 0;      // host PDU data alignment: C2HData pdo is a multiple of (hpda + 1) * 4
  uint32_t kato_ms_ = 0;  // admin queue: keep-alive timeout this connection enforces
  uint16_t qid_ = 0;
  uint16_t sqsize_ = 0;  // zero-based
  uint16_t sqhd_ = 0;
  bool sq_flow_disabled_ = false;
  std::shared_ptr<Controller> controller_;
  std::shared_ptr<const Subsystem> subsystem_;
  std::chrono::steady_clock::time_point last_keep_alive_;

  // In-band authentication (DH-HMAC-CHAP), when the subsystem holds a secret for this host:
  // until it succeeds only AUTH_Send/AUTH_Receive are accepted, and only until auth_deadline_.
  bool auth_required_ = false;
  bool authenticated_ = false;
  std::unique_ptr<auth::ControllerTransaction> auth_;
  std::chrono::steady_clock::time_point auth_deadline_;

  std::vector<std::unique_ptr<Request>> requests_;
  std::vector<uint16_t> free_slots_;
  uint32_t backend_inflight_ = 0;
  uint32_t sending_requests_ = 0;  // requests in kSending

  std::vector<uint8_t> rx_;
  size_t rx_start_ = 0, rx_end_ = 0;
  bool recv_inflight_ = false;
  bool read_shut_ = false;  // recv returned 0/error: the peer is gone or we shut down reading
  bool rx_paused_ = false;  // parse() stopped on rx_must_pause(): no recv is armed until resume_rx()

  std::deque<OutPdu> tx_;
  size_t tx_bytes_ = 0;  // bytes in tx_ not yet sent
  size_t tx_sent_in_front_ = 0;
  bool send_inflight_ = false;
  bool write_shut_ = false;
  static constexpr size_t kMaxIovecs = 64;
  std::array<iovec, kMaxIovecs> iov_{};
  msghdr msg_{};

  bool timer_inflight_ = false;
  __kernel_timespec timer_ts_{};

  // test seam (see attach_test_sink): set means "no socket, no ring"
  TestSink test_sink_;
  std::deque<std::function<void()>> test_posted_;
};

}  // namespace strata::nvmf
