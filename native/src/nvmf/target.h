// The NVMe/TCP target: two listeners (I/O and discovery), the subsystems (one per shared
// replica), the controllers hosts create with Connect, and the connections that carry them.
// Sockets are driven by the reactors' io_uring (accept/recv/sendmsg/timeout SQEs), so an idle
// target sleeps with the reactors.
//
// Locking contract: mutex_ guards the registries (subsystems_, controllers_, connections_,
// listeners) and every Controller's mutable fields (Controller has no lock of its own: its
// fields are few and touched rarely, on Connect, admin commands and teardown). A Connection
// is touched only on its reactor. Subsystem objects are immutable snapshots: an allow-list
// update replaces the shared_ptr, so a connection never sees a half-updated subsystem.
//
// Invariant (fencing): a reconnecting host never races its own old commands. When a host's
// controller is deleted (admin queue closed, KATO expired, evicted) while commands it sent are
// still executing on the backend, an admin Connect from the same host NQN to the same
// subsystem is answered only after those commands finished, or after kFenceTimeout with a
// retryable Connect status (Controller Busy, DNR clear) so the host tries again. A deleted
// controller also starts no new backend command. Live controllers of the host (multipath) do
// not hold a Connect back. So a write the host gave up on cannot land after the host, or a
// rebuild it drives, has rewritten that range through the new association. The fence knows
// only what the target knows: a host that reconnects before the target has seen its old
// connection end (or before KATO expired on a silent one) is, to the target, a second path.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "pool/types.h"
#include "reactor/reactor.h"
#include "util/aligned_buffer.h"
#include "util/status.h"
#include "nvmf/auth.h"
#include "nvmf/protocol.h"
#include "util/uuid.h"

namespace strata::nvmf {

class QueuePair;
class RdmaListener;

struct ListenOptions {
  std::string listen_host;
  uint16_t listen_port;
  std::string discovery_host;
  uint16_t discovery_port;
  // Also serve NVMe over RDMA on this network interface's address (same port number as TCP
  // I/O); empty = TCP only.
  std::string rdma_interface = "";
};

// What became of the RDMA transport: served, or why not (never silent).
struct RdmaTransportResult {
  std::string interface;
  std::string address;
  uint16_t port = 0;
  std::string device;
  bool available = false;
  std::string reason;  // why not, when !available
};

struct ListenResult {
  uint16_t listen_port;
  uint16_t discovery_port;
  RdmaTransportResult rdma = {};  // interface empty: not asked for
};

// Where the target serves NVMe over RDMA (Target::listen_rdma).
struct RdmaListenResult {
  std::string address;
  uint16_t port;
  std::string device;  // the RDMA device behind the address (e.g. rxe0)
};
struct ConnectedHostData {
  std::string host_nqn;
  uint16_t cntlid;
  uint32_t queues;
};

// What a subsystem's one namespace serves.
enum class NamespaceKind {
  kReplica,  // a replica of a local pool: nqn.2026-11.io.strata:replica:<uuid>
  kNexus,    // a nexus (a replicated volume): nqn.2026-11.io.strata:nexus:<uuid>
};

struct SubsystemData {
  std::string nqn;
  std::string replica_uuid;  // the uuid of what it serves (a replica or a nexus, per `kind`)
  std::string kind;
  std::vector<std::string> allowed_host_nqns;
  std::vector<std::string> dhchap_host_nqns;  // the allowed hosts that must authenticate (never their secrets)
  std::vector<ConnectedHostData> connected_hosts;
};

struct Subsystem;
// The data path below a namespace: Engine::replica_io or the nexus. `done` may run on any thread.
using IoBackend = std::function<void(const Subsystem& subsystem, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes,
                                     std::shared_ptr<AlignedBuffer> buffer, std::function<void(Status)> done)>;

// One shared replica: an NVM subsystem with a single namespace (NSID 1).
struct Subsystem {
  std::string nqn;
  NamespaceKind kind = NamespaceKind::kReplica;
  std::string replica_uuid;  // of the replica or the nexus
  UuidBytes replica_uuid_bytes{};
  // The namespace size, shared by every snapshot of this subsystem (an allow-list update makes a
  // new snapshot, a resize does not): connections read it on every I/O and Identify, so a grown
  // namespace is served at once on every queue, before any host is told (Target::resize).
  std::shared_ptr<std::atomic<uint64_t>> size = std::make_shared<std::atomic<uint64_t>>(0);
  uint64_t size_bytes() const { return size->load(std::memory_order_acquire); }
  std::set<std::string> allowed_host_nqns;  // empty: nobody may connect
  // Allowed hosts that must authenticate with DH-HMAC-CHAP on every queue (a subset of
  // allowed_host_nqns); the others are admitted by NQN alone.
  std::map<std::string, auth::HostKeys> host_keys;
  std::string serial;                       // 20 ASCII characters, from the replica uuid
};

enum class ControllerState {
  kDisabled,  // admin queue connected, CC.EN = 0 (CSTS.RDY = 0): only properties and admin commands
  kEnabled,   // CC.EN = 1, CSTS.RDY = 1: I/O queues may connect and do I/O
  kShutdown,  // CC.SHN written: CSTS.SHST reports complete; held AERs were completed
  kDeleted,   // torn down (admin queue gone, KATO expired, subsystem unshared): its queues are closing; it stays registered (cntlid taken, fencing its host's Connects) until its backend commands finished
};
const char* controller_state_name(ControllerState s);

// A dynamic controller created by an admin-queue Connect (cntlid 0xFFFF). Fields after the
// const ones are guarded by Target::mutex_.
struct Controller {
  Controller(uint16_t id, bool disc, std::shared_ptr<const Subsystem> sub, std::string host, UuidBytes hid)
      : cntlid(id), discovery(disc), subsystem(std::move(sub)), host_nqn(std::move(host)), host_id(hid) {}
  const uint16_t cntlid;
  const bool discovery;                               // the discovery controller (CNTRLTYPE 2)
  std::shared_ptr<const Subsystem> subsystem;         // null for discovery; refreshed on allow-list update
  const std::string host_nqn;
  const UuidBytes host_id;

