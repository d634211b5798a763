// Rebuild and resync: copying segments from a healthy child into one that is out of sync (a
// rebuild, full or partial) or, after an unclean shutdown, from one in-sync child onto the others
// (a resync). Every copy runs under its segment's range lock; set_rebuild_state is the one place
// a job's state changes.
#include <algorithm>
#include <cassert>
#include <cstring>

#include "nexus/internal.h"
#include "util/log.h"

namespace strata::nexus {

// ---- rebuild --------------------------------------------------------------------------------

void Nexus::set_rebuild_state(Rebuild& job, RebuildState next) {
  const RebuildState prev = job.state;
  bool legal = false;
  switch (prev) {
    case RebuildState::kWaiting: legal = next == RebuildState::kRunning || next == RebuildState::kStopped || next == RebuildState::kFailed; break;
    case RebuildState::kRunning: legal = next == RebuildState::kPaused || next == RebuildState::kFlushing || next == RebuildState::kStopped || next == RebuildState::kFailed; break;
    case RebuildState::kPaused: legal = next == RebuildState::kRunning || next == RebuildState::kStopped || next == RebuildState::kFailed; break;
    case RebuildState::kFlushing: legal = next == RebuildState::kCompleted || next == RebuildState::kStopped || next == RebuildState::kFailed; break;
    case RebuildState::kCompleted:
    case RebuildState::kStopped:
    case RebuildState::kFailed: legal = false; break;  // final
  }
  assert(legal && "illegal rebuild state transition");
  (void)legal;
  job.state = next;
  log_line(str("nexus ", options_.uuid, ": ", job.resync ? "resync" : "rebuild", " of ", job.dst->uri, " ", rebuild_state_name(prev), " -> ", rebuild_state_name(next)));
}

void Nexus::start_rebuild(Child& dst_ref, bool partial, bool resync) {
  std::shared_ptr<Child> dst;
  for (auto& c : children_) {
    if (c.get() == &dst_ref) dst = c;
  }
  assert(dst && dst->device && !dst->rebuild);
  // Source: the resync primary while a resync runs (every copy must come from one child), else
  // an Online child, the local one when there is one (no network, and its allocation map lets a
  // thin source skip what was never written).
  std::shared_ptr<Child> src = resync_primary_ && resync_primary_->state == ChildState::kOnline ? resync_primary_ : nullptr;
  for (auto& c : children_) {
    if (src && src == resync_primary_) break;
    if (c->state != ChildState::kOnline || !c->device || c == dst) continue;
    if (!src || (is_local(c->device) && !is_local(src->device))) src = c;
  }
  auto job = std::make_shared<Rebuild>();
  job->dst = dst;
  job->src = src;
  job->resync = resync;
  job->partial = !resync && partial && dst->tracking;
  job->start_ms = wall_ms();
  job->start_us = steady_us();
  dst->rebuild = job;
  rebuilds_.push_back(job);
  if (!src) {
    if (!resync) set_child_state(*dst, ChildState::kRebuilding, ChildReason::kNone, "");
    return rebuild_finish(job, RebuildState::kFailed, "no healthy child to rebuild from");
  }
  // Join the write set first; then wait until writes issued before that (which it did not get)
  // are finished, so the runs computed next cover them. (A resync target is in it already.)
  std::vector<bool> missed = job->partial ? dst->missed : std::vector<bool>{};
  if (!resync) set_child_state(*dst, ChildState::kRebuilding, ChildReason::kNone, "");
  const uint64_t barrier = ++write_epoch_;
  auto self = shared_from_this();
  auto begin = [self, job, missed]() mutable {
    if (job->finished) return;
    Nexus& n = *self;
    // Late marks (writes in flight when it joined) were made into dst->missed: fold them in.
    if (job->partial) {
      // The nexus may have grown meanwhile (grow() marked the grown range missed): cover it.
      if (missed.size() < job->dst->missed.size()) missed.resize(job->dst->missed.size(), false);
      for (size_t u = 0; u < missed.size() && u < job->dst->missed.size(); u++) missed[u] = missed[u] || job->dst->missed[u];
    }
    if (!job->resync) {
      job->dst->tracking = false;
      job->dst->missed.clear();
    }
    const uint64_t size = n.options_.size_bytes;
    if (job->partial) {
      // Coalesce dirty units into runs that never cross a segment (each run takes one lock).
      for (uint64_t u = 0; u < missed.size(); u++) {
        if (!missed[u]) continue;
        const uint64_t off = u * kDirtyUnitBytes;
        const uint64_t len = std::min(kDirtyUnitBytes, size - off);
        if (!job->runs.empty()) {
          auto& last = job->runs.back();
          if (last.offset_bytes + last.length_bytes == off && off % kSegmentBytes != 0) {
            last.length_bytes += len;
            continue;
          }
        }
        job->runs.push_back({off, len});
      }
    } else {
      for (uint64_t off = 0; off < size; off += kSegmentBytes) job->runs.push_back({off, std::min(kSegmentBytes, size - off)});
    }
    for (auto& r : job->runs) job->bytes_total += r.length_bytes;
    for (uint32_t i = 0; i < kRebuildParallelSegments; i++) job->buffers.emplace_back(kSegmentBytes);
    job->buffer_busy.assign(kRebuildParallelSegments, false);
    auto go = [self, job]() {
      if (job->finished) return;
      if (job->state == RebuildState::kWaiting) self->set_rebuild_state(*job, RebuildState::kRunning);
      self->arm_watchdog();
      self->rebuild_pump(job);
    };
    // A full copy skips what a thin source never wrote (a device without a map copies all).
    if (job->partial) return go();
    job->src->device->allocation_map(*n.reactor_, [self, job, go](Result<Device::AllocationMap> map) {
      if (map.ok()) {
        const uint64_t cluster = map.value().first;
        const auto& mapped = map.value().second;
        for (auto& r : job->runs) {
          const uint64_t first = (r.offset_bytes + kLabelRegionBytes) / cluster, last = (r.offset_bytes + kLabelRegionBytes + r.length_bytes - 1) / cluster;
          bool any = false;
          for (uint64_t c = first; c <= last; c++) any = any || (c < mapped.size() && mapped[c]);
          r.zero = !any;
        }
      }
      go();
    });
  };
  const uint64_t oldest = writes_by_epoch_.empty() ? UINT64_MAX : writes_by_epoch_.begin()->first;
  if (oldest >= barrier) begin();
  else epoch_waiters_.push_back({barrier, std::move(begin)});
}

void Nexus::rebuild_pump(std::shared_ptr<Rebuild> job) {
  if (job->finished) return;
  while (job->state == RebuildState::kRunning && job->next_run < job->runs.size() && job->inflight < kRebuildParallelSegments) {
    size_t b = 0;
    while (job->buffer_busy[b]) b++;
    job->buffer_busy[b] = true;
    const size_t r = job->next_run++;
    job->inflight++;
    rebuild_copy_run(job, r, b);
  }
  if (job->state == RebuildState::kRunning && job->next_run == job->runs.size() && job->inflight == 0) {
    // Every run copied: make it durable, then the child is in sync ("completed" means flushed).
    set_rebuild_state(*job, RebuildState::kFlushing);
    auto self = shared_from_this();
    job->dst->inflight++;
    flush_child(job->dst, [self, job](int res) {
      if (!job->finished) {
        if (res < 0) self->child_failed(*job->dst, res, 0, 0, "rebuild flush");
        else self->rebuild_finish(job, RebuildState::kCompleted, "");
      }
      release(*job->dst);
    });
  }
}

void Nexus::rebuild_copy_run(const std::shared_ptr<Rebuild>& job, size_t run_index, size_t buffer_index) {
  auto self = shared_from_this();
  Rebuild::Run& run = job->runs[run_index];
  run.inflight = true;
  run.started_ms = steady_ms();
  const uint64_t segment = run.offset_bytes / kSegmentBytes;
  run.lock_ticket = lock_segment(segment, [self, job, run_index, buffer_index, segment]() {
    Rebuild::Run& run = job->runs[run_index];
    run.locked = true;
    if (job->finished) return self->rebuild_run_done(job, run_index, buffer_index, 0, false);
    const uint64_t off = run.offset_bytes + kLabelRegionBytes;
    auto dst = job->dst, src = job->src;
    dst->inflight++;
    if (run.zero && job->written_segments.count(segment)) run.zero = false;  // written since the map was read
    if (run.zero) {
      job->segments_skipped++;
      return dst->device->write_zeroes(*self->reactor_, off, run.length_bytes, [self, job, run_index, buffer_index, dst](int res) {
        self->rebuild_run_done(job, run_index, buffer_index, res < 0 ? res : 0, false);
        release(*dst);
      });
    }
    src->inflight++;
    uint8_t* buf = job->buffers[buffer_index].data();
    src->device->read(*self->reactor_, off, static_cast<uint32_t>(run.length_bytes), buf, [self, job, run_index, buffer_index, dst, src, off, buf](int res) {
      if (res < 0 || job->finished) {
        self->rebuild_run_done(job, run_index, buffer_index, res < 0 ? res : 0, res < 0);
        release(*src);
        return release(*dst);
      }
      release(*src);
      const uint64_t len = job->runs[run_index].length_bytes;
      // A thin destination stays thin where the source reads as zeros.
      bool zero = buf[0] == 0 && std::memcmp(buf, buf + 1, len - 1) == 0;
      auto written = [self, job, run_index, buffer_index, dst](int res2) {
        self->rebuild_run_done(job, run_index, buffer_index, res2 < 0 ? res2 : 0, false);
        release(*dst);
      };
      if (zero) dst->device->write_zeroes(*self->reactor_, off, len, written);
      else dst->device->write(*self->reactor_, off, static_cast<uint32_t>(len), buf, written);
    });
  });
}

void Nexus::rebuild_run_done(const std::shared_ptr<Rebuild>& job, size_t run_index, size_t buffer_index, int error, bool source_failed) {
  Rebuild::Run& run = job->runs[run_index];
  if (!run.inflight) {
    // The watchdog already gave up on it. A lock it held then was released there; a lock that
    // was granted only after that (the grant reaches here with locked set) is released now —
    // else host writes to the segment would wait for ever.
    if (run.locked) {
      run.locked = false;
      unlock_segment(run.offset_bytes / kSegmentBytes);
    }
    return;
  }
  run.inflight = false;
  if (run.locked) {
    run.locked = false;
    unlock_segment(run.offset_bytes / kSegmentBytes);
  }
  job->inflight--;
  job->buffer_busy[buffer_index] = false;
  if (job->finished) return maybe_drained();
  if (error < 0) {
    if (source_failed) return child_failed(*job->src, error, 0, 0, "rebuild read");  // fails this job
    return child_failed(*job->dst, error, run.offset_bytes, run.length_bytes, "rebuild write");
  }
  run.done = true;
  job->bytes_done += run.length_bytes;
  write_landed(*job->dst, run.offset_bytes, run.length_bytes);  // durable with the final flush
  rebuild_pump(job);
}

void Nexus::rebuild_finish(std::shared_ptr<Rebuild> job, RebuildState end, std::string error) {
  if (job->finished) return;
  job->finished = true;
  set_rebuild_state(*job, end);
  job->error = error;
  job->end_ms = wall_ms();
  job->end_us = steady_us();
  std::erase(rebuilds_, job);
  Child& dst = *job->dst;
  if (dst.rebuild == job) dst.rebuild = nullptr;
  if (job->resync) {
    // The child stays as it is (Online unless it failed itself); only the read rule changes.
    if (end == RebuildState::kFailed && job->src && job->src->state != ChildState::kOnline) resync_restart_ = true;
    const bool member = std::find(children_.begin(), children_.end(), job->dst) != children_.end();
    if (end != RebuildState::kCompleted) {
      if (member && dst.state == ChildState::kOnline) resync_dirty_ = true;  // in sync but not yet the primary's copy
      // Whatever it had not received may still differ from the others: only a full rebuild fixes that.
      dst.resync_incomplete = true;
      if (dst.state != ChildState::kOnline) {
        dst.tracking = false;
        dst.missed.clear();
      }
    }
    log_line(str("nexus ", options_.uuid, ": resync of ", dst.uri, " ", rebuild_state_name(end), error.empty() ? "" : ": ", error));
    history_.push_back(rebuild_info(*job));
    while (history_.size() > kHistoryLimit) history_.pop_front();
    resync_finished();
    return maybe_drained();
  }
  if (end == RebuildState::kCompleted) {
    set_child_state(dst, ChildState::kOnline, ChildReason::kNone, "");
    membership_changed();
  } else if (dst.state == ChildState::kRebuilding) {
    set_child_state(dst, ChildState::kFaulted, end == RebuildState::kStopped ? ChildReason::kOutOfSync : ChildReason::kRebuildFailed, error);
  }
  if (end != RebuildState::kCompleted) {
    // What it did not get from the rebuild is missed too (a runs list exists once it started).
    if (!job->runs.empty()) {
      for (auto& r : job->runs) {
        if (!r.done) mark_missed(dst, r.offset_bytes, r.length_bytes);
      }
    } else {
      dst.tracking = false;  // never computed: only a full rebuild is safe
      dst.missed.clear();
    }
  }
  log_line(str("nexus ", options_.uuid, ": rebuild of ", dst.uri, " ", rebuild_state_name(end), error.empty() ? "" : ": ", error));
  history_.push_back(rebuild_info(*job));
  while (history_.size() > kHistoryLimit) history_.pop_front();
  maybe_drained();
}

void Nexus::arm_watchdog() {
  if (watchdog_armed_ || rebuilds_.empty()) return;
  watchdog_armed_ = true;
  auto self = shared_from_this();
  run_after(*reactor_, 1000, [self]() {
    self->watchdog_armed_ = false;
    const uint64_t now = steady_ms();
    for (auto job : std::vector<std::shared_ptr<Rebuild>>(self->rebuilds_)) {
      for (size_t i = 0; i < job->runs.size(); i++) {
        auto& r = job->runs[i];
        if (!r.inflight || now - r.started_ms < kRebuildStepTimeoutMs) continue;
        self->rebuild_finish(job, RebuildState::kFailed, str("copying [", r.offset_bytes, ", +", r.length_bytes, ") took longer than ", kRebuildStepTimeoutMs, " ms"));
        // Give up on the step: release its lock so host writes go on (the child is out of
        // sync now, so whatever the late copy writes into it is rebuilt again later). A lock
        // not granted yet is withdrawn, so its grant can never leak it.
        r.inflight = false;
        job->inflight--;
        if (r.locked) {
          r.locked = false;
          self->unlock_segment(r.offset_bytes / kSegmentBytes);
        } else {
          self->cancel_lock_wait(r.offset_bytes / kSegmentBytes, r.lock_ticket);
        }
      }
    }
    self->arm_watchdog();
  });
}

RebuildInfo Nexus::rebuild_info(const Rebuild& job) const {
  RebuildInfo i;
  i.child_uri = job.dst->uri;
  i.source_uri = job.src ? job.src->uri : "";
  i.state = rebuild_state_name(job.state);
  i.partial = job.partial;
  i.resync = job.resync;
  i.bytes_done = job.bytes_done;
  i.bytes_total = job.bytes_total;
  i.volume_bytes = options_.size_bytes;
  i.segments_skipped = job.segments_skipped;
  const uint64_t end_us = job.finished ? job.end_us : steady_us();
  const double seconds = static_cast<double>(end_us - job.start_us) / 1e6;
  i.mib_per_s = seconds > 0 ? static_cast<double>(job.bytes_done) / (1024.0 * 1024.0) / seconds : 0;
  i.start_ms = job.start_ms;
  i.end_ms = job.finished ? job.end_ms : 0;
  i.error = job.error;
  return i;
}

Status Nexus::rebuild_pause(const std::string& uri) {
  Child* c = find_child(uri);
  if (!c) return Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri));
  if (!c->rebuild) return Status(ErrorCode::kFailedPrecondition, str("child ", uri, " is not being rebuilt"));
  if (c->rebuild->state == RebuildState::kRunning) set_rebuild_state(*c->rebuild, RebuildState::kPaused);
  return Status();
}

