// The FTL's runtime: host reads and writes, the cache log, compaction into base bands, greedy GC
// with hot/cold bands, and the write throttle. Everything runs on the FTL's own reactor.
#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <future>
#include <thread>

#include "device/placement.h"
#include "device/zones.h"
#include "ftl/ftl.h"
#include "util/crc32c.h"
#include "util/log.h"

namespace strata {

using namespace ftl_format;

namespace {
// Compaction never takes the last bands: GC needs somewhere to put what it relocates.
constexpr size_t kGcReserveBands = 2;
constexpr uint32_t kCopyBatchBlocks = 256;  // one base write: 1 MiB
}  // namespace

void unregister_ftl(const std::string& uuid);  // ftl_open.cc

const char* chunk_state_name(ChunkState s) {
  switch (s) {
    case ChunkState::kFree: return "free";
    case ChunkState::kOpen: return "open";
    case ChunkState::kFull: return "full";
    case ChunkState::kDraining: return "draining";
    case ChunkState::kDrained: return "drained";
  }
  return "free";
}

const char* band_state_name(BandState s) {
  switch (s) {
    case BandState::kFree: return "free";
    case BandState::kOpen: return "open";
    case BandState::kClosed: return "closed";
    case BandState::kVictim: return "victim";
    case BandState::kRelocated: return "relocated";
    case BandState::kErasing: return "erasing";
  }
  return "free";
}

FtlDevice::FtlDevice(DeviceDescription description, std::shared_ptr<Device> cache, std::shared_ptr<Device> base, Geometry geometry,
                     std::unique_ptr<Reactor> reactor)
    : Device(std::move(description)),
      cache_(std::move(cache)),
      base_(std::move(base)),
      geo_(geometry),
      uuid_text_(format_uuid(geometry.sb.ftl_uuid)),
      reactor_(std::move(reactor)),
      chunks_(geometry.sb.chunk_count),
      bands_(geometry.sb.band_count) {
  gc_threshold_bands_ = ftl_gc_threshold_bands(geo_.sb.band_count);
  stats_.uuid = uuid_text_;
  stats_.uri = description_.uri;
  stats_.logical_bytes = geo_.sb.logical_blocks * kBlockBytes;
  stats_.band_count = geo_.sb.band_count;
  stats_.chunk_count = geo_.sb.chunk_count;
}

FtlDevice::~FtlDevice() {
  // Out of the registry first: stats() from another thread must not wait on a stopped reactor.
  unregister_ftl(uuid_text_);
  on_reactor([this] { stopping_ = true; });
  // Let a background step finish its I/O chain, the last records land and the map's write-backs.
  for (;;) {
    std::promise<bool> idle;
    // Map write-backs too: one landing after the next open rebuilt that page would leave the
    // page on the device unlike its CRC.
    on_reactor([this, &idle] { idle.set_value(!worker_busy_ && in_flight_.empty() && !(map_ && map_->writing())); });
    if (idle.get_future().get()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (installed_) write_checkpoint();
  reactor_->stop();
}

void FtlDevice::on_reactor(std::function<void()> task) { reactor_->post(std::move(task)); }

int FtlDevice::run_sync(const std::function<void(IoCallback)>& start) {
  assert(!reactor_->on_reactor_thread());
  std::promise<int> result;
  on_reactor([&] { start([&result](int r) { result.set_value(r); }); });
  return result.get_future().get();
}

// ---- lifecycles --------------------------------------------------------------------------------

void FtlDevice::set_chunk_state(int chunk, ChunkState next) {
  Chunk& c = chunks_[chunk];
  [[maybe_unused]] const ChunkState prev = c.state;
  assert((prev == ChunkState::kFree && (next == ChunkState::kOpen || next == ChunkState::kFull)) ||
         (prev == ChunkState::kOpen && next == ChunkState::kFull) || (prev == ChunkState::kFull && next == ChunkState::kDraining) ||
         (prev == ChunkState::kDraining && (next == ChunkState::kDrained || next == ChunkState::kFree)) ||
         (prev == ChunkState::kDrained && next == ChunkState::kFree));
  c.state = next;
}

void FtlDevice::set_band_state(int band, BandState next) {
  Band& b = bands_[band];
  [[maybe_unused]] const BandState prev = b.state;
  assert((prev == BandState::kFree && (next == BandState::kOpen || next == BandState::kClosed || next == BandState::kErasing)) ||
         (prev == BandState::kOpen && next == BandState::kClosed) || (prev == BandState::kClosed && next == BandState::kVictim) ||
         (prev == BandState::kVictim && (next == BandState::kRelocated || next == BandState::kErasing)) ||
         (prev == BandState::kRelocated && next == BandState::kErasing) || (prev == BandState::kErasing && next == BandState::kFree));
  b.state = next;
}

// ---- installing what recovery found -----------------------------------------------------------

Status FtlDevice::install(Loaded loaded) {
  const L2pBounds bounds{geo_.sb.chunk_start_block, chunk_first_block(int(chunks_.size())), geo_.sb.band_start_block, band_first_block(int(bands_.size()))};
  map_ = std::make_unique<L2pMap>(*cache_, kL2pFirstBlock, geo_.sb.logical_blocks, std::move(loaded.l2p_pages), bounds);
  map_->attach(*reactor_, [this](const std::string& why) { fail(why); });
  map_->set_limit_pages(map_limit_pages(loaded.map_limit_bytes));
  slot_lba_ = std::move(loaded.slot_lba);
  slot_seq_ = std::move(loaded.slot_seq);
  next_seq_ = loaded.next_seq;
  stats_.recovered_records = loaded.records;
  stats_.loaded_from_checkpoint = loaded.from_checkpoint;
  stats_.host_write_bytes = loaded.host_blocks * kBlockBytes;
  // Chunks that hold records are compacted again, oldest first; the rest are free.
  std::vector<int> found;
  for (int c = 0; c < int(chunks_.size()); c++) {
    const auto& f = loaded.chunks[c];
    if (f.chunk_seq == 0) {
      free_chunks_.push_back(c);
      continue;
    }
    chunks_[c].chunk_seq = f.chunk_seq;
    chunks_[c].write_blocks = f.write_blocks;
    chunks_[c].trims = f.trims;
    set_chunk_state(c, ChunkState::kFull);
    found.push_back(c);
  }
  std::sort(found.begin(), found.end(), [&](int a, int b) { return chunks_[a].chunk_seq < chunks_[b].chunk_seq; });
  full_chunks_.assign(found.begin(), found.end());
  for (size_t b = 0; b < bands_.size(); b++) bands_[b].valid_blocks = loaded.band_valid[b];
  // Bands without a footer were open at the crash (their data is still in the cache, or still
  // in the victim GC copied it from): erase them before they are written again.
  std::vector<int> to_erase;
  for (int b = 0; b < int(bands_.size()); b++) {
    if (loaded.band_closed[b]) {
      set_band_state(b, BandState::kClosed);
      if (!loaded.band_closed_at.empty()) bands_[b].closed_at = loaded.band_closed_at[b];
      stats_.recovered_bands++;
    } else {
      to_erase.push_back(b);
    }
  }
  int result = run_sync([this, to_erase](IoCallback done) {
    auto left = std::make_shared<size_t>(to_erase.size());
    auto first_error = std::make_shared<int>(0);
    if (to_erase.empty()) return done(0);
    for (int b : to_erase) {
      set_band_state(b, BandState::kErasing);
      base_->deallocate(*reactor_, band_first_block(b) * kBlockBytes, uint64_t(geo_.sb.band_blocks) * kBlockBytes,
                        [this, b, left, first_error, done](int r) {
                          if (r < 0 && *first_error == 0) *first_error = r;
                          set_band_state(b, BandState::kFree);
                          free_bands_.push_back(b);
                          if (--*left == 0) done(*first_error);
                        });
    }
  });
  if (result < 0) return Status(ErrorCode::kIoError, str("erasing the open bands of FTL ", uuid_text_, " on ", base_->description().uri, ": ", std::strerror(-result)));
  installed_ = true;
  on_reactor([this] { kick(); });
  return Status();
}

// ---- host I/O ----------------------------------------------------------------------------------

namespace {
IoCallback back_to(Reactor& caller, IoCallback done) {
  return [&caller, done = std::move(done)](int r) { caller.post([done, r] { done(r); }); };
}
}  // namespace

void FtlDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  IoCallback back = back_to(reactor, std::move(done));
  if (!in_blocks(offset_bytes, length_bytes)) return back(-EINVAL);
  on_reactor([this, offset_bytes, length_bytes, buffer, back] {
    do_read(offset_bytes / kBlockBytes, length_bytes / kBlockBytes, static_cast<uint8_t*>(buffer), back);
  });
}

void FtlDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  IoCallback back = back_to(reactor, std::move(done));
  if (!in_blocks(offset_bytes, length_bytes)) return back(-EINVAL);
  on_reactor([this, offset_bytes, length_bytes, buffer, back] {
    submit_write(offset_bytes / kBlockBytes, length_bytes / kBlockBytes, static_cast<const uint8_t*>(buffer), back);
  });
}

void FtlDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  IoCallback back = back_to(reactor, std::move(done));
  if (!in_blocks(offset_bytes, length_bytes)) return back(-EINVAL);
  on_reactor([this, offset_bytes, length_bytes, back] { submit_write(offset_bytes / kBlockBytes, length_bytes / kBlockBytes, nullptr, back); });
}

