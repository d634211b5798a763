#include "nvmf/target.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nvmf/rdma.h"
#include "nvmf/tcp.h"
#include "util/log.h"

namespace strata::nvmf {
namespace {

constexpr int kListenBacklog = 512;
// How long stop() waits for connections to finish closing (they only wait for their own SQEs).
constexpr auto kStopWait = std::chrono::seconds(10);
// After a failed accept (EMFILE, ENOMEM, ...) wait before retrying, so an exhausted fd table
// does not turn the reactor into a busy loop.
constexpr long long kAcceptRetryNs = 100'000'000;
constexpr uint16_t kCntlidMax = 0xFFEF;  // 0xFFF0..0xFFFF are reserved
// Open connections per listener; an accept beyond it is closed at once. A connection that has
// not finished Connect costs at most its receive buffer (16 KiB, 160 KiB after an H2CData
// header) for 10 s; a discovery or admin queue at most kTxBacklogCapBytes plus one 1 MiB
// response (tcp.cc); so the cap bounds what unauthenticated peers can pin to a few GiB
// at worst, and the controller ids in use to 2 x 1024, far below kCntlidMax, so ids never run
// out. A Linux host uses 1 + (CPUs, at most 64 here) connections per controller: 1024 leaves
// room for ~15 such hosts per listener, and for hundreds of Strata initiators (1 + 1 each).
constexpr size_t kMaxConnectionsPerListener = 1024;

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return str(host, ":", port);
}

}  // namespace

const char* controller_state_name(ControllerState s) {
  switch (s) {
    case ControllerState::kDisabled: return "disabled";
    case ControllerState::kEnabled: return "enabled";
    case ControllerState::kShutdown: return "shutdown";
    case ControllerState::kDeleted: return "deleted";
  }
  return "?";
}

std::string subsystem_nqn(const std::string& uuid, NamespaceKind kind) {
  return std::string(kind == NamespaceKind::kNexus ? kNexusNqnPrefix : kSubsystemNqnPrefix) + uuid;
}

Reactor& Target::next_reactor() { return *reactors_[next_reactor_++ % reactors_.size()]; }

Result<int> Target::bind_listener(const std::string& host, uint16_t port, uint16_t* bound_port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port_text = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found); rc != 0) {
    return Error{ErrorCode::kInvalidArgument, str("cannot resolve listen address ", host, ": ", gai_strerror(rc))};
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{ErrorCode::kIoError, str("socket: ", std::strerror(errno))};
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || ::listen(fd, kListenBacklog) != 0) {
    int err = errno;
    close(fd);
    return Error{err == EADDRINUSE ? ErrorCode::kFailedPrecondition : ErrorCode::kIoError,
                 str("cannot listen on ", host, ":", port, ": ", std::strerror(err),
                     err == EADDRINUSE ? " (another process holds the port; pick another port or stop it)" : "")};
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  *bound_port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd;
}

Result<ListenResult> Target::listen(const ListenOptions& o) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (listening_) return Error{ErrorCode::kFailedPrecondition, "the NVMe/TCP target is already listening"};
    if (stopping_) return Error{ErrorCode::kFailedPrecondition, "the NVMe/TCP target is stopping"};
  }
  ListenResult result{};
  auto io = bind_listener(o.listen_host, o.listen_port, &result.listen_port);
  if (!io.ok()) return io.error();
  auto disc = bind_listener(o.discovery_host, o.discovery_port, &result.discovery_port);
  if (!disc.ok()) {
    close(io.value());
    return disc.error();
  }
  auto a = std::make_shared<Listener>();
  a->fd = io.value();
  a->reactor = &next_reactor();
  auto b = std::make_shared<Listener>();
  b->fd = disc.value();
  b->discovery = true;
  b->reactor = &next_reactor();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    listening_ = true;
    listeners_ = {a, b};
    open_listeners_ = 2;
    io_traddr_ = o.listen_host;
    io_port_ = result.listen_port;
  }
  for (auto& l : {a, b}) l->reactor->post([this, l] { arm_accept(l); });
  log_line(str("nvmf: listening on ", o.listen_host, ":", result.listen_port, ", discovery on ", o.discovery_host, ":", result.discovery_port));
  return result;
}

