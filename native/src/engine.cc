#include "engine.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <future>
#include <random>

#include "device/nvmf_device.h"
#include "device/replica_device.h"
#include "nexus/nexus_device.h"
#include "nvmf/rdma_probe.h"

#include "util/log.h"
#include "util/uuid.h"

namespace strata {
namespace {

constexpr int kMaxCores = 64;

DeviceInfoData device_info(const DeviceDescription& d, const std::string& in_use_by) {
  return DeviceInfoData{d.uri, device_kind_name(d.kind), d.path, d.size_bytes, d.block_size_bytes, d.major_minor, d.direct_io, in_use_by};
}


Status check_name(const std::string& what, const std::string& name) {
  if (name.empty() || name.size() > 63) return Status(ErrorCode::kInvalidArgument, str(what, " name '", name, "' must be 1 to 63 bytes"));
  return Status();
}


// A pool writes anywhere (superblock, journal, clusters): a zoned device would refuse most of it
// midway through a format.
Status check_conventional(Device& device, const std::string& uri) {
  if (device.zoned() == nullptr) return Status();
  return Status(ErrorCode::kFailedPrecondition, str(uri, " is a zoned device; a pool writes at any offset and needs a conventional one (its base device)"));
}
}  // namespace

Engine& Engine::instance() {
  // Never destroyed: reactor threads must not be joined by static destructors at process exit.
  static Engine* engine = new Engine();
  return *engine;
}

Status Engine::start(int cores, bool fault_injection) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == EngineState::kRunning) return Status();  // already started: starting is idempotent (the first options win)
  if (state_ == EngineState::kStopping) return Status(ErrorCode::kFailedPrecondition, "the native engine is shutting down; wait for shutdown() to finish");
  if (cores < 1 || cores > kMaxCores) return Status(ErrorCode::kInvalidArgument, str("cores must be 1 to ", kMaxCores, ", got ", cores));
  std::vector<std::unique_ptr<Reactor>> reactors;
  for (int i = 0; i < cores; i++) {
    auto reactor = std::make_unique<Reactor>(i);
    if (Status s = reactor->start(); !s.ok()) {
      for (auto& r : reactors) r->stop();
      return s;
    }
    reactors.push_back(std::move(reactor));
  }
  reactors_ = std::move(reactors);
  fault_injection_ = fault_injection;
  {
    std::vector<Reactor*> raw;
    for (auto& r : reactors_) raw.push_back(r.get());
    nvmf::set_initiator_reactors(std::move(raw));
  }
  if (!control_) control_ = std::make_unique<TaskThread>();
  state_ = EngineState::kRunning;
  return Status();
}

Status Engine::check_running() {
  if (state_ == EngineState::kRunning) return Status();
  return Status(ErrorCode::kFailedPrecondition, state_ == EngineState::kStopping ? "the native engine is shutting down"
                                                                                 : "the native engine is not started: call start({ cores }) first");
}

std::vector<ReactorCounters> Engine::reactor_counters() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<ReactorCounters> out;
  for (auto& r : reactors_) out.push_back(r->counters());
  return out;
}

void Engine::shutdown(StatusCallback done) {
  std::vector<std::shared_ptr<Pool>> pools;
  std::vector<std::shared_ptr<nexus::Nexus>> nexuses;
  nvmf::Target* target = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (state_ != EngineState::kRunning) return done(Status());
    state_ = EngineState::kStopping;
    for (auto& [uuid, pool] : pools_) pools.push_back(pool);
    for (auto& [uuid, n] : nexuses_) nexuses.push_back(n);
    target = nvmf_.get();
  }
  control_->post([this, pools, nexuses, target, done] {
    // Hosts first: no NVMe/TCP I/O may reach a pool that is being closed.
    if (target) target->stop();
    // Then the nexuses: drained, clean labels written, children closed (through the control
    // thread's queue, which runs after this task: so wait here without blocking it).
    for (auto& n : nexuses) {
      std::promise<void> stopped;
      n->reactor().post([n, &stopped] { n->shutdown([&stopped](Status) { stopped.set_value(); }); });
      stopped.get_future().wait();
    }
    Status first;
    for (auto& pool : pools) {
      std::promise<Status> closed;
      pool->reactor().post([pool, &closed] { pool->close([&closed](Status s) { closed.set_value(s); }); });
      Status s = closed.get_future().get();
      if (s.ok()) s = pool->finish_export_sync();
      if (!s.ok() && first.ok()) first = s;
    }
    // After the pools (a pool may sit on an nvmf:// device): our initiator's sockets' receives
    // must end before the reactors stop.
    nvmf::close_all_controllers();
    std::vector<std::unique_ptr<Reactor>> reactors;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      pools_.clear();
      replica_pool_.clear();
      nexuses_.clear();
      replica_nexus_.clear();
      device_busy_.clear();
      if (nvmf_) retired_nvmf_.push_back(std::move(nvmf_));
      reactors = std::move(reactors_);
      reactors_.clear();
    }
    for (auto& r : reactors) r->stop();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      state_ = EngineState::kStopped;
    }
    done(first);
  });
}