void FtlDevice::flush(Reactor& reactor, IoCallback done) {
  IoCallback back = back_to(reactor, std::move(done));
  on_reactor([this, back] {
    if (!failed_.empty()) return back(-EIO);
    // Acknowledged writes are written to the cache; its flush makes them durable. Base bands are
    // flushed before the maps ever point at them.
    cache_->flush(*reactor_, back);
  });
}

Status FtlDevice::read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) {
  if (!in_blocks(offset_bytes, length_bytes)) {
    return Status(ErrorCode::kInvalidArgument, str("FTL read at ", offset_bytes, " of ", length_bytes, " bytes is not within 4 KiB blocks of the device"));
  }
  int r = run_sync([&](IoCallback done) { do_read(offset_bytes / kBlockBytes, length_bytes / kBlockBytes, static_cast<uint8_t*>(buffer), done); });
  if (r < 0) return Status(ErrorCode::kIoError, str("FTL ", uuid_text_, " read: ", failure_text(r)));
  return Status();
}

Status FtlDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  if (!in_blocks(offset_bytes, length_bytes)) {
    return Status(ErrorCode::kInvalidArgument, str("FTL write at ", offset_bytes, " of ", length_bytes, " bytes is not within 4 KiB blocks of the device"));
  }
  int r = run_sync([&](IoCallback done) {
    submit_write(offset_bytes / kBlockBytes, length_bytes / kBlockBytes, static_cast<const uint8_t*>(buffer), done);
  });
  if (r >= 0) r = run_sync([&](IoCallback done) { cache_->flush(*reactor_, done); });
  if (r < 0) return Status(ErrorCode::kIoError, str("FTL ", uuid_text_, " write: ", failure_text(r)));
  return Status();
}

