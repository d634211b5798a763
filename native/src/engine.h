// The engine core: reactors, the control thread, and the registry of imported pools and their
// replicas. Every public method may be called from the JS thread; `done` runs on a reactor or
// the control thread (the bridge carries it back to JS).
//
// Locking contract: mutex_ guards the registry maps only. Pool internals are touched on the
// pool's reactor; blocking device work (open, format, import, superblock) on the control thread.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "device/zones.h"
#include "ftl/ftl_device.h"
#include "nexus/nexus.h"
#include "nvmf/initiator.h"
#include "nvmf/target.h"
#include "pool/pool.h"
#include "pool/types.h"
#include "reactor/reactor.h"
#include "reactor/task_thread.h"
#include "util/aligned_buffer.h"

namespace strata {

template <typename T>
using Callback = std::function<void(Result<T>)>;
using StatusCallback = std::function<void(Status)>;

enum class EngineState {
  kStopped,   // no reactors; only start() is accepted
  kRunning,   // reactors up; every call accepted
  kStopping,  // shutdown in progress; new calls refused
};

class Engine {
 public:
  static Engine& instance();

  // `fault_injection`: wrap nexus children so faults can be injected (a test flag).
  Status start(int cores, bool fault_injection = false);
  void shutdown(StatusCallback done);
  // Every reactor's counters (reactor.h), in reactor order; empty when not started.
  std::vector<ReactorCounters> reactor_counters();

  void probe_device(const std::string& uri, Callback<DeviceInfoData> done);
  void list_devices(Callback<std::vector<DeviceInfoData>> done);

  void create_pool(CreatePoolOptions options, Callback<PoolInfoData> done);
  void import_pool(const std::string& device_uri, Callback<PoolInfoData> done);
  void export_pool(const std::string& uuid, StatusCallback done);
  void destroy_pool(const std::string& uuid, StatusCallback done);
  void grow_pool(const std::string& uuid, Callback<PoolInfoData> done);
  void list_pools(Callback<std::vector<PoolInfoData>> done);
  void check_pool(const std::string& uuid, Callback<PoolCheckReportData> done);

  void create_replica(CreateReplicaOptions options, Callback<ReplicaInfoData> done);
  void resize_replica(const std::string& uuid, uint64_t size_bytes, Callback<ReplicaInfoData> done);
  void set_replica_thin(const std::string& uuid, bool thin, Callback<ReplicaInfoData> done);
  void destroy_replica(const std::string& uuid, StatusCallback done);
  void list_replicas(Callback<std::vector<ReplicaInfoData>> done);
  void get_stats(const std::string& uuid, Callback<IoStats> done);

  // `buffer` holds the data to write, or receives the data read; kept alive until `done`.
  void replica_io(const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes,
                  std::shared_ptr<AlignedBuffer> buffer, StatusCallback done);
  // Zoned devices (device/zones.h), tests and tools: opened, asked, closed per call like
  // device_io; a device that is not zoned is INVALID_ARGUMENT.
  void zone_report(const std::string& uri, Callback<ZoneReportData> done);
  void zone_manage(const std::string& uri, ZoneAction action, uint64_t zone_start_bytes, StatusCallback done);
  // Resolves with where the data went.
  void zone_append(const std::string& uri, uint64_t zone_start_bytes, std::shared_ptr<AlignedBuffer> buffer, Callback<ZoneAppendData> done);
  void bench_replica(BenchOptions options, Callback<BenchResultData> done);

  // CSAL tiered devices (ftl/ftl_device.h). create_ftl formats once; a pool opens the ftl:// URI.
  // destroy_ftl wipes both superblocks, refused while the FTL is open (a pool is on it).
  void create_ftl(FtlCreateOptions options, Callback<FtlCreated> done);
  void destroy_ftl(const std::string& uri, StatusCallback done);
  // The FTLs open in this process (a pool on each), with their counters.
  void list_ftl(Callback<std::vector<FtlStatsData>> done);

  // NVMe/TCP target. start_nvmf binds both listeners (port 0 = any free port) and reports the
  // ports bound. A replica is shared as subsystem nqn.2026-11.io.strata:replica:<uuid> with
  // one namespace; sharing again replaces its allow list. A shared replica cannot be destroyed
  // (FAILED_PRECONDITION): unshare it first, so hosts are never cut off as a side effect.
  void start_nvmf(nvmf::ListenOptions options, Callback<nvmf::ListenResult> done);
  // A host that must authenticate (DH-HMAC-CHAP) with `secret` ("DHHC-1:…"); with `ctrl_secret`
  // the subsystem proves itself to the host as well. Parsed here; never logged or listed.
  struct HostSecret {
    std::string host_nqn;
    std::string secret;
    std::string ctrl_secret;  // empty: unidirectional
  };
  void share_replica(const std::string& uuid, std::vector<std::string> allowed_host_nqns, std::vector<HostSecret> secrets,
                     Callback<std::string> done);
  void unshare_replica(const std::string& uuid, StatusCallback done);
  void list_subsystems(Callback<std::vector<nvmf::SubsystemData>> done);

  // NVMe/TCP initiator. Controllers live as long as the nvmf:// device that opened them.
  void list_controllers(Callback<std::vector<nvmf::ControllerInfo>> done);
  // A load generator on a raw device (any URI; `uuid` of `options` holds the device URI).
  void bench_device(BenchOptions options, Callback<BenchResultData> done);
  // Copies [offset, +length) from one device to another, `queue_depth` segments in flight: the
  // raw-copy baseline the rebuild benchmark compares against.
  struct CopyOptions {
    std::string src_uri, dst_uri;
    uint64_t offset_bytes = 0, length_bytes = 0, segment_bytes = 1u << 20;
    uint32_t queue_depth = 4;
  };
  void copy_device(CopyOptions options, Callback<BenchResultData> done);
  // One I/O on a raw device (tests and tools): opens, does the I/O, closes.
  void device_io(const std::string& uri, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes,
                 std::shared_ptr<AlignedBuffer> buffer, StatusCallback done);

