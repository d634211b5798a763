// NVMe/TCP initiator (host side). A HostController owns an admin queue and N I/O queues, each its
// own TCP connection. Setup (ICReq, Connect, properties, Identify, Set Features) is a short
// blocking exchange on the calling (control) thread; afterwards every queue lives on one
// reactor: recv/send/timer SQEs on that reactor's io_uring, no polling. A 1 s timer per queue
// expires I/Os past their deadline and (admin queue) sends Keep Alive every KATO/2. A lost
// connection moves the controller to kReconnecting; a helper thread redoes setup with
// exponential backoff and hands the new sockets to the queues, which re-send what is pending —
// unless the owner turned reconnecting off (nexus children: a new association must prove by
// the child's label that it is the same replica, so the nexus reopens it itself), in which case
// a lost connection fails every pending and later I/O and the controller stays kLost.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reactor/reactor.h"
#include "util/status.h"

namespace strata::nvmf {

enum class HostControllerState {
  kConnecting,    // first setup in progress on the control thread
  kLive,          // every queue connected; I/O flows
  kReconnecting,  // a connection was lost; I/Os wait (up to their timeout) while setup is retried
  kFailed,        // first setup failed; never served I/O
  kLost,          // a connection was lost and reconnecting is off: every I/O fails; reopen it
  kClosed,        // closed by its owner; I/Os fail
};
const char* host_controller_state_name(HostControllerState state);

// How a controller's queues reach the target.
enum class HostTransport {
  kTcp,   // nvmf://
  kRdma,  // nvmf+rdma:// (RDMA CM, RC queue pairs)
};
const char* host_transport_name(HostTransport transport);

struct InitiatorOptions {
  HostTransport transport = HostTransport::kTcp;
  std::string host;  // IPv4 address or name
  uint16_t port = 4420;
  std::string subnqn;
  std::string hostnqn;
  uint32_t io_queues = 2;
  uint32_t queue_depth = 128;
  uint32_t io_timeout_ms = 30000;
  uint32_t kato_ms = 10000;
  uint32_t connect_timeout_ms = 5000;
  // Re-establish a lost association by itself (and re-send pending I/O on the new one). Off for
  // nexus children: they must not silently continue on what may be another (recreated,
  // restarted, rolled back) replica behind the same NQN.
  bool reconnect = true;
};

struct ControllerInfo {
  std::string uri;
  std::string state;
  uint32_t cntlid = 0;
  uint32_t queues = 0;
  uint64_t reconnects = 0;
  std::string last_error;
};

// Registered by the engine at start: the reactors I/O queues are spread over.
void set_initiator_reactors(std::vector<Reactor*> reactors);
// The default host NQN of this process: nqn.2026-11.io.strata:node:<hostname>.
std::string default_host_nqn();
// DH-HMAC-CHAP secrets this process presents as `host_nqn` (the engine sets its node NQN's from
// --dhchap-secret-file). When a target answers Connect with "authentication required", every
// queue runs the host side of the transaction with them; `ctrl_secret` (optional) makes it
// bidirectional: the target must prove it holds that one. An empty `secret` forgets the host.
// Secrets live only in memory and never appear in URIs, lists or logs.
Status set_host_secret(const std::string& host_nqn, const std::string& secret, const std::string& ctrl_secret);
std::vector<ControllerInfo> list_controllers();
// Closes every controller (engine shutdown, before the reactors stop).
void close_all_controllers();

class HostQueue;
struct QueueLinks;

class HostController : public std::enable_shared_from_this<HostController> {
 public:
  // Blocking: connects every queue; on success the controller is kLive.
  static Result<std::shared_ptr<HostController>> connect(const std::string& uri, InitiatorOptions options);
  ~HostController();

  uint64_t size_bytes() const { return size_bytes_.load(std::memory_order_acquire); }
  // Blocking (control thread): Identify Namespace again on the live admin queue and return the
  // namespace's size now (it grows when the replica behind it is resized).
  Result<uint64_t> refresh_size();
  uint32_t block_bytes() const { return block_bytes_; }
  // Any reactor thread. `done` runs on `caller` with bytes or -errno (-ETIMEDOUT on timeout).
  enum class Op { kRead, kWrite, kFlush, kWriteZeroes, kDeallocate };
  void io(Reactor& caller, Op op, uint64_t offset_bytes, uint64_t length_bytes, void* buffer, IoCallback done);
  void close();
  ControllerInfo info();
  // The reactor of the first I/O queue: where a load generator or a sync call runs best.
  Reactor* io_reactor() const;
  // Any thread: why the controller can no longer serve I/O (kLost, kClosed); empty while it can.
  std::string lost_reason();
  // Blocking wrapper for the control thread (never a reactor thread).
  int io_sync(Op op, uint64_t offset_bytes, uint64_t length_bytes, void* buffer);
  // Called by a queue (on its reactor) when its connection ended.
  void connection_lost(const std::string& why);
  // Any thread: ends every queue's connection as a network failure would (fault injection);
  // the usual reconnect logic takes over.
  void drop_connections(const std::string& why);

 private:
  explicit HostController(std::string uri, InitiatorOptions options) : uri_(std::move(uri)), options_(std::move(options)) {}
  void set_state(HostControllerState next);  // the one place the state changes
  Status setup(QueueLinks& out);  // blocking: admin + I/O connections
  // Hands each queue its new connection (on the queue's reactor).
  void attach_links(QueueLinks& links);
  void reconnect_loop();

  const std::string uri_;
  const InitiatorOptions options_;
  std::mutex mutex_;  // guards state_, cntlid_, reconnects_, last_error_
  HostControllerState state_ = HostControllerState::kConnecting;
  uint16_t cntlid_ = 0;
  uint64_t reconnects_ = 0;
  std::string last_error_;
  std::atomic<uint64_t> size_bytes_{0};
  uint32_t block_bytes_ = 4096;
  uint32_t in_capsule_bytes_ = 0;
  uint32_t max_h2c_bytes_ = 0;
  std::vector<std::shared_ptr<HostQueue>> queues_;  // [0] = admin
  std::atomic<uint32_t> next_queue_{0};
  std::thread reconnector_;
  std::atomic<bool> closing_{false};
};

}  // namespace strata::nvmf