std::string FtlDevice::failure_text(int result) {
  // A failed FTL says why (a cache write, a corrupt map page): more than "Input/output error".
  std::promise<std::string> why;
  on_reactor([&] { why.set_value(failed_); });
  const std::string reason = why.get_future().get();
  return reason.empty() ? io_result_text(result) : str(io_result_text(result), ": ", reason);
}

void FtlDevice::fail(const std::string& why) {
  if (failed_.empty()) {
    failed_ = why;
    log_line(str("ftl ", uuid_text_, ": ", why, "; every further I/O fails"));
  }
}

// Admission: the write goes in only if the free chunks hold all its records (each piece needs a
// header block and stays within one chunk). Otherwise it waits for compaction to free chunks:
// the throttle that keeps host writes from outrunning the background work.
bool FtlDevice::admit(uint64_t data_blocks) const {
  uint32_t room = open_chunk_ >= 0 ? geo_.sb.chunk_blocks - chunks_[open_chunk_].write_blocks : 0;
  size_t free = free_chunks_.size();
  uint64_t remaining = data_blocks;
  do {  // a trim (no data) is one header-only record
    if (room < 2) {
      if (free == 0) return false;
      free--;
      room = geo_.sb.chunk_blocks;
    }
    const uint64_t k = std::min<uint64_t>({remaining, kMaxRecordBlocks, room - 1});
    room -= uint32_t(k) + 1;
    remaining -= k;
  } while (remaining > 0);
  return true;
}

void FtlDevice::close_open_chunk() {
  set_chunk_state(open_chunk_, ChunkState::kFull);
  full_chunks_.push_back(open_chunk_);
  open_chunk_ = -1;
}

void FtlDevice::submit_write(uint64_t lba, uint64_t blocks, const uint8_t* data, IoCallback done) {
  if (!failed_.empty()) return done(-EIO);
  WaitingWrite w{lba, blocks, data, std::move(done)};
  if (!waiting_.empty() || !admit(data ? blocks : 0)) {
    stats_.throttle_events++;
    waiting_.push_back(std::move(w));
    kick();
    return;
  }
  start_write(std::move(w));
}

void FtlDevice::admit_waiting() {
  while (!waiting_.empty() && failed_.empty() && admit(waiting_.front().data ? waiting_.front().blocks : 0)) {
    WaitingWrite w = std::move(waiting_.front());
    waiting_.pop_front();
    start_write(std::move(w));
  }
  if (!failed_.empty()) {
    while (!waiting_.empty()) {
      IoCallback d = std::move(waiting_.front().done);
      waiting_.pop_front();
      d(-EIO);
    }
  }
}

int FtlDevice::take_chunk_room(uint32_t blocks_needed) {
  if (open_chunk_ >= 0 && geo_.sb.chunk_blocks - chunks_[open_chunk_].write_blocks >= blocks_needed) return open_chunk_;
  if (open_chunk_ >= 0) close_open_chunk();
  assert(!free_chunks_.empty());  // admit() made sure
  int c = free_chunks_.front();
  free_chunks_.pop_front();
  Chunk& ch = chunks_[c];
  ch = Chunk{};
  set_chunk_state(c, ChunkState::kOpen);
  open_chunk_ = c;
  return c;
}

void FtlDevice::start_write(WaitingWrite w) {
  auto op = std::make_shared<HostOp>();
  op->done = std::move(w.done);
  op->bytes = w.blocks * kBlockBytes;
  uint64_t remaining = w.data ? w.blocks : 0;
  uint64_t lba = w.lba;
  const uint8_t* data = w.data;
  std::vector<Record*> started;
  do {
    uint32_t room = open_chunk_ >= 0 ? geo_.sb.chunk_blocks - chunks_[open_chunk_].write_blocks : 0;
    if (room < 2) room = geo_.sb.chunk_blocks;
    const uint64_t k = std::min<uint64_t>({remaining, kMaxRecordBlocks, room - 1});
    const int c = take_chunk_room(uint32_t(k) + 1);
    Chunk& ch = chunks_[c];
    auto rec = std::make_unique<Record>();
    rec->seq = next_seq_++;
    rec->chunk = c;
    rec->first_block = chunk_first_block(c) + ch.write_blocks;
    rec->kind = w.data ? RecordKind::kData : RecordKind::kTrim;
    rec->lba = lba;
    rec->block_count = w.data ? k : w.blocks;
    rec->op = op;
    if (ch.write_blocks == 0) ch.chunk_seq = rec->seq;
    RecordHeader h;
    h.kind = rec->kind;
    h.ftl_uuid = geo_.sb.ftl_uuid;
    h.chunk_seq = ch.chunk_seq;
    h.seq = rec->seq;
    h.lba = lba;
    h.block_count = rec->block_count;
    rec->buffer = AlignedBuffer((1 + k) * kBlockBytes);
    slot_lba_[rec->first_block] = kNoLba;
    for (uint64_t i = 0; i < k; i++) {
      std::memcpy(rec->buffer.data() + (1 + i) * kBlockBytes, data + i * kBlockBytes, kBlockBytes);
      h.data_crcs.push_back(crc32c(0, data + i * kBlockBytes, kBlockBytes));
      slot_lba_[rec->first_block + 1 + i] = lba + i;
      slot_seq_[rec->first_block + 1 + i] = rec->seq;
    }
    encode_record_header(h, rec->buffer.data());
    if (!w.data) ch.trims.push_back({lba, rec->seq, w.blocks});
    ch.write_blocks += uint32_t(1 + k);
    ch.writes_in_flight++;
    op->records_left++;
    stats_.cache_write_bytes += (1 + k) * kBlockBytes;
    if (w.data) stats_.host_write_bytes += k * kBlockBytes;
    started.push_back(rec.get());
    in_flight_.push_back(std::move(rec));
    lba += k;
    data = data ? data + k * kBlockBytes : nullptr;
    remaining -= k;
    if (geo_.sb.chunk_blocks - ch.write_blocks < 2) close_open_chunk();
  } while (remaining > 0);
  for (Record* rec : started) {
    cache_->write(*reactor_, rec->first_block * kBlockBytes, uint32_t((1 + (rec->kind == RecordKind::kData ? rec->block_count : 0)) * kBlockBytes),
                  rec->buffer.data(), [this, rec](int r) { record_landed(rec, r); });
  }
}

