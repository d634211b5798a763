// The initiator's controllers (initiator.h): setup over a transport's setup channel, queues on
// reactors, reconnecting. A queue's command logic is host_queue.cc; its NVMe/TCP framing,
// tcp_host.cc.
#include "nvmf/initiator.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>

#include "nvmf/auth.h"
#include "nvmf/host_queue.h"
#include "nvmf/protocol.h"
#include "nvmf/rdma_host.h"
#include "nvmf/tcp_host.h"

namespace strata::nvmf {
namespace {

constexpr uint32_t kBackoffStartMs = 100, kBackoffMaxMs = 5000;
constexpr uint64_t kMaxWriteZeroesBlocks = 65536;  // NLB is 16 bits, 0-based

uint64_t now_ms() { return host_now_ms(); }

std::mutex g_mutex;  // guards g_reactors, g_controllers
std::vector<Reactor*> g_reactors;
std::vector<std::weak_ptr<HostController>> g_controllers;
std::atomic<uint32_t> g_next_reactor{0};
std::map<std::string, auth::HostKeys> g_host_keys;  // guarded by g_mutex
std::atomic<uint16_t> g_next_tid{1};

}  // namespace

// The connections setup() made, one per queue ([0] = admin): sockets or RDMA links.
struct QueueLinks {
  std::vector<int> fds;
  std::vector<std::shared_ptr<RdmaHostLink>> rdma;
  size_t size() const { return fds.size() + rdma.size(); }
  void close() {
    for (int fd : fds) ::close(fd);
    fds.clear();
    rdma.clear();
  }
};

const char* host_transport_name(HostTransport transport) { return transport == HostTransport::kRdma ? "rdma" : "tcp"; }

std::optional<auth::HostKeys> host_keys_for(const std::string& host_nqn) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_host_keys.find(host_nqn);
  if (it == g_host_keys.end()) return std::nullopt;
  return it->second;
}

uint16_t next_auth_transaction_id() { return g_next_tid.fetch_add(1); }

// ---- controller ------------------------------------------------------------------------------

const char* host_controller_state_name(HostControllerState state) {
  switch (state) {
    case HostControllerState::kConnecting: return "connecting";
    case HostControllerState::kLive: return "live";
    case HostControllerState::kReconnecting: return "reconnecting";
    case HostControllerState::kFailed: return "failed";
    case HostControllerState::kLost: return "lost";
    case HostControllerState::kClosed: return "closed";
  }
  return "failed";
}

void set_initiator_reactors(std::vector<Reactor*> reactors) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_reactors = std::move(reactors);
}

std::string default_host_nqn() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') std::strcpy(name, "localhost");
  return str(kNodeNqnPrefix, name);
}

Status set_host_secret(const std::string& host_nqn, const std::string& secret, const std::string& ctrl_secret) {
  if (host_nqn.empty() || host_nqn.size() > 223) return Status(ErrorCode::kInvalidArgument, "host NQN must be 1 to 223 bytes");
  if (secret.empty()) {
    if (!ctrl_secret.empty()) return Status(ErrorCode::kInvalidArgument, "a controller secret needs a host secret");
    std::lock_guard<std::mutex> lock(g_mutex);
    g_host_keys.erase(host_nqn);
    return Status();
  }
  auto host = auth::parse_secret(secret);
  if (!host.ok()) return Status(host.error().code, str("host ", host_nqn, ": ", host.error().message));
  auth::HostKeys keys{std::move(host.value()), std::nullopt};
  if (!ctrl_secret.empty()) {
    auto ctrl = auth::parse_secret(ctrl_secret);
    if (!ctrl.ok()) return Status(ctrl.error().code, str("host ", host_nqn, " (controller secret): ", ctrl.error().message));
    keys.ctrl = std::move(ctrl.value());
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  g_host_keys[host_nqn] = std::move(keys);
  return Status();
}

std::vector<ControllerInfo> list_controllers() {
  std::vector<std::shared_ptr<HostController>> live;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (auto& w : g_controllers) if (auto c = w.lock()) live.push_back(c);
  }
  std::vector<ControllerInfo> out;
  for (auto& c : live) out.push_back(c->info());
  return out;
}

