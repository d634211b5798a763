#include "nexus/nexus.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <unordered_set>

#include "nexus/internal.h"
#include "util/crc32c.h"
#include "util/log.h"

namespace strata::nexus {
namespace {

ChildReason reason_of_errno(int error) {
  if (error == -ETIMEDOUT) return ChildReason::kTimedOut;
  if (error == -ENOSPC) return ChildReason::kNoSpace;
  return ChildReason::kIoFailure;
}

}  // namespace

const char* child_state_name(ChildState s) {
  switch (s) {
    case ChildState::kOnline: return "online";
    case ChildState::kRebuilding: return "rebuilding";
    case ChildState::kFaulted: return "faulted";
    case ChildState::kOffline: return "offline";
  }
  return "unknown";
}

const char* child_reason_name(ChildReason r) {
  switch (r) {
    case ChildReason::kNone: return "none";
    case ChildReason::kIoFailure: return "io_failure";
    case ChildReason::kTimedOut: return "timed_out";
    case ChildReason::kCannotOpen: return "cannot_open";
    case ChildReason::kNoSpace: return "no_space";
    case ChildReason::kRebuildFailed: return "rebuild_failed";
    case ChildReason::kByClient: return "by_client";
    case ChildReason::kOutOfSync: return "out_of_sync";
  }
  return "unknown";
}

const char* nexus_state_name(NexusState s) {
  switch (s) {
    case NexusState::kOpen: return "open";
    case NexusState::kShuttingDown: return "shutting_down";
    case NexusState::kShutdown: return "shutdown";
  }
  return "unknown";
}

const char* rebuild_state_name(RebuildState s) {
  switch (s) {
    case RebuildState::kWaiting: return "waiting";
    case RebuildState::kRunning: return "running";
    case RebuildState::kPaused: return "paused";
    case RebuildState::kFlushing: return "flushing";
    case RebuildState::kCompleted: return "completed";
    case RebuildState::kStopped: return "stopped";
    case RebuildState::kFailed: return "failed";
  }
  return "unknown";
}

UuidBytes child_identity(const std::string& uri) {
  std::string tail;
  if (uri.rfind("replica:///", 0) == 0) {
    tail = uri.substr(11);
  } else if (auto at = uri.find(":replica:"); at != std::string::npos) {
    tail = uri.substr(at + 9);
    if (auto q = tail.find('?'); q != std::string::npos) tail = tail.substr(0, q);
  }
  if (auto id = parse_uuid(tail)) return *id;
  // Not a Strata replica: a stable id from the URI (without query), marked as such in byte 6.
  std::string base = uri.substr(0, uri.find('?'));
  UuidBytes id{};
  for (int i = 0; i < 4; i++) {
    uint32_t c = crc32c(static_cast<uint32_t>(i * 0x9e3779b9u), base.data(), base.size());
    std::memcpy(id.data() + 4 * i, &c, 4);
  }
  id[6] = static_cast<uint8_t>((id[6] & 0x0f) | 0x80);
  return id;
}

// ---- child I/O accounting ------------------------------------------------------------------

// One I/O on a child finished: wake whoever waits for the child to go idle (online, remove,
// shutdown), after the caller has finished its own bookkeeping.
void Nexus::release(Child& c) {
  assert(c.inflight > 0);
  if (--c.inflight > 0 || c.on_idle.empty()) return;
  auto callbacks = std::move(c.on_idle);
  c.on_idle.clear();
  for (auto& cb : callbacks) cb();
}

// ---- open -----------------------------------------------------------------------------------

Result<std::shared_ptr<Nexus>> Nexus::open(const NexusOptions& options, std::vector<OpenedChild> opened, RetireDevice retire) {
  auto uuid_bytes = parse_uuid(options.uuid);
  assert(uuid_bytes);
  // The newest label of this nexus decides who is in sync; a label of another nexus means the
  // replica belongs to someone else and we must not write into it.
  const Label* newest = nullptr;
  for (const OpenedChild& c : opened) {
    if (!c.label) continue;
    if (c.label->nexus_uuid != *uuid_bytes) {
      return Error{ErrorCode::kFailedPrecondition, str("child ", c.uri, " carries the label of nexus ", format_uuid(c.label->nexus_uuid),
                                                       " (generation ", c.label->generation, "); it belongs to that nexus: remove it there or use another replica")};
    }
    if (newest == nullptr || c.label->generation > newest->generation) newest = &*c.label;
  }
  // The newest label records the volume's size (ResizeNexus only grows it, and writes it to
  // every child it keeps). Older labels may record a smaller size: written before a grow.
  NexusOptions sized = options;
  if (newest && newest->size_bytes != options.size_bytes) {
    if (!options.size_from_label || newest->size_bytes < options.size_bytes) {
      return Error{ErrorCode::kFailedPrecondition, str("child ", [&] {
                     for (const OpenedChild& c : opened) {
                       if (c.label && &*c.label == newest) return c.uri;
                     }
                     return std::string();
                   }(), " was labelled for a ", newest->size_bytes, "-byte nexus; this nexus asks for ", options.size_bytes,
                                                       " bytes (a nexus cannot be resized by re-creating it; ResizeNexus grows it)")};
    }
    // Restart after a grow whose label is durable but whose new size did not reach the engine's
    // state file: the label wins. Every opened child must hold it.
    sized.size_bytes = newest->size_bytes;
    for (const OpenedChild& c : opened) {
      if (c.device && c.device->size_bytes() < sized.size_bytes + kLabelRegionBytes) {
        return Error{ErrorCode::kFailedPrecondition, str("child ", c.uri, " has ", c.device->size_bytes(), " bytes; the ", sized.size_bytes,
                                                         "-byte nexus its labels record needs ", sized.size_bytes + kLabelRegionBytes)};
      }
    }
    log_line(str("nexus ", options.uuid, ": its labels record ", sized.size_bytes, " bytes (grown), not ", options.size_bytes, ": opening with ", sized.size_bytes));
  }
  auto in_newest_sync = [&](const UuidBytes& id) {
    return newest == nullptr || std::find(newest->in_sync.begin(), newest->in_sync.end(), id) != newest->in_sync.end();
  };
  // An opened child is trusted only by its own label: the newest label naming its uuid is not
  // enough, since a replica destroyed and recreated under the same uuid (or restored from an old
  // copy) is named too. Every in-sync child received label N-1 (a generation is acknowledged
  // only once written to all of them; a failed write faults the child and names a newer
  // membership), and N itself unless the crash cut that write short.
  auto label_proves_sync = [&](const OpenedChild& c) {
    if (newest == nullptr) return true;  // a fresh nexus: nobody carries a label yet
    return c.label && c.label->generation + 1 >= newest->generation;
  };
  std::vector<std::string> in_sync_missing;
  size_t online = 0;
  for (const OpenedChild& c : opened) {
    if (c.device && in_newest_sync(c.identity) && label_proves_sync(c)) online++;
    else if (!c.device && in_newest_sync(c.identity)) in_sync_missing.push_back(str(c.uri, " (", c.open_error, ")"));
  }
  if (online == 0) {
    std::string why = newest ? str("none of the children that label generation ", newest->generation, " lists as in sync could be opened")
                             : std::string("no child could be opened");
    std::string list;
    for (auto& m : in_sync_missing) list += (list.empty() ? "" : "; ") + m;
    return Error{ErrorCode::kFailedPrecondition, str("cannot create nexus ", options.uuid, ": ", why, list.empty() ? "" : ": ", list,
                                                     ". Nothing was written; bring an in-sync child back and retry")};
  }

  uint64_t found_generation = newest ? newest->generation : 0;
  if (!newest) {
    // A fresh nexus claims its replicas at once (generation 1, clean: nothing written yet), so
    // no other nexus can take them before the first write.
    Label first;
    first.nexus_uuid = *uuid_bytes;
    first.generation = 1;
    first.size_bytes = sized.size_bytes;
    first.clean_shutdown = true;
    for (OpenedChild& c : opened) {
      first.members.push_back(c.identity);
      if (c.device) first.in_sync.push_back(c.identity);
    }
    AlignedBuffer slot(kLabelSlotBytes);
    encode_label(first, slot.data());
    size_t claimed = 0;
    for (OpenedChild& c : opened) {
      if (!c.device) continue;
      if (Status s = c.device->write_sync(label_slot_offset(1), kLabelSlotBytes, slot.data()); !s.ok()) {
        c.open_error = str("writing its label failed: ", s.error().message);
        c.device.reset();
        c.faults.reset();
        continue;
      }
      claimed++;
    }
    if (claimed == 0) return Error{ErrorCode::kIoError, str("cannot create nexus ", options.uuid, ": no child took its label")};
    found_generation = 1;
  }

  auto nexus = std::shared_ptr<Nexus>(new Nexus(sized, std::move(retire)));
  nexus->durable_generation_ = found_generation;
  nexus->opened_generation_ = nexus->durable_generation_;
  // The new membership is written lazily, before the first write is acknowledged: a nexus that
  // is created and destroyed without writes leaves every label as it was.
  nexus->generation_ = nexus->durable_generation_ + 1;
  nexus->opened_after_unclean_shutdown_ = newest != nullptr && !newest->clean_shutdown;
  nexus->resync_required_ = nexus->opened_after_unclean_shutdown_;
  for (OpenedChild& oc : opened) {
    auto c = std::make_shared<Child>();
    c->uri = oc.uri;
    c->identity = oc.identity;
    c->device = oc.device;
    c->faults = oc.faults;
    c->max_io_bytes = oc.max_io_bytes;
    const bool in_sync = in_newest_sync(oc.identity);
    if (oc.device && in_sync && !label_proves_sync(oc)) {
      c->state = ChildState::kFaulted;
      c->reason = ChildReason::kOutOfSync;
      c->last_error = oc.label ? str("its label generation ", oc.label->generation, " is older than the newest, ", newest->generation, " (a rolled-back replica)")
                               : std::string("it carries no label of this nexus (a new or recreated replica)");
    } else if (!oc.device) {
      c->state = ChildState::kOffline;
      c->reason = ChildReason::kCannotOpen;
      c->last_error = oc.open_error;
      // In sync until now: from here on we know exactly what it misses, so its return needs
      // only a partial rebuild — unless the nexus stopped uncleanly: writes in flight at the
      // crash may differ on it, and it cannot take part in the resync, so it returns in full.
      c->tracking = in_sync && !nexus->opened_after_unclean_shutdown_;
      c->label_floor = found_generation;
    } else if (in_sync) {
      c->state = ChildState::kOnline;
    } else {
      c->state = ChildState::kFaulted;
      c->reason = ChildReason::kOutOfSync;
      c->last_error = str("label generation ", newest->generation, " does not list it as in sync");
    }
    if (c->tracking) c->missed.assign((sized.size_bytes + kDirtyUnitBytes - 1) / kDirtyUnitBytes, false);
    nexus->children_.push_back(std::move(c));
  }
  return nexus;
}

std::vector<std::string> Nexus::child_uris() const {
  std::vector<std::string> out;
  for (auto& c : children_) out.push_back(c->uri);
  return out;
}

void Nexus::start() {
  arm_health_check();
  if (resync_required_) start_resync();
  for (auto& c : children_) {
    if (c->state == ChildState::kFaulted && c->reason == ChildReason::kOutOfSync && c->device) start_rebuild(*c, false);
  }
}

// ---- child state ----------------------------------------------------------------------------

Nexus::Child* Nexus::find_child(const std::string& uri) const {
  for (auto& c : children_) {
    if (c->uri == uri) return c.get();
  }
  return nullptr;
}

size_t Nexus::online_count() const {
  size_t n = 0;
  for (auto& c : children_) n += c->state == ChildState::kOnline ? 1 : 0;
  return n;
}

void Nexus::set_child_state(Child& c, ChildState next, ChildReason reason, const std::string& why) {
  const ChildState prev = c.state;
  const bool leaving_write_set = (prev == ChildState::kOnline || prev == ChildState::kRebuilding) &&
                                 (next == ChildState::kFaulted || next == ChildState::kOffline);
  assert(!(prev == ChildState::kOffline && next == ChildState::kOnline));  // only a rebuild brings a child back
  assert(!(prev == ChildState::kFaulted && next == ChildState::kOnline));
  assert(next != ChildState::kRebuilding || c.device);
  if (leaving_write_set && (c.resync_incomplete || c.unflushed.overflowed())) {
    c.tracking = false;  // what it differs in is unknown: a full rebuild when it returns
    c.missed.clear();
  } else if (leaving_write_set) {
    if (!c.tracking) {
      // From now on every write it does not get is recorded. A child that was Rebuilding gets
      // the uncopied part of its rebuild added by rebuild_finish.
      c.tracking = true;
      c.missed.assign((options_.size_bytes + kDirtyUnitBytes - 1) / kDirtyUnitBytes, false);
      c.label_floor = durable_generation_;
    }
    // What it acknowledged but never flushed may be lost with its node's power: copy it back too.
    c.unflushed.for_each([&c](uint64_t u) {
      if (u < c.missed.size()) c.missed[u] = true;
    });
  }
  if (leaving_write_set) c.unflushed.clear();
  if (next == ChildState::kOnline) {
    c.tracking = false;
    c.missed.clear();
    c.resync_incomplete = false;  // only a full copy brings a child back Online
  }
  c.state = next;
  c.reason = next == ChildState::kOnline ? ChildReason::kNone : reason;
  if (!why.empty()) c.last_error = why;
  log_line(str("nexus ", options_.uuid, ": child ", c.uri, " ", child_state_name(prev), " -> ", child_state_name(next), " (",
               child_reason_name(c.reason), why.empty() ? "" : ": ", why, ")"));
}

void Nexus::mark_missed(Child& c, uint64_t offset_bytes, uint64_t length_bytes) {
  if (!c.tracking || length_bytes == 0) return;
  const uint64_t first = offset_bytes / kDirtyUnitBytes, last = (offset_bytes + length_bytes - 1) / kDirtyUnitBytes;
  for (uint64_t u = first; u <= last && u < c.missed.size(); u++) c.missed[u] = true;
}

void Nexus::write_landed(Child& c, uint64_t offset_bytes, uint64_t length_bytes) {
  if (length_bytes == 0) return;
  if (c.state != ChildState::kOnline && c.state != ChildState::kRebuilding) return mark_missed(c, offset_bytes, length_bytes);  // left meanwhile: never flushed
  const uint64_t first = offset_bytes / kDirtyUnitBytes, last = (offset_bytes + length_bytes - 1) / kDirtyUnitBytes;
  for (uint64_t u = first; u <= last; u++) c.unflushed.written(u);
}

void Nexus::flush_child(const std::shared_ptr<Child>& c, std::function<void(int)> done) {
  const uint64_t ticket = c->unflushed.flush_started();
  c->device->flush(*reactor_, [c, ticket, done = std::move(done)](int res) {
    // Tickets keep counting across leaving and rejoining, so a late flush of an earlier stay
    // never clears writes made since.
    if (res >= 0) c->unflushed.flush_completed(ticket);
    done(res);
  });
}

void Nexus::child_failed(Child& c, int error, uint64_t offset_bytes, uint64_t length_bytes, const char* what) {
  c.errors++;
  if (c.state == ChildState::kFaulted || c.state == ChildState::kOffline) {
    mark_missed(c, offset_bytes, length_bytes);
    return;
  }
  std::string why = str(what, " failed: ", error == -ETIMEDOUT ? "timed out" : error == -ENOTCONN ? "connection lost" : std::strerror(-error));
  // The last Online child is never faulted by a full pool or a read error: the data on it is
  // intact and the only copy. The I/O fails (Capacity Exceeded for ENOSPC) and the volume keeps
  // serving; freeing space (GrowPool, a deleted replica) makes writes succeed again by itself.
  if (c.state == ChildState::kOnline && online_count() == 1 && (error == -ENOSPC || std::string_view(what) == "read")) {
    c.last_error = why;
    return;
  }
  const bool was_online = c.state == ChildState::kOnline;
  set_child_state(c, ChildState::kFaulted, reason_of_errno(error), why);
  if (c.rebuild) rebuild_finish(c.rebuild, RebuildState::kFailed, str("destination ", c.uri, " ", why));
  mark_missed(c, offset_bytes, length_bytes);
  // Rebuilds reading from it cannot go on.
  for (auto job : std::vector<std::shared_ptr<Rebuild>>(rebuilds_)) {
    if (job->src.get() == &c) rebuild_finish(job, RebuildState::kFailed, str("source ", c.uri, " ", why));
  }
  if (was_online) membership_changed();
}

// ---- host I/O -------------------------------------------------------------------------------

void Nexus::io(IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer, Done done) {
  if (state_ != NexusState::kOpen) {
    stats_.errors++;
    return done(Status(ErrorCode::kFailedPrecondition, str("nexus ", options_.uuid, " is ", nexus_state_name(state_))));
  }
  if (kind != IoKind::kFlush) {
    if (offset_bytes % 512 != 0 || length_bytes % 512 != 0 || length_bytes == 0) {
      stats_.errors++;
      return done(Status(ErrorCode::kInvalidArgument, str("nexus I/O offset ", offset_bytes, " and length ", length_bytes, " must be non-zero multiples of 512")));
    }
    if (offset_bytes > options_.size_bytes || length_bytes > options_.size_bytes - offset_bytes) {
      stats_.errors++;
      return done(Status(ErrorCode::kOutOfRange, str("nexus I/O [", offset_bytes, ", +", length_bytes, ") is beyond its ", options_.size_bytes, " bytes")));
    }
  }
  auto host = std::make_shared<HostIo>();
  host->kind = kind;
  host->offset_bytes = offset_bytes;
  host->length_bytes = length_bytes;
  host->buffer = buffer;
  host->next_offset_bytes = offset_bytes;
  host->start_us = steady_us();
  host->done = std::move(done);
  host_inflight_++;
  // Reads and writes: parts at segment boundaries (range locks) and at the smallest child
  // transfer limit. Zeroing parts span segments up to kZeroingPartBytes of child space.
  host->max_part_bytes = kSegmentBytes;
  if (kind == IoKind::kRead || kind == IoKind::kWrite) {
    for (auto& c : children_) {
      if (c->device && (c->state == ChildState::kOnline || c->state == ChildState::kRebuilding)) host->max_part_bytes = std::min<uint64_t>(host->max_part_bytes, c->max_io_bytes);
    }
  }
  issue_parts(host);
}

std::shared_ptr<Nexus::Part> Nexus::next_part(const std::shared_ptr<HostIo>& host) {
  auto p = std::make_shared<Part>();
  p->host = host;
  p->kind = host->kind;
  if (host->kind == IoKind::kFlush) {
    host->flush_issued = true;
    return p;
  }
  const uint64_t off = host->next_offset_bytes, host_end = host->offset_bytes + host->length_bytes;
  uint64_t end;
  if (host->kind == IoKind::kDeallocate || host->kind == IoKind::kWriteZeroes) {
    const uint64_t child_off = off + kLabelRegionBytes;
    end = std::min(host_end, (child_off / kZeroingPartBytes + 1) * kZeroingPartBytes - kLabelRegionBytes);
  } else {
    const uint64_t seg_end = (off / kSegmentBytes + 1) * kSegmentBytes;
    const uint64_t limit_end = off - off % host->max_part_bytes + host->max_part_bytes;
    end = std::min({host_end, seg_end, limit_end});
  }
  p->offset_bytes = off;
  p->length_bytes = end - off;
  p->data = host->buffer ? host->buffer + (off - host->offset_bytes) : nullptr;
  p->segment = off / kSegmentBytes;
  p->segment_count = (end - 1) / kSegmentBytes - p->segment + 1;
  assert(p->kind != IoKind::kRead && p->kind != IoKind::kWrite ? true : p->segment_count == 1);
  host->next_offset_bytes = end;
  return p;
}

void Nexus::issue_parts(const std::shared_ptr<HostIo>& host) {
  if (host->issuing) return;  // the loop below picks up where a synchronous completion left off
  host->issuing = true;
  auto more = [&] {
    if (host->first_error) return false;  // a part failed: the request fails, issue nothing more
    if (host->kind == IoKind::kFlush) return !host->flush_issued;
    return host->next_offset_bytes < host->offset_bytes + host->length_bytes;
  };
  while (host->parts_inflight < kPartsInFlightMax && more()) {
    host->parts_inflight++;
    start_part(next_part(host));
  }
  host->issuing = false;
  if (host->parts_inflight == 0 && !more()) host_done(*host);
}

bool Nexus::part_blocked(const std::shared_ptr<Part>& p) {
  if (p->segment == UINT64_MAX) return false;
  for (uint64_t seg = p->segment; seg < p->segment + p->segment_count; seg++) {
    auto lock = segment_locks_.find(seg);
    if (lock != segment_locks_.end() && lock->second > 0) {
      blocked_writes_[seg].push_back(p);  // unlock_segment starts it again, and it re-checks
      return true;
    }
  }
  return false;
}

void Nexus::start_part(std::shared_ptr<Part> p) {
  if (p->kind == IoKind::kRead) return issue_read(std::move(p));
  if (part_blocked(p)) return;
  issue_write(std::move(p));
}

void Nexus::issue_read(std::shared_ptr<Part> p) {
  // Round robin over Online children not yet tried for this part; during a resync only the
  // primary, whose copy the others are being given.
  std::shared_ptr<Child> pick;
  const size_t n = children_.size();
  if (resync_primary_ && resync_primary_->state == ChildState::kOnline && resync_primary_->device &&
      std::find(p->tried.begin(), p->tried.end(), resync_primary_.get()) == p->tried.end()) {
    pick = resync_primary_;
  }
  for (size_t i = 0; i < n && !pick && !resync_primary_; i++) {
    auto& c = children_[(read_cursor_ + i) % n];
    if (c->state != ChildState::kOnline || !c->device) continue;
    if (std::find(p->tried.begin(), p->tried.end(), c.get()) != p->tried.end()) continue;
    pick = c;
    read_cursor_ = (read_cursor_ + i + 1) % n;
  }
  if (!pick) {
    return part_done(p, Status(ErrorCode::kIoError, p->tried.empty() ? str("nexus ", options_.uuid, " has no healthy child to read from")
                                                                      : str("read [", p->offset_bytes, ", +", p->length_bytes, ") failed on every healthy child")));
  }
  p->tried.push_back(pick.get());
  pick->inflight++;
  pick->read_ops++;
  auto self = shared_from_this();
  pick->device->read(*reactor_, p->offset_bytes + kLabelRegionBytes, static_cast<uint32_t>(p->length_bytes), p->data, [self, p, pick](int res) {
    if (res < 0) {
      self->child_failed(*pick, res, p->offset_bytes, p->length_bytes, "read");
      self->issue_read(p);  // a read error is retried on another child
    } else {
      self->part_done(p, Status());
    }
    release(*pick);
  });
}

void Nexus::write_started(uint64_t segment) {
  if (segment != UINT64_MAX) segment_writes_[segment]++;
}

void Nexus::write_finished(uint64_t segment) {
  if (segment == UINT64_MAX) return;
  auto it = segment_writes_.find(segment);
  assert(it != segment_writes_.end() && it->second > 0);
  if (--it->second > 0) return;
  segment_writes_.erase(it);
  auto w = lock_waiters_.find(segment);
  if (w == lock_waiters_.end()) return;
  auto cbs = std::move(w->second);
  lock_waiters_.erase(w);
  for (auto& [ticket, cb] : cbs) cb();
}

void Nexus::issue_write(std::shared_ptr<Part> p) {
  std::vector<std::shared_ptr<Child>> targets;
  bool any_online = false;
  for (auto& c : children_) {
    if ((c->state == ChildState::kOnline || c->state == ChildState::kRebuilding) && c->device) {
      targets.push_back(c);
      any_online = any_online || c->state == ChildState::kOnline;
    } else {
      mark_missed(*c, p->offset_bytes, p->length_bytes);
    }
  }
  if (!any_online) {
    return part_done(p, Status(ErrorCode::kIoError, str("nexus ", options_.uuid, " has no healthy child: the write was not done")));
  }
  for (uint64_t seg = p->segment; p->segment != UINT64_MAX && seg < p->segment + p->segment_count; seg++) {
    write_started(seg);
    for (auto& job : rebuilds_) job->written_segments.insert(seg);
  }
  p->counted_write = true;
  p->epoch = write_epoch_;
  writes_by_epoch_[p->epoch]++;
  p->pending = static_cast<uint32_t>(targets.size());
  auto self = shared_from_this();
  for (auto& c : targets) {
    c->inflight++;
    c->write_ops++;
    auto cb = [self, p, c](int res) {
      if (res < 0) {
        self->child_failed(*c, res, p->offset_bytes, p->length_bytes, p->kind == IoKind::kFlush ? "flush" : "write");
        if (res == -ENOSPC) p->no_space = true;
        if (p->error == 0) p->error = res;
      } else {
        if (p->kind != IoKind::kFlush) self->write_landed(*c, p->offset_bytes, p->length_bytes);
        p->succeeded.push_back(c);
      }
      if (--p->pending == 0) self->write_part_finished(p);
      release(*c);
    };
    const uint64_t off = p->offset_bytes + kLabelRegionBytes;
    switch (p->kind) {
      case IoKind::kWrite: c->device->write(*reactor_, off, static_cast<uint32_t>(p->length_bytes), p->data, cb); break;
      case IoKind::kFlush: flush_child(c, cb); break;
      // Every child must read zeros afterwards, whatever deallocate means on its device.
      case IoKind::kDeallocate:
      case IoKind::kWriteZeroes: c->device->write_zeroes(*reactor_, off, p->length_bytes, cb); break;
      case IoKind::kRead: assert(false); break;
    }
  }
}

void Nexus::write_part_finished(const std::shared_ptr<Part>& p) {
  for (uint64_t seg = p->segment; p->segment != UINT64_MAX && seg < p->segment + p->segment_count; seg++) write_finished(seg);
  if (p->counted_write) {
    auto it = writes_by_epoch_.find(p->epoch);
    if (--it->second == 0) writes_by_epoch_.erase(it);
    const uint64_t oldest = writes_by_epoch_.empty() ? UINT64_MAX : writes_by_epoch_.begin()->first;
    std::vector<std::function<void()>> ready;
    std::erase_if(epoch_waiters_, [&](auto& w) {
      if (w.first > oldest) return false;
      ready.push_back(std::move(w.second));
      return true;
    });
    for (auto& r : ready) r();
  }
  bool healthy_ok = false;
  for (auto& c : p->succeeded) healthy_ok = healthy_ok || c->state == ChildState::kOnline;
  if (!healthy_ok) {
    if (p->no_space) return part_done(p, Status(ErrorCode::kNoSpace, str("nexus ", options_.uuid, ": no healthy child has space left for the write")));
    return part_done(p, Status(ErrorCode::kIoError, str("nexus ", options_.uuid, ": the write failed on every healthy child (", std::strerror(-p->error), ")")));
  }
  auto self = shared_from_this();
  when_label_durable([self, p](bool ok) {
    self->part_done(p, ok ? Status() : Status(ErrorCode::kIoError, str("nexus ", self->options_.uuid, ": the membership label could not be written to any healthy child")));
  });
}

void Nexus::part_done(const std::shared_ptr<Part>& p, Status s) {
  auto host = p->host;
  if (!s.ok() && !host->first_error) host->first_error = s;
  assert(host->parts_inflight > 0);
  host->parts_inflight--;
  if (host->issuing) return;  // issue_parts is on the stack and carries on
  issue_parts(host);
}

void Nexus::host_done(HostIo& h) {
  const Status result = h.first_error ? *h.first_error : Status();
  if (!result.ok()) stats_.errors++;
  switch (h.kind) {
    case IoKind::kRead: stats_.read_ops++; stats_.read_bytes += h.length_bytes; break;
    case IoKind::kWrite: stats_.write_ops++; stats_.write_bytes += h.length_bytes; break;
    case IoKind::kFlush: stats_.flush_ops++; break;
    case IoKind::kDeallocate:
    case IoKind::kWriteZeroes: stats_.unmap_ops++; break;
  }
  stats_.record_latency(steady_us() - h.start_us);
  auto done = std::move(h.done);
  h.done = nullptr;
  host_inflight_--;
  done(result);
  maybe_drained();
}

// ---- labels ---------------------------------------------------------------------------------

Label Nexus::make_label(bool clean) const {
  Label l;
  l.nexus_uuid = parse_uuid(options_.uuid).value();
  l.generation = generation_;
  l.size_bytes = options_.size_bytes;
  l.clean_shutdown = clean;
  for (auto& c : children_) {
    if (l.members.size() >= kLabelMaxChildren) break;
    l.members.push_back(c->identity);
    if (c->state == ChildState::kOnline) l.in_sync.push_back(c->identity);
  }
  return l;
}

void Nexus::membership_changed() {
  generation_++;
  if (!label_writing_) write_label();
}

void Nexus::when_label_durable(std::function<void(bool)> then) {
  if (durable_generation_ == generation_ && !label_writing_) return then(true);
  label_waiters_.push_back(std::move(then));
  if (!label_writing_) write_label();
}

void Nexus::write_label() {
  assert(!label_writing_);
  if (online_count() == 0) {
    // Never write a label with nobody in sync: the last one keeps pointing at the best data.
    auto waiters = std::move(label_waiters_);
    label_waiters_.clear();
    for (auto& w : waiters) w(false);
    return;
  }
  label_writing_ = true;
  const uint64_t gen = generation_;
  auto buffer = std::make_shared<AlignedBuffer>(kLabelSlotBytes);
  encode_label(make_label(clean_label_), buffer->data());
  // Every child whose device still works gets the label, out-of-sync ones included: a child
  // faulted by the client (or left behind by a stopped rebuild) must learn that it is stale, or a
  // later create that cannot reach the in-sync children would trust its old label. A failure on
  // such a child changes nothing (child_failed only records it).
  std::vector<std::shared_ptr<Child>> targets;
  for (auto& c : children_) {
    if (!c->device) continue;
    const bool writing = c->state == ChildState::kOnline || c->state == ChildState::kRebuilding;
    const bool device_ok = c->reason == ChildReason::kByClient || c->reason == ChildReason::kOutOfSync ||
                           c->reason == ChildReason::kRebuildFailed || c->reason == ChildReason::kNoSpace;
    if (writing || device_ok) targets.push_back(c);
  }
  auto pending = std::make_shared<size_t>(targets.size());
  auto self = shared_from_this();
  auto one_done = [self, gen, pending]() {
    if (--*pending > 0) return;
    self->label_writing_ = false;
    self->durable_generation_ = std::max(self->durable_generation_, gen);
    if (self->generation_ != self->durable_generation_) return self->write_label();  // changed meanwhile: again
    auto waiters = std::move(self->label_waiters_);
    self->label_waiters_.clear();
    for (auto& w : waiters) w(true);
    self->maybe_drained();
  };
  for (auto& c : targets) {
    c->inflight++;
    c->device->write(*reactor_, label_slot_offset(gen), kLabelSlotBytes, buffer->data(), [self, c, buffer, one_done](int res) {
      if (res < 0) {
        self->child_failed(*c, res, 0, 0, "label write");
        one_done();
        return release(*c);
      }
      self->flush_child(c, [self, c, one_done](int res2) {
        if (res2 < 0) self->child_failed(*c, res2, 0, 0, "label flush");
        one_done();
        release(*c);
      });
    });
  }
}

// ---- range locks ----------------------------------------------------------------------------

uint64_t Nexus::lock_segment(uint64_t segment, std::function<void()> locked) {
  // Counted before it is granted: new host writes to the segment wait from now on, so the
  // writes already in flight there drain and the lock is granted.
  segment_locks_[segment]++;
  const uint64_t ticket = ++next_lock_ticket_;
  auto w = segment_writes_.find(segment);
  if (w == segment_writes_.end() || w->second == 0) {
    locked();
    return ticket;
  }
  lock_waiters_[segment].push_back({ticket, std::move(locked)});
  return ticket;
}

void Nexus::cancel_lock_wait(uint64_t segment, uint64_t ticket) {
  auto w = lock_waiters_.find(segment);
  if (w == lock_waiters_.end()) return;
  const size_t before = w->second.size();
  std::erase_if(w->second, [ticket](const auto& waiter) { return waiter.first == ticket; });
  if (w->second.size() == before) return;  // already granted
  if (w->second.empty()) lock_waiters_.erase(w);
  unlock_segment(segment);  // it was counted when asked for
}

void Nexus::unlock_segment(uint64_t segment) {
  auto it = segment_locks_.find(segment);
  assert(it != segment_locks_.end() && it->second > 0);
  if (--it->second > 0) return;
  segment_locks_.erase(it);
  auto b = blocked_writes_.find(segment);
  if (b == blocked_writes_.end()) return;
  auto parts = std::move(b->second);
  blocked_writes_.erase(b);
  for (auto& p : parts) start_part(p);
}

// ---- health -----------------------------------------------------------------------------------

void Nexus::arm_health_check() {
  if (health_armed_ || state_ == NexusState::kShutdown) return;
  health_armed_ = true;
  auto self = shared_from_this();
  run_after(*reactor_, 1000, [self]() {
    self->health_armed_ = false;
    if (self->state_ != NexusState::kOpen) return;
    for (auto c : std::vector<std::shared_ptr<Child>>(self->children_)) {
      if (!c->device || (c->state != ChildState::kOnline && c->state != ChildState::kRebuilding)) continue;
      const std::string lost = c->device->lost_reason();
      if (!lost.empty()) self->child_failed(*c, -ENOTCONN, 0, 0, "connection");
    }
    self->arm_health_check();
  });
}

// ---- membership -----------------------------------------------------------------------------

std::vector<std::pair<std::string, std::shared_ptr<Device>>> Nexus::write_set_devices() const {
  std::vector<std::pair<std::string, std::shared_ptr<Device>>> out;
  for (auto& c : children_) {
    if ((c->state == ChildState::kOnline || c->state == ChildState::kRebuilding) && c->device) out.emplace_back(c->uri, c->device);
  }
  return out;
}

void Nexus::grow(uint64_t size_bytes, Done done) {
  if (state_ != NexusState::kOpen) return done(Status(ErrorCode::kFailedPrecondition, str("nexus ", options_.uuid, " is ", nexus_state_name(state_))));
  const uint64_t old_size = options_.size_bytes;
  if (size_bytes < old_size) {
    return done(Status(ErrorCode::kInvalidArgument, str("nexus ", options_.uuid, " has ", old_size, " bytes; shrinking it to ", size_bytes,
                                                        " is not supported (a nexus only grows)")));
  }
  if (size_bytes == old_size) return done(Status());
  if (size_bytes % kSizeAlignmentBytes != 0) {
    return done(Status(ErrorCode::kInvalidArgument, str("nexus size_bytes ", size_bytes, " must be a positive multiple of ", kSizeAlignmentBytes)));
  }
  // Every child that receives writes must hold the grown range; checked before anything changes.
  for (auto& c : children_) {
    if (c->state != ChildState::kOnline && c->state != ChildState::kRebuilding) continue;
    if (!c->device || c->device->size_bytes() < size_bytes + kLabelRegionBytes) {
      const uint64_t have = c->device ? c->device->size_bytes() : 0;
      return done(Status(ErrorCode::kFailedPrecondition, str("child ", c->uri, " has ", have, " bytes; growing nexus ", options_.uuid, " from ", old_size, " to ",
                                                             size_bytes, " bytes needs ", size_bytes + kLabelRegionBytes, " (the size plus ", kLabelRegionBytes,
                                                             " for its label): grow its replica first (ResizeReplica). Nothing was changed")));
    }
  }
  options_.size_bytes = size_bytes;
  const uint64_t units = (size_bytes + kDirtyUnitBytes - 1) / kDirtyUnitBytes;
  for (auto& c : children_) {
    // Away and tracking: it lacks the grown range as surely as what it missed; its partial
    // rebuild copies both. (Not tracking: its return is a full rebuild of the new size anyway.)
    if (c->tracking) {
      c->missed.resize(units, false);
      for (uint64_t u = old_size / kDirtyUnitBytes; u < units; u++) c->missed[u] = true;
    }
  }
  // A rebuild that computed its runs copies the grown range too (one that has not yet computed
  // them reads the new size and the grown missed set when it does).
  for (auto& job : rebuilds_) {
    if (job->resync || job->finished || job->buffers.empty() || job->state == RebuildState::kFlushing) continue;
    for (uint64_t off = old_size; off < size_bytes;) {
      const uint64_t end = std::min(size_bytes, (off / kSegmentBytes + 1) * kSegmentBytes);
      job->runs.push_back({off, end - off});
      job->bytes_total += end - off;
      off = end;
    }
    if (job->state == RebuildState::kRunning) rebuild_pump(job);
  }
  log_line(str("nexus ", options_.uuid, ": grown from ", old_size, " to ", size_bytes, " bytes"));
  // The new size is recorded in a new label generation; answer once it is durable.
  membership_changed();
  when_label_durable([this, self = shared_from_this(), done](bool ok) {
    if (!ok) return done(Status(ErrorCode::kIoError, str("nexus ", options_.uuid, " grew to ", options_.size_bytes, " bytes but no in-sync child took the label recording it")));
    done(Status());
  });
}

void Nexus::add_child(OpenedChild oc, Done done) {
  if (state_ != NexusState::kOpen) return done(Status(ErrorCode::kFailedPrecondition, str("nexus ", options_.uuid, " is ", nexus_state_name(state_))));
  if (find_child(oc.uri)) {
    retire_(oc.device);
    return done(Status());  // idempotent
  }
  if (children_.size() >= kLabelMaxChildren) {
    retire_(oc.device);
    return done(Status(ErrorCode::kFailedPrecondition, str("a nexus has at most ", kLabelMaxChildren, " children")));
  }
  auto c = std::make_shared<Child>();
  c->uri = oc.uri;
  c->identity = oc.identity;
  c->device = oc.device;
  c->faults = oc.faults;
  c->max_io_bytes = oc.max_io_bytes;
  c->state = ChildState::kFaulted;
  c->reason = ChildReason::kOutOfSync;
  c->last_error = "added: needs a full rebuild";
  children_.push_back(c);
  membership_changed();
  start_rebuild(*c, false);
  done(Status());
}

void Nexus::remove_child(const std::string& uri, Done done) {
  Child* c = find_child(uri);
  if (!c) return done(Status());  // already gone
  if (c->state == ChildState::kOnline && online_count() == 1) {
    return done(Status(ErrorCode::kFailedPrecondition, str("child ", uri, " is the last healthy child of nexus ", options_.uuid, "; removing it would lose the volume")));
  }
  // Out of the membership first, so ending its rebuild (or resync) does not count it as a member.
  std::shared_ptr<Child> owned;
  for (auto it = children_.begin(); it != children_.end(); ++it) {
    if (it->get() == c) {
      owned = *it;
      children_.erase(it);
      break;
    }
  }
  // The resync's primary leaving: the resync starts again from another in-sync child (the
  // others are not yet its copy, so they must not serve reads round-robin meanwhile).
  if (owned == resync_primary_) resync_restart_ = true;
  if (owned->rebuild) rebuild_finish(owned->rebuild, RebuildState::kStopped, "child removed");
  for (auto job : std::vector<std::shared_ptr<Rebuild>>(rebuilds_)) {
    if (job->src == owned) rebuild_finish(job, RebuildState::kFailed, str("source ", uri, " was removed"));
  }
  read_cursor_ = 0;
  membership_changed();
  auto retire = retire_;
  auto close = [owned, retire]() {
    if (owned->device) retire(owned->device);
    owned->device = nullptr;
    owned->faults = nullptr;
  };
  if (owned->inflight == 0) close();
  else owned->on_idle.push_back(close);
  done(Status());
}

void Nexus::fault_child(const std::string& uri, Done done) {
  Child* c = find_child(uri);
  if (!c) return done(Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri)));
  if (c->state == ChildState::kFaulted || c->state == ChildState::kOffline) return done(Status());
  if (c->state == ChildState::kOnline && online_count() == 1) {
    return done(Status(ErrorCode::kFailedPrecondition, str("child ", uri, " is the last healthy child of nexus ", options_.uuid, "; faulting it would stop the volume")));
  }
  const bool was_online = c->state == ChildState::kOnline;
  set_child_state(*c, ChildState::kFaulted, ChildReason::kByClient, "faulted by the client");
  if (c->rebuild) rebuild_finish(c->rebuild, RebuildState::kStopped, "faulted by the client");
  for (auto job : std::vector<std::shared_ptr<Rebuild>>(rebuilds_)) {
    if (job->src.get() == c) rebuild_finish(job, RebuildState::kFailed, str("source ", uri, " was faulted by the client"));
  }
  if (was_online) {
    membership_changed();
    // Answer once the new membership is on disk, so the caller can rely on it.
    return when_label_durable([done](bool) { done(Status()); });
  }
  done(Status());
}