std::shared_ptr<Pool> Engine::find_pool(const std::string& uuid) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pools_.find(canon(uuid));
  return it == pools_.end() ? nullptr : it->second;
}

std::shared_ptr<Pool> Engine::find_replica_pool(const std::string& replica_uuid) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = replica_pool_.find(canon(replica_uuid));
  if (it == replica_pool_.end()) return nullptr;
  auto pool = pools_.find(it->second);
  return pool == pools_.end() ? nullptr : pool->second;
}

template <typename T>
void Engine::gather(std::function<std::vector<T>(Pool&)> collect, Callback<std::vector<T>> done) {
  std::vector<std::shared_ptr<Pool>> pools;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
    for (auto& [uuid, pool] : pools_) pools.push_back(pool);
  }
  if (pools.empty()) return done(std::vector<T>{});
  struct Shared {
    std::mutex mutex;
    std::vector<std::vector<T>> parts;
    size_t remaining;
  };
  auto shared = std::make_shared<Shared>();
  shared->parts.resize(pools.size());
  shared->remaining = pools.size();
  for (size_t i = 0; i < pools.size(); i++) {
    auto pool = pools[i];
    pool->reactor().post([pool, i, shared, collect, done] {
      auto part = collect(*pool);
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->parts[i] = std::move(part);
      if (--shared->remaining > 0) return;
      std::vector<T> all;
      for (auto& p : shared->parts) all.insert(all.end(), p.begin(), p.end());
      done(std::move(all));
    });
  }
}

// ---- devices --------------------------------------------------------------------------------

void Engine::probe_device(const std::string& uri, Callback<DeviceInfoData> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  control_->post([this, uri, done] {
    auto device = open_device(uri, /*may_create=*/false);
    if (!device.ok()) return done(device.error());
    const DeviceDescription& d = device.value()->description();
    std::string in_use_by;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [uuid, pool] : pools_) {
        if (pool->device_description().identity == d.identity) in_use_by = uuid;
      }
    }
    done(device_info(d, in_use_by));
  });
}

void Engine::list_devices(Callback<std::vector<DeviceInfoData>> done) {
  gather<DeviceInfoData>([](Pool& pool) { return std::vector<DeviceInfoData>{device_info(pool.device_description(), pool.uuid())}; },
                         [done](Result<std::vector<DeviceInfoData>> used) {
                           if (!used.ok()) return done(used);
                           std::vector<DeviceInfoData> all = used.value();
                           for (const DeviceDescription& d : list_malloc_devices()) {
                             bool listed = false;
                             for (auto& u : all) listed = listed || u.uri == d.uri;
                             if (!listed) all.push_back(device_info(d, ""));
                           }
                           done(all);
                         });
}

// ---- pools ----------------------------------------------------------------------------------

Result<PoolInfoData> Engine::adopt(std::shared_ptr<Pool> pool) {
  PoolInfoData info = pool->info();  // not yet visible to any reactor: safe here
  std::lock_guard<std::mutex> lock(mutex_);
  if (pools_.count(pool->uuid())) {
    return Error{ErrorCode::kAlreadyExists, str("a pool with uuid ", pool->uuid(), " is already imported (from ", pools_[pool->uuid()]->device_description().uri, ")")};
  }
  for (auto& [uuid, other] : pools_) {
    if (other->name() == pool->name()) {
      return Error{ErrorCode::kAlreadyExists, str("a pool named '", pool->name(), "' is already imported (uuid ", uuid, "); pool names are unique per engine")};
    }
  }
  for (const std::string& r : pool->replica_uuids_at_import()) {
    if (replica_pool_.count(r)) {
      return Error{ErrorCode::kAlreadyExists, str("replica ", r, " of pool ", pool->name(), " already exists in pool ", replica_pool_[r],
                                                  "; export that pool before importing this one")};
    }
  }
  for (const std::string& r : pool->replica_uuids_at_import()) replica_pool_[r] = pool->uuid();
  pool->attach(reactors_[next_reactor_++ % reactors_.size()].get());
  pools_[pool->uuid()] = pool;
  return info;
}