// Records are applied (maps updated, host acknowledged) in sequence order, whatever order they
// land in. So everything acknowledged in a chunk precedes the first record that did not land,
// which is where recovery's walk of the chunk stops.
void FtlDevice::record_landed(Record* record, int result) {
  record->landed = true;
  const uint64_t expected = (1 + (record->kind == RecordKind::kData ? record->block_count : 0)) * kBlockBytes;
  record->result = result < 0 ? result : (uint64_t(result) == expected ? 0 : -EIO);
  while (!in_flight_.empty() && in_flight_.front()->landed) {
    std::unique_ptr<Record> front = std::move(in_flight_.front());
    in_flight_.pop_front();
    apply(*front);
  }
}

void FtlDevice::apply(Record& record) {
  Chunk& ch = chunks_[record.chunk];
  ch.writes_in_flight--;
  HostOp& op = *record.op;
  if (record.result < 0) fail(str("cache write to ", cache_->description().uri, " failed: ", io_result_text(record.result)));
  if (!failed_.empty()) {
    if (op.result == 0) op.result = -EIO;
  } else if (record.kind == RecordKind::kData) {
    for (uint64_t i = 0; i < record.block_count; i++) set_l2p(record.lba + i, kCacheTag | (record.first_block + 1 + i));
  } else {
    for (uint64_t i = 0; i < record.block_count; i++) set_l2p(record.lba + i, kUnmapped);
  }
  if (!failed_.empty() && op.result == 0) op.result = -EIO;  // the map could not take it
  if (--op.records_left == 0) op.done(op.result < 0 ? op.result : int(std::min<uint64_t>(op.bytes, INT32_MAX)));
  if (ch.state == ChunkState::kFull && ch.writes_in_flight == 0) kick();
  if (!failed_.empty()) admit_waiting();
}

void FtlDevice::set_l2p(uint64_t lba, Location next) {
  const Location prev = map_->exchange(lba, next);
  if (in_base(prev)) {
    Band& b = bands_[band_of(block_of(prev))];
    assert(b.valid_blocks > 0);
    b.valid_blocks--;
  }
}

void FtlDevice::pin(Location where) {
  if (in_cache(where)) chunks_[chunk_of(block_of(where))].readers++;
  if (in_base(where)) bands_[band_of(block_of(where))].readers++;
}

void FtlDevice::unpin(Location where) {
  if (in_cache(where)) {
    const int c = chunk_of(block_of(where));
    if (--chunks_[c].readers == 0 && chunks_[c].free_when_unread) free_chunk(c);
  }
  if (in_base(where)) {
    const int b = band_of(block_of(where));
    if (--bands_[b].readers == 0 && bands_[b].erase_when_unread) erase_band(b);
  }
}

void FtlDevice::do_read(uint64_t lba, uint64_t blocks, uint8_t* out, IoCallback done) {
  if (!failed_.empty()) return done(-EIO);
  stats_.host_read_bytes += blocks * kBlockBytes;
  struct ReadOp {
    uint32_t left = 1;  // one for the issuing loop
    int result = 0;
    int bytes;
    IoCallback done;
  };
  auto op = std::make_shared<ReadOp>();
  op->bytes = int(std::min<uint64_t>(blocks * kBlockBytes, INT32_MAX));
  op->done = std::move(done);
  auto finish_one = [op](int r) {
    if (r < 0 && op->result == 0) op->result = r;
    if (--op->left == 0) op->done(op->result < 0 ? op->result : op->bytes);
  };
  uint64_t i = 0;
  while (i < blocks) {
    const Location first = map_->get(lba + i);
    uint64_t n = 1;
    while (i + n < blocks && n < kCopyBatchBlocks) {
      const Location next = map_->get(lba + i + n);
      if (first == kUnmapped ? next != kUnmapped : next != first + n) break;
      n++;
    }
    if (!map_->ok()) {  // a map page could not be read: nothing it names is served
      op->result = -EIO;
      break;
    }
    uint8_t* dst = out + i * kBlockBytes;
    if (first == kUnmapped) {
      std::memset(dst, 0, n * kBlockBytes);
    } else {
      pin(first);
      op->left++;
      Device& dev = in_cache(first) ? *cache_ : *base_;
      dev.read(*reactor_, block_of(first) * kBlockBytes, uint32_t(n * kBlockBytes), dst, [this, first, n, finish_one](int r) {
        unpin(first);
        finish_one(r < 0 ? r : (uint64_t(r) == n * kBlockBytes ? 0 : -EIO));
      });
    }
    i += n;
  }
  finish_one(0);
}

