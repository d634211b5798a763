// The NVMe/TCP transport of the host (initiator) side: a host queue's PDUs on its socket, and
// the blocking ICReq and command exchanges that set a queue up. What the commands mean is
// host_queue.h's.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nvmf/host_queue.h"

namespace strata::nvmf {

// A TCP connection that completed ICReq and Connect for one queue.
struct TcpQueueSetup {
  int fd = -1;
  uint32_t max_h2c_bytes = 0;
  uint16_t cntlid = 0;
};

// The setup exchanges on a blocking socket.
class TcpSetupChannel final : public SetupChannel {
 public:
  explicit TcpSetupChannel(int fd) : fd_(fd) {}
  Result<SyncCompletion> command(const uint8_t sqe[64], const uint8_t* in_data, uint32_t in_len, std::vector<uint8_t>* read_data) override;

 private:
  int fd_;
};

// Blocking (control or reconnect thread): TCP connect, ICReq/ICResp, then Fabrics Connect for `qid`.
Result<TcpQueueSetup> tcp_connect_queue(const InitiatorOptions& o, uint16_t qid, uint16_t cntlid);

// A host queue over one TCP connection.
class TcpHostQueue final : public HostQueue {
 public:
  TcpHostQueue(std::weak_ptr<HostController> ctrl, Reactor* reactor, uint16_t qid, uint32_t depth, uint32_t in_capsule_bytes, uint32_t max_h2c_bytes);
  ~TcpHostQueue() override;
  // Reactor thread: a connected socket (first time or after a reconnect); pending I/Os are sent again.
  void attach(int fd);

 protected:
  void send_command(HostIo& io) override;
  void shut_down_transport() override;

 private:
  void flush_out();
  void send_from(size_t offset);
  void arm_recv();
  // Consumes whole PDUs from rx_. False when the connection was declared lost.
  bool parse();
  bool handle(const uint8_t* b, uint32_t plen);

  const uint32_t max_h2c_bytes_;
  int fd_ = -1;
  uint64_t generation_ = 0;  // bumps on every attach: completions of an old socket are ignored
  bool send_busy_ = false;
  std::vector<uint8_t> rx_;
  size_t rx_len_ = 0;
  std::vector<uint8_t> out_, sending_;
};

}  // namespace strata::nvmf