void close_all_controllers() {
  std::vector<std::shared_ptr<HostController>> live;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (auto& w : g_controllers) if (auto c = w.lock()) live.push_back(c);
  }
  for (auto& c : live) c->close();
}

void HostController::set_state(HostControllerState next) {
  // caller holds mutex_
  bool legal = false;
  switch (state_) {
    case HostControllerState::kConnecting: legal = next == HostControllerState::kLive || next == HostControllerState::kFailed || next == HostControllerState::kClosed; break;
    case HostControllerState::kLive:
      legal = next == HostControllerState::kReconnecting || next == HostControllerState::kLost || next == HostControllerState::kClosed;
      break;
    case HostControllerState::kLost: legal = next == HostControllerState::kClosed; break;
    case HostControllerState::kReconnecting: legal = next == HostControllerState::kLive || next == HostControllerState::kClosed; break;
    case HostControllerState::kFailed: legal = next == HostControllerState::kClosed; break;
    case HostControllerState::kClosed: legal = false; break;
  }
  assert(legal && "illegal controller state transition");
  (void)legal;
  state_ = next;
}

Status HostController::setup(QueueLinks& links) {
  const bool rdma = options_.transport == HostTransport::kRdma;
  std::unique_ptr<SetupChannel> channel;
  uint16_t cntlid = 0;
  if (rdma) {
    auto admin = rdma_connect_queue(options_, 0, 0, 32, 0);
    if (!admin.ok()) return admin.error();
    links.rdma.push_back(admin.value());
    channel = std::make_unique<RdmaSetupChannel>(*links.rdma[0], options_.connect_timeout_ms);
    cntlid = admin.value()->cntlid;
  } else {
    auto admin = tcp_connect_queue(options_, 0, 0);
    if (!admin.ok()) return admin.error();
    links.fds.push_back(admin.value().fd);
    channel = std::make_unique<TcpSetupChannel>(admin.value().fd);
    cntlid = admin.value().cntlid;
    max_h2c_bytes_ = admin.value().max_h2c_bytes;
  }
  SetupChannel& admin_channel = *channel;
  auto fail = [&](Error e) {
    links.close();
    return Status(std::move(e));
  };
  // CC: EN=1, IOSQES=6 (64 B), IOCQES=4 (16 B); then wait for CSTS.RDY.
  if (auto s = property(admin_channel, true, 0x14, 1u | (6u << 16) | (4u << 20)); !s.ok()) return fail(s.error());
  uint64_t deadline = now_ms() + options_.connect_timeout_ms;
  for (;;) {
    auto csts = property(admin_channel, false, 0x1C, 0);
    if (!csts.ok()) return fail(csts.error());
    if (csts.value() & 1) break;
    if (now_ms() > deadline) return fail(Error{ErrorCode::kIoError, "controller did not become ready (CSTS.RDY)"});
    usleep(10000);
  }
  auto ctrl_id = identify(admin_channel, 1, 0);
  if (!ctrl_id.ok()) return fail(ctrl_id.error());
  uint32_t ioccsz = get32(ctrl_id.value().data() + 1792);
  in_capsule_bytes_ = ioccsz * 16 > 64 ? ioccsz * 16 - 64 : 0;
  auto ns = identify(admin_channel, 0, 1);
  if (!ns.ok()) return fail(ns.error());
  uint64_t nsze = get64(ns.value().data());
  uint8_t flbas = ns.value()[26] & 0xF;
  uint8_t lbads = ns.value()[128 + 4 * flbas + 2];
  if (lbads < 9 || lbads > 16) return fail(Error{ErrorCode::kIoError, str("namespace LBA data size 2^", int(lbads), " is not supported")});
  block_bytes_ = 1u << lbads;
  size_bytes_ = nsze * block_bytes_;
  {
    uint8_t sqe[64] = {};
    sqe[0] = opc::kSetFeatures;
    put16(sqe + 2, 4);
    put32(sqe + 40, 0x07);
    uint32_t n = options_.io_queues - 1;
    put32(sqe + 44, n | (n << 16));
    auto c = admin_channel.command(sqe, nullptr, 0, nullptr);
    if (!c.ok()) return fail(c.error());
    if (c.value().status != 0) return fail(Error{ErrorCode::kIoError, str("Set Features (Number of Queues): ", status_text(c.value().status))});
    uint32_t granted = std::min(c.value().dw0 & 0xFFFF, c.value().dw0 >> 16) + 1;
    if (granted < options_.io_queues) return fail(Error{ErrorCode::kIoError, str("the target grants ", granted, " I/O queues, ", options_.io_queues, " asked")});
  }
  for (uint32_t q = 1; q <= options_.io_queues; q++) {
    if (rdma) {
      auto io = rdma_connect_queue(options_, static_cast<uint16_t>(q), cntlid, options_.queue_depth, in_capsule_bytes_);
      if (!io.ok()) return fail(io.error());
      links.rdma.push_back(io.value());
      continue;
    }
    auto io = tcp_connect_queue(options_, static_cast<uint16_t>(q), cntlid);
    if (!io.ok()) return fail(io.error());
    links.fds.push_back(io.value().fd);
  }
  // Back to plain blocking sockets: io_uring handles waiting; socket timeouts would surface as EAGAIN.
  for (int fd : links.fds) {
    timeval zero{};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  cntlid_ = cntlid;
  return Status();
}

Result<std::shared_ptr<HostController>> HostController::connect(const std::string& uri, InitiatorOptions options) {
  std::vector<Reactor*> reactors;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    reactors = g_reactors;
  }
  if (reactors.empty()) return Error{ErrorCode::kFailedPrecondition, "the engine is not running: no reactor for the NVMe/TCP initiator"};
  if (options.io_queues == 0 || options.io_queues > kIoQueuesMax) return Error{ErrorCode::kInvalidArgument, "io_queues must be 1 to 64"};
  std::shared_ptr<HostController> c(new HostController(uri, std::move(options)));
  QueueLinks links;
  Status s = c->setup(links);
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(c->mutex_);
    c->last_error_ = s.error().message;
    c->set_state(HostControllerState::kFailed);
    return s.error();
  }
  uint32_t first = g_next_reactor.fetch_add(1);
  for (size_t i = 0; i < links.size(); i++) {
    Reactor* r = reactors[(first + i) % reactors.size()];
    const auto qid = static_cast<uint16_t>(i);
    const uint32_t depth = i == 0 ? 32 : c->options_.queue_depth;
    std::shared_ptr<HostQueue> q;
    if (c->options_.transport == HostTransport::kRdma) {
      // No in-capsule data on the admin queue: the Linux target takes none there.
      q = std::make_shared<RdmaHostQueue>(c, r, qid, depth, i == 0 ? 0 : c->in_capsule_bytes_);
    } else {
      q = std::make_shared<TcpHostQueue>(c, r, qid, depth, c->in_capsule_bytes_, c->max_h2c_bytes_);
    }
    if (i == 0) q->set_keep_alive_ms(c->options_.kato_ms / 2);
    q->set_reconnect(c->options_.reconnect);
    c->queues_.push_back(q);
  }
  c->attach_links(links);
  {
    std::lock_guard<std::mutex> lock(c->mutex_);
    c->set_state(HostControllerState::kLive);
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  std::erase_if(g_controllers, [](auto& w) { return w.expired(); });
  g_controllers.push_back(c);
  return c;
}