  ControllerState state = ControllerState::kDisabled;
  uint32_t cc = 0;
  uint32_t kato_ms = 0;
  uint32_t async_event_config = 0;
  // Namespace Attribute Changed (NVMe base spec, Asynchronous Events): a namespace's size changed.
  // `changed_ns` is the Changed Namespace List (log page 0x04: NSID 1 or nothing), kept whether
  // or not the host enabled the notice; `ns_aen_pending` says a notice waits for an Asynchronous
  // Event Request; `ns_aen_masked` says one was sent and the host has not yet read log page 0x04
  // with RAE clear, so no further notice of this type is sent (no duplicates queue up).
  bool changed_ns = false;
  bool ns_aen_pending = false;
  bool ns_aen_masked = false;
  uint16_t io_queues_granted_zero_based = kIoQueuesDefaultZeroBased;
  std::map<uint16_t, std::weak_ptr<QueuePair>> queues;  // qid -> connection (0 = admin)

  // Lock-free, for the I/O path (see the fencing invariant on Target): commands of this
  // controller on the backend, and a mirror of `state == kDeleted`. A queue counts a command
  // before it checks `deleted`, and deletion sets `deleted` before it reads the count, so
  // either the command is refused or the deletion sees it.
  std::atomic<uint32_t> backend_inflight{0};
  std::atomic<bool> deleted{false};

  static constexpr uint16_t kIoQueuesDefaultZeroBased = 63;
};

class Target {
 public:
  Target(std::vector<Reactor*> reactors, IoBackend backend) : reactors_(std::move(reactors)), backend_(std::move(backend)) {}
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  // Any thread (the JS thread): binds both listeners (port 0 = ephemeral) and arms accept.
  Result<ListenResult> listen(const ListenOptions& options);
  // Any thread, after listen(): also serves NVMe over RDMA (I/O and discovery) on `address`
  // (an interface's IPv4 address with an RDMA device behind it), port 0 = ephemeral.
  Result<RdmaListenResult> listen_rdma(const std::string& address, uint16_t port);
  // Control thread: closes listeners and every connection, and waits until they are closed.
  void stop();

  // Any thread. Sharing an already shared replica replaces its allow list in place; hosts that
  // are no longer allowed, or whose secrets changed, are disconnected. `host_keys` names the
  // allowed hosts that must authenticate (DH-HMAC-CHAP) and their secrets.
  std::string share(const std::string& uuid, uint64_t size_bytes, std::set<std::string> allowed_host_nqns,
                    NamespaceKind kind = NamespaceKind::kReplica, std::map<std::string, auth::HostKeys> host_keys = {});
  // Any thread: the namespace of a shared replica or nexus now has `size_bytes` (it grew). Every
  // queue serves the new size at once; every controller of the subsystem records NSID 1 in its
  // Changed Namespace List and, when its Asynchronous Event Configuration enables namespace
  // attribute notices (bit 8), gets a Notice AEN (completing a held AER now, or the next one).
  // Returns false when the subsystem is not shared.
  bool resize(const std::string& uuid, NamespaceKind kind, uint64_t size_bytes);
  // Any thread; idempotent. Disconnects the subsystem's hosts.
  void unshare(const std::string& uuid, NamespaceKind kind = NamespaceKind::kReplica);
  bool is_shared(const std::string& uuid, NamespaceKind kind = NamespaceKind::kReplica);
  std::vector<SubsystemData> list();