// ---- background: compaction and GC --------------------------------------------------------------

bool FtlDevice::gc_needed() const { return free_bands_.size() < gc_threshold_bands_; }

int FtlDevice::pick_victim() const {
  const double now = double(stats_.host_write_bytes / kBlockBytes);
  int best = -1;
  double best_score = -1;
  for (int b = 0; b < int(bands_.size()); b++) {
    const Band& band = bands_[b];
    if (band.state != BandState::kClosed || band.valid_blocks >= geo_.band.data_blocks) continue;  // a full band frees nothing
    const double u = double(band.valid_blocks) / geo_.band.data_blocks;
    const double score = (1 - u) * (now - double(band.closed_at) + 1) / (1 + u);
    if (score > best_score) {
      best_score = score;
      best = b;
    }
  }
  return best;
}

void FtlDevice::step_done() {
  // Posted, so a chain of steps that complete without I/O does not grow the stack.
  on_reactor([this] {
    worker_busy_ = false;
    admit_waiting();
    kick();
  });
}

void FtlDevice::kick() {
  if (worker_busy_ || stopping_ || !failed_.empty()) return;
  // 1. GC first when free bands run low: compaction needs bands.
  if (gc_needed() && (victim_.band >= 0 || pick_victim() >= 0) && (cold_.band >= 0 || !free_bands_.empty())) {
    worker_busy_ = true;
    return gc_step();
  }
  // 2. Compaction of the oldest full chunk whose writes have all landed.
  if (!full_chunks_.empty() && chunks_[full_chunks_.front()].writes_in_flight == 0 && (hot_.band >= 0 || free_bands_.size() > kGcReserveBands)) {
    worker_busy_ = true;
    return compact_step(full_chunks_.front());
  }
  // 3. Host writes wait for chunks the open hot band still holds, and nothing else would free
  //    one: close the band early (padded).
  if (!waiting_.empty() && hot_.band >= 0 && !hot_.feeders.empty() && full_chunks_.empty()) {
    worker_busy_ = true;
    return close_band(hot_, [this] { step_done(); });
  }
  // 4. Compaction is out of bands, GC has no victim left (they all wait for the cold band):
  //    close the cold band early so they can be erased.
  if (free_bands_.size() <= kGcReserveBands && cold_.band >= 0 && !cold_.feeders.empty() && victim_.band < 0 && pick_victim() < 0) {
    worker_busy_ = true;
    return close_band(cold_, [this] { step_done(); });
  }
}

void FtlDevice::base_write(bool cold, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  // On an FDP base hot and cold bands go through different placement handles, so the drive
  // keeps them in different reclaim units: a band erased later empties whole units.
  Placement* p = base_->placement();
  if (p != nullptr && p->handle_count() >= 2) return p->write_placed(*reactor_, offset_bytes, length_bytes, buffer, cold ? 1 : 0, std::move(done));
  base_->write(*reactor_, offset_bytes, length_bytes, buffer, std::move(done));
}

bool FtlDevice::open_band(OpenBand& ob, bool cold) {
  if (free_bands_.empty()) return false;
  const int b = free_bands_.front();
  free_bands_.pop_front();
  set_band_state(b, BandState::kOpen);
  ob = OpenBand{};
  ob.band = b;
  ob.cold = cold;
  bands_[b].last_write_end = band_first_block(b);
  return true;
}

namespace {
// A trim entry still matters while some block of its range is unmapped: it shadows older
// copies of that block in other bands. Once every block has newer data, it can go.
bool trim_needed(L2pMap& map, const FooterEntry& e) {
  for (uint64_t i = 0; i < e.trim_blocks; i++) {
    if (map.get(e.lba + i) == kUnmapped) return true;
  }
  return false;
}
}  // namespace

void FtlDevice::compact_step(int c) {
  Chunk& ch = chunks_[c];
  if (ch.state == ChunkState::kFull) {
    set_chunk_state(c, ChunkState::kDraining);
    ch.compact_block = 0;
    ch.compact_trim = 0;
  }
  if (hot_.band < 0 && !open_band(hot_, false)) {
    worker_busy_ = false;
    return;
  }
  const uint32_t data_room = geo_.band.data_blocks - hot_.data_blocks;
  const size_t entry_room = geo_.band.entry_capacity - hot_.pending.size();
  if (data_room == 0 || entry_room == 0) return close_band(hot_, [this] { step_done(); });
  std::vector<Pending> batch;
  uint32_t data = 0;
  const uint64_t base_block = chunk_first_block(c);
  auto take_trims_before = [&](uint64_t seq) {
    while (ch.compact_trim < ch.trims.size() && ch.trims[ch.compact_trim].seq < seq && batch.size() < entry_room) {
      const FooterEntry& t = ch.trims[ch.compact_trim++];
      if (trim_needed(*map_, t)) batch.push_back({t, kUnmapped});
    }
  };
  while (ch.compact_block < ch.write_blocks && data < std::min(data_room, kCopyBatchBlocks) && batch.size() < entry_room) {
    const uint64_t block = base_block + ch.compact_block;
    const uint64_t lba = slot_lba_[block];
    if (lba != kNoLba) {
      take_trims_before(slot_seq_[block]);
      if (batch.size() >= entry_room) break;
      if (map_->get(lba) == (kCacheTag | block)) {
        batch.push_back({{lba, slot_seq_[block], 0}, kCacheTag | block});
        data++;
      }
    }
    ch.compact_block++;
  }
  if (ch.compact_block >= ch.write_blocks) take_trims_before(~uint64_t{0});
  const bool finished = ch.compact_block >= ch.write_blocks && ch.compact_trim >= ch.trims.size();
  auto after = [this, c, finished] {
    if (finished) {
      full_chunks_.pop_front();
      if (hot_.band >= 0) {
        set_chunk_state(c, ChunkState::kDrained);
        chunks_[c].drain_band = hot_.band;
        hot_.feeders.push_back(c);
      } else {
        free_chunk(c);
      }
    }
    step_done();
  };
  if (batch.empty()) return after();
  append_blocks(hot_, std::move(batch), false, after);
}

