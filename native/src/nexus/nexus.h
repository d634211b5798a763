// The nexus: a RAID-1 volume over 1..N children (local replicas through ReplicaDevice, remote
// ones through the NVMe/TCP initiator), served to hosts through the target.
//
// Threading: a Nexus lives on one reactor; every method below runs there unless it says
// otherwise. Opening and closing child devices (blocking: TCP connects, label reads) happens on
// the engine's control thread, which hands finished devices in with attach_child().
//
// Invariants kept here:
//  - a write (or flush, deallocate) is acknowledged only after it is on every child that was
//    Online when it completed, and only after the label that names the in-sync children of the
//    current membership is durable on the in-sync children. So after any crash, a child the
//    newest label calls in sync holds every acknowledged write.
//  - a label never names an empty in-sync set, and a child leaves the in-sync set only by a
//    fault, a removal or an orderly shutdown of its device — never because it was merely slow to
//    open at creation (it is then Offline with CannotOpen, and the label is left alone until the
//    first write needs a new one).
//  - a segment being copied by a rebuild is locked: writes to it wait, and the copy starts only
//    after writes already in flight there have finished, so the copy never overwrites newer data.
//  - host reads and writes are split at segment boundaries and at the children's transfer limit;
//    deallocate and write-zeroes at kZeroingPartBytes of child space (whole clusters, so thin
//    space is freed), taking the range lock of every segment they cover. At most
//    kPartsInFlightMax parts of one request are in flight; the request completes when every part
//    has, and fails if any part failed.
#pragma once
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "device/device.h"
#include "device/fault_device.h"
#include "nexus/label.h"
#include "nexus/rules.h"
#include "nexus/unflushed.h"
#include "pool/types.h"
#include "reactor/reactor.h"
#include "util/aligned_buffer.h"
#include "util/status.h"
#include "util/uuid.h"