void Nexus::prepare_online(const std::string& uri, std::function<void(Status)> done) {
  Child* c = find_child(uri);
  if (!c) return done(Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri)));
  if (state_ != NexusState::kOpen) return done(Status(ErrorCode::kFailedPrecondition, str("nexus ", options_.uuid, " is ", nexus_state_name(state_))));
  if (c->state == ChildState::kOnline || c->state == ChildState::kRebuilding) {
    return done(Status(ErrorCode::kAlreadyExists, "already online or rebuilding"));
  }
  if (c->reopening) return done(Status(ErrorCode::kFailedPrecondition, str("child ", uri, " is already being onlined")));
  c->reopening = true;
  auto retire = retire_;
  auto hand_out = [c, retire, done]() {
    if (c->device) retire(c->device);
    c->device = nullptr;
    c->faults = nullptr;
    done(Status());
  };
  if (c->inflight == 0) return hand_out();
  c->on_idle.push_back(hand_out);
}

void Nexus::finish_online(OpenedChild reopened, Done done) {
  Child* c = find_child(reopened.uri);
  if (!c) {
    if (reopened.device) retire_(reopened.device);
    return done(Status(ErrorCode::kNotFound, str("child ", reopened.uri, " was removed while it was being onlined")));
  }
  c->reopening = false;
  if (!reopened.device) {
    set_child_state(*c, ChildState::kOffline, ChildReason::kCannotOpen, reopened.open_error);
    return done(Status(ErrorCode::kFailedPrecondition, str("child ", c->uri, " could not be opened: ", reopened.open_error)));
  }
  if (state_ != NexusState::kOpen) {
    retire_(reopened.device);
    return done(Status(ErrorCode::kFailedPrecondition, str("nexus ", options_.uuid, " is ", nexus_state_name(state_))));
  }
  // Trust the child only as far as its label proves it is the replica that left.
  const UuidBytes mine = parse_uuid(options_.uuid).value();
  if (reopened.label && reopened.label->nexus_uuid != mine) {
    retire_(reopened.device);
    c->last_error = str("carries the label of nexus ", format_uuid(reopened.label->nexus_uuid));
    return done(Status(ErrorCode::kFailedPrecondition, str("child ", c->uri, " carries the label of nexus ", format_uuid(reopened.label->nexus_uuid), " (generation ",
                                                           reopened.label->generation, "): it is another nexus's replica; it was not onlined and nothing was written to it")));
  }
  // A smaller size is a label from before a grow (the child was away): fine, its capacity was
  // checked when it was opened, and what it missed includes the grown range. A larger one is not
  // this nexus's history.
  if (reopened.label && reopened.label->size_bytes > options_.size_bytes) {
    retire_(reopened.device);
    return done(Status(ErrorCode::kFailedPrecondition, str("child ", c->uri, " was labelled for a ", reopened.label->size_bytes, "-byte nexus; this one has ", options_.size_bytes)));
  }
  std::string why_full;
  if (!reopened.label) {
    why_full = "it carries no label of this nexus (a new or recreated replica)";
  } else if (c->tracking && reopened.label->generation < c->label_floor) {
    why_full = str("its label generation ", reopened.label->generation, " is older than ", c->label_floor, ", the one it left in (a rolled-back replica)");
  }
  if (!why_full.empty() && c->tracking) {
    log_line(str("nexus ", options_.uuid, ": child ", c->uri, " needs a full rebuild: ", why_full));
    c->tracking = false;
    c->missed.clear();
  }
  c->device = reopened.device;
  c->faults = reopened.faults;
  c->max_io_bytes = reopened.max_io_bytes;
  start_rebuild(*c, true);
  done(Status());
}