void Engine::create_pool(CreatePoolOptions o, Callback<PoolInfoData> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  auto uuid = canonical_uuid(o.uuid);
  if (!uuid) return done(Error{ErrorCode::kInvalidArgument, str("pool uuid '", o.uuid, "' is not a uuid (8-4-4-4-12 hex digits)")});
  o.uuid = *uuid;
  if (Status s = check_name("pool", o.name); !s.ok()) return done(s.error());
  control_->post([this, o, done] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (pools_.count(o.uuid)) return done(Error{ErrorCode::kAlreadyExists, str("pool ", o.uuid, " already exists")});
      for (auto& [uuid, pool] : pools_) {
        if (pool->name() == o.name) return done(Error{ErrorCode::kAlreadyExists, str("a pool named '", o.name, "' already exists (uuid ", uuid, ")")});
      }
    }
    auto device = open_device(o.device_uri, /*may_create=*/true);
    if (!device.ok()) return done(device.error());
    if (Status s = check_conventional(*device.value(), o.device_uri); !s.ok()) return done(s.error());
    const std::string identity = device.value()->description().identity;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [uuid, pool] : pools_) {
        if (pool->device_description().identity == identity) {
          return done(Error{ErrorCode::kFailedPrecondition, str("device ", o.device_uri, " is in use by pool ", pool->name(), " (uuid ", uuid,
                                                                "); destroy or export that pool first")});
        }
      }
    }
    auto pool = Pool::format(std::move(device.value()), o);
    if (!pool.ok()) return done(pool.error());
    done(adopt(pool.value()));
  });
}

void Engine::import_pool(const std::string& device_uri, Callback<PoolInfoData> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  control_->post([this, device_uri, done] {
    auto device = open_device(device_uri, /*may_create=*/false);
    if (!device.ok()) return done(device.error());
    if (Status s = check_conventional(*device.value(), device_uri); !s.ok()) return done(s.error());
    const std::string identity = device.value()->description().identity;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& [uuid, pool] : pools_) {
        if (pool->device_description().identity == identity) {
          return done(Error{ErrorCode::kAlreadyExists, str("pool ", pool->name(), " (uuid ", uuid, ") on ", device_uri, " is already imported")});
        }
      }
    }
    auto pool = Pool::import(std::move(device.value()));
    if (!pool.ok()) return done(pool.error());
    done(adopt(pool.value()));
  });
}

void Engine::close_pool(const std::string& uuid, bool destroy, StatusCallback done) {
  auto pool = find_pool(uuid);
  if (!pool) return done(Status(ErrorCode::kNotFound, str("no imported pool with uuid ", uuid)));
  pool->reactor().post([this, pool, destroy, done] {
    pool->close([this, pool, destroy, done](Status closed) {
      if (!closed.ok()) return done(closed);
      control_->post([this, pool, destroy, done] {
        Status s = destroy ? pool->finish_destroy_sync() : pool->finish_export_sync();
        pool->release_device();
        {
          std::lock_guard<std::mutex> lock(mutex_);
          pools_.erase(pool->uuid());
          for (auto it = replica_pool_.begin(); it != replica_pool_.end();) {
            it = it->second == pool->uuid() ? replica_pool_.erase(it) : std::next(it);
          }
        }
        done(s);
      });
    });
  });
}

void Engine::export_pool(const std::string& uuid, StatusCallback done) { close_pool(uuid, false, std::move(done)); }
void Engine::destroy_pool(const std::string& uuid, StatusCallback done) { close_pool(uuid, true, std::move(done)); }