void FtlDevice::gc_step() {
  if (victim_.band < 0) {
    const int v = pick_victim();
    set_band_state(v, BandState::kVictim);
    victim_ = VictimCursor{};
    victim_.band = v;
    stats_.gc_victims++;
    auto buf = std::make_shared<AlignedBuffer>(size_t(geo_.band.footer_blocks) * kBlockBytes);
    const uint64_t at = (band_first_block(v) + geo_.band.data_blocks) * kBlockBytes;
    base_->read(*reactor_, at, uint32_t(buf->size()), buf->data(), [this, v, buf](int r) {
      auto footer = r < 0 ? std::nullopt : decode_footer(buf->data(), geo_.band.footer_blocks, geo_.sb.ftl_uuid, uint32_t(v));
      if (!footer) {
        fail(str("band ", v, " footer on ", base_->description().uri, " is unreadable or corrupt"));
      } else {
        victim_.entries = std::move(footer->entries);
      }
      step_done();
    });
    return;
  }
  if (cold_.band < 0 && !open_band(cold_, true)) {
    worker_busy_ = false;
    return;
  }
  const uint32_t data_room = geo_.band.data_blocks - cold_.data_blocks;
  const size_t entry_room = geo_.band.entry_capacity - cold_.pending.size();
  if (data_room == 0 || entry_room == 0) return close_band(cold_, [this] { step_done(); });
  const int v = victim_.band;
  std::vector<Pending> batch;
  uint32_t data = 0;
  while (victim_.next < victim_.entries.size() && data < std::min(data_room, kCopyBatchBlocks) && batch.size() < entry_room) {
    const FooterEntry& e = victim_.entries[victim_.next];
    if (e.trim_blocks > 0) {
      if (trim_needed(*map_, e)) batch.push_back({e, kUnmapped});
    } else {
      const Location at = kBaseTag | (band_first_block(v) + victim_.data_index);
      victim_.data_index++;
      if (map_->get(e.lba) == at) {
        batch.push_back({e, at});
        data++;
      }
    }
    victim_.next++;
  }
  stats_.gc_relocated_blocks += data;
  if (victim_.next >= victim_.entries.size()) {
    // Relocated: erased once every copy is in a closed band.
    auto after = [this, v] {
      victim_ = VictimCursor{};
      if (cold_.band >= 0) {
        set_band_state(v, BandState::kRelocated);
        bands_[v].drain_band = cold_.band;
        cold_.feeders.push_back(v);
      } else {
        erase_band(v);
      }
      step_done();
    };
    if (batch.empty()) return after();
    return append_blocks(cold_, std::move(batch), true, after);
  }
  append_blocks(cold_, std::move(batch), true, [this] { step_done(); });
}

void FtlDevice::append_blocks(OpenBand& ob, std::vector<Pending> blocks, bool gc, std::function<void()> done) {
  std::vector<size_t> data_index;
  for (size_t i = 0; i < blocks.size(); i++) {
    if (blocks[i].entry.trim_blocks == 0) data_index.push_back(i);
  }
  const uint32_t n = uint32_t(data_index.size());
  if (n == 0) {
    for (Pending& p : blocks) ob.pending.push_back(p);
    return done();
  }
  auto staging = std::make_shared<AlignedBuffer>(size_t(n) * kBlockBytes);
  auto left = std::make_shared<uint32_t>(1);
  auto error = std::make_shared<int>(0);
  auto shared_blocks = std::make_shared<std::vector<Pending>>(std::move(blocks));
  OpenBand* band = &ob;
  auto write_out = [this, band, staging, n, gc, shared_blocks, error, done] {
    if (*error < 0) {
      fail(str("reading blocks to move from ", gc ? base_->description().uri : cache_->description().uri, ": ", io_result_text(*error)));
      return done();
    }
    const uint64_t at_block = band_first_block(band->band) + band->data_blocks;
    Band& b = bands_[band->band];
    stats_.base_writes++;
    if (b.last_write_end == at_block) stats_.base_sequential_writes++;
    b.last_write_end = at_block + n;
    base_write(band->cold, at_block * kBlockBytes, n * kBlockBytes, staging->data(), [this, band, staging, n, gc, shared_blocks, done](int r) {
      if (r < 0 || uint32_t(r) != n * kBlockBytes) {
        fail(str("band write to ", base_->description().uri, " failed: ", r < 0 ? io_result_text(r) : "short write"));
        return done();
      }
      (gc ? stats_.base_write_bytes_gc : stats_.base_write_bytes_host) += uint64_t(n) * kBlockBytes;
      band->data_blocks += n;
      for (Pending& p : *shared_blocks) band->pending.push_back(p);
      done();
    });
  };
  auto one_done = [left, error, write_out](int r) {
    if (r < 0 && *error == 0) *error = r;
    if (--*left == 0) write_out();
  };
  // Read runs of physically consecutive sources with one I/O each.
  uint32_t i = 0;
  while (i < n) {
    const Location first = (*shared_blocks)[data_index[i]].source;
    uint32_t run = 1;
    while (i + run < n && (*shared_blocks)[data_index[i + run]].source == first + run) run++;
    Device& dev = in_cache(first) ? *cache_ : *base_;
    (*left)++;
    dev.read(*reactor_, block_of(first) * kBlockBytes, run * kBlockBytes, staging->data() + size_t(i) * kBlockBytes,
             [one_done, run](int r) { one_done(r < 0 ? r : (uint32_t(r) == run * kBlockBytes ? 0 : -EIO)); });
    i += run;
  }
  one_done(0);
}

