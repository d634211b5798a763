// A pool: one device holding a superblock, a metadata region (two checkpoint slots + journal)
// and data clusters handed to replicas. Format and import run synchronously on the control
// thread; after attach() every method runs on the pool's reactor (the locking contract: a Pool
// is touched by exactly one thread at a time, so it has no mutex).
//
// Crash-safety rules kept here:
//  - a cluster is zeroed before its allocation record is written, and a write to a newly
//    allocated cluster is acknowledged only after that record is durable;
//  - a cluster is reusable only after its free (or replica destroy) record is durable and no
//    I/O issued before the free is still in flight against it;
//  - the durable model (MetaState) changes only when a journal batch is on the device.
#pragma once
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>

#include "device/device.h"
#include "pool/metadata.h"
#include "pool/types.h"
#include "reactor/reactor.h"
#include "util/aligned_buffer.h"

namespace strata {

enum class PoolState {
  kOnline,   // imported and serving I/O
  kFaulted,  // a metadata write failed; I/O and metadata changes are refused
  kClosing,  // export/destroy/shutdown: draining, new work refused
  kClosed,   // drained; the control thread finishes export or destroy
};
const char* pool_state_name(PoolState state);

enum class ReplicaState {
  kCreating,    // create record (and thick allocation) not yet durable; invisible to I/O
  kOnline,      // serving I/O
  kDestroying,  // refusing new I/O, draining, then writing its destroy record
};

// A replica's cluster map lives in RAM, 8 bytes per virtual cluster, so a thin replica's size is
// memory on every node that imports it. Limits, checked before anything is made durable (a size
// on disk that cannot be mapped is a crash at every import):
//  - one replica's map at most kMaxReplicaMapBytes (128 TiB of 1 MiB clusters, 512 TiB of 4 MiB);
//  - all maps in the process at most 1/kReplicaMapsMemoryDivisor of the node's memory.
constexpr uint64_t kMaxReplicaMapBytes = uint64_t{1} << 30;
constexpr uint64_t kReplicaMapsMemoryDivisor = 4;

// The bytes one replica's map holds against the process-wide budget; released when the replica
// (or its pool) goes away.
class MapCharge {
 public:
  MapCharge() = default;
  MapCharge(const MapCharge&) = delete;
  MapCharge& operator=(const MapCharge&) = delete;
  ~MapCharge() { set(0); }
  // Moves the charge to `bytes`; NO_SPACE (and no change) when growing would pass the budget.
  Status grow_to(uint64_t bytes, const std::string& what);
  // Sets the charge without a check: import must load what is on disk if memory allows.
  void set(uint64_t bytes);
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

struct Replica {
  static constexpr uint64_t kUnmapped = ~uint64_t{0};
  std::string uuid;
  UuidBytes uuid_bytes{};
  std::string name;
  uint32_t slot = 0;
  uint64_t size_bytes = 0;
  bool thin = true;
  ReplicaState state = ReplicaState::kCreating;
  std::vector<uint64_t> map;  // virtual cluster -> physical cluster (kUnmapped: reads zeros)
  MapCharge map_charge;       // map.size() * 8 bytes, counted against the node's budget
  uint64_t allocated_clusters = 0;
  uint32_t inflight_ios = 0;
  std::vector<std::function<void()>> on_drained;
  // Virtual clusters whose allocation is in progress -> I/O parts waiting for it. A write's
  // allocation (ensure_cluster) and a thin -> thick conversion both enter clusters here, so a
  // cluster is never allocated twice: whoever finds it here waits for that allocation.
  std::unordered_map<uint64_t, std::vector<std::function<void(Status)>>> allocating;
  // A thin -> thick conversion is running: whole-cluster deallocates zero in place instead of
  // freeing (as for a thick replica), so the set of clusters to allocate only shrinks.
  bool thickening = false;
  IoStats stats;
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  using Done = std::function<void(Status)>;

  // Control thread, before attach().
  static Result<std::shared_ptr<Pool>> format(std::unique_ptr<Device> device, const CreatePoolOptions& options);
  static Result<std::shared_ptr<Pool>> import(std::unique_ptr<Device> device);
  void attach(Reactor* reactor) { reactor_ = reactor; }
  Reactor& reactor() const { return *reactor_; }
  const std::string& uuid() const { return uuid_; }
  const std::string& name() const { return name_; }
  const DeviceDescription& device_description() const { return device_description_; }
  // After finish_export_sync / finish_destroy_sync (control thread): closes the device now, so
  // whoever is told the pool is gone can open it again (an FTL has one opener, and writes its
  // checkpoint as it closes), instead of whenever the last reference to the pool goes.
  void release_device() { device_.reset(); }
  std::vector<std::string> replica_uuids_at_import() const;