void Engine::grow_pool(const std::string& uuid, Callback<PoolInfoData> done) {
  auto pool = find_pool(uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no imported pool with uuid ", uuid)});
  pool->reactor().post([pool, done] { pool->grow(done); });
}

void Engine::list_pools(Callback<std::vector<PoolInfoData>> done) {
  gather<PoolInfoData>([](Pool& pool) { return std::vector<PoolInfoData>{pool.info()}; }, std::move(done));
}

void Engine::check_pool(const std::string& uuid, Callback<PoolCheckReportData> done) {
  auto pool = find_pool(uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no imported pool with uuid ", uuid)});
  pool->reactor().post([pool, done] { done(pool->check()); });
}

// ---- replicas -------------------------------------------------------------------------------

void Engine::create_replica(CreateReplicaOptions o, Callback<ReplicaInfoData> done) {
  auto uuid = canonical_uuid(o.uuid);
  if (!uuid) return done(Error{ErrorCode::kInvalidArgument, str("replica uuid '", o.uuid, "' is not a uuid (8-4-4-4-12 hex digits)")});
  o.uuid = *uuid;
  if (Status s = check_name("replica", o.name); !s.ok()) return done(s.error());
  auto pool = find_pool(o.pool_uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no imported pool with uuid ", o.pool_uuid)});
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = replica_pool_.find(o.uuid); it != replica_pool_.end()) {
      return done(Error{ErrorCode::kAlreadyExists, str("replica ", o.uuid, " already exists in pool ", it->second)});
    }
    replica_pool_[o.uuid] = pool->uuid();  // reserved; released if the create fails
  }
  pool->reactor().post([this, pool, o, done] {
    pool->create_replica(o, [this, uuid = o.uuid, done](Result<ReplicaInfoData> r) {
      if (!r.ok()) {
        std::lock_guard<std::mutex> lock(mutex_);
        replica_pool_.erase(uuid);
      }
      done(std::move(r));
    });
  });
}

void Engine::resize_replica(const std::string& uuid, uint64_t size_bytes, Callback<ReplicaInfoData> done) {
  auto pool = find_replica_pool(uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no replica ", uuid)});
  pool->reactor().post([this, pool, uuid = canon(uuid), size_bytes, done] {
    pool->resize_replica(uuid, size_bytes, [this, uuid, done](Result<ReplicaInfoData> r) {
      if (r.ok()) {
        // A shared replica's hosts (a nexus elsewhere, a kernel) learn the new size: the
        // namespace grows at once and each controller that asked for it gets a notice.
        nvmf::Target* target;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          target = nvmf_.get();
        }
        if (target) target->resize(uuid, nvmf::NamespaceKind::kReplica, r.value().size_bytes);
      }
      done(std::move(r));
    });
  });
}

void Engine::set_replica_thin(const std::string& uuid, bool thin, Callback<ReplicaInfoData> done) {
  auto pool = find_replica_pool(uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no replica ", uuid)});
  pool->reactor().post([pool, uuid = canon(uuid), thin, done] { pool->set_replica_thin(uuid, thin, done); });
}

void Engine::destroy_replica(const std::string& uuid, StatusCallback done) {
  auto pool = find_replica_pool(uuid);
  if (!pool) return done(Status(ErrorCode::kNotFound, str("no replica ", uuid)));
  std::string id = canon(uuid);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (nvmf_ && nvmf_->is_shared(id)) {
      return done(Status(ErrorCode::kFailedPrecondition, str("replica ", id, " is shared over NVMe/TCP as ", nvmf::subsystem_nqn(id),
                                                             "; unshare it first (its hosts would lose the namespace)")));
    }
    if (auto n = replica_nexus_.find(id); n != replica_nexus_.end()) {
      return done(Status(ErrorCode::kFailedPrecondition, str("replica ", id, " is a child of nexus ", n->second, "; remove the child or destroy the nexus first")));
    }
  }
  pool->reactor().post([this, pool, id, done] {
    pool->destroy_replica(id, [this, id, done](Status s) {
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(mutex_);
        replica_pool_.erase(id);
      }
      done(s);
    });
  });
}

void Engine::list_replicas(Callback<std::vector<ReplicaInfoData>> done) {
  gather<ReplicaInfoData>([](Pool& pool) { return pool.list_replicas(); }, std::move(done));
}