void HostController::attach_links(QueueLinks& links) {
  for (size_t i = 0; i < queues_.size(); i++) {
    if (options_.transport == HostTransport::kRdma) {
      if (i >= links.rdma.size()) break;
      auto q = std::static_pointer_cast<RdmaHostQueue>(queues_[i]);
      auto link = links.rdma[i];
      q->reactor()->post([q, link] { q->attach(link); });
    } else {
      if (i >= links.fds.size()) break;
      auto q = std::static_pointer_cast<TcpHostQueue>(queues_[i]);
      int fd = links.fds[i];
      q->reactor()->post([q, fd] { q->attach(fd); });
    }
  }
  links.fds.clear();
  links.rdma.clear();
}

HostController::~HostController() {
  close();
  if (reconnector_.joinable()) {
    if (reconnector_.get_id() == std::this_thread::get_id()) reconnector_.detach();  // the last owner was the reconnect thread itself
    else reconnector_.join();
  }
}

Reactor* HostController::io_reactor() const { return queues_.at(1)->reactor(); }

int HostController::io_sync(Op op, uint64_t offset_bytes, uint64_t length_bytes, void* buffer) {
  Reactor* r = io_reactor();
  auto result = std::make_shared<std::promise<int>>();
  auto self = shared_from_this();
  r->post([self, r, op, offset_bytes, length_bytes, buffer, result] {
    self->io(*r, op, offset_bytes, length_bytes, buffer, [result](int res) { result->set_value(res); });
  });
  return result->get_future().get();
}

