// benchReplica: a fio-like load generator on the pool's reactor. Keeps queue_depth I/Os in
// flight through the normal replica I/O path for duration_ms and measures each one.
#include <algorithm>
#include <chrono>
#include <random>

#include "pool/pool.h"

namespace strata {

namespace {
uint64_t steady_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
constexpr size_t kMaxLatencySamples = 1 << 24;  // a limit on memory: ~64 MiB of samples
}  // namespace

void Pool::bench(const BenchOptions& o, std::function<void(Result<BenchResultData>)> done) {
  Replica* r = find_replica(o.uuid);
  if (r == nullptr || r->state != ReplicaState::kOnline) return done(Error{ErrorCode::kNotFound, str("no replica ", o.uuid)});
  uint64_t span = o.span_bytes == 0 ? r->size_bytes : std::min(o.span_bytes, r->size_bytes);
  if (o.block_size_bytes == 0 || o.block_size_bytes % 512 != 0 || o.block_size_bytes > (16u << 20) || o.block_size_bytes > span) {
    return done(Error{ErrorCode::kInvalidArgument, str("bench block_size_bytes ", o.block_size_bytes,
                                                       " must be a multiple of 512, at most 16 MiB and at most the span (", span, " bytes)")});
  }
  if (o.queue_depth == 0 || o.queue_depth > 1024) return done(Error{ErrorCode::kInvalidArgument, "bench queue_depth must be 1 to 1024"});
  if (o.duration_ms == 0 || o.duration_ms > 3600 * 1000) return done(Error{ErrorCode::kInvalidArgument, "bench duration_ms must be 1 to 3600000"});
  if (!(o.hot_write_fraction >= 0 && o.hot_write_fraction <= 1) || !(o.hot_space_fraction > 0 && o.hot_space_fraction <= 1)) {
    return done(Error{ErrorCode::kInvalidArgument, str("bench hot_write_fraction ", o.hot_write_fraction, " must be 0 to 1 and hot_space_fraction ",
                                                       o.hot_space_fraction, " above 0 to 1")});
  }

  struct Run {
    BenchOptions options;
    uint64_t blocks;
    uint64_t hot_blocks;  // the first hot_blocks take hot_write_fraction of random I/Os
    bool write, random;
    std::vector<AlignedBuffer> buffers;
    std::mt19937_64 rng{std::random_device{}()};
    uint64_t next_block = 0;
    uint64_t issued = 0;
    uint64_t start_ns = 0, deadline_ns = 0;
    uint32_t inflight = 0;
    BenchResultData result;
    std::vector<uint32_t> latencies_us;
    Status error;
    std::function<void(Result<BenchResultData>)> done;
    std::function<void(size_t)> issue;
  };
  auto run = std::make_shared<Run>();
  run->options = o;
  run->blocks = span / o.block_size_bytes;
  run->hot_blocks = std::clamp<uint64_t>(static_cast<uint64_t>(static_cast<double>(run->blocks) * o.hot_space_fraction), 1, run->blocks);
  run->write = o.pattern == BenchPattern::kRandWrite || o.pattern == BenchPattern::kWrite;
  run->random = o.pattern == BenchPattern::kRandRead || o.pattern == BenchPattern::kRandWrite;
  for (uint32_t i = 0; i < o.queue_depth; i++) {
    run->buffers.emplace_back(o.block_size_bytes);
    for (uint64_t b = 0; b < o.block_size_bytes; b += 8) std::memcpy(run->buffers.back().data() + b, &b, 8);  // a pattern, not zeros
  }
  run->done = std::move(done);
  run->start_ns = steady_ns();
  run->deadline_ns = run->start_ns + o.duration_ms * 1'000'000;
  auto self = shared_from_this();
  std::weak_ptr<Run> weak = run;
  run->issue = [self, weak](size_t slot) {
    auto run = weak.lock();
    if (!run) return;
    uint64_t now = steady_ns();
    if (now >= run->deadline_ns || !run->error.ok() || (run->options.max_ops != 0 && run->issued >= run->options.max_ops)) {
      if (run->inflight == 0) {
        run->result.elapsed_us = (now - run->start_ns) / 1000;
        auto& lat = run->latencies_us;
        summarize_bench(run->result, lat);
        if (!lat.empty()) run->result.lat_p999_us = lat[std::min(lat.size() - 1, lat.size() * 999 / 1000)];
        auto done = std::move(run->done);
        Status error = run->error;
        auto keep_alive = std::move(run->issue);  // breaks the run <-> issue cycle; destroyed after we return
        run->issue = nullptr;
        if (!error.ok()) done(error.error());
        else done(run->result);
      }
      return;
    }
    uint64_t block;
    if (!run->random) {
      block = run->next_block++ % run->blocks;
    } else if (run->hot_blocks == run->blocks) {
      block = run->rng() % run->blocks;
    } else if (std::uniform_real_distribution<double>(0, 1)(run->rng) < run->options.hot_write_fraction) {
      block = run->rng() % run->hot_blocks;
    } else {
      block = run->hot_blocks + run->rng() % (run->blocks - run->hot_blocks);
    }
    run->inflight++;
    run->issued++;
    uint64_t issued = now;
    self->io(run->options.uuid, run->write ? IoKind::kWrite : IoKind::kRead, block * run->options.block_size_bytes, run->options.block_size_bytes,
             run->buffers[slot].data(), [run, slot, issued](Status s) {
               run->inflight--;
               if (!s.ok()) {
                 if (run->error.ok()) run->error = s;
               } else {
                 run->result.ops++;
                 run->result.bytes += run->options.block_size_bytes;
                 if (run->latencies_us.size() < kMaxLatencySamples) run->latencies_us.push_back(static_cast<uint32_t>((steady_ns() - issued) / 1000));
               }
               if (run->issue) run->issue(slot);
             });
  };
  for (uint32_t i = 0; i < o.queue_depth; i++) run->issue(i);
}

}  // namespace strata