void Engine::get_stats(const std::string& uuid, Callback<IoStats> done) {
  auto pool = find_pool(uuid);
  if (!pool) pool = find_replica_pool(uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no pool or replica with uuid ", uuid)});
  pool->reactor().post([pool, id = canon(uuid), done] { done(pool->stats(id)); });
}

void Engine::replica_io(const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes,
                        std::shared_ptr<AlignedBuffer> buffer, StatusCallback done) {
  auto pool = find_replica_pool(uuid);
  if (!pool) return done(Status(ErrorCode::kNotFound, str("no replica ", uuid)));
  pool->reactor().post([pool, id = canon(uuid), kind, offset_bytes, length_bytes, buffer, done] {
    pool->io(id, kind, offset_bytes, length_bytes, buffer ? buffer->data() : nullptr, [buffer, done](Status s) { done(s); });
  });
}

void Engine::bench_replica(BenchOptions o, Callback<BenchResultData> done) {
  auto pool = find_replica_pool(o.uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no replica ", o.uuid)});
  o.uuid = canon(o.uuid);
  pool->reactor().post([pool, o, done] { pool->bench(o, done); });
}

// ---- NVMe/TCP target -------------------------------------------------------------------------

void Engine::start_nvmf(nvmf::ListenOptions options, Callback<nvmf::ListenResult> done) {
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
    if (nvmf_) return done(Error{ErrorCode::kFailedPrecondition, "the NVMe/TCP target is already started"});
    std::vector<Reactor*> reactors;
    for (auto& r : reactors_) reactors.push_back(r.get());
    nvmf_ = std::make_unique<nvmf::Target>(std::move(reactors), [this](const nvmf::Subsystem& sub, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes,
                                                                     std::shared_ptr<AlignedBuffer> buffer, StatusCallback io_done) {
      if (sub.kind == nvmf::NamespaceKind::kNexus) return io_nexus(sub.replica_uuid, kind, offset_bytes, length_bytes, std::move(buffer), std::move(io_done));
      replica_io(sub.replica_uuid, kind, offset_bytes, length_bytes, std::move(buffer), std::move(io_done));
    });
    target = nvmf_.get();
  }
  auto bound = target->listen(options);
  if (!bound.ok()) {
    // Not listening: forget it, so a retry on another port can start afresh.
    std::lock_guard<std::mutex> lock(mutex_);
    if (nvmf_.get() == target) retired_nvmf_.push_back(std::move(nvmf_));
  } else if (!options.rdma_interface.empty()) {
    // RDMA comes in addition to TCP: when it cannot be served the engine still serves TCP,
    // and the result says why (the engine logs it and reports it in GetInfo).
    nvmf::RdmaTransportResult& rdma = bound.value().rdma;
    const nvmf::RdmaProbe probe = nvmf::probe_rdma(options.rdma_interface);
    rdma.interface = options.rdma_interface;
    rdma.address = probe.address;
    rdma.device = probe.device;
    if (!probe.usable) {
      rdma.reason = probe.reason;
    } else if (auto served = target->listen_rdma(probe.address, bound.value().listen_port); !served.ok()) {
      rdma.reason = served.error().message;
    } else {
      rdma.port = served.value().port;
      rdma.device = served.value().device;
      rdma.available = true;
    }
  }
  done(std::move(bound));
}

Result<std::map<std::string, nvmf::auth::HostKeys>> parse_host_secrets(const std::vector<Engine::HostSecret>& secrets,
                                                                        const std::set<std::string>& allowed) {
  std::map<std::string, nvmf::auth::HostKeys> out;
  for (const auto& h : secrets) {
    if (!allowed.count(h.host_nqn)) return Error{ErrorCode::kInvalidArgument, str("a secret is given for host ", h.host_nqn, ", which is not allowed")};
    auto host = nvmf::auth::parse_secret(h.secret);
    if (!host.ok()) return Error{ErrorCode::kInvalidArgument, str("host ", h.host_nqn, ": ", host.error().message)};
    nvmf::auth::HostKeys keys{std::move(host.value()), std::nullopt};
    if (!h.ctrl_secret.empty()) {
      auto ctrl = nvmf::auth::parse_secret(h.ctrl_secret);
      if (!ctrl.ok()) return Error{ErrorCode::kInvalidArgument, str("host ", h.host_nqn, " (controller secret): ", ctrl.error().message)};
      keys.ctrl = std::move(ctrl.value());
    }
    out[h.host_nqn] = std::move(keys);
  }
  return out;
}

void Engine::share_replica(const std::string& uuid, std::vector<std::string> allowed_host_nqns, std::vector<HostSecret> secrets,
                           Callback<std::string> done) {
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
    target = nvmf_.get();
  }
  if (!target) return done(Error{ErrorCode::kFailedPrecondition, "the NVMe/TCP target is not started: call startNvmf first"});
  auto pool = find_replica_pool(uuid);
  if (!pool) return done(Error{ErrorCode::kNotFound, str("no replica ", uuid)});
  std::set<std::string> hosts(allowed_host_nqns.begin(), allowed_host_nqns.end());
  auto keys = parse_host_secrets(secrets, hosts);
  if (!keys.ok()) return done(keys.error());
  auto shared_keys = std::make_shared<std::map<std::string, nvmf::auth::HostKeys>>(std::move(keys.value()));
  pool->reactor().post([pool, target, id = canon(uuid), hosts = std::move(hosts), shared_keys, done] {
    for (const ReplicaInfoData& r : pool->list_replicas()) {
      if (r.uuid != id) continue;
      return done(target->share(id, r.size_bytes, hosts, nvmf::NamespaceKind::kReplica, *shared_keys));
    }
    done(Error{ErrorCode::kNotFound, str("no replica ", id)});
  });
}

void Engine::unshare_replica(const std::string& uuid, StatusCallback done) {
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    target = nvmf_.get();
  }
  if (target) target->unshare(canon(uuid));
  done(Status());
}

void Engine::list_subsystems(Callback<std::vector<nvmf::SubsystemData>> done) {
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    target = nvmf_.get();
  }
  done(target ? target->list() : std::vector<nvmf::SubsystemData>{});
}


void Engine::list_controllers(Callback<std::vector<nvmf::ControllerInfo>> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  done(nvmf::list_controllers());
}

namespace {

// Where I/O on a device runs best: what the device says, else `fallback`.
Reactor* home_reactor(Device& device, Reactor* fallback) {
  Reactor* home = device.home_reactor();
  return home ? home : fallback;
}

}  // namespace


namespace {
uint64_t bench_now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// benchDevice: like Pool::bench, but straight on a Device (no pool, no replica map). The queue
// depth may be spread over several reactors ("jobs"), the way a kernel host spreads one
// application's I/O over per-CPU queues; each job keeps its share in flight on its own reactor.
struct DeviceBenchGroup {
  std::mutex mutex;
  uint32_t jobs_left = 0;  // jobs still running; the last to finish reports
  BenchResultData result;
  std::vector<uint32_t> latencies_us;
  uint64_t start_ns = 0;
  int error = 0;
  Callback<BenchResultData> done;

  uint64_t block_size_bytes = 0;