void Target::arm_accept(std::shared_ptr<Listener> l) {
  if (l->closing) {
    close(l->fd);
    listener_closed();
    return;
  }
  l->accept_inflight = true;
  l->reactor->submit([fd = l->fd](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK); },
                     [this, l](int result) { on_accept(l, result); });
}

void Target::on_accept(std::shared_ptr<Listener> l, int result) {
  l->accept_inflight = false;
  if (l->closing) {
    if (result >= 0) close(result);
    close(l->fd);
    listener_closed();
    return;
  }
  if (result < 0) {
    if (result != -EAGAIN && result != -EINTR && result != -ECONNABORTED) {
      log_line(str("nvmf: accept failed: ", std::strerror(-result), "; retrying in 100 ms"));
      auto ts = std::make_shared<__kernel_timespec>();
      ts->tv_nsec = kAcceptRetryNs;
      l->accept_inflight = true;  // the retry timer stands in for the accept
      l->reactor->submit([ts](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, ts.get(), 0, 0); },
                         [this, l, ts](int) {
                           l->accept_inflight = false;
                           arm_accept(l);
                         });
      return;
    }
    arm_accept(l);
    return;
  }
  int one = 1;
  setsockopt(result, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::shared_ptr<TcpConnection> c;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      // closed below
    } else if (l->connections >= kMaxConnectionsPerListener) {
      // Logged on the first refusal and every 1000th after, so a flood cannot flood the log.
      if (l->refused++ % 1000 == 0) {
        log_line(str("nvmf: refused a connection from ", peer_name(result), ": ", kMaxConnectionsPerListener, " are open on the ",
                     l->discovery ? "discovery" : "I/O", " listener (", l->refused, " refused so far)"));
      }
    } else {
      uint64_t id = next_connection_id_++;
      c = std::make_shared<TcpConnection>(*this, next_reactor(), result, l->discovery, id, peer_name(result));
      connections_[id] = OpenConnection{c, l};
      l->connections++;
    }
  }
  if (c) {
    // Post even to our own reactor: start() submits SQEs and must run on the connection's thread.
    c->reactor().post([c] { c->start(); });
  } else {
    close(result);
  }
  arm_accept(l);
}

void Target::listener_closed() {
  std::lock_guard<std::mutex> lock(mutex_);
  open_listeners_--;
  closed_cv_.notify_all();
}

uint64_t Target::next_connection_id() {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_connection_id_++;
}

bool Target::adopt_connection(uint64_t id, std::shared_ptr<QueuePair> queue) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return false;
  connections_[id] = OpenConnection{queue, nullptr};
  return true;
}

Result<RdmaListenResult> Target::listen_rdma(const std::string& address, uint16_t port) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!listening_) return Error{ErrorCode::kFailedPrecondition, "the target listens on TCP before RDMA"};
    if (rdma_listener_) return Error{ErrorCode::kFailedPrecondition, "the target already listens on RDMA"};
  }
  auto listener = std::make_shared<RdmaListener>(*this, next_reactor());
  auto bound = listener->bind_and_listen(address, port);
  if (!bound.ok()) return bound.error();
  RdmaListenResult result{address, bound.value(), listener->device()->name()};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rdma_listener_ = listener;
    rdma_traddr_ = address;
    rdma_port_ = result.port;
    discovery_generation_++;
  }
  listener->reactor().post([listener] { listener->start(); });
  log_line(str("nvmf: listening on RDMA ", address, ":", result.port, " (", result.device, "), discovery there too"));
  return result;
}

void Target::connection_closed(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = connections_.find(id); it != connections_.end()) {
    if (it->second.listener) it->second.listener->connections--;
    connections_.erase(it);
  }
  closed_cv_.notify_all();
}

