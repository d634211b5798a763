// One NVMe-oF queue pair, transport-independent: the controller side of an NVMe queue (admin or
// I/O) as SPDK's ctrlr.c is to its tcp.c/rdma.c. It binds to a controller with Fabrics Connect,
// runs DH-HMAC-CHAP, executes commands (Fabrics, admin, I/O through the target's backend) and
// keeps keep-alive, fence and authentication deadlines. A transport (nvmf/tcp.h; RDMA next)
// derives from it: it frames commands and data off the wire, asks `accept_command` for a request
// slot, moves the command's data, calls `execute`, and sends what `send_completion` hands it,
// giving the slot back with `retire` once the response has left.
//
// Lives on one reactor: every method runs on that reactor's thread except close_async(),
// fence_lifted() and aen_ready().
#pragma once
#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nvmf/auth.h"
#include "nvmf/protocol.h"
#include "nvmf/target.h"

namespace strata::nvmf {

enum class QueueState {
  kUnbound,   // no Connect yet: only a Fabrics Connect is accepted
  kAdmin,     // admin queue (qid 0) of a controller
  kIo,        // I/O queue (qid >= 1) of a controller
  kDetached,  // its controller is gone or the queue pair is closing
};

enum class RequestState {
  kFree,            // slot unused
  kReceivingData,   // the transport is fetching the command's data from the host
  kExecuting,       // handed to the admin logic or the replica (Pool::io)
  kHeld,            // an Async Event Request parked until an event or shutdown
  kFenced,          // an admin Connect parked until the host's deleted controllers of that subsystem finished their backend commands
  kSending,         // response handed to the transport; slot and buffer stay taken until it retires them
};

struct Request {
  RequestState state = RequestState::kFree;
  uint16_t slot = 0;           // also the transport's transfer tag
  uint32_t generation = 0;     // bumps on every reuse: late completions of an old use are dropped
  uint16_t cid = 0;
  std::array<uint8_t, 64> sqe{};
  std::shared_ptr<AlignedBuffer> buffer;  // command data (either direction)
  uint32_t transfer_bytes = 0;   // from the SGL descriptor
  uint32_t received_bytes = 0;   // data received from the host so far
  bool data_digest_error = false;
  uint32_t parts_pending = 0;    // Dataset Management: deallocate ranges in flight
  uint16_t first_error_status = 0;
};

// What a command's data direction is (bits 1:0 of the opcode, or of the Fabrics command type).
enum class Direction { kNone, kHostToController, kControllerToHost, kBidirectional };
Direction direction_of(uint8_t opcode, uint8_t fctype);

class QueuePair : public std::enable_shared_from_this<QueuePair> {
 public:
  QueuePair(Target& target, Reactor& reactor, bool discovery_port, uint64_t id, std::string peer);
  virtual ~QueuePair() = default;
  uint64_t id() const { return id_; }
  Reactor& reactor() { return reactor_; }

  // Any thread. With `let_closing_flush`, a queue pair that is already closing (flushing a
  // transport error or lingering for the host's disconnect) is left to finish that on its own.
  virtual void close_async(const std::string& reason, bool let_closing_flush = false) = 0;
  // SGLS bits (Identify Controller) the transport adds to what every transport supports: RDMA
  // serves keyed SGL data blocks.
  virtual uint32_t transport_sgl_support() const { return 0; }
  // Any thread: a deleted controller this queue's parked Connect waited for has drained; the
  // Connect is evaluated again on the reactor.
  void fence_lifted();
  // Any thread: this (admin) queue's controller may have a notice to send (Target::resize); on
  // the reactor, a held Asynchronous Event Request completes with it.
  void aen_ready();

 protected:
  enum class CloseMode { kFlush, kAbort };
  // What a response carries; the transport frames it (TCP: C2HData and CapsuleResp PDUs).
  struct Completion {
    uint16_t status;
    uint64_t result;      // DW0, DW1
    uint32_t data_bytes;  // controller-to-host data in the request's buffer
    uint16_t sqhd;
    uint16_t qid;
    // The host turned SQ flow control off: a successful data transfer with nothing else to say
    // may stand for the response (TCP: C2HData with SUCCESS).
    bool sq_flow_disabled;
  };

  // ---- the transport's side
  // Sends the data (if any) and the response, and calls retire(r) once they have left (at once
  // if it cannot send any more). Called with r in kSending.
  virtual void send_completion(Request& r, const Completion& c) = 0;
  // Whether responses can still be sent (false once the transport is closing).
  virtual bool serving() const = 0;
  virtual void begin_close(CloseMode mode, const std::string& reason) = 0;
  virtual void post_to_reactor(std::function<void()> task) = 0;
  virtual void ensure_timer() = 0;

  // ---- for transports
  // A command capsule arrived: checks it may run on this queue and takes a request slot (its
  // cid and SQE copied, the SQ head advanced). Null when it may not: `refusal` says why (the
  // transport ends the connection with its own fatal error).
  Request* accept_command(const uint8_t* sqe, std::string* refusal);
  // Whether the command must be refused before any data moves (an unauthenticated host):
  // execute() then refuses it.
  bool refused_before_data(const Request& r) const;
  // Whether an SGL of `bytes` may be asked of the host for this command: before Connect only the
  // Connect data, for DH-HMAC-CHAP only its largest message, never more than MDTS.
  bool transfer_allowed(const Request& r, uint32_t bytes) const;
  void execute(Request& r);
  // Sends the response (data_bytes from r.buffer, then the completion).
  void complete(Request& r, uint16_t status, uint64_t result = 0, uint32_t data_bytes = 0);
  // The transport is done with a request: its slot may take the host's next command.
  void retire(Request& r);
  void set_request_state(Request& r, RequestState next);
  // Called once when the transport starts closing: the controller loses this queue, parked and
  // receiving requests are dropped.
  void detach(const std::string& reason);
  // Called when the transport has closed for good.
  void closed();
  // Fence, authentication and keep-alive deadlines; ends the queue pair when one passed.
  // Returns whether the queue pair still needs a timer for them.
  void check_deadlines(std::chrono::steady_clock::time_point now, std::chrono::steady_clock::time_point connect_deadline);
  bool deadlines_pending() const;
  bool bound() const { return queue_state_ != QueueState::kUnbound; }
  bool has_free_slot() const { return !free_slots_.empty(); }
  uint32_t sending_requests() const { return sending_requests_; }
  uint16_t queue_entries() const { return static_cast<uint16_t>(sqsize_ + 1u); }
  Request* request_at(uint16_t slot) { return slot < requests_.size() ? requests_[slot].get() : nullptr; }
  // Each request still taken, for a transport that drops what it had queued.
  template <typename F>
  void for_each_request(F f) {
    for (auto& r : requests_) f(*r);
  }

  Target& target_;
  Reactor& reactor_;
  const bool discovery_port_;
  const uint64_t id_;
  const std::string peer_;

 private:
  void set_queue_state(QueueState next);
  void free_request(Request& r);
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
  void reply_data(Request& r, const std::vector<uint8_t>& content);

  QueueState queue_state_ = QueueState::kUnbound;
  std::chrono::steady_clock::time_point fence_deadline_;  // while a Connect is kFenced: when it gives up

  // negotiated in Connect
  uint32_t kato_ms_ = 0;  // admin queue: keep-alive timeout this queue enforces
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
};

}  // namespace strata::nvmf