Status Nexus::inject_fault(const std::string& uri, FaultRule rule) {
  Child* c = find_child(uri);
  if (!c) return Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri));
  if (!c->faults) return Status(ErrorCode::kFailedPrecondition, str("child ", uri, " has no fault injection (engine started without it, or the child is closed)"));
  if (rule.offset_bytes != 0 || rule.length_bytes != 0) rule.offset_bytes += kLabelRegionBytes;  // nexus offsets -> child device offsets
  c->faults->add_rule(rule);
  return Status();
}

Status Nexus::clear_faults(const std::string& uri) {
  Child* c = find_child(uri);
  if (!c) return Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri));
  if (c->faults) c->faults->clear_rules();
  return Status();
}

std::shared_ptr<Device> Nexus::child_device(const std::string& uri) const {
  Child* c = find_child(uri);
  if (!c) return nullptr;
  if (c->faults) return c->faults->inner_shared();
  return c->device;
}

// ---- shutdown -------------------------------------------------------------------------------

void Nexus::maybe_drained() {
  if (state_ != NexusState::kShuttingDown || on_drained_.empty()) return;
  if (host_inflight_ > 0 || label_writing_) return;
  for (auto& c : children_) {
    if (c->inflight > 0) return;
  }
  // Drained: the clean label, then close.
  auto waiters = std::move(on_drained_);
  on_drained_.clear();
  auto self = shared_from_this();
  auto close = [self, waiters](bool) {
    self->state_ = NexusState::kShutdown;
    for (auto& c : self->children_) {
      if (c->device) self->retire_(c->device);
      c->device = nullptr;
      c->faults = nullptr;
    }
    for (auto& w : waiters) w(Status());
  };
  // Nothing written since open: the labels on disk still describe the data exactly, and writing
  // one now would record children that were merely absent as out of sync.
  if (online_count() == 0 || durable_generation_ == opened_generation_) return close(false);
  clean_label_ = !resync_required_;
  generation_++;
  label_waiters_.push_back(close);
  write_label();
}