void Target::stop() {
  std::vector<std::shared_ptr<Listener>> listeners;
  std::vector<std::shared_ptr<QueuePair>> connections;
  std::shared_ptr<RdmaListener> rdma;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    listeners = listeners_;
    rdma = rdma_listener_;
    for (auto& [id, open] : connections_) {
      if (auto c = open.connection.lock()) connections.push_back(c);
    }
  }
  for (auto& l : listeners) {
    l->reactor->post([this, l] {
      l->closing = true;
      // Wakes the pending accept (it then fails and on_accept closes the socket).
      ::shutdown(l->fd, SHUT_RDWR);
      if (!l->accept_inflight) {
        close(l->fd);
        listener_closed();
      }
    });
  }
  if (rdma) rdma->stop_accepting_async();
  for (auto& c : connections) c->close_async("the engine is shutting down");
  std::unique_lock<std::mutex> lock(mutex_);
  bool done = closed_cv_.wait_for(lock, kStopWait, [this] { return connections_.empty() && open_listeners_ == 0; });
  if (!done) log_line(str("nvmf: ", connections_.size(), " connection(s) still closing after 10 s"));
  if (rdma) {
    // The CM channel goes last: the queues' CM ids report on it until they are destroyed.
    bool rdma_closed = false;
    rdma->shutdown_async([this, &rdma_closed] {
      std::lock_guard<std::mutex> l(mutex_);
      rdma_closed = true;
      closed_cv_.notify_all();
    });
    closed_cv_.wait_for(lock, kStopWait, [&rdma_closed] { return rdma_closed; });
    rdma_listener_.reset();
  }
}

namespace {
bool same_secret(const auth::Secret& a, const auth::Secret& b) { return a.transform_hash == b.transform_hash && a.key == b.key; }
// Whether a connected host must go: its key was added, removed or changed.
bool keys_changed(const Subsystem& before, const Subsystem& after, const std::string& host) {
  auto a = before.host_keys.find(host);
  auto b = after.host_keys.find(host);
  if ((a == before.host_keys.end()) != (b == after.host_keys.end())) return true;
  if (a == before.host_keys.end()) return false;
  const auth::HostKeys &x = a->second, &y = b->second;
  if (!same_secret(x.host, y.host) || x.ctrl.has_value() != y.ctrl.has_value()) return true;
  return x.ctrl && !same_secret(*x.ctrl, *y.ctrl);
}
}  // namespace

std::string Target::share(const std::string& replica_uuid, uint64_t size_bytes, std::set<std::string> allowed, NamespaceKind kind,
                          std::map<std::string, auth::HostKeys> host_keys) {
  auto sub = std::make_shared<Subsystem>();
  sub->nqn = subsystem_nqn(replica_uuid, kind);
  sub->kind = kind;
  sub->replica_uuid = replica_uuid;
  sub->replica_uuid_bytes = parse_uuid(replica_uuid).value_or(UuidBytes{});
  sub->size->store(size_bytes, std::memory_order_release);
  sub->allowed_host_nqns = std::move(allowed);
  for (auto& [nqn, keys] : host_keys) {
    if (sub->allowed_host_nqns.count(nqn)) sub->host_keys.emplace(nqn, std::move(keys));
  }
  std::string hex;
  for (char ch : replica_uuid) {
    if (ch != '-') hex += ch;
  }
  sub->serial = hex.substr(0, 20);
  std::vector<std::shared_ptr<Controller>> evicted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = subsystems_.find(sub->nqn); it != subsystems_.end()) {
      // Re-shared (a new allow list): one size for every snapshot, so queues holding the old
      // snapshot never disagree with those holding the new one.
      sub->size = it->second->size;
      sub->size->store(size_bytes, std::memory_order_release);
    }
    subsystems_[sub->nqn] = sub;
    discovery_generation_++;
    for (auto& [cntlid, c] : controllers_) {
      if (c->discovery || c->subsystem->nqn != sub->nqn) continue;
      const bool rekeyed = keys_changed(*c->subsystem, *sub, c->host_nqn);
      c->subsystem = sub;
      if (!sub->allowed_host_nqns.count(c->host_nqn) || rekeyed) evicted.push_back(c);
    }
  }
  for (auto& c : evicted) delete_controller(c, str("host ", c->host_nqn, " was removed from the allow list of ", sub->nqn, " or its secret changed"));
  return sub->nqn;
}