Result<uint64_t> HostController::refresh_size() {
  if (std::string lost = lost_reason(); !lost.empty()) return Error{ErrorCode::kFailedPrecondition, str(uri_, ": ", lost)};
  std::shared_ptr<HostQueue> admin = queues_.empty() ? nullptr : queues_[0];
  if (!admin) return Error{ErrorCode::kFailedPrecondition, str(uri_, " has no admin queue")};
  auto data = std::make_shared<std::vector<uint8_t>>(4096);
  auto result = std::make_shared<std::promise<int>>();
  const uint32_t timeout_ms = options_.io_timeout_ms;
  admin->reactor()->post([admin, data, result, timeout_ms] {
    auto io = std::make_unique<HostIo>();
    std::memset(io->sqe, 0, 64);
    io->sqe[0] = opc::kIdentify;
    io->sqe[1] = 0x40;
    put32(io->sqe + 4, 1);  // NSID 1
    sgl_transport(io->sqe, 4096);
    put32(io->sqe + 40, 0);  // CNS 0: namespace
    io->data = data->data();
    io->length = 4096;
    io->read = true;
    io->timeout_ms = timeout_ms;
    io->deadline_ms = now_ms() + uint64_t{4} * timeout_ms;
    io->done = [data, result](int res) { result->set_value(res); };
    admin->submit(std::move(io));
  });
  const int res = result->get_future().get();
  if (res < 0) return Error{ErrorCode::kIoError, str(uri_, ": Identify Namespace failed: ", std::strerror(-res))};
  const uint8_t* ns = data->data();
  const uint8_t flbas = ns[26] & 0xF;
  const uint8_t lbads = ns[128 + 4 * flbas + 2];
  if (lbads < 9 || lbads > 16 || (1u << lbads) != block_bytes_) return Error{ErrorCode::kIoError, str(uri_, ": the namespace's block size changed")};
  const uint64_t nsze = get64(ns);
  if (nsze > (UINT64_MAX >> lbads)) return Error{ErrorCode::kIoError, str(uri_, ": Identify Namespace reports ", nsze, " blocks")};
  size_bytes_.store(nsze * block_bytes_, std::memory_order_release);
  return nsze * block_bytes_;
}

void HostController::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ == HostControllerState::kClosed) return;
    set_state(HostControllerState::kClosed);
  }
  closing_ = true;
  for (auto& q : queues_) q->reactor()->post([q] { q->close(); });
  if (reconnector_.joinable() && reconnector_.get_id() != std::this_thread::get_id()) reconnector_.join();
}

ControllerInfo HostController::info() {
  std::lock_guard<std::mutex> lock(mutex_);
  return ControllerInfo{uri_, host_controller_state_name(state_), cntlid_, static_cast<uint32_t>(queues_.empty() ? 0 : queues_.size() - 1), reconnects_, last_error_};
}

void HostController::drop_connections(const std::string& why) {
  for (auto& q : queues_) q->reactor()->post([q, why] { q->drop(why); });
}

std::string HostController::lost_reason() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == HostControllerState::kLost) return str("the NVMe/TCP association was lost (", last_error_, ")");
  if (state_ == HostControllerState::kClosed) return "closed";
  return {};
}