  // Nexus (native/src/nexus). Children are replica:///<uuid> (a local replica) or nvmf:// URIs.
  struct CreateNexusOptions {
    std::string uuid;
    uint64_t size_bytes = 0;
    std::vector<std::string> children;
    uint32_t child_io_timeout_ms = nexus::kChildIoTimeoutMsDefault;
    // Engine restart (the state file's nexuses): the newest label's size wins over a smaller
    // size_bytes (a grow the state file missed), and a child too small to open leaves the nexus
    // degraded instead of failing it.
    bool restore = false;
  };
  void create_nexus(CreateNexusOptions options, Callback<nexus::NexusInfoData> done);
  void destroy_nexus(const std::string& uuid, StatusCallback done);
  void shutdown_nexus(const std::string& uuid, StatusCallback done);
  void publish_nexus(const std::string& uuid, const std::string& frontend_host_nqn, std::optional<HostSecret> frontend_secret,
                     Callback<std::string> done);
  void unpublish_nexus(const std::string& uuid, const std::string& frontend_host_nqn, StatusCallback done);
  void list_nexus(Callback<std::vector<nexus::NexusInfoData>> done);
  // Grows a nexus in place (never shrinks; the same size succeeds): re-reads the size of every
  // child that receives writes (a remote one is identified again), grows the nexus once all hold
  // the new size, and then the published namespace, whose hosts get a namespace attribute notice.
  void resize_nexus(const std::string& uuid, uint64_t size_bytes, Callback<nexus::NexusInfoData> done);
  // action: add | remove | fault | online
  void child_op(const std::string& uuid, const std::string& child_uri, const std::string& action, StatusCallback done);
  // action: start | pause | resume | stop
  void rebuild_op(const std::string& uuid, const std::string& child_uri, const std::string& action, StatusCallback done);
  void rebuild_stats(const std::string& uuid, const std::string& child_uri, Callback<nexus::RebuildInfo> done);
  void rebuild_history(const std::string& uuid, Callback<std::vector<nexus::RebuildInfo>> done);
  // Fault injection (only when started with fault_injection). An empty rule list clears.
  void inject_fault(const std::string& uuid, const std::string& child_uri, std::optional<FaultRule> rule, StatusCallback done);
  // Drops an NVMe/TCP child's connections (fault injection).
  void drop_child_connection(const std::string& uuid, const std::string& child_uri, StatusCallback done);

 private:
  Engine() = default;
  std::shared_ptr<nexus::Nexus> find_nexus(const std::string& uuid);
  // Control thread: opens one child (with retries) and reads its label.
  nexus::OpenedChild open_child(const std::string& uri, uint64_t nexus_size_bytes, uint32_t io_timeout_ms, Status* fatal);
  // Opens a device by URI, including the engine's own replica:/// and nexus:/// devices.
  Result<std::unique_ptr<Device>> open_any_device(const std::string& uri);
  // Control thread: opens `uri`, checks it is zoned, and runs `use` on its home reactor with the
  // device and its zones; `use` must keep the device alive until its I/O completes.
  void with_zones(const std::string& uri, std::function<void(Error)> failed,
                  std::function<void(std::shared_ptr<Device>, Zones&, Reactor&)> use);
  void io_nexus(const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, std::shared_ptr<AlignedBuffer> buffer,
                StatusCallback done);
  Status check_running();
  std::shared_ptr<Pool> find_pool(const std::string& uuid);
  std::shared_ptr<Pool> find_replica_pool(const std::string& replica_uuid);
  // Registers a formatted/imported pool (duplicates checked under mutex_) and attaches a reactor.
  Result<PoolInfoData> adopt(std::shared_ptr<Pool> pool);
  void close_pool(const std::string& uuid, bool destroy, StatusCallback done);
  template <typename T>
  void gather(std::function<std::vector<T>(Pool&)> collect, Callback<std::vector<T>> done);

  std::mutex mutex_;
  EngineState state_ = EngineState::kStopped;
  std::vector<std::unique_ptr<Reactor>> reactors_;
  std::unique_ptr<TaskThread> control_;
  size_t next_reactor_ = 0;
  std::map<std::string, std::shared_ptr<Pool>> pools_;        // imported pools by uuid
  std::map<std::string, std::string> replica_pool_;           // replica uuid -> pool uuid
  std::set<std::string> device_busy_;                         // device identities being opened or used
  std::map<std::string, std::shared_ptr<nexus::Nexus>> nexuses_;  // by uuid
  std::map<std::string, std::string> replica_nexus_;          // local replica uuid -> nexus using it as a child
  bool fault_injection_ = false;
  std::unique_ptr<nvmf::Target> nvmf_;                        // null until start_nvmf
  // Stopped targets are kept, never destroyed: late completions of closed connections may still
  // hold references to them.
  std::vector<std::unique_ptr<nvmf::Target>> retired_nvmf_;
};

// Host secrets as the target keeps them (engine.cc; shares and publishes use it). Errors name
// the host, never the secret.
Result<std::map<std::string, nvmf::auth::HostKeys>> parse_host_secrets(const std::vector<Engine::HostSecret>& secrets, const std::set<std::string>& allowed);

}  // namespace strata