bool Target::resize(const std::string& uuid, NamespaceKind kind, uint64_t size_bytes) {
  const std::string nqn = subsystem_nqn(uuid, kind);
  std::vector<std::shared_ptr<QueuePair>> notify;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = subsystems_.find(nqn);
    if (it == subsystems_.end()) return false;
    if (it->second->size->exchange(size_bytes, std::memory_order_acq_rel) == size_bytes) return true;  // unchanged: nothing to tell
    for (auto& [cntlid, c] : controllers_) {
      if (c->discovery || c->subsystem->nqn != nqn || c->state == ControllerState::kDeleted) continue;
      c->changed_ns = true;
      if ((c->async_event_config & kAecNamespaceAttribute) == 0 || c->ns_aen_masked || c->ns_aen_pending) continue;
      c->ns_aen_pending = true;
      if (auto q = c->queues.find(0); q != c->queues.end()) {
        if (auto conn = q->second.lock()) notify.push_back(std::move(conn));
      }
    }
  }
  log_line(str("nvmf: namespace of ", nqn, " is now ", size_bytes, " bytes; ", notify.size(), " controller(s) notified"));
  for (auto& conn : notify) conn->aen_ready();
  return true;
}

void Target::unshare(const std::string& replica_uuid, NamespaceKind kind) {
  std::string nqn = subsystem_nqn(replica_uuid, kind);
  std::vector<std::shared_ptr<Controller>> evicted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (subsystems_.erase(nqn) == 0) return;
    discovery_generation_++;
    for (auto& [cntlid, c] : controllers_) {
      if (!c->discovery && c->subsystem->nqn == nqn) evicted.push_back(c);
    }
  }
  for (auto& c : evicted) delete_controller(c, str(nqn, " was unshared"));
}

bool Target::is_shared(const std::string& replica_uuid, NamespaceKind kind) {
  std::lock_guard<std::mutex> lock(mutex_);
  return subsystems_.count(subsystem_nqn(replica_uuid, kind)) > 0;
}

std::vector<SubsystemData> Target::list() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<SubsystemData> out;
  for (auto& [nqn, sub] : subsystems_) {
    SubsystemData d{nqn, sub->replica_uuid, sub->kind == NamespaceKind::kNexus ? "nexus" : "replica",
                    {sub->allowed_host_nqns.begin(), sub->allowed_host_nqns.end()}, {}, {}};
    for (auto& [host, keys] : sub->host_keys) d.dhchap_host_nqns.push_back(host);
    for (auto& [cntlid, c] : controllers_) {
      if (c->discovery || c->subsystem->nqn != nqn || c->state == ControllerState::kDeleted) continue;
      d.connected_hosts.push_back(ConnectedHostData{c->host_nqn, cntlid, static_cast<uint32_t>(c->queues.size())});
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::shared_ptr<const Subsystem> Target::find_subsystem(const std::string& nqn) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = subsystems_.find(nqn);
  return it == subsystems_.end() ? nullptr : it->second;
}

Target::Admission Target::create_controller(bool discovery, std::shared_ptr<const Subsystem> subsystem, const std::string& host_nqn,
                                             const UuidBytes& host_id, uint32_t kato_ms, std::weak_ptr<QueuePair> admin,
                                             std::shared_ptr<Controller>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return Admission::kBusy;
  if (!discovery) {
    // The fencing invariant (top of target.h): a deleted controller still registered has
    // backend commands in flight (controller_drained unregisters it once they finished).
    for (auto& [id, c] : controllers_) {
      if (c->state != ControllerState::kDeleted || c->discovery || c->host_nqn != host_nqn || c->subsystem->nqn != subsystem->nqn) continue;
      fence_waiters_.push_back(FenceWaiter{subsystem->nqn, host_nqn, std::move(admin)});
      return Admission::kFenced;
    }
  }
  // The lowest free id (as Linux nvmet does): an id comes back as soon as its controller is
  // gone, so ids in use never exceed the controllers alive or draining.
  uint16_t id = 1;
  for (auto& [used, c] : controllers_) {
    if (used != id) break;
    id++;
  }
  if (id > kCntlidMax) return Admission::kBusy;
  auto c = std::make_shared<Controller>(id, discovery, std::move(subsystem), host_nqn, host_id);
  c->kato_ms = kato_ms;
  c->queues[0] = std::move(admin);
  controllers_[id] = c;
  *out = std::move(c);
  return Admission::kCreated;
}

bool Target::backend_command_starting(Controller& c) {
  c.backend_inflight.fetch_add(1);
  if (!c.deleted.load()) return true;
  // Deleted meanwhile: undo the count. The deletion may have read it and left the controller
  // registered, so the last one out unregisters it.
  if (c.backend_inflight.fetch_sub(1) == 1) {
    std::shared_ptr<Controller> self;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = controllers_.find(c.cntlid); it != controllers_.end() && it->second.get() == &c) self = it->second;
    }
    if (self) controller_drained(self);
  }
  return false;
}