  // Reactor thread.
  PoolInfoData info() const;
  std::vector<ReplicaInfoData> list_replicas() const;
  void create_replica(const CreateReplicaOptions& options, std::function<void(Result<ReplicaInfoData>)> done);
  void resize_replica(const std::string& uuid, uint64_t size_bytes, std::function<void(Result<ReplicaInfoData>)> done);
  void destroy_replica(const std::string& uuid, Done done);
  // Thin -> thick allocates (zeroed) every cluster the replica lacks, all or nothing, in one
  // journal batch with the flag; thick -> thin only flips the flag. The same value is a no-op.
  void set_replica_thin(const std::string& uuid, bool thin, std::function<void(Result<ReplicaInfoData>)> done);
  void grow(std::function<void(Result<PoolInfoData>)> done);
  PoolCheckReportData check() const;
  Result<IoStats> stats(const std::string& uuid) const;
  // Which virtual clusters of a replica hold data (false: reads zeros), and the cluster size.
  // A rebuild reads this to skip what a thin replica never wrote.
  Result<std::pair<uint64_t, std::vector<bool>>> allocation_map(const std::string& uuid) const;
  // Replica I/O: offset/length multiples of 512; split at cluster boundaries; `buffer` is
  // 4 KiB-aligned (O_DIRECT) and lives until `done`.
  void io(const std::string& replica_uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer, Done done);
  void bench(const BenchOptions& options, std::function<void(Result<BenchResultData>)> done);
  // Refuses new work, waits for in-flight I/O and metadata writes, then moves to kClosed.
  void close(Done done);

  // Control thread, after close() completed: export marks clean shutdown; destroy wipes the superblock.
  Status finish_export_sync();
  Status finish_destroy_sync();

 private:
  struct Txn {
    std::vector<Record> records;
    Done done;
  };

  Pool(std::unique_ptr<Device> device, const format::Layout& layout);
  // format() and import() without their std::bad_alloc guard.
  static Result<std::shared_ptr<Pool>> format_device(std::unique_ptr<Device> device, const CreatePoolOptions& options);
  static Result<std::shared_ptr<Pool>> import_device(std::unique_ptr<Device> device);
  void set_state(PoolState next);
  void build_runtime();
  AlignedBuffer encode_superblock(bool clean_shutdown) const;

  // One control operation (create/resize/destroy replica, set thin, grow, close) at a time, in order.
  void run_exclusive(std::function<void(std::function<void()> finish)> op);
  void run_next_exclusive();

  // Journal writer: batches every queued transaction into one write + fdatasync.
  void commit(std::vector<Record> records, Done done);
  void pump_journal();
  void write_checkpoint_then_pump();

  // Cluster allocator (bitmap + reservations).
  std::vector<uint64_t> reserve_clusters(uint64_t count);
  void unreserve(const std::vector<uint64_t>& clusters);
  void release_cluster(uint64_t physical_cluster);
  uint64_t free_clusters() const { return free_clusters_; }
  void zero_clusters(const std::vector<uint64_t>& clusters, Done done);
  static std::vector<Record> run_records(format::RecordType type, uint32_t slot, const std::vector<std::pair<uint64_t, uint64_t>>& v_to_p);

  Replica* find_replica(const std::string& uuid) const;
  ReplicaInfoData replica_info(const Replica& r) const;
  Status check_io(const Replica* r, const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes) const;
  void ensure_cluster(Replica& r, uint64_t virtual_cluster, std::function<void(Status)> then);
  struct Thicken;
  void thicken_round(const std::shared_ptr<Thicken>& job);
  void thicken_finish(const std::shared_ptr<Thicken>& job, Status status);
  void device_io_on_cluster(uint64_t physical_cluster, std::function<void(std::function<void(int)>)> issue, std::function<void(int)> done);
  void io_finished(Replica& r);
  void account_io(Replica& r, IoKind kind, uint64_t length_bytes, uint64_t start_us, const Status& result);
  void maybe_idle();
  void fault(const std::string& why);

  std::unique_ptr<Device> device_;
  DeviceDescription device_description_;  // kept past release_device()
  Reactor* reactor_ = nullptr;
  PoolState state_ = PoolState::kOnline;
  std::string uuid_;
  UuidBytes uuid_bytes_{};
  std::string name_;
  format::Layout layout_;
  uint64_t cluster_count_ = 0;

  MetaState durable_;
  int checkpoint_slot_ = 0;  // slot holding the newest checkpoint
  uint64_t checkpoint_generation_ = 0;
  uint64_t journal_epoch_ = 0;
  uint64_t journal_pos_bytes_ = 0;
  bool journal_busy_ = false;
  std::deque<Txn> txns_;

  std::map<std::string, std::unique_ptr<Replica>> replicas_;  // by uuid, including creating ones
  std::vector<bool> slot_used_;
  std::vector<bool> cluster_used_;      // the allocator bitmap
  std::vector<bool> cluster_reserved_;  // used, but not yet owned: allocation in flight
  std::vector<bool> release_pending_;   // freed while I/O issued earlier is still in flight
  std::vector<uint32_t> cluster_ios_;   // device I/Os in flight per physical cluster
  uint64_t free_clusters_ = 0;
  uint64_t alloc_cursor_ = 0;
  uint64_t inflight_ios_ = 0;
  IoStats stats_;

  std::deque<std::function<void(std::function<void()>)>> exclusive_ops_;
  bool exclusive_busy_ = false;
  std::vector<std::function<void()>> on_idle_;
};

}  // namespace strata
