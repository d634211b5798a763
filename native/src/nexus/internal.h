// Internals of the nexus shared by its implementation files (nexus.cc: I/O, child states,
// labels, membership; rebuild.cc: rebuild and resync). Not for use outside native/src/nexus/.
#pragma once
#include <chrono>
#include <cerrno>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "nexus/nexus.h"

namespace strata::nexus {

inline uint64_t steady_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
inline uint64_t steady_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
inline uint64_t wall_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// A child reached without the network (a replica on this node): the preferred source.
inline bool is_local(const std::shared_ptr<Device>& d) { return !d->is_remote(); }


struct Nexus::Child {
  std::string uri;
  UuidBytes identity{};
  std::shared_ptr<Device> device;  // null while closed (Offline, or being reopened)
  std::shared_ptr<FaultDevice> faults;
  uint32_t max_io_bytes = 1u << 20;
  ChildState state = ChildState::kOffline;
  ChildReason reason = ChildReason::kNone;
  std::string last_error;
  // Dirty units written while the child was away. Meaningful only when `tracking`: otherwise
  // what it missed is unknown and only a full rebuild brings it back.
  bool tracking = false;
  std::vector<bool> missed;
  // While tracking: the label generation the child must still carry for a partial rebuild to be
  // trusted (the newest durable one when it left). A replica that comes back with an older
  // label (rolled back) or none (recreated) is rebuilt in full.
  uint64_t label_floor = 0;
  // While in the write set: units it acknowledged since its last completed flush.
  UnflushedUnits unflushed;
  uint64_t inflight = 0;
  std::vector<std::function<void()>> on_idle;
  uint64_t read_ops = 0, write_ops = 0, errors = 0;
  std::shared_ptr<Rebuild> rebuild;  // the active job copying into this child
  bool reopening = false;
  bool resync_incomplete = false;  // its post-crash resync did not finish: it may differ anywhere
};

// A host request, split into parts issued a few at a time (kPartsInFlightMax): a 1 TiB
// deallocate from mkfs must not become a million child commands at once.
struct HostIo {
  IoKind kind;
  uint64_t offset_bytes = 0, length_bytes = 0;
  uint8_t* buffer = nullptr;
  uint64_t start_us = 0;
  uint64_t next_offset_bytes = 0;  // where the next part starts
  uint64_t max_part_bytes = 0;     // reads and writes: the smallest child transfer limit
  uint32_t parts_inflight = 0;
  bool issuing = false;  // inside issue_parts: a part that completes at once only counts down
  bool flush_issued = false;
  std::optional<Status> first_error;
  Nexus::Done done;
};

struct Nexus::Part {
  std::shared_ptr<HostIo> host;
  IoKind kind;
  uint64_t offset_bytes = 0, length_bytes = 0;
  uint8_t* data = nullptr;
  uint64_t segment = UINT64_MAX;  // first segment covered; UINT64_MAX: takes no range lock (flush)
  uint64_t segment_count = 0;     // segments covered (one for reads and writes; zeroing parts span several)
  uint32_t pending = 0;
  uint64_t epoch = 0;
  bool counted_write = false;
  int error = 0;
  bool no_space = false;
  std::vector<std::shared_ptr<Child>> succeeded;
  std::vector<Child*> tried;  // reads: children already asked
};

struct Nexus::Rebuild {
  struct Run {
    uint64_t offset_bytes, length_bytes;
    bool zero = false;     // unallocated on the source: zero the destination instead of copying
    bool done = false;
    bool inflight = false;
    bool locked = false;
    uint64_t lock_ticket = 0;
    uint64_t started_ms = 0;
  };
  std::shared_ptr<Child> dst, src;
  RebuildState state = RebuildState::kWaiting;
  bool partial = false;
  // A resync after an unclean shutdown: dst stays Online (it holds every acknowledged write) and
  // gets the primary's copy of everything, so writes cut short by the crash read the same on
  // every child.
  bool resync = false;
  bool finished = false;
  std::vector<Run> runs;
  size_t next_run = 0;
  uint32_t inflight = 0;
  std::vector<AlignedBuffer> buffers;
  std::vector<bool> buffer_busy;
  // Segments written since the child joined: the allocation map was read earlier, so a run it
  // calls unallocated is copied anyway once a write has touched its segment.
  std::unordered_set<uint64_t> written_segments;
  uint64_t bytes_done = 0, bytes_total = 0, segments_skipped = 0;
  uint64_t start_ms = 0, end_ms = 0, start_us = 0, end_us = 0;
  std::string error;
};

}  // namespace strata::nexus