  void job_finished(uint64_t now_ns, uint64_t ops, const std::vector<uint32_t>& job_latencies_us, int job_error) {
    std::unique_lock<std::mutex> lock(mutex);
    result.ops += ops;
    result.bytes += ops * block_size_bytes;
    result.elapsed_us = std::max(result.elapsed_us, (now_ns - start_ns) / 1000);
    latencies_us.insert(latencies_us.end(), job_latencies_us.begin(), job_latencies_us.end());
    if (error == 0) error = job_error;
    assert(jobs_left > 0);
    if (--jobs_left > 0) return;
    lock.unlock();
    summarize_bench(result, latencies_us);
    auto d = std::move(done);
    done = nullptr;
    if (error != 0) d(Error{io_result_code(error), str("benchDevice I/O failed: ", io_result_text(error))});
    else d(result);
  }
};

// One job: `buffers.size()` I/Os kept in flight from one reactor.
struct DeviceBench : std::enable_shared_from_this<DeviceBench> {
  std::shared_ptr<DeviceBenchGroup> group;
  std::shared_ptr<Device> device;
  Reactor* reactor = nullptr;
  uint64_t block_size_bytes = 0;
  uint64_t blocks = 0;
  bool write = false, random = false;
  std::vector<AlignedBuffer> buffers;
  std::mt19937_64 rng{std::random_device{}()};
  uint64_t next_block = 0, deadline_ns = 0, ops = 0;
  uint32_t inflight = 0;
  bool finished = false;
  std::vector<uint32_t> latencies_us;
  int error = 0;

  void issue(size_t slot) {
    uint64_t now = bench_now_ns();
    if (now >= deadline_ns || error != 0) {
      if (inflight == 0 && !finished) {
        finished = true;
        group->job_finished(now, ops, latencies_us, error);
      }
      return;
    }
    uint64_t block = random ? rng() % blocks : next_block++ % blocks;
    inflight++;
    auto self = shared_from_this();
    auto cb = [self, slot, now](int res) {
      self->inflight--;
      if (res < 0) {
        if (self->error == 0) self->error = res;
      } else {
        self->ops++;
        if (self->latencies_us.size() < (1u << 22)) self->latencies_us.push_back(static_cast<uint32_t>((bench_now_ns() - now) / 1000));
      }
      self->issue(slot);
    };
    uint64_t off = block * block_size_bytes;
    auto len = static_cast<uint32_t>(block_size_bytes);
    if (write) device->write(*reactor, off, len, buffers[slot].data(), cb);
    else device->read(*reactor, off, len, buffers[slot].data(), cb);
  }
};
}  // namespace

void Engine::bench_device(BenchOptions o, Callback<BenchResultData> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  control_->post([this, o, done] {
    auto dev = open_any_device(o.uuid);
    if (!dev.ok()) return done(dev.error());
    std::shared_ptr<Device> device = std::move(dev.value());
    uint64_t span = o.span_bytes == 0 ? device->size_bytes() : std::min(o.span_bytes, device->size_bytes());
    uint32_t bs = device->description().block_size_bytes;
    if (o.block_size_bytes == 0 || o.block_size_bytes % bs != 0 || o.block_size_bytes > (1u << 20) || o.block_size_bytes > span) {
      return done(Error{ErrorCode::kInvalidArgument, str("bench block_size_bytes ", o.block_size_bytes, " must be a multiple of ", bs,
                                                         ", at most 1 MiB and at most the span (", span, " bytes)")});
    }
    if (o.queue_depth == 0 || o.queue_depth > 1024) return done(Error{ErrorCode::kInvalidArgument, "bench queue_depth must be 1 to 1024"});
    if (o.duration_ms == 0 || o.duration_ms > 3600 * 1000) return done(Error{ErrorCode::kInvalidArgument, "bench duration_ms must be 1 to 3600000"});
    if (o.jobs == 0 || o.jobs > o.queue_depth) {
      return done(Error{ErrorCode::kInvalidArgument, str("bench jobs ", o.jobs, " must be 1 to queue_depth (", o.queue_depth, ")")});
    }
    // A device with a home reactor (a replica) takes I/O only there: one job. Otherwise jobs go
    // round robin over the reactors, starting at reactor 0.
    Reactor* home = device->home_reactor();
    uint32_t jobs = home ? 1 : o.jobs;
    auto group = std::make_shared<DeviceBenchGroup>();
    group->jobs_left = jobs;
    group->block_size_bytes = o.block_size_bytes;
    // The device is closed on the control thread, never on a reactor (closing waits for nothing, but keeps threads tidy).
    group->done = [this, device, done](Result<BenchResultData> r) {
      control_->post([device, done, r] { done(r); });
    };
    std::vector<std::shared_ptr<DeviceBench>> runs;
    for (uint32_t j = 0; j < jobs; j++) {
      auto run = std::make_shared<DeviceBench>();
      run->group = group;
      run->device = device;
      run->reactor = home ? home : reactors_[j % reactors_.size()].get();
      run->block_size_bytes = o.block_size_bytes;
      run->blocks = span / o.block_size_bytes;
      run->write = o.pattern == BenchPattern::kRandWrite || o.pattern == BenchPattern::kWrite;
      run->random = o.pattern == BenchPattern::kRandRead || o.pattern == BenchPattern::kRandWrite;
      run->next_block = run->blocks * j / jobs;  // sequential jobs start apart
      uint32_t depth = o.queue_depth / jobs + (j < o.queue_depth % jobs ? 1 : 0);
      for (uint32_t i = 0; i < depth; i++) {
        run->buffers.emplace_back(o.block_size_bytes);
        for (uint64_t b = 0; b + 8 <= o.block_size_bytes; b += 8) std::memcpy(run->buffers.back().data() + b, &b, 8);
      }
      runs.push_back(std::move(run));
    }
    group->start_ns = bench_now_ns();
    uint64_t deadline_ns = group->start_ns + o.duration_ms * 1'000'000;
    for (auto& run : runs) {
      run->deadline_ns = deadline_ns;
      run->reactor->post([run] {
        for (size_t i = 0; i < run->buffers.size(); i++) run->issue(i);
      });
    }
  });
}