namespace strata::nexus {

constexpr uint64_t kSegmentBytes = 1ull << 20;      // rebuild copy unit and range-lock granularity
constexpr uint64_t kDirtyUnitBytes = 64ull << 10;   // partial-rebuild tracking granularity
constexpr uint32_t kRebuildParallelSegments = 4;    // segments a rebuild keeps in flight
constexpr uint32_t kRebuildStepTimeoutMs = 30000;   // one segment copy longer than this fails the rebuild
constexpr size_t kHistoryLimit = 64;                // rebuild records kept per nexus
constexpr uint32_t kPartsInFlightMax = 16;          // parts of one host request issued at once
// Deallocate and Write Zeroes parts end at this alignment of the *child's* offsets, so they cover
// whole clusters of the child's pool (every cluster size divides it) and thin space is freed.
constexpr uint64_t kZeroingPartBytes = 64ull << 20;

enum class ChildState {
  kOnline,      // in sync: receives every write, serves reads
  kRebuilding,  // receives every write while a rebuild copies the rest into it; serves no reads
  kFaulted,     // out of sync after an error, a timeout, a failed rebuild or a client request
  kOffline,     // out of sync and closed: could not be opened, or the nexus is shut down
};
const char* child_state_name(ChildState s);

enum class ChildReason {
  kNone,           // Online, or Rebuilding a newly added child
  kIoFailure,      // an I/O returned an error
  kTimedOut,       // an I/O did not complete within the child I/O timeout
  kCannotOpen,     // the device could not be opened (at create, add or online)
  kNoSpace,        // a thin replica's pool is full
  kRebuildFailed,  // the rebuild into it failed (its source failed, or a step timed out)
  kByClient,       // FaultChild
  kOutOfSync,      // the newest label does not list it as in sync, or its rebuild was stopped
};
const char* child_reason_name(ChildReason r);

enum class NexusState {
  kOpen,          // serving I/O (with at least one Online child)
  kShuttingDown,  // refusing new I/O; draining, then writing clean labels
  kShutdown,      // children closed; only Destroy is useful
};
const char* nexus_state_name(NexusState s);

enum class RebuildState {
  kWaiting,    // waiting for writes issued before the child joined to finish
  kRunning,    // copying segments
  kPaused,     // no new segments; resumes where it stopped
  kFlushing,   // every segment copied; waiting for the destination's flush to make them durable
  kCompleted,  // copied and flushed; the child is Online
  kStopped,    // stopped by the client or by removal; the child is Faulted (OutOfSync)
  kFailed,     // a source or destination error, or a step timeout; the child is Faulted
};
const char* rebuild_state_name(RebuildState s);

struct RebuildInfo {
  std::string child_uri, source_uri, state;
  bool partial = false;
  bool resync = false;  // a post-crash resync of an in-sync child, not a rebuild of a stale one
  uint64_t bytes_done = 0, bytes_total = 0, volume_bytes = 0;
  uint64_t segments_skipped = 0;  // unallocated on a thin source: zeroed, not copied
  double mib_per_s = 0;
  uint64_t start_ms = 0, end_ms = 0;  // wall clock (ms since epoch); end 0 while running
  std::string error;
};

struct ChildInfo {
  std::string uri, state, reason, last_error;
  uint64_t read_ops = 0, write_ops = 0, errors = 0;
  uint64_t missed_bytes = 0;  // written while away: what a partial rebuild will copy
  bool has_rebuild = false;
  RebuildInfo rebuild;
};

struct NexusInfoData {
  std::string uuid, state, health;  // health: online | degraded | faulted
  uint64_t size_bytes = 0;
  uint64_t generation = 0;
  bool opened_after_unclean_shutdown = false;
  std::string nqn, frontend_host_nqn;  // empty when not published
  std::vector<ChildInfo> children;
  IoStats stats;
};

// A child handed in by the control thread: an opened device or the reason it could not be.
struct OpenedChild {
  std::string uri;
  UuidBytes identity{};
  std::shared_ptr<Device> device;      // null when it could not be opened
  std::shared_ptr<FaultDevice> faults;  // the wrapper (also `device`), when fault injection is on
  std::string open_error;
  uint32_t max_io_bytes = 1u << 20;
  std::optional<Label> label;          // read at open
};

struct NexusOptions {
  std::string uuid;
  uint64_t size_bytes = 0;
  uint32_t child_io_timeout_ms = kChildIoTimeoutMsDefault;
  // Engine restart: the labels are the truth about the size. When the newest label records a
  // larger size than asked (the engine stopped after ResizeNexus wrote its label but before the
  // state file had the new size), the nexus opens with the label's size. Off for CreateNexus:
  // a nexus is not resized by re-creating it.
  bool size_from_label = false;
};

struct HostIo;  // a host request being split into parts (internal.h)

class Nexus : public std::enable_shared_from_this<Nexus> {
 public:
  using Done = std::function<void(Status)>;
  // Control thread hook: destroys a device off the reactor (an NVMe/TCP close joins threads).
  using RetireDevice = std::function<void(std::shared_ptr<Device>)>;

  // Control thread: decides each child's state from the labels (see the invariants) and builds
  // the nexus; it runs once attached. Fails, changing nothing on disk, when no child the newest
  // label lists as in sync could be opened.
  static Result<std::shared_ptr<Nexus>> open(const NexusOptions& options, std::vector<OpenedChild> children, RetireDevice retire);
  void attach(Reactor* reactor) { reactor_ = reactor; }
  Reactor& reactor() const { return *reactor_; }
  const std::string& uuid() const { return options_.uuid; }
  uint64_t size_bytes() const { return options_.size_bytes; }
  uint32_t child_io_timeout_ms() const { return options_.child_io_timeout_ms; }
  std::vector<std::string> child_uris() const;  // any thread: set at open and by add/remove on the reactor (copy under no lock: call on reactor)

  // Reactor thread.
  void start();  // starts rebuilds of out-of-sync children
  void io(IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer, Done done);
  NexusInfoData info() const;
  void set_published(std::string nqn, std::string frontend_host_nqn) { nqn_ = std::move(nqn); frontend_host_nqn_ = std::move(frontend_host_nqn); }