void HostController::connection_lost(const std::string& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  last_error_ = why;
  if (state_ != HostControllerState::kLive) return;
  if (!options_.reconnect) {
    set_state(HostControllerState::kLost);
    // The other queues belong to the same association: end them too, failing what they hold.
    for (auto& q : queues_) q->reactor()->post([q, why] { q->drop(why); });
    return;
  }
  set_state(HostControllerState::kReconnecting);
  // Every other queue's connection belongs to the same controller: drop them too, the
  // reconnect brings up a whole new association.
  if (reconnector_.joinable()) reconnector_.join();  // the previous one has finished: it set kLive
  std::weak_ptr<HostController> weak = weak_from_this();
  reconnector_ = std::thread([weak] {
    if (auto c = weak.lock()) c->reconnect_loop();
  });
}

void HostController::reconnect_loop() {
  uint32_t backoff_ms = kBackoffStartMs;
  while (!closing_) {
    for (uint32_t slept = 0; slept < backoff_ms && !closing_; slept += 10) usleep(10000);
    if (closing_) return;
    QueueLinks links;
    Status s = setup(links);
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mutex_);
      last_error_ = str("reconnect: ", s.error().message);
      backoff_ms = std::min(backoff_ms * 2, kBackoffMaxMs);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (state_ != HostControllerState::kReconnecting) {
        links.close();
        return;
      }
      reconnects_++;
      set_state(HostControllerState::kLive);
    }
    attach_links(links);
    return;
  }
}

void HostController::io(Reactor& caller, Op op, uint64_t offset_bytes, uint64_t length_bytes, void* buffer, IoCallback done) {
  // Prefer an I/O queue on the caller's reactor: no cross-thread hop on the fast path.
  std::shared_ptr<HostQueue> q;
  for (size_t i = 1; i < queues_.size(); i++) {
    if (queues_[i]->reactor() == &caller) {
      q = queues_[i];
      break;
    }
  }
  if (!q) q = queues_[1 + next_queue_.fetch_add(1) % (queues_.size() - 1)];
  auto io = std::make_unique<HostIo>();
  std::memset(io->sqe, 0, 64);
  uint8_t* sqe = io->sqe;
  sqe[1] = 0x40;
  put32(sqe + 4, 1);  // nsid
  uint64_t slba = offset_bytes / block_bytes_;
  uint32_t nlb = static_cast<uint32_t>(length_bytes / block_bytes_);
  io->data = static_cast<uint8_t*>(buffer);
  io->length = static_cast<uint32_t>(length_bytes);
  switch (op) {
    case Op::kRead:
    case Op::kWrite:
      sqe[0] = op == Op::kRead ? opc::kRead : opc::kWrite;
      put64(sqe + 40, slba);
      put32(sqe + 48, nlb - 1);
      io->read = op == Op::kRead;
      if (op == Op::kWrite && length_bytes <= q->in_capsule_bytes()) {
        io->in_capsule = true;
        sgl_in_capsule(sqe, io->length);
      } else {
        sgl_transport(sqe, io->length);
      }
      break;
    case Op::kFlush:
      sqe[0] = opc::kFlush;
      io->length = 0;
      break;
    case Op::kWriteZeroes:
      assert(nlb >= 1 && nlb <= 65536 && "Write Zeroes NLB is 16 bits: callers split (NvmfDevice::write_zeroes)");
      sqe[0] = opc::kWriteZeroes;
      put64(sqe + 40, slba);
      put32(sqe + 48, nlb - 1);
      io->length = 0;
      break;
    case Op::kDeallocate:
      sqe[0] = opc::kDatasetManagement;
      put32(sqe + 40, 0);        // one range (0-based)
      put32(sqe + 44, 1u << 2);  // AD
      io->inline_data.assign(16, 0);
      put32(io->inline_data.data() + 4, nlb);
      put64(io->inline_data.data() + 8, slba);
      io->in_capsule = true;
      sgl_in_capsule(sqe, 16);
      io->length = 0;
      break;
  }
  io->timeout_ms = options_.io_timeout_ms;
  io->deadline_ms = now_ms() + uint64_t{4} * options_.io_timeout_ms;  // the wait for a command id is bounded too
  Reactor* qr = q->reactor();
  if (qr == &caller) {
    io->done = std::move(done);
    return q->submit(std::move(io));
  }
  io->done = [&caller, done = std::move(done)](int result) { caller.post([done, result] { done(result); }); };
  qr->post([q, io = io.release()] { q->submit(std::unique_ptr<HostIo>(io)); });
}

}  // namespace strata::nvmf