// Closes an open band: (padding,) flush, footer, flush; only then do the maps point at it and
// the chunks and victims it took blocks from go free.
void FtlDevice::close_band(OpenBand& ob, std::function<void()> done) {
  OpenBand* band = &ob;
  const uint64_t first = band_first_block(band->band);
  auto write_footer = [this, band, first, done](int r) {
    if (r < 0) {
      fail(str("closing band ", band->band, " on ", base_->description().uri, ": ", io_result_text(r)));
      return done();
    }
    Footer f;
    f.ftl_uuid = geo_.sb.ftl_uuid;
    f.band_index = uint32_t(band->band);
    f.close_seq = next_seq_;
    f.data_blocks = band->data_blocks;
    for (const Pending& p : band->pending) f.entries.push_back(p.entry);
    auto buf = std::make_shared<AlignedBuffer>(size_t(geo_.band.footer_blocks) * kBlockBytes);
    encode_footer(f, buf->data(), geo_.band.footer_blocks);
    const uint64_t at = first + geo_.band.data_blocks;
    stats_.base_writes++;
    if (bands_[band->band].last_write_end == at) stats_.base_sequential_writes++;
    bands_[band->band].last_write_end = at + geo_.band.footer_blocks;
    base_write(band->cold, at * kBlockBytes, uint32_t(buf->size()), buf->data(), [this, band, first, buf, done](int r) {
      if (r < 0) {
        fail(str("band footer write to ", base_->description().uri, " failed: ", io_result_text(r)));
        return done();
      }
      stats_.base_write_bytes_meta += buf->size();
      base_->flush(*reactor_, [this, band, first, done](int r) {
        if (r < 0) {
          fail(str("flushing ", base_->description().uri, ": ", io_result_text(r)));
          return done();
        }
        // The footer is durable: point the maps here wherever they still point at the source.
        const int b = band->band;
        uint64_t index = 0;
        for (const Pending& p : band->pending) {
          if (p.entry.trim_blocks > 0) continue;
          const Location here = kBaseTag | (first + index++);
          if (map_->get(p.entry.lba) == p.source) {
            set_l2p(p.entry.lba, here);
            bands_[b].valid_blocks++;
          }
        }
        set_band_state(b, BandState::kClosed);
        bands_[b].closed_at = stats_.host_write_bytes / kBlockBytes;
        const std::vector<int> feeders = std::move(band->feeders);
        const bool cold = band->cold;
        *band = OpenBand{};
        for (int f : feeders) {
          if (cold) {
            erase_band(f);
          } else {
            free_chunk(f);
          }
        }
        done();
      });
    });
  };
  // Data first: flush it before the footer that vouches for it.
  auto flush_data = [this, write_footer](int r) {
    if (r < 0) return write_footer(r);
    base_->flush(*reactor_, write_footer);
  };
  // Padded up to the footer's fixed place whenever the data stops short (an early close, or
  // the entries ran out first), so every base write lands where the previous one ended.
  if (band->data_blocks < geo_.band.data_blocks) {
    stats_.padded_band_closes++;
    const uint64_t at = first + band->data_blocks;
    const uint64_t pad = geo_.band.data_blocks - band->data_blocks;
    stats_.base_writes++;
    stats_.base_sequential_writes++;
    bands_[band->band].last_write_end = at + pad;
    stats_.base_write_bytes_meta += pad * kBlockBytes;
    return base_->write_zeroes(*reactor_, at * kBlockBytes, pad * kBlockBytes, flush_data);
  }
  flush_data(0);
}

void FtlDevice::free_chunk(int c) {
  Chunk& ch = chunks_[c];
  if (ch.readers > 0) {
    ch.free_when_unread = true;
    return;
  }
  set_chunk_state(c, ChunkState::kFree);
  ch = Chunk{};
  free_chunks_.push_back(c);
  admit_waiting();
}

void FtlDevice::erase_band(int b) {
  Band& band = bands_[b];
  if (band.readers > 0) {
    band.erase_when_unread = true;
    return;
  }
  assert(band.valid_blocks == 0);
  band.erase_when_unread = false;
  set_band_state(b, BandState::kErasing);
  base_->deallocate(*reactor_, band_first_block(b) * kBlockBytes, uint64_t(geo_.sb.band_blocks) * kBlockBytes, [this, b](int r) {
    if (r < 0) return fail(str("erasing band ", b, " on ", base_->description().uri, ": ", io_result_text(r)));
    set_band_state(b, BandState::kFree);
    bands_[b].drain_band = -1;
    free_bands_.push_back(b);
    kick();
  });
}