  // Grows the volume to `size_bytes` (a multiple of kSizeAlignmentBytes, not smaller). Every
  // Online and Rebuilding child must already hold the label region plus the new size (its
  // device's size, refreshed by the caller); otherwise nothing changes. Children out of the write
  // set that track what they missed get the grown range marked missed (their return copies it);
  // a running rebuild copies it too. Completes once the label recording the new size is durable.
  // Host I/O beyond the old size is accepted from the moment the size changes; its
  // acknowledgement waits for that label like every write's does.
  void grow(uint64_t size_bytes, Done done);
  // The open devices of the children that receive writes (Online, Rebuilding), by URI: the ones
  // whose size a grow must re-read first.
  std::vector<std::pair<std::string, std::shared_ptr<Device>>> write_set_devices() const;
  void add_child(OpenedChild child, Done done);
  void remove_child(const std::string& uri, Done done);
  void fault_child(const std::string& uri, Done done);
  // Online: step 1 drains the child and hands its old device out (to close and reopen on the
  // control thread); step 2 checks the reopened child's label and starts a rebuild: partial only
  // when the label proves it is the replica that left (this nexus, a generation no older than the
  // one it left in), full when it carries no label of this nexus (new, recreated), refused when
  // it carries another nexus's label.
  void prepare_online(const std::string& uri, std::function<void(Status)> done);
  void finish_online(OpenedChild reopened, Done done);

  Status rebuild_pause(const std::string& uri);
  Status rebuild_resume(const std::string& uri);
  Status rebuild_stop(const std::string& uri);
  void rebuild_start(const std::string& uri, Done done);  // a Faulted child with an open device
  Result<RebuildInfo> rebuild_stats(const std::string& uri) const;
  std::vector<RebuildInfo> rebuild_history() const { return {history_.begin(), history_.end()}; }

  Status inject_fault(const std::string& uri, FaultRule rule);
  Status clear_faults(const std::string& uri);
  // The device under a child (for a dropped-connection fault on an NVMe/TCP child).
  std::shared_ptr<Device> child_device(const std::string& uri) const;

  // Stops I/O and rebuilds, waits for in-flight work, writes clean labels, hands the devices to
  // `retire`. Idempotent.
  void shutdown(Done done);

 private:
  struct Child;
  struct Part;
  struct Rebuild;

  Nexus(NexusOptions options, RetireDevice retire) : options_(std::move(options)), retire_(std::move(retire)) {}

  Child* find_child(const std::string& uri) const;
  size_t online_count() const;
  // The one function that changes a child's state.
  void set_child_state(Child& c, ChildState next, ChildReason reason, const std::string& why);
  // An I/O on `c` failed with `error` (-errno) over [offset, +length): fault it, remember the range.
  void child_failed(Child& c, int error, uint64_t offset_bytes, uint64_t length_bytes, const char* what);
  void mark_missed(Child& c, uint64_t offset_bytes, uint64_t length_bytes);
  // A write over [offset, +length) completed on `c`: durable only after its next flush.
  void write_landed(Child& c, uint64_t offset_bytes, uint64_t length_bytes);
  // Every flush of a child goes through here, so what it has made durable is known.
  void flush_child(const std::shared_ptr<Child>& c, std::function<void(int)> done);
  // Once a second: children whose device was lost (an NVMe/TCP association that ended) leave the
  // write set at once, so refresh reports them and no read is served from them.
  void arm_health_check();

  // Host I/O.
  // Issues the host request's next parts, up to kPartsInFlightMax in flight; completes it when
  // none is left.
  void issue_parts(const std::shared_ptr<HostIo>& host);
  std::shared_ptr<Part> next_part(const std::shared_ptr<HostIo>& host);
  void host_done(HostIo& host);
  // Whether any segment the part covers is range-locked (it then waits in blocked_writes_).
  bool part_blocked(const std::shared_ptr<Part>& p);
  void start_part(std::shared_ptr<Part> p);
  void issue_write(std::shared_ptr<Part> p);
  void issue_read(std::shared_ptr<Part> p);
  void part_done(const std::shared_ptr<Part>& p, Status s);
  void write_part_finished(const std::shared_ptr<Part>& p);
  bool is_write_kind(IoKind k) const { return k != IoKind::kRead; }