Status Nexus::rebuild_resume(const std::string& uri) {
  Child* c = find_child(uri);
  if (!c) return Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri));
  if (!c->rebuild) return Status(ErrorCode::kFailedPrecondition, str("child ", uri, " is not being rebuilt"));
  if (c->rebuild->state == RebuildState::kPaused) {
    set_rebuild_state(*c->rebuild, RebuildState::kRunning);
    rebuild_pump(c->rebuild);
  }
  return Status();
}

Status Nexus::rebuild_stop(const std::string& uri) {
  Child* c = find_child(uri);
  if (!c) return Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri));
  if (c->rebuild) rebuild_finish(c->rebuild, RebuildState::kStopped, "stopped by the client");
  return Status();
}

void Nexus::rebuild_start(const std::string& uri, Done done) {
  Child* c = find_child(uri);
  if (!c) return done(Status(ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri)));
  if (c->state == ChildState::kRebuilding || c->state == ChildState::kOnline) return done(Status());
  if (!c->device) return done(Status(ErrorCode::kFailedPrecondition, str("child ", uri, " is closed: online it instead")));
  if (c->device->size_bytes() < options_.size_bytes + kLabelRegionBytes) {
    return done(Status(ErrorCode::kFailedPrecondition, str("child ", uri, " has ", c->device->size_bytes(), " bytes; the ", options_.size_bytes, "-byte nexus needs ",
                                                           options_.size_bytes + kLabelRegionBytes, ": grow its replica (ResizeReplica), then online it")));
  }
  start_rebuild(*c, true);
  done(Status());
}