void FtlDevice::write_checkpoint() {
  // The map's changed pages go home first (flushed); the body's page table vouches for them.
  if (run_sync([this](IoCallback done) {
        if (!failed_.empty()) return done(-EIO);
        map_->store_all(std::move(done));
      }) < 0) {
    return;  // a failed FTL (or map) is recovered by a scan
  }
  // Snapshot on the FTL's thread (an erase may still complete there), write from this one.
  std::promise<std::shared_ptr<AlignedBuffer>> snapshot;
  CheckpointHeader h;
  on_reactor([&] {
    if (!failed_.empty()) return snapshot.set_value(nullptr);
    const uint64_t chunk_area = uint64_t(geo_.sb.chunk_count) * geo_.sb.chunk_blocks;
    size_t trims = 0;
    for (const Chunk& c : chunks_) trims += c.state == ChunkState::kFree ? 0 : c.trims.size();
    const std::vector<L2pPage> pages = map_->table();
    h.body_bytes = kCheckpointPageBytes * pages.size() + kCheckpointBandBytes * bands_.size() + kCheckpointChunkBytes * chunks_.size() +
                   kCheckpointSlotBytes * chunk_area + kCheckpointTrimBytes * trims;
    auto body = std::make_shared<AlignedBuffer>(h.body_bytes);
    uint8_t* p = body->data();
    auto put = [&p](uint64_t v) {
      std::memcpy(p, &v, 8);
      p += 8;
    };
    for (const L2pPage& page : pages) put(page.state == L2pPageState::kStored ? (uint64_t{1} << 32) | page.crc : 0);
    for (const Band& b : bands_) {
      // Open and erasing bands are erased again at open; the maps never point into them.
      const bool closed = b.state == BandState::kClosed || b.state == BandState::kVictim || b.state == BandState::kRelocated;
      put(closed ? 1 : 0);
      put(b.closed_at);
      put(closed ? b.valid_blocks : 0);
    }
    for (const Chunk& c : chunks_) {
      const bool used = c.state != ChunkState::kFree;
      put(used ? c.chunk_seq : 0);
      put(used ? c.write_blocks : 0);
      put(used ? c.trims.size() : 0);
    }
    for (uint64_t i = 0; i < chunk_area; i++) {
      put(slot_lba_[geo_.sb.chunk_start_block + i]);
      put(slot_seq_[geo_.sb.chunk_start_block + i]);
    }
    for (const Chunk& c : chunks_) {
      if (c.state == ChunkState::kFree) continue;
      for (const FooterEntry& t : c.trims) {
        put(t.lba);
        put(t.seq);
        put(t.trim_blocks);
      }
    }
    assert(p == body->data() + h.body_bytes);
    h.ftl_uuid = geo_.sb.ftl_uuid;
    h.next_seq = next_seq_;
    h.host_blocks = stats_.host_write_bytes / kBlockBytes;
    h.body_crc = crc32c(0, body->data(), h.body_bytes);
    snapshot.set_value(body);
  });
  std::shared_ptr<AlignedBuffer> body = snapshot.get_future().get();
  if (!body) return;
  const uint64_t body_block = checkpoint_body_block(geo_.sb.logical_blocks);
  const uint64_t body_blocks = (h.body_bytes + kBlockBytes - 1) / kBlockBytes;
  if (body_block + body_blocks > 1 + uint64_t(geo_.sb.checkpoint_blocks)) {
    log_line(str("ftl ", uuid_text_, ": checkpoint of ", h.body_bytes, " bytes exceeds its area; the next open scans"));
    return;
  }
  // The body, durable; then the header that vouches for it.
  if (Status s = cache_->write_sync(body_block * kBlockBytes, body_blocks * kBlockBytes, body->data()); !s.ok()) {
    log_line(str("ftl ", uuid_text_, ": checkpoint not written (", s.error().message, "); the next open scans"));
    return;
  }
  AlignedBuffer header(kBlockBytes);
  encode_checkpoint_header(h, header.data());
  if (Status s = cache_->write_sync(kBlockBytes, kBlockBytes, header.data()); !s.ok()) {
    log_line(str("ftl ", uuid_text_, ": checkpoint header not written (", s.error().message, "); the next open scans"));
  }
}

void FtlDevice::set_map_limit_bytes(uint64_t bytes) {
  on_reactor([this, bytes] {
    if (!map_) return;
    map_->set_limit_pages(map_limit_pages(bytes));
  });
}

FtlStatsData FtlDevice::stats() {
  std::promise<FtlStatsData> out;
  on_reactor([&] {
    FtlStatsData s = stats_;
    s.free_bands = uint32_t(free_bands_.size());
    s.free_chunks = uint32_t(free_chunks_.size());
    s.failed_reason = failed_;
    if (Placement* p = base_->placement()) {
      const PlacementStats ps = p->placement_stats();
      s.base_fdp_handles = ps.handle_count;
      s.base_fdp_host_write_bytes = ps.host_write_bytes;
      s.base_fdp_media_write_bytes = ps.media_write_bytes;
      s.base_fdp_handle_write_bytes = ps.handle_write_bytes;
    }
    if (map_) {
      s.map_bytes = map_->page_count() * kBlockBytes;
      s.map_limit_bytes = map_->limit_pages() * kBlockBytes;
      s.map_resident_bytes = map_->resident_pages() * kBlockBytes;
      s.map_page_reads = map_->page_reads();
      s.map_page_writes = map_->page_writes();
    }
    out.set_value(s);
  });
  return out.get_future().get();
}

}  // namespace strata