  // Labels.
  void membership_changed();
  void write_label();
  void when_label_durable(std::function<void(bool ok)> then);
  Label make_label(bool clean) const;

  // Range locks (per segment index).
  // Returns a ticket; `locked` runs once the writes in flight there finished (maybe at once).
  uint64_t lock_segment(uint64_t segment, std::function<void()> locked);
  void unlock_segment(uint64_t segment);
  // Gives up a lock that was asked for with `ticket` but not yet granted (its callback never runs).
  void cancel_lock_wait(uint64_t segment, uint64_t ticket);
  void write_started(uint64_t segment);
  void write_finished(uint64_t segment);

  // Rebuild.
  void start_rebuild(Child& dst, bool partial, bool resync = false);
  // After an unclean shutdown: copy one in-sync child (the primary) onto the other in-sync
  // children, reading only from the primary meanwhile.
  void start_resync();
  void resync_finished();
  void rebuild_pump(std::shared_ptr<Rebuild> job);
  void rebuild_copy_run(const std::shared_ptr<Rebuild>& job, size_t run_index, size_t buffer_index);
  void rebuild_run_done(const std::shared_ptr<Rebuild>& job, size_t run_index, size_t buffer_index, int error, bool source_failed);
  void rebuild_finish(std::shared_ptr<Rebuild> job, RebuildState end, std::string error);
  // The one function that changes a rebuild's state; asserts the transition is legal.
  void set_rebuild_state(Rebuild& job, RebuildState next);
  void arm_watchdog();
  RebuildInfo rebuild_info(const Rebuild& job) const;

  void maybe_drained();
  static void release(Child& c);  // one I/O on `c` finished

  NexusOptions options_;
  RetireDevice retire_;
  Reactor* reactor_ = nullptr;
  NexusState state_ = NexusState::kOpen;
  std::vector<std::shared_ptr<Child>> children_;  // shared: completions of removed children still hold them
  size_t read_cursor_ = 0;
  bool opened_after_unclean_shutdown_ = false;
  bool resync_required_ = false;
  bool resync_restart_ = false;
  bool resync_dirty_ = false;  // a resync ended before an in-sync child had the primary's copy
  std::shared_ptr<Child> resync_primary_;  // set while a resync runs
  std::string nqn_, frontend_host_nqn_;
  IoStats stats_;

  // Labels: generation_ is the membership the nexus runs; durable_generation_ is the newest one
  // on disk. Writes are acknowledged only when they are equal.
  uint64_t generation_ = 0;
  uint64_t durable_generation_ = 0;
  uint64_t opened_generation_ = 0;  // the newest generation found at open
  bool label_writing_ = false;
  bool clean_label_ = false;  // the next label says clean shutdown (set once drained)
  std::vector<std::function<void(bool)>> label_waiters_;

  // Range locks and write tracking.
  std::unordered_map<uint64_t, uint32_t> segment_locks_;                      // segment -> lock holders
  std::unordered_map<uint64_t, uint32_t> segment_writes_;                     // segment -> writes in flight
  std::unordered_map<uint64_t, std::vector<std::pair<uint64_t, std::function<void()>>>> lock_waiters_;  // ticket, waiting for writes to drain
  uint64_t next_lock_ticket_ = 0;
  std::unordered_map<uint64_t, std::vector<std::shared_ptr<Part>>> blocked_writes_;  // waiting for unlock
  uint64_t write_epoch_ = 0;
  std::map<uint64_t, uint32_t> writes_by_epoch_;  // epoch -> writes in flight issued in it
  std::vector<std::pair<uint64_t, std::function<void()>>> epoch_waiters_;
  uint64_t host_inflight_ = 0;

  std::vector<std::shared_ptr<Rebuild>> rebuilds_;  // active (not finished) jobs
  std::deque<RebuildInfo> history_;
  bool watchdog_armed_ = false;
  bool health_armed_ = false;
  std::vector<Done> on_drained_;
};

// The identity of a child for labels: the replica uuid in replica:///<uuid> or in an NQN ending
// in :replica:<uuid>; otherwise a hash-derived stable id of the URI.
UuidBytes child_identity(const std::string& uri);

}  // namespace strata::nexus