Result<RebuildInfo> Nexus::rebuild_stats(const std::string& uri) const {
  Child* c = find_child(uri);
  if (!c) return Error{ErrorCode::kNotFound, str("nexus ", options_.uuid, " has no child ", uri)};
  if (c->rebuild) return rebuild_info(*c->rebuild);
  for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
    if (it->child_uri == uri) return *it;
  }
  return Error{ErrorCode::kNotFound, str("child ", uri, " has no rebuild")};
}

// ---- resync after an unclean shutdown --------------------------------------------------------

void Nexus::start_resync() {
  resync_restart_ = false;
  std::shared_ptr<Child> primary;
  for (auto& c : children_) {
    if (c->state != ChildState::kOnline || !c->device) continue;
    if (!primary || (is_local(c->device) && !is_local(primary->device))) primary = c;
  }
  size_t secondaries = 0;
  for (auto& c : children_) secondaries += (c != primary && c->state == ChildState::kOnline && c->device && !c->rebuild) ? 1 : 0;
  if (!primary || secondaries == 0) {
    resync_required_ = false;
    resync_primary_ = nullptr;
    return;
  }
  resync_primary_ = primary;
  log_line(str("nexus ", options_.uuid, ": unclean shutdown: resynchronising ", secondaries, " child(ren) from ", primary->uri));
  for (auto c : std::vector<std::shared_ptr<Child>>(children_)) {
    if (c != primary && c->state == ChildState::kOnline && c->device && !c->rebuild) start_rebuild(*c, false, true);
  }
}

void Nexus::resync_finished() {
  for (auto& job : rebuilds_) {
    if (job->resync) return;  // others still running
  }
  resync_primary_ = nullptr;
  if (resync_restart_ && online_count() >= 2) {
    resync_dirty_ = false;
    return start_resync();  // the primary failed: again from another
  }
  // Still owed while an in-sync child was left unsynchronised (stopped by a shutdown): the
  // labels then keep saying "unclean", and the next open resyncs again.
  resync_required_ = resync_dirty_;
  resync_dirty_ = false;
}

}  // namespace strata::nexus