void Engine::device_io(const std::string& uri, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes,
                       std::shared_ptr<AlignedBuffer> buffer, StatusCallback done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s);
  }
  control_->post([this, uri, kind, offset_bytes, length_bytes, buffer, done] {
    auto dev = open_any_device(uri);
    if (!dev.ok()) return done(Status(dev.error()));
    // The device closes on this thread before the caller hears back (so the next call may open
    // it again, e.g. an FTL, which has one opener at a time): the I/O path holds only `holder`.
    auto holder = std::make_shared<std::shared_ptr<Device>>(std::move(dev.value()));
    Reactor* reactor = home_reactor(**holder, reactors_[0].get());
    auto finish = [this, holder, buffer, done, uri](int res) {
      control_->post([holder, done, res, uri] {
        holder->reset();
        if (res < 0) return done(Status(io_result_code(res), str("I/O on ", uri, res == -ETIMEDOUT ? " timed out" : " failed", ": ", io_result_text(res))));
        done(Status());
      });
    };
    reactor->post([holder, reactor, kind, offset_bytes, length_bytes, buffer, finish] {
      Device* device = holder->get();
      uint8_t* data = buffer ? buffer->data() : nullptr;
      auto len = static_cast<uint32_t>(length_bytes);
      switch (kind) {
        case IoKind::kRead: return device->read(*reactor, offset_bytes, len, data, finish);
        case IoKind::kWrite: return device->write(*reactor, offset_bytes, len, data, finish);
        case IoKind::kFlush: return device->flush(*reactor, finish);
        case IoKind::kWriteZeroes: return device->write_zeroes(*reactor, offset_bytes, length_bytes, finish);
        case IoKind::kDeallocate: return device->deallocate(*reactor, offset_bytes, length_bytes, finish);
      }
    });
  });
}

void Engine::with_zones(const std::string& uri, std::function<void(Error)> failed,
                        std::function<void(std::shared_ptr<Device>, Zones&, Reactor&)> use) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return failed(s.error());
  }
  control_->post([this, uri, failed, use] {
    auto dev = open_any_device(uri);
    if (!dev.ok()) return failed(dev.error());
    std::shared_ptr<Device> device = std::move(dev.value());
    Zones* zones = device->zoned();
    if (zones == nullptr) {
      return failed(Error{ErrorCode::kInvalidArgument, str(uri, " is not a zoned device; zoned://?base=...&zone_mib=N makes one")});
    }
    Reactor* reactor = home_reactor(*device, reactors_[0].get());
    reactor->post([device, zones, reactor, use] { use(device, *zones, *reactor); });
  });
}

void Engine::create_ftl(FtlCreateOptions options, Callback<FtlCreated> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  control_->post([options, done] { done(strata::create_ftl(options)); });
}

void Engine::destroy_ftl(const std::string& uri, StatusCallback done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s);
  }
  control_->post([uri, done] { done(strata::destroy_ftl(uri)); });
}

void Engine::list_ftl(Callback<std::vector<FtlStatsData>> done) {
  control_->post([done] { done(list_ftl_stats()); });
}

void Engine::zone_report(const std::string& uri, Callback<ZoneReportData> done) {
  with_zones(uri, [done](Error e) { done(std::move(e)); }, [this, done](std::shared_ptr<Device> device, Zones& zones, Reactor&) {
    ZoneReportData report = zones.report();
    control_->post([device, done, report] { done(report); });  // closed on the control thread
  });
}