void Nexus::shutdown(Done done) {
  if (state_ == NexusState::kShutdown) return done(Status());
  on_drained_.push_back(std::move(done));
  if (state_ == NexusState::kShuttingDown) return;
  state_ = NexusState::kShuttingDown;
  for (auto job : std::vector<std::shared_ptr<Rebuild>>(rebuilds_)) rebuild_finish(job, RebuildState::kStopped, "nexus shut down");
  // Writes parked behind range locks of stopped rebuilds still run (their locks are released as
  // the in-flight copies finish), so every accepted I/O completes.
  maybe_drained();
  // Children with in-flight I/O call back through on_idle.
  auto self = shared_from_this();
  for (auto& c : children_) {
    if (c->inflight > 0) c->on_idle.push_back([self] { self->maybe_drained(); });
  }
}

// ---- info -----------------------------------------------------------------------------------

NexusInfoData Nexus::info() const {
  NexusInfoData d;
  d.uuid = options_.uuid;
  d.state = nexus_state_name(state_);
  const size_t online = online_count();
  d.health = online == 0 ? "faulted" : online == children_.size() ? "online" : "degraded";
  d.size_bytes = options_.size_bytes;
  d.generation = durable_generation_;
  d.opened_after_unclean_shutdown = opened_after_unclean_shutdown_;
  d.nqn = nqn_;
  d.frontend_host_nqn = frontend_host_nqn_;
  d.stats = stats_;
  for (auto& c : children_) {
    ChildInfo ci;
    ci.uri = c->uri;
    ci.state = child_state_name(c->state);
    ci.reason = child_reason_name(c->reason);
    ci.last_error = c->last_error;
    ci.read_ops = c->read_ops;
    ci.write_ops = c->write_ops;
    ci.errors = c->errors;
    if (c->tracking) {
      for (size_t u = 0; u < c->missed.size(); u++) {
        if (c->missed[u]) ci.missed_bytes += std::min(kDirtyUnitBytes, options_.size_bytes - u * kDirtyUnitBytes);
      }
    }
    if (c->rebuild) {
      ci.has_rebuild = true;
      ci.rebuild = rebuild_info(*c->rebuild);
    }
    d.children.push_back(std::move(ci));
  }
  return d;
}

}  // namespace strata::nexus
