// The NVMe/TCP transport (NVMe/TCP transport binding, TP 8000): one TCP connection carries one
// queue pair (queue_pair.h) of one controller. Frames PDUs (ICReq/ICResp, CapsuleCmd/Resp,
// R2T, H2CData/C2HData, TermReq), digests, and the socket's life; everything a command means is
// the queue pair's. Lives on one reactor: every method below runs on that reactor's thread
// except close_async(). Keeps at most one recv, one sendmsg and one timeout SQE in flight; each
// completion callback holds a shared_ptr, so the object outlives its SQEs.
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

#include "nvmf/queue_pair.h"

namespace strata::nvmf {

enum class ConnectionState {
  kAwaitingIcReq,  // accepted; the first PDU must be an ICReq
  kEstablished,    // ICResp sent; capsules and data flow
  kClosing,        // fatal error, peer close or teardown: PDUs are no longer parsed; sends drain, socket shuts down
  kClosed,         // socket closed and unregistered; late completions only release memory
};

class TcpConnection final : public QueuePair {
 public:
  TcpConnection(Target& target, Reactor& reactor, int fd, bool discovery_port, uint64_t id, std::string peer);
  ~TcpConnection() override;
  void start();  // reactor thread
  void close_async(const std::string& reason, bool let_closing_flush = false) override;

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
  bool closed_for_test() const { return state_ == ConnectionState::kClosing || state_ == ConnectionState::kClosed; }

 protected:
  void send_completion(Request& r, const Completion& c) override;
  bool serving() const override;
  void begin_close(CloseMode mode, const std::string& reason) override;
  void post_to_reactor(std::function<void()> task) override;
  void ensure_timer() override;

 private:
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
  // Refuses a command at once (the queue pair answers it with `status`).
  void reject(Request& r, uint16_t status);

  // send
  void queue_pdu(OutPdu pdu);
  void send_r2t(Request& r);
  void flush_tx();
  void on_sent(int result);
  void drop_tx();  // forgets unsent PDUs and retires the requests waiting for them
  // Whether parse() must stop before the next PDU: too much waiting to be sent, or a capsule
  // that needs a slot while every free one is only waiting for its response to leave.
  bool rx_must_pause(uint8_t next_pdu_type) const;
  void resume_rx();

  // lifecycle
  void maybe_finish_close();
  bool timer_needed() const;
  void on_timer();

  int fd_;
  ConnectionState state_ = ConnectionState::kAwaitingIcReq;
  std::chrono::steady_clock::time_point deadline_;  // ICReq + Connect deadline, then linger deadline while closing
  std::string close_reason_;

  // negotiated in ICReq
  bool hdgst_ = false, ddgst_ = false;
  uint32_t host_maxr2t_ = 0;
  uint8_t hpda_ = 0;  // host PDU data alignment: C2HData pdo is a multiple of (hpda + 1) * 4

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
