// The host side of NVMe-oF, transport-independent (the initiator's counterpart of
// queue_pair.h): what one host queue keeps whatever carries it (command ids, the commands in
// flight and waiting for an id, their timeouts, keep-alive, what a lost connection does to
// them), and the commands a host sends while it sets a controller up (Connect, DH-HMAC-CHAP,
// properties, Identify) over any SetupChannel. A transport (nvmf/tcp_host.h; RDMA next)
// derives its queue from HostQueue and its setup channel from SetupChannel.
#pragma once
#include <linux/time_types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nvmf/auth.h"
#include "nvmf/initiator.h"
#include "nvmf/protocol.h"

namespace strata::nvmf {

uint64_t host_now_ms();
// DH-HMAC-CHAP keys this process holds for `host_nqn` (set_host_secret), and the next
// transaction id.
std::optional<auth::HostKeys> host_keys_for(const std::string& host_nqn);
uint16_t next_auth_transaction_id();

// One command of a host queue.
struct HostIo {
  uint8_t sqe[64];
  uint8_t* data = nullptr;  // read destination or write source
  uint32_t length = 0;
  bool read = false, in_capsule = false;
  std::vector<uint8_t> inline_data;  // DSM ranges
  uint64_t deadline_ms = 0;  // while waiting for a command id: a bound on the wait; once sent: the command's timeout
  uint32_t timeout_ms = 0;   // from sending to completion
  IoCallback done;
  uint32_t received = 0;
};

// A host queue on a reactor. Reactor thread only, except where a method says otherwise.
class HostQueue : public std::enable_shared_from_this<HostQueue> {
 public:
  HostQueue(std::weak_ptr<HostController> ctrl, Reactor* reactor, uint16_t qid, uint32_t depth, uint32_t in_capsule_bytes);
  virtual ~HostQueue() = default;
  Reactor* reactor() const { return reactor_; }
  uint32_t in_capsule_bytes() const { return in_capsule_bytes_; }
  // End the connection as a network failure would (fault injection).
  void drop(const std::string& why) { lost(why); }
  void submit(std::unique_ptr<HostIo> io);
  void set_keep_alive_ms(uint64_t ms) { keep_alive_ms_ = ms; }
  void set_reconnect(bool reconnect) { reconnect_ = reconnect; }
  void close();

 protected:
  // ---- the transport's side
  // Sends one command (its in-capsule data too); only while connected.
  virtual void send_command(HostIo& io) = 0;
  // Ends the transport's connection (the peer sees it go); its completions are then ignored.
  virtual void shut_down_transport() = 0;

  // ---- for transports
  // A (new) connection is up: command ids quarantined on the old one are free again, what is
  // pending is sent again.
  void connected();
  // The connection ended: the controller reconnects (or, with reconnecting off, fails it all).
  void lost(const std::string& why);
  HostIo* find(uint16_t cid);
  void complete(uint16_t cid, int result);
  bool is_connected() const { return connected_; }
  bool is_closed() const { return closed_; }

  Reactor* reactor_;
  const uint16_t qid_;

 private:
  void fail_all(int error);
  void keep_alive();
  void arm_timer();
  void tick();

  std::weak_ptr<HostController> ctrl_;
  const uint32_t in_capsule_bytes_;
  bool connected_ = false, closed_ = false, timer_armed_ = false;
  bool reconnect_ = true;
  bool dead_ = false;  // lost with reconnecting off: every I/O fails
  std::map<uint16_t, std::unique_ptr<HostIo>> pending_;
  std::deque<std::unique_ptr<HostIo>> waiting_;  // no free command id yet
  std::vector<uint16_t> free_cids_;
  std::vector<uint16_t> quarantined_cids_;  // timed out on the current connection
  __kernel_timespec timer_ts_{};
  uint64_t keep_alive_ms_ = 0, last_keep_alive_ms_ = 0;
};

// ---- setup: blocking command exchanges on the control or reconnect thread ------------------------

struct SyncCompletion {
  uint16_t status;  // CQE status >> 1
  uint32_t dw0;
};
std::string status_text(uint16_t status);

// One queue's connection while it is set up: sends a command (optionally with in-capsule
// data) and waits for its completion, collecting controller-to-host data into `read_data`.
class SetupChannel {
 public:
  virtual ~SetupChannel() = default;
  virtual Result<SyncCompletion> command(const uint8_t sqe[64], const uint8_t* in_data, uint32_t in_len, std::vector<uint8_t>* read_data) = 0;
};

// SQE builders: a Fabrics command, and the two SGL data block descriptors a host uses.
void sqe_fabrics(uint8_t* sqe, uint8_t fctype, uint16_t cid);
void sgl_transport(uint8_t* sqe, uint32_t len);
void sgl_in_capsule(uint8_t* sqe, uint32_t len);

// Fabrics Connect for `qid` (DH-HMAC-CHAP after it when the target asks): the controller id.
Result<uint16_t> connect_command(SetupChannel& channel, const InitiatorOptions& o, uint16_t qid, uint16_t cntlid);
Result<uint64_t> property(SetupChannel& channel, bool set, uint32_t offset, uint64_t value);
Result<std::vector<uint8_t>> identify(SetupChannel& channel, uint8_t cns, uint32_t nsid);

}  // namespace strata::nvmf