void Target::backend_command_finished(const std::shared_ptr<Controller>& c) {
  if (c->backend_inflight.fetch_sub(1) == 1 && c->deleted.load()) controller_drained(c);
}

void Target::controller_drained(const std::shared_ptr<Controller>& c) {
  std::vector<std::shared_ptr<QueuePair>> wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = controllers_.find(c->cntlid);
    if (it == controllers_.end() || it->second != c || c->state != ControllerState::kDeleted || c->backend_inflight.load() != 0) return;
    controllers_.erase(it);
    if (!c->discovery) {
      std::erase_if(fence_waiters_, [&](const FenceWaiter& w) {
        if (w.subsystem_nqn == c->subsystem->nqn && w.host_nqn == c->host_nqn) {
          if (auto conn = w.connection.lock()) wake.push_back(std::move(conn));
          return true;
        }
        return w.connection.expired();  // its connection closed while fenced
      });
    }
  }
  // Each woken Connect looks again: another deleted controller of the host may still fence it.
  if (!wake.empty()) log_line(str("nvmf: deleted controller ", c->cntlid, " of ", c->host_nqn, " finished its last backend command; ", wake.size(), " fenced Connect(s) resume"));
  for (auto& conn : wake) conn->fence_lifted();
}

std::string Target::attach_io_queue(uint16_t cntlid, uint16_t qid, const std::string& subnqn, const std::string& host_nqn,
                                    const UuidBytes& host_id, std::weak_ptr<QueuePair> queue, std::shared_ptr<Controller>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = controllers_.find(cntlid);
  if (it == controllers_.end()) return str("no controller ", cntlid);
  Controller& c = *it->second;
  if (c.discovery) return "the discovery controller has no I/O queues";
  if (c.subsystem->nqn != subnqn || c.host_nqn != host_nqn || c.host_id != host_id) return str("controller ", cntlid, " belongs to another host or subsystem");
  if (c.state != ControllerState::kEnabled) return str("controller ", cntlid, " is ", controller_state_name(c.state), ", not enabled");
  if (qid > c.io_queues_granted_zero_based + 1u) return str("qid ", qid, " is beyond the ", c.io_queues_granted_zero_based + 1, " I/O queues granted");
  if (auto q = c.queues.find(qid); q != c.queues.end() && !q->second.expired()) return str("qid ", qid, " is already connected");
  c.queues[qid] = std::move(queue);
  *out = it->second;
  return "";
}

void Target::detach_queue(const std::shared_ptr<Controller>& controller, uint16_t qid) {
  std::lock_guard<std::mutex> lock(mutex_);
  controller->queues.erase(qid);
}