  // ---- for connections (their reactor thread) ----
  const IoBackend& backend() const { return backend_; }
  std::shared_ptr<const Subsystem> find_subsystem(const std::string& nqn);
  enum class Admission {
    kCreated,  // a controller was created
    kBusy,     // every controller id is taken (or the target is stopping)
    kFenced,   // a deleted controller of this host and subsystem still has backend commands: `admin` is told by fence_lifted()
  };
  // Creates a controller for an admin queue, taking the lowest free controller id.
  Admission create_controller(bool discovery, std::shared_ptr<const Subsystem> subsystem, const std::string& host_nqn, const UuidBytes& host_id,
                              uint32_t kato_ms, std::weak_ptr<QueuePair> admin, std::shared_ptr<Controller>* out);
  // Any thread, around every backend command of a controller's queue. starting() returns
  // false (and counts nothing) when the controller is deleted: the command must not run.
  bool backend_command_starting(Controller& controller);
  void backend_command_finished(const std::shared_ptr<Controller>& controller);
  // Attaches an I/O queue to an enabled controller; an empty string on success, else why not.
  std::string attach_io_queue(uint16_t cntlid, uint16_t qid, const std::string& subnqn, const std::string& host_nqn,
                              const UuidBytes& host_id, std::weak_ptr<QueuePair> queue, std::shared_ptr<Controller>* out);
  void detach_queue(const std::shared_ptr<Controller>& controller, uint16_t qid);
  // Tears a controller down and asks each of its queues to close.
  void delete_controller(const std::shared_ptr<Controller>& controller, const std::string& reason);
  // The one function that changes a controller's state (asserts legal transitions). Caller holds mutex_.
  void set_controller_state(Controller& controller, ControllerState next);
  std::mutex& mutex() { return mutex_; }
  // Discovery log page 0x70 for a host: only the subsystems it may connect to.
  std::vector<uint8_t> discovery_log(const std::string& host_nqn);
  void connection_closed(uint64_t id);
  // For transports that create queue pairs themselves (RDMA): an id, then registration. False
  // when the target is stopping (the caller closes the queue).
  uint64_t next_connection_id();
  bool adopt_connection(uint64_t id, std::shared_ptr<QueuePair> queue);
  Reactor& next_reactor();

 private:
  struct Listener {
    int fd = -1;
    bool discovery = false;
    Reactor* reactor = nullptr;
    bool closing = false;        // reactor thread only
    bool accept_inflight = false;  // reactor thread only
    size_t connections = 0;      // open connections accepted here (guarded by mutex_)
    uint64_t refused = 0;        // connections refused at the cap (guarded by mutex_)
  };
  struct OpenConnection {
    std::weak_ptr<QueuePair> connection;
    std::shared_ptr<Listener> listener;  // null for RDMA queues (their listener counts nothing)
  };
  struct FenceWaiter {
    std::string subsystem_nqn;
    std::string host_nqn;
    std::weak_ptr<QueuePair> connection;
  };
  Result<int> bind_listener(const std::string& host, uint16_t port, uint16_t* bound_port);
  void arm_accept(std::shared_ptr<Listener> listener);  // listener's reactor thread
  void on_accept(std::shared_ptr<Listener> listener, int result);
  void listener_closed();
  // Unregisters a deleted controller whose backend commands have all finished (idempotent)
  // and wakes the Connects it fenced.
  void controller_drained(const std::shared_ptr<Controller>& controller);

  const std::vector<Reactor*> reactors_;
  const IoBackend backend_;
  std::atomic<size_t> next_reactor_{0};

  std::mutex mutex_;
  std::condition_variable closed_cv_;  // signalled when a connection or listener finishes closing
  bool listening_ = false;
  bool stopping_ = false;
  std::vector<std::shared_ptr<Listener>> listeners_;
  size_t open_listeners_ = 0;
  std::string io_traddr_;
  uint16_t io_port_ = 0;
  std::shared_ptr<RdmaListener> rdma_listener_;
  std::string rdma_traddr_;
  uint16_t rdma_port_ = 0;
  uint64_t discovery_generation_ = 1;
  std::map<std::string, std::shared_ptr<const Subsystem>> subsystems_;  // by NQN
  std::map<uint16_t, std::shared_ptr<Controller>> controllers_;         // by cntlid, including deleted ones still draining
  std::vector<FenceWaiter> fence_waiters_;
  std::map<uint64_t, OpenConnection> connections_;                      // open (fd not yet closed)
  uint64_t next_connection_id_ = 1;
};

std::string subsystem_nqn(const std::string& uuid, NamespaceKind kind = NamespaceKind::kReplica);

}  // namespace strata::nvmf