void Engine::zone_manage(const std::string& uri, ZoneAction action, uint64_t zone_start_bytes, StatusCallback done) {
  with_zones(uri, [done](Error e) { done(Status(std::move(e))); }, [this, uri, action, zone_start_bytes, done](std::shared_ptr<Device> device, Zones& zones, Reactor& reactor) {
    zones.manage(reactor, action, zone_start_bytes, [this, device, uri, done](int res) {
      control_->post([device, uri, done, res] {
        if (res < 0) return done(Status(io_result_code(res), str("zone management on ", uri, " failed: ", io_result_text(res))));
        done(Status());
      });
    });
  });
}

void Engine::zone_append(const std::string& uri, uint64_t zone_start_bytes, std::shared_ptr<AlignedBuffer> buffer, Callback<ZoneAppendData> done) {
  with_zones(uri, [done](Error e) { done(std::move(e)); }, [this, uri, zone_start_bytes, buffer, done](std::shared_ptr<Device> device, Zones& zones, Reactor& reactor) {
    zones.append(reactor, zone_start_bytes, static_cast<uint32_t>(buffer->size()), buffer->data(), [this, device, uri, buffer, done](int res, uint64_t offset_bytes) {
      control_->post([device, uri, done, res, offset_bytes] {
        if (res < 0) return done(Error{io_result_code(res), str("zone append on ", uri, " failed: ", io_result_text(res))});
        done(ZoneAppendData{offset_bytes, offset_bytes / device->description().block_size_bytes});
      });
    });
  });
}

namespace {
struct DeviceCopy : std::enable_shared_from_this<DeviceCopy> {
  std::shared_ptr<Device> src, dst;
  Reactor* reactor = nullptr;
  Engine::CopyOptions o;
  std::vector<AlignedBuffer> buffers;
  uint64_t next = 0, start_ns = 0;
  uint32_t inflight = 0;
  int error = 0;
  BenchResultData result;
  Callback<BenchResultData> done;

  void issue(size_t slot) {
    if (error != 0 || next >= o.length_bytes) {
      if (inflight == 0 && done) finish();
      return;
    }
    const uint64_t off = o.offset_bytes + next;
    const auto len = static_cast<uint32_t>(std::min(o.segment_bytes, o.length_bytes - next));
    next += len;
    inflight++;
    auto self = shared_from_this();
    src->read(*reactor, off, len, buffers[slot].data(), [self, slot, off, len](int res) {
      if (res < 0) {
        self->error = res;
        self->inflight--;
        return self->issue(slot);
      }
      self->dst->write(*self->reactor, off, len, self->buffers[slot].data(), [self, slot, len](int res2) {
        self->inflight--;
        if (res2 < 0) self->error = res2;
        else {
          self->result.ops++;
          self->result.bytes += len;
        }
        self->issue(slot);
      });
    });
  }

  void finish() {
    result.elapsed_us = (bench_now_ns() - start_ns) / 1000;
    const double seconds = std::max<double>(1e-9, static_cast<double>(result.elapsed_us) / 1e6);
    result.iops = static_cast<double>(result.ops) / seconds;
    result.mib_per_s = static_cast<double>(result.bytes) / (1024.0 * 1024.0) / seconds;
    auto d = std::move(done);
    done = nullptr;
    if (error != 0) d(Error{ErrorCode::kIoError, str("copyDevice failed: ", std::strerror(-error))});
    else d(result);
  }
};
}  // namespace

void Engine::copy_device(CopyOptions o, Callback<BenchResultData> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  if (o.segment_bytes == 0 || o.segment_bytes % 4096 != 0 || o.segment_bytes > (4u << 20) || o.queue_depth == 0 || o.queue_depth > 64) {
    return done(Error{ErrorCode::kInvalidArgument, "copy segment_bytes must be a multiple of 4096 up to 4 MiB and queue_depth 1 to 64"});
  }
  control_->post([this, o, done] {
    auto s = open_any_device(o.src_uri);
    if (!s.ok()) return done(s.error());
    auto d = open_any_device(o.dst_uri);
    if (!d.ok()) return done(d.error());
    auto run = std::make_shared<DeviceCopy>();
    run->src = std::move(s.value());
    run->dst = std::move(d.value());
    if (o.offset_bytes + o.length_bytes > std::min(run->src->size_bytes(), run->dst->size_bytes())) {
      return done(Error{ErrorCode::kOutOfRange, "copy range is beyond one of the devices"});
    }
    run->o = o;
    // Where a rebuild from this source runs: its home (a local replica's pool reactor).
    run->reactor = home_reactor(*run->src, reactors_[0].get());
    for (uint32_t i = 0; i < o.queue_depth; i++) run->buffers.emplace_back(o.segment_bytes);
    auto src = run->src, dst = run->dst;
    run->done = [this, src, dst, done](Result<BenchResultData> r) { control_->post([src, dst, done, r] { done(r); }); };
    run->reactor->post([run] {
      run->start_ns = bench_now_ns();
      for (uint32_t i = 0; i < run->o.queue_depth; i++) run->issue(i);
    });
  });
}

}  // namespace strata