void Target::set_controller_state(Controller& c, ControllerState next) {
  switch (next) {
    case ControllerState::kDisabled: assert(c.state == ControllerState::kEnabled || c.state == ControllerState::kShutdown || c.state == ControllerState::kDisabled); break;
    case ControllerState::kEnabled: assert(c.state == ControllerState::kDisabled); break;
    case ControllerState::kShutdown: assert(c.state == ControllerState::kEnabled || c.state == ControllerState::kDisabled || c.state == ControllerState::kShutdown); break;
    case ControllerState::kDeleted: assert(c.state != ControllerState::kDeleted); break;
  }
  c.state = next;
  if (next == ControllerState::kDeleted) c.deleted.store(true);
}

void Target::delete_controller(const std::shared_ptr<Controller>& controller, const std::string& reason) {
  std::vector<std::shared_ptr<QueuePair>> queues;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (controller->state == ControllerState::kDeleted) return;
    // Stays registered while its backend commands finish (see the fencing invariant).
    set_controller_state(*controller, ControllerState::kDeleted);
    for (auto& [qid, weak] : controller->queues) {
      if (auto q = weak.lock()) queues.push_back(q);
    }
    controller->queues.clear();
  }
  log_line(str("nvmf: controller ", controller->cntlid, " of ", controller->host_nqn, " deleted: ", reason));
  if (controller->backend_inflight.load() == 0) controller_drained(controller);
  // A queue already closing is typically the one whose fatal error deleted this controller:
  // aborting it here would shut the socket down before its C2HTermReq left (the host then saw
  // only a FIN; found by test/native/nvmf/tshark.test.ts). Let it flush; linger bounds it.
  for (auto& q : queues) q->close_async(reason, /*let_closing_flush=*/true);
}

std::vector<uint8_t> Target::discovery_log(const std::string& host_nqn) {
  std::lock_guard<std::mutex> lock(mutex_);
  constexpr size_t kRecordBytes = 1024;
  std::vector<const Subsystem*> visible;
  for (auto& [nqn, sub] : subsystems_) {
    if (sub->allowed_host_nqns.count(host_nqn)) visible.push_back(sub.get());
  }
  // Every subsystem is reachable on every transport the target serves: one entry for each.
  struct Port {
    uint8_t trtype;  // 3 TCP, 1 RDMA
    uint16_t portid;
    const std::string* traddr;
    uint16_t trsvcid;
  };
  std::vector<Port> ports{{3, 1, &io_traddr_, io_port_}};
  if (rdma_listener_) ports.push_back({1, 2, &rdma_traddr_, rdma_port_});
  const size_t records = visible.size() * ports.size();
  std::vector<uint8_t> log(kRecordBytes * (1 + records), 0);
  put64(&log[0], discovery_generation_);  // GENCTR
  put64(&log[8], records);                // NUMREC
  put16(&log[16], 0);                     // RECFMT
  size_t i = 0;
  for (const Subsystem* sub : visible) {
    for (const Port& port : ports) {
      uint8_t* e = &log[kRecordBytes * (++i)];
      e[0] = port.trtype;                                              // TRTYPE
      e[1] = port.traddr->find(':') != std::string::npos ? 2 : 1;    // ADRFAM: IPv6 / IPv4
      e[2] = 2;                                                        // SUBTYPE: NVM subsystem
      e[3] = 0x02;                                                     // TREQ: secure channel not required
      put16(e + 4, port.portid);                                       // PORTID
      put16(e + 6, 0xFFFF);                                            // CNTLID: dynamic
      put16(e + 8, 32);                                                // ASQSZ
      put_text(e + 32, 32, std::to_string(port.trsvcid), '\0');        // TRSVCID
      put_text(e + 256, 256, sub->nqn, '\0');                          // SUBNQN
      put_text(e + 512, 256, *port.traddr, '\0');                      // TRADDR
      if (port.trtype == 1) {
        // TSAS for RDMA: reliable connected QPs, no provider type, RDMA CM; PKEY 0.
        e[768] = 1;  // RDMA_QPTYPE: connected
        e[769] = 1;  // RDMA_PRTYPE: not specified
        e[770] = 1;  // RDMA_CMS: RDMA_IP_CM
      } else {
        e[768] = 0;  // TSAS.SECTYPE: none
      }
    }
  }
  return log;
}

}  // namespace strata::nvmf
