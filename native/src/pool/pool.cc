#include "pool/pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <new>

#include "device/rules.h"
#include "util/crc32c.h"
#include "util/log.h"
#include "util/memory.h"

namespace strata {

using namespace format;

namespace {

constexpr uint64_t kSectorBytes = 512;

uint64_t now_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

Status io_error(int res, const std::string& what) {
  return Status(ErrorCode::kIoError, str(what, " failed: ", std::strerror(-res), "; check the device (dmesg) and the pool state"));
}

struct DecodedSuperblock {
  Superblock sb;
};

// Reads and verifies the superblock. NOT_FOUND when there is none.
Result<Superblock> read_superblock(Device& device) {
  const std::string& uri = device.description().uri;
  if (device.size_bytes() < kSuperblockBytes) {
    return Error{ErrorCode::kNotFound, str("device ", uri, " holds no Strata pool (it is smaller than a superblock)")};
  }
  AlignedBuffer buf(kSuperblockBytes);
  if (Status s = device.read_sync(0, kSuperblockBytes, buf.data()); !s.ok()) return s.error();
  Superblock sb{};
  std::memcpy(&sb, buf.data(), sizeof sb);
  if (std::memcmp(sb.magic, kSuperblockMagic, 8) != 0) {
    return Error{ErrorCode::kNotFound, str("device ", uri, " holds no Strata pool (no STRATAPL superblock); create one with createPool")};
  }
  if (sb.crc32c != crc32c(0, &sb, offsetof(Superblock, crc32c))) {
    return Error{ErrorCode::kDataLoss, str("the pool superblock on ", uri,
                                           " fails its CRC32C check: it was modified outside Strata or the device is failing; "
                                           "recreate the pool with force (data is lost) or restore the device")};
  }
  if (sb.format_version != kFormatVersion) {
    return Error{ErrorCode::kUnimplemented, str("pool on ", uri, " has format version ", sb.format_version, "; this engine reads version ",
                                                kFormatVersion, " — upgrade the engine")};
  }
  return sb;
}

// Every replica map in the process, in bytes (MapCharge keeps it).
std::atomic<uint64_t> g_replica_map_bytes{0};

uint64_t replica_maps_max_bytes() { return node_memory_bytes() / kReplicaMapsMemoryDivisor; }

// The per-replica part of the map limit: a size whose map could never be held is a bad request.
Status check_map_size(const std::string& what, uint64_t size_bytes, uint64_t cluster_size_bytes) {
  const uint64_t map_bytes = (size_bytes + cluster_size_bytes - 1) / cluster_size_bytes * sizeof(uint64_t);
  if (map_bytes <= kMaxReplicaMapBytes) return Status();
  return Status(ErrorCode::kInvalidArgument,
                str(what, " needs a ", map_bytes, "-byte cluster map in memory (8 bytes per ", cluster_size_bytes,
                    "-byte cluster); a replica's map may take at most ", kMaxReplicaMapBytes, " bytes, so replicas in this pool may be at most ",
                    kMaxReplicaMapBytes / sizeof(uint64_t) * cluster_size_bytes, " bytes: choose a smaller size, or a pool with larger clusters"));
}

Status out_of_memory(const std::string& what) {
  return Status(ErrorCode::kNoSpace, str("not enough memory to ", what, "; free memory on this node (or give the engine more) and retry"));
}

}  // namespace

Status MapCharge::grow_to(uint64_t bytes, const std::string& what) {
  if (bytes <= bytes_) {
    set(bytes);
    return Status();
  }
  const uint64_t more = bytes - bytes_;
  const uint64_t max_bytes = replica_maps_max_bytes();
  uint64_t held = g_replica_map_bytes.load();
  do {
    if (held + more > max_bytes) {
      return Status(ErrorCode::kNoSpace, str(what, " needs ", more, " more bytes of cluster map in memory; replica maps on this node may take ", max_bytes,
                                             " bytes (1/", kReplicaMapsMemoryDivisor, " of its ", node_memory_bytes(), " bytes of RAM) and already take ",
                                             held, ": choose a smaller size, use larger clusters, or place the replica on another node"));
    }
  } while (!g_replica_map_bytes.compare_exchange_weak(held, held + more));
  bytes_ = bytes;
  return Status();
}

void MapCharge::set(uint64_t bytes) {
  if (bytes >= bytes_) g_replica_map_bytes += bytes - bytes_;
  else g_replica_map_bytes -= bytes_ - bytes;
  bytes_ = bytes;
}

const char* pool_state_name(PoolState state) {
  switch (state) {
    case PoolState::kOnline: return "online";
    case PoolState::kFaulted: return "faulted";
    case PoolState::kClosing: return "closing";
    case PoolState::kClosed: return "closed";
  }
  return "faulted";
}

Pool::Pool(std::unique_ptr<Device> device, const Layout& layout) : device_(std::move(device)), device_description_(device_->description()), layout_(layout) {}

void Pool::set_state(PoolState next) {
  switch (next) {
    case PoolState::kOnline: assert(false && "a pool is born online and never returns"); break;
    case PoolState::kFaulted: assert(state_ == PoolState::kOnline || state_ == PoolState::kFaulted); break;
    case PoolState::kClosing: assert(state_ == PoolState::kOnline || state_ == PoolState::kFaulted); break;
    case PoolState::kClosed: assert(state_ == PoolState::kClosing); break;
  }
  if (state_ != next) log_line(str("pool ", name_, ": ", pool_state_name(state_), " -> ", pool_state_name(next)));
  state_ = next;
}

AlignedBuffer Pool::encode_superblock(bool clean_shutdown) const {
  Superblock sb{};
  std::memcpy(sb.magic, kSuperblockMagic, 8);
  sb.format_version = kFormatVersion;
  std::memcpy(sb.pool_uuid, uuid_bytes_.data(), 16);
  std::memcpy(sb.name, name_.data(), std::min(name_.size(), sizeof sb.name - 1));
  sb.cluster_size_bytes = layout_.cluster_size_bytes;
  sb.device_size_bytes = device_->size_bytes();
  sb.data_offset_bytes = layout_.data_offset_bytes;
  sb.cluster_count = cluster_count_;
  sb.max_cluster_count = layout_.max_cluster_count;
  sb.metadata_offset_bytes = kSuperblockBytes;
  sb.metadata_size_bytes = layout_.metadata_size_bytes;
  sb.checkpoint_slot_bytes = layout_.checkpoint_slot_bytes;
  sb.journal_offset_bytes = layout_.journal_offset_bytes;
  sb.journal_size_bytes = layout_.journal_size_bytes;
  sb.max_replica_count = layout_.max_replica_count;
  sb.clean_shutdown = clean_shutdown ? 1 : 0;
  sb.crc32c = crc32c(0, &sb, offsetof(Superblock, crc32c));
  AlignedBuffer buf(kSuperblockBytes);
  std::memcpy(buf.data(), &sb, sizeof sb);
  return buf;
}

Result<std::shared_ptr<Pool>> Pool::format(std::unique_ptr<Device> device, const CreatePoolOptions& o) {
  const std::string uri = device->description().uri;
  try {
    return format_device(std::move(device), o);
  } catch (const std::bad_alloc&) {
    return out_of_memory(str("format a pool on ", uri)).error();
  }
}

Result<std::shared_ptr<Pool>> Pool::format_device(std::unique_ptr<Device> device, const CreatePoolOptions& o) {
  const std::string uri = device->description().uri;
  if (!is_power_of_two(o.cluster_size_bytes) || o.cluster_size_bytes < kMinClusterSizeBytes || o.cluster_size_bytes > kMaxClusterSizeBytes) {
    return Error{ErrorCode::kInvalidArgument, str("cluster_size_bytes ", o.cluster_size_bytes, " must be a power of two from ",
                                                  kMinClusterSizeBytes, " (1 MiB) to ", kMaxClusterSizeBytes, " (1 GiB); 4194304 is the default")};
  }
  auto existing = read_superblock(*device);
  if (existing.ok() && !o.force) {
    const Superblock& sb = existing.value();
    UuidBytes u{};
    std::memcpy(u.data(), sb.pool_uuid, 16);
    return Error{ErrorCode::kFailedPrecondition, str("device ", uri, " already holds pool ", std::string(sb.name, strnlen(sb.name, 64)),
                                                     " (uuid ", format_uuid(u), "); import it instead, or pass force to overwrite")};
  }
  if (!existing.ok() && existing.error().code == ErrorCode::kIoError) return existing.error();
  if (!existing.ok() && !o.force) {
    auto foreign = find_foreign_signature(*device);
    if (!foreign.ok()) return foreign.error();
    if (foreign.value()) {
      return Error{ErrorCode::kFailedPrecondition, str("device ", uri, " holds ", *foreign.value(), "; a pool would overwrite it. If its data is not needed, ",
                                                       "wipe it (wipefs -a) or pass force to overwrite it")};
    }
  }

  uint64_t size = device->size_bytes();
  uint64_t max_clusters = reserved_max_cluster_count(size, o.cluster_size_bytes);
  Layout layout = make_layout(o.cluster_size_bytes, max_clusters, kMaxReplicaCount);
  uint64_t min_size = layout.data_offset_bytes + o.cluster_size_bytes;
  if (size < min_size) {
    return Error{ErrorCode::kInvalidArgument, str("device ", uri, " has ", size, " bytes; a pool with ", o.cluster_size_bytes,
                                                  "-byte clusters needs at least ", min_size, " bytes (", (min_size + (1 << 20) - 1) >> 20,
                                                  " MiB: metadata plus one cluster)")};
  }
  auto pool = std::shared_ptr<Pool>(new Pool(std::move(device), layout));
  pool->uuid_ = o.uuid;
  pool->uuid_bytes_ = *parse_uuid(o.uuid);
  pool->name_ = o.name;
  pool->cluster_count_ = std::min((size - layout.data_offset_bytes) / o.cluster_size_bytes, max_clusters);
  pool->durable_.reset(layout, pool->cluster_count_);
  pool->journal_epoch_ = random_u64();
  pool->checkpoint_generation_ = 1;
  pool->checkpoint_slot_ = 0;

  // Order: wipe the old superblock, then both checkpoint slots, write checkpoint A, and only then
  // the new superblock, so a crash mid-format never leaves a superblock over foreign metadata.
  Device& dev = *pool->device_;
  AlignedBuffer zeros(kMetadataBlockBytes);
  for (uint64_t offset : {uint64_t{0}, layout.slot_offset_bytes(0), layout.slot_offset_bytes(1), layout.journal_offset_bytes}) {
    if (Status s = dev.write_sync(offset, kMetadataBlockBytes, zeros.data()); !s.ok()) return s.error();
  }
  AlignedBuffer checkpoint = encode_checkpoint(pool->durable_, pool->checkpoint_generation_, pool->journal_epoch_);
  if (Status s = dev.write_sync(layout.slot_offset_bytes(0), checkpoint.size(), checkpoint.data()); !s.ok()) return s.error();
  AlignedBuffer sb = pool->encode_superblock(false);
  if (Status s = dev.write_sync(0, kSuperblockBytes, sb.data()); !s.ok()) return s.error();
  pool->build_runtime();
  return pool;
}

Result<std::shared_ptr<Pool>> Pool::import(std::unique_ptr<Device> device) {
  const std::string uri = device->description().uri;
  try {
    return import_device(std::move(device));
  } catch (const std::bad_alloc&) {
    // Not fatal, and nothing was written: the engine reports the pool missing with this reason.
    return out_of_memory(str("import the pool on ", uri, " (its metadata and replica cluster maps are held in memory)")).error();
  }
}

Result<std::shared_ptr<Pool>> Pool::import_device(std::unique_ptr<Device> device) {
  const std::string uri = device->description().uri;
  auto sb_or = read_superblock(*device);
  if (!sb_or.ok()) return sb_or.error();
  const Superblock& sb = sb_or.value();
  Layout layout = make_layout(sb.cluster_size_bytes, sb.max_cluster_count, sb.max_replica_count);
  if (!is_power_of_two(sb.cluster_size_bytes) || sb.cluster_size_bytes < kMinClusterSizeBytes || sb.max_replica_count > kMaxReplicaCount ||
      sb.max_cluster_count > kMaxMaxClusterCount || layout.data_offset_bytes != sb.data_offset_bytes ||
      layout.journal_offset_bytes != sb.journal_offset_bytes || layout.journal_size_bytes != sb.journal_size_bytes) {
    return Error{ErrorCode::kDataLoss, str("the pool superblock on ", uri, " describes an impossible layout; the metadata is corrupt")};
  }
  UuidBytes uuid_bytes{};
  std::memcpy(uuid_bytes.data(), sb.pool_uuid, 16);
  auto pool = std::shared_ptr<Pool>(new Pool(std::move(device), layout));
  pool->uuid_bytes_ = uuid_bytes;
  pool->uuid_ = format_uuid(uuid_bytes);
  pool->name_.assign(sb.name, strnlen(sb.name, sizeof sb.name));
  Device& dev = *pool->device_;

  // The newest valid checkpoint, then the journal written after it.
  AlignedBuffer slot(layout.checkpoint_slot_bytes);
  int best = -1;
  CheckpointInfo best_info{};
  std::string why;
  for (int i = 0; i < 2; i++) {
    if (Status s = dev.read_sync(layout.slot_offset_bytes(i), slot.size(), slot.data()); !s.ok()) return s.error();
    MetaState candidate;
    auto info = decode_checkpoint(slot.data(), layout, candidate);
    if (!info.ok()) {
      why += str(" slot ", i, ": ", info.error().message, ";");
      continue;
    }
    if (best < 0 || info.value().generation > best_info.generation) {
      best = i;
      best_info = info.value();
      pool->durable_ = std::move(candidate);
    }
  }
  if (best < 0) {
    return Error{ErrorCode::kDataLoss, str("pool ", pool->name_, " on ", uri, " has no valid metadata checkpoint (", why, " ); the pool cannot be imported")};
  }
  AlignedBuffer journal(layout.journal_size_bytes);
  if (Status s = dev.read_sync(layout.journal_offset_bytes, journal.size(), journal.data()); !s.ok()) return s.error();
  auto replayed = replay_journal(journal.data(), layout.journal_size_bytes, best_info.journal_epoch, pool->durable_);
  if (!replayed.ok()) return Error{ErrorCode::kDataLoss, str("pool ", pool->name_, " on ", uri, ": ", replayed.error().message)};
  pool->cluster_count_ = pool->durable_.cluster_count;
  if (layout.data_offset_bytes + pool->cluster_count_ * layout.cluster_size_bytes > dev.size_bytes()) {
    return Error{ErrorCode::kFailedPrecondition, str("device ", uri, " is smaller (", dev.size_bytes(), " bytes) than pool ", pool->name_,
                                                     " needs (", layout.data_offset_bytes + pool->cluster_count_ * layout.cluster_size_bytes,
                                                     "); restore the device's size before importing")};
  }
  // Before anything is written: the maps are what may not fit in memory.
  pool->build_runtime();
  // A fresh checkpoint with a new journal epoch: whatever torn tail the journal has can never
  // be mistaken for new records later.
  pool->checkpoint_generation_ = best_info.generation + 1;
  pool->checkpoint_slot_ = 1 - best;
  pool->journal_epoch_ = random_u64();
  AlignedBuffer checkpoint = encode_checkpoint(pool->durable_, pool->checkpoint_generation_, pool->journal_epoch_);
  if (Status s = dev.write_sync(layout.slot_offset_bytes(pool->checkpoint_slot_), checkpoint.size(), checkpoint.data()); !s.ok()) return s.error();
  AlignedBuffer sbuf = pool->encode_superblock(false);
  if (Status s = dev.write_sync(0, kSuperblockBytes, sbuf.data()); !s.ok()) return s.error();
  return pool;
}

void Pool::build_runtime() {
  slot_used_.assign(layout_.max_replica_count, false);
  cluster_used_.assign(layout_.max_cluster_count, false);
  cluster_reserved_.assign(layout_.max_cluster_count, false);
  release_pending_.assign(layout_.max_cluster_count, false);
  cluster_ios_.assign(layout_.max_cluster_count, 0);
  replicas_.clear();
  std::vector<Replica*> by_slot(layout_.max_replica_count, nullptr);
  for (uint32_t i = 0; i < layout_.max_replica_count; i++) {
    const ReplicaMeta& m = durable_.replicas[i];
    if (!m.in_use) continue;
    auto r = std::make_unique<Replica>();
    r->uuid_bytes = m.uuid;
    r->uuid = format_uuid(m.uuid);
    r->name = m.name;
    r->slot = i;
    r->size_bytes = m.size_bytes;
    r->thin = m.thin;
    r->state = ReplicaState::kOnline;
    const uint64_t clusters = (m.size_bytes + layout_.cluster_size_bytes - 1) / layout_.cluster_size_bytes;
    r->map_charge.set(clusters * sizeof(uint64_t));
    r->map.assign(clusters, Replica::kUnmapped);
    slot_used_[i] = true;
    by_slot[i] = r.get();
    replicas_[r->uuid] = std::move(r);
  }
  free_clusters_ = cluster_count_;
  for (uint64_t p = 0; p < cluster_count_; p++) {
    const ClusterEntry& c = durable_.clusters[p];
    if (c.replica_slot == kNoReplica) continue;
    Replica* r = by_slot[c.replica_slot];
    cluster_used_[p] = true;
    free_clusters_--;
    if (r != nullptr && c.virtual_cluster < r->map.size()) {
      r->map[c.virtual_cluster] = p;
      r->allocated_clusters++;
    }
  }
}

std::vector<std::string> Pool::replica_uuids_at_import() const {
  std::vector<std::string> out;
  for (auto& [uuid, r] : replicas_) out.push_back(uuid);
  return out;
}

// ---- info ----------------------------------------------------------------------------------

PoolInfoData Pool::info() const {
  uint64_t committed = 0;
  uint32_t count = 0;
  for (auto& [uuid, r] : replicas_) {
    if (r->state == ReplicaState::kCreating) continue;
    committed += r->size_bytes;
    count++;
  }
  return PoolInfoData{uuid_, name_, device_description_.uri, pool_state_name(state_), layout_.cluster_size_bytes,
                      cluster_count_ * layout_.cluster_size_bytes, (cluster_count_ - free_clusters_) * layout_.cluster_size_bytes,
                      committed, count, kFormatVersion};
}

ReplicaInfoData Pool::replica_info(const Replica& r) const {
  return ReplicaInfoData{r.uuid, r.name, uuid_, r.size_bytes, r.thin, r.allocated_clusters * layout_.cluster_size_bytes};
}

std::vector<ReplicaInfoData> Pool::list_replicas() const {
  std::vector<ReplicaInfoData> out;
  for (auto& [uuid, r] : replicas_) {
    if (r->state == ReplicaState::kOnline) out.push_back(replica_info(*r));
  }
  return out;
}

Replica* Pool::find_replica(const std::string& uuid) const {
  auto it = replicas_.find(uuid);
  return it == replicas_.end() ? nullptr : it->second.get();
}

Result<IoStats> Pool::stats(const std::string& uuid) const {
  if (uuid == uuid_) return stats_;
  Replica* r = find_replica(uuid);
  if (r == nullptr) return Error{ErrorCode::kNotFound, str("no pool or replica with uuid ", uuid)};
  return r->stats;
}

Result<std::pair<uint64_t, std::vector<bool>>> Pool::allocation_map(const std::string& uuid) const {
  Replica* r = find_replica(uuid);
  if (r == nullptr || r->state != ReplicaState::kOnline) return Error{ErrorCode::kNotFound, str("no replica ", uuid)};
  std::vector<bool> mapped(r->map.size());
  for (size_t i = 0; i < r->map.size(); i++) mapped[i] = r->map[i] != Replica::kUnmapped || r->allocating.count(i) > 0;
  return std::make_pair(layout_.cluster_size_bytes, std::move(mapped));
}

// ---- exclusive control operations -----------------------------------------------------------

void Pool::run_exclusive(std::function<void(std::function<void()>)> op) {
  exclusive_ops_.push_back(std::move(op));
  if (!exclusive_busy_) run_next_exclusive();
}

void Pool::run_next_exclusive() {
  if (exclusive_ops_.empty()) {
    exclusive_busy_ = false;
    return;
  }
  exclusive_busy_ = true;
  auto op = std::move(exclusive_ops_.front());
  exclusive_ops_.pop_front();
  auto self = shared_from_this();
  op([self] { self->reactor_->post([self] { self->run_next_exclusive(); }); });
}

// ---- journal --------------------------------------------------------------------------------

void Pool::fault(const std::string& why) {
  log_line(str("pool ", name_, " faulted: ", why));
  if (state_ == PoolState::kOnline) set_state(PoolState::kFaulted);
}

void Pool::commit(std::vector<Record> records, Done done) {
  size_t bytes = 0;
  for (auto& r : records) bytes += r.encoded_bytes();
  if (round_up(bytes, kMetadataBlockBytes) > layout_.journal_size_bytes) {
    done(Status(ErrorCode::kNoSpace, str("the operation needs ", bytes, " bytes of journal; pool ", name_, " has ",
                                         layout_.journal_size_bytes, "; split it into smaller steps")));
    return;
  }
  txns_.push_back(Txn{std::move(records), std::move(done)});
  pump_journal();
}

void Pool::pump_journal() {
  if (journal_busy_ || txns_.empty()) return;
  if (state_ == PoolState::kFaulted) {
    auto txns = std::move(txns_);
    txns_.clear();
    for (auto& t : txns) t.done(Status(ErrorCode::kIoError, str("pool ", name_, " is faulted after a metadata write error; export it and check the device")));
    maybe_idle();
    return;
  }
  // Everything queued goes out as one atomic batch, as long as it fits in the journal.
  std::vector<Record> records;
  std::vector<Done> dones;
  size_t bytes = 0;
  while (!txns_.empty()) {
    size_t txn_bytes = 0;
    for (auto& r : txns_.front().records) txn_bytes += r.encoded_bytes();
    if (!dones.empty() && round_up(bytes + txn_bytes, kMetadataBlockBytes) > layout_.journal_size_bytes) break;
    bytes += txn_bytes;
    for (auto& r : txns_.front().records) records.push_back(std::move(r));
    dones.push_back(std::move(txns_.front().done));
    txns_.pop_front();
  }
  uint64_t batch_bytes = round_up(bytes, kMetadataBlockBytes);
  journal_busy_ = true;
  if (journal_pos_bytes_ + batch_bytes > layout_.journal_size_bytes) {
    // Journal full: put the batch back, checkpoint the durable model into the other slot and
    // restart the journal. Until the checkpoint is durable the old slot + journal stay valid.
    std::deque<Txn> back;
    Txn merged{std::move(records), [dones = std::move(dones)](Status s) {
                 for (auto& d : dones) d(s);
               }};
    txns_.push_front(std::move(merged));
    write_checkpoint_then_pump();
    return;
  }
  auto encoded = encode_batch(records, durable_.last_seq + 1, journal_epoch_);
  auto buffer = std::make_shared<AlignedBuffer>(encoded.size());
  std::memcpy(buffer->data(), encoded.data(), encoded.size());
  auto self = shared_from_this();
  auto shared_records = std::make_shared<std::vector<Record>>(std::move(records));
  auto shared_dones = std::make_shared<std::vector<Done>>(std::move(dones));
  auto finish = [self, buffer, shared_records, shared_dones](int res) {
    self->journal_busy_ = false;
    Status status;
    if (res < 0) {
      status = io_error(res, str("writing the metadata journal of pool ", self->name_));
      self->fault(status.error().message);
    } else {
      for (const Record& r : *shared_records) {
        Status applied = self->durable_.apply(r);
        assert(applied.ok() && "runtime produced a record the durable model rejects");
        (void)applied;
      }
      self->durable_.last_seq += shared_records->size();
      self->journal_pos_bytes_ += buffer->size();
    }
    for (auto& d : *shared_dones) d(status);
    self->pump_journal();
    self->maybe_idle();
  };
  uint64_t offset = layout_.journal_offset_bytes + journal_pos_bytes_;
  device_->write(*reactor_, offset, static_cast<uint32_t>(buffer->size()), buffer->data(), [self, finish](int res) {
    if (res < 0) return finish(res);
    self->device_->flush(*self->reactor_, finish);
  });
}

void Pool::write_checkpoint_then_pump() {
  int slot = 1 - checkpoint_slot_;
  uint64_t generation = checkpoint_generation_ + 1;
  uint64_t epoch = random_u64();
  auto buffer = std::make_shared<AlignedBuffer>(encode_checkpoint(durable_, generation, epoch));
  auto self = shared_from_this();
  auto finish = [self, buffer, slot, generation, epoch](int res) {
    self->journal_busy_ = false;
    if (res < 0) {
      self->fault(io_error(res, "writing a metadata checkpoint").error().message);
    } else {
      self->checkpoint_slot_ = slot;
      self->checkpoint_generation_ = generation;
      self->journal_epoch_ = epoch;
      self->journal_pos_bytes_ = 0;
      log_line(str("pool ", self->name_, ": checkpoint generation ", generation, " in slot ", slot));
    }
    self->pump_journal();
  };
  device_->write(*reactor_, layout_.slot_offset_bytes(slot), static_cast<uint32_t>(buffer->size()), buffer->data(), [self, finish](int res) {
    if (res < 0) return finish(res);
    self->device_->flush(*self->reactor_, finish);
  });
}

// ---- allocator ------------------------------------------------------------------------------

std::vector<uint64_t> Pool::reserve_clusters(uint64_t count) {
  std::vector<uint64_t> out;
  if (count > free_clusters_) return out;
  for (uint64_t scanned = 0; out.size() < count && scanned < cluster_count_; scanned++) {
    uint64_t p = alloc_cursor_;
    alloc_cursor_ = (alloc_cursor_ + 1) % cluster_count_;
    if (cluster_used_[p]) continue;
    cluster_used_[p] = true;
    cluster_reserved_[p] = true;
    out.push_back(p);
  }
  assert(out.size() == count);
  free_clusters_ -= count;
  return out;
}

void Pool::unreserve(const std::vector<uint64_t>& clusters) {
  for (uint64_t p : clusters) {
    assert(cluster_used_[p] && cluster_reserved_[p]);
    cluster_reserved_[p] = false;
    cluster_used_[p] = false;
    free_clusters_++;
  }
}

void Pool::release_cluster(uint64_t p) {
  assert(cluster_used_[p]);
  if (cluster_ios_[p] > 0) {
    release_pending_[p] = true;  // freed when the last earlier I/O on it completes
    return;
  }
  release_pending_[p] = false;
  cluster_used_[p] = false;
  free_clusters_++;
}

void Pool::zero_clusters(const std::vector<uint64_t>& clusters, Done done) {
  if (clusters.empty()) return done(Status());
  auto remaining = std::make_shared<size_t>(clusters.size());
  auto first_error = std::make_shared<int>(0);
  auto self = shared_from_this();
  for (uint64_t p : clusters) {
    device_->write_zeroes(*reactor_, layout_.data_offset_bytes + p * layout_.cluster_size_bytes, layout_.cluster_size_bytes,
                          [self, remaining, first_error, done](int res) {
                            if (res < 0 && *first_error == 0) *first_error = res;
                            if (--*remaining == 0) done(*first_error < 0 ? io_error(*first_error, "zeroing new clusters") : Status());
                          });
  }
}

std::vector<Record> Pool::run_records(RecordType type, uint32_t slot, const std::vector<std::pair<uint64_t, uint64_t>>& v_to_p) {
  std::vector<Record> out;
  for (size_t i = 0; i < v_to_p.size();) {
    size_t j = i + 1;
    while (j < v_to_p.size() && v_to_p[j].first == v_to_p[j - 1].first + 1 && v_to_p[j].second == v_to_p[j - 1].second + 1 && j - i < 0xFFFFFFFFu) j++;
    out.push_back(Record::of(type, ClusterRunPayload{slot, static_cast<uint32_t>(j - i), v_to_p[i].first, v_to_p[i].second}));
    i = j;
  }
  return out;
}

// ---- replica lifecycle ----------------------------------------------------------------------

void Pool::create_replica(const CreateReplicaOptions& o, std::function<void(Result<ReplicaInfoData>)> done) {
  auto self = shared_from_this();
  run_exclusive([self, o, done](std::function<void()> finish) {
    auto fail = [&](ErrorCode code, std::string message) {
      done(Error{code, std::move(message)});
      finish();
    };
    if (self->state_ != PoolState::kOnline) return fail(ErrorCode::kFailedPrecondition, str("pool ", self->name_, " is ", pool_state_name(self->state_)));
    if (o.size_bytes == 0 || o.size_bytes % kSectorBytes != 0) {
      return fail(ErrorCode::kInvalidArgument, str("replica size_bytes ", o.size_bytes, " must be a positive multiple of 512"));
    }
    if (o.name.empty() || o.name.size() > 63) return fail(ErrorCode::kInvalidArgument, str("replica name '", o.name, "' must be 1 to 63 bytes"));
    for (auto& [uuid, r] : self->replicas_) {
      if (r->name == o.name) return fail(ErrorCode::kAlreadyExists, str("pool ", self->name_, " already has a replica named '", o.name, "' (uuid ", uuid, ")"));
    }
    if (self->replicas_.count(o.uuid)) return fail(ErrorCode::kAlreadyExists, str("replica ", o.uuid, " already exists in pool ", self->name_));
    auto slot_it = std::find(self->slot_used_.begin(), self->slot_used_.end(), false);
    if (slot_it == self->slot_used_.end()) {
      return fail(ErrorCode::kNoSpace, str("pool ", self->name_, " already holds its maximum of ", self->layout_.max_replica_count, " replicas"));
    }
    const uint64_t cs = self->layout_.cluster_size_bytes;
    const uint64_t clusters = (o.size_bytes + cs - 1) / cs;
    // The map first, before any cluster or slot is taken: it is what may not fit in memory.
    const std::string what = str("replica ", o.uuid, " of ", o.size_bytes, " bytes");
    if (Status s = check_map_size(what, o.size_bytes, cs); !s.ok()) return fail(s.error().code, s.error().message);
    auto r = std::make_unique<Replica>();
    if (Status s = r->map_charge.grow_to(clusters * sizeof(uint64_t), what); !s.ok()) return fail(s.error().code, s.error().message);
    try {
      r->map.assign(clusters, Replica::kUnmapped);
    } catch (const std::bad_alloc&) {
      Status s = out_of_memory(str("hold the cluster map of ", what));
      return fail(s.error().code, s.error().message);
    }
    std::vector<uint64_t> reserved;
    if (!o.thin) {
      if (clusters > self->free_clusters_) {
        return fail(ErrorCode::kNoSpace, str("pool ", self->name_, " has ", self->free_clusters_, " free clusters (", self->free_clusters_ * cs,
                                             " bytes); a thick replica of ", o.size_bytes, " bytes needs ", clusters,
                                             "; create it thin, free space, or grow the pool"));
      }
      reserved = self->reserve_clusters(clusters);
    }
    uint32_t slot = static_cast<uint32_t>(slot_it - self->slot_used_.begin());
    self->slot_used_[slot] = true;
    r->uuid = o.uuid;
    r->uuid_bytes = *parse_uuid(o.uuid);
    r->name = o.name;
    r->slot = slot;
    r->size_bytes = o.size_bytes;
    r->thin = o.thin;
    Replica* replica = r.get();
    self->replicas_[o.uuid] = std::move(r);

    ReplicaCreatePayload create{};
    create.slot = slot;
    create.flags = o.thin ? kReplicaThin : 0;
    std::memcpy(create.uuid, replica->uuid_bytes.data(), 16);
    std::memcpy(create.name, o.name.data(), o.name.size());
    create.size_bytes = o.size_bytes;
    std::vector<std::pair<uint64_t, uint64_t>> v_to_p;
    for (uint64_t v = 0; v < reserved.size(); v++) v_to_p.emplace_back(v, reserved[v]);
    std::vector<Record> records{Record::of(RecordType::kReplicaCreate, create)};
    for (auto& rec : run_records(RecordType::kClusterAlloc, slot, v_to_p)) records.push_back(std::move(rec));

    auto undo = [self, o, slot, reserved]() {
      self->unreserve(reserved);
      self->slot_used_[slot] = false;
      self->replicas_.erase(o.uuid);
    };
    self->zero_clusters(reserved, [self, records = std::move(records), reserved, replica, undo, done, finish](Status zeroed) mutable {
      if (!zeroed.ok()) {
        undo();
        done(zeroed.error());
        return finish();
      }
      self->commit(std::move(records), [self, reserved, replica, undo, done, finish](Status s) {
        if (!s.ok()) {
          undo();
          done(s.error());
          return finish();
        }
        for (uint64_t v = 0; v < reserved.size(); v++) {
          replica->map[v] = reserved[v];
          self->cluster_reserved_[reserved[v]] = false;
        }
        replica->allocated_clusters = reserved.size();
        replica->state = ReplicaState::kOnline;
        done(self->replica_info(*replica));
        finish();
      });
    });
  });
}

void Pool::resize_replica(const std::string& uuid, uint64_t size_bytes, std::function<void(Result<ReplicaInfoData>)> done) {
  auto self = shared_from_this();
  run_exclusive([self, uuid, size_bytes, done](std::function<void()> finish) {
    auto fail = [&](ErrorCode code, std::string message) {
      done(Error{code, std::move(message)});
      finish();
    };
    if (self->state_ != PoolState::kOnline) return fail(ErrorCode::kFailedPrecondition, str("pool ", self->name_, " is ", pool_state_name(self->state_)));
    Replica* r = self->find_replica(uuid);
    if (r == nullptr || r->state != ReplicaState::kOnline) return fail(ErrorCode::kNotFound, str("no replica ", uuid));
    if (size_bytes % kSectorBytes != 0) return fail(ErrorCode::kInvalidArgument, str("replica size_bytes ", size_bytes, " must be a multiple of 512"));
    if (size_bytes < r->size_bytes) {
      return fail(ErrorCode::kInvalidArgument, str("replica ", uuid, " has ", r->size_bytes, " bytes; shrinking it to ", size_bytes,
                                                   " is not supported (replicas only grow); create a smaller replica and copy the data"));
    }
    if (size_bytes == r->size_bytes) {
      done(self->replica_info(*r));
      return finish();
    }
    const uint64_t cs = self->layout_.cluster_size_bytes;
    const uint64_t old_clusters = r->map.size();
    const uint64_t new_clusters = (size_bytes + cs - 1) / cs;
    // The larger map is charged and allocated before the resize record is written: a size made
    // durable that cannot be mapped would fail every later import of the pool.
    const std::string what = str("growing replica ", uuid, " to ", size_bytes, " bytes");
    if (Status s = check_map_size(what, size_bytes, cs); !s.ok()) return fail(s.error().code, s.error().message);
    const uint64_t old_map_bytes = r->map_charge.bytes();
    if (Status s = r->map_charge.grow_to(std::max(old_map_bytes, new_clusters * sizeof(uint64_t)), what); !s.ok()) {
      return fail(s.error().code, s.error().message);
    }
    try {
      r->map.reserve(new_clusters);  // the resize after the commit then cannot allocate, so cannot throw
    } catch (const std::bad_alloc&) {
      r->map_charge.set(old_map_bytes);
      Status s = out_of_memory(str("hold the cluster map for ", what));
      return fail(s.error().code, s.error().message);
    }
    std::vector<uint64_t> reserved;
    if (!r->thin && new_clusters > old_clusters) {
      uint64_t need = new_clusters - old_clusters;
      if (need > self->free_clusters_) {
        r->map_charge.set(old_map_bytes);
        return fail(ErrorCode::kNoSpace, str("pool ", self->name_, " has ", self->free_clusters_, " free clusters; growing thick replica ", uuid,
                                             " to ", size_bytes, " bytes needs ", need, " more; free space or grow the pool"));
      }
      reserved = self->reserve_clusters(need);
    }
    std::vector<std::pair<uint64_t, uint64_t>> v_to_p;
    for (uint64_t i = 0; i < reserved.size(); i++) v_to_p.emplace_back(old_clusters + i, reserved[i]);
    std::vector<Record> records{Record::of(RecordType::kReplicaResize, ReplicaResizePayload{r->slot, 0, size_bytes})};
    for (auto& rec : run_records(RecordType::kClusterAlloc, r->slot, v_to_p)) records.push_back(std::move(rec));
    self->zero_clusters(reserved, [self, r, records = std::move(records), reserved, size_bytes, new_clusters, old_clusters, old_map_bytes, done, finish](Status zeroed) mutable {
      if (!zeroed.ok()) {
        self->unreserve(reserved);
        r->map_charge.set(old_map_bytes);
        done(zeroed.error());
        return finish();
      }
      self->commit(std::move(records), [self, r, reserved, size_bytes, new_clusters, old_clusters, old_map_bytes, done, finish](Status s) {
        if (!s.ok()) {
          self->unreserve(reserved);
          r->map_charge.set(old_map_bytes);
          done(s.error());
          return finish();
        }
        r->size_bytes = size_bytes;
        if (new_clusters > r->map.size()) r->map.resize(new_clusters, Replica::kUnmapped);
        for (uint64_t i = 0; i < reserved.size(); i++) {
          r->map[old_clusters + i] = reserved[i];
          self->cluster_reserved_[reserved[i]] = false;
        }
        r->allocated_clusters += reserved.size();
        done(self->replica_info(*r));
        finish();
      });
    });
  });
}

void Pool::destroy_replica(const std::string& uuid, Done done) {
  auto self = shared_from_this();
  run_exclusive([self, uuid, done](std::function<void()> finish) {
    Replica* r = self->find_replica(uuid);
    if (r == nullptr || r->state != ReplicaState::kOnline) {
      done(Status(ErrorCode::kNotFound, str("no replica ", uuid)));
      return finish();
    }
    if (self->state_ != PoolState::kOnline) {
      done(Status(ErrorCode::kFailedPrecondition, str("pool ", self->name_, " is ", pool_state_name(self->state_))));
      return finish();
    }
    r->state = ReplicaState::kDestroying;
    auto write_record = [self, r, uuid, done, finish]() {
      self->commit({Record::of(RecordType::kReplicaDestroy, ReplicaDestroyPayload{r->slot, 0})}, [self, r, uuid, done, finish](Status s) {
        if (!s.ok()) {
          r->state = ReplicaState::kOnline;
          done(s);
          return finish();
        }
        for (uint64_t p : r->map) {
          if (p != Replica::kUnmapped) self->release_cluster(p);
        }
        self->slot_used_[r->slot] = false;
        self->replicas_.erase(uuid);
        done(Status());
        finish();
      });
    };
    if (r->inflight_ios == 0) {
      write_record();
    } else {
      r->on_drained.push_back(write_record);
    }
  });
}

// ---- thin <-> thick -------------------------------------------------------------------------

// A thin -> thick conversion in progress. Its clusters are claimed in r->allocating (so a write
// to one waits for this allocation instead of starting its own) and reserved in the allocator;
// nothing is durable until one journal batch holds their allocation records and the flag.
struct Pool::Thicken {
  Replica* replica = nullptr;
  std::function<void(Result<ReplicaInfoData>)> done;
  std::function<void()> finish;
  std::vector<bool> claimed_mask;  // by virtual cluster
  std::vector<uint64_t> claimed;   // virtual clusters this conversion allocates
  std::vector<uint64_t> reserved;  // their physical clusters, same order
  uint64_t rounds = 0;             // claim rounds (more than one: writes were allocating)
  uint64_t waited_for = 0;         // allocations writes had started that the conversion waited for
};

void Pool::set_replica_thin(const std::string& uuid, bool thin, std::function<void(Result<ReplicaInfoData>)> done) {
  auto self = shared_from_this();
  run_exclusive([self, uuid, thin, done](std::function<void()> finish) {
    auto fail = [&](ErrorCode code, std::string message) {
      done(Error{code, std::move(message)});
      finish();
    };
    Replica* r = self->find_replica(uuid);
    if (r == nullptr || r->state != ReplicaState::kOnline) return fail(ErrorCode::kNotFound, str("no replica ", uuid));
    if (self->state_ != PoolState::kOnline) return fail(ErrorCode::kFailedPrecondition, str("pool ", self->name_, " is ", pool_state_name(self->state_)));
    if (r->thin == thin) {
      done(self->replica_info(*r));  // already so: nothing to do
      return finish();
    }
    if (thin) {
      // Thick -> thin frees nothing: the clusters stay allocated until deallocates free them, as
      // for any thin replica. Until the record is durable the replica behaves as thick.
      self->commit({Record::of(RecordType::kReplicaSetThin, ReplicaSetThinPayload{r->slot, kReplicaThin})}, [self, r, done, finish](Status s) {
        if (!s.ok()) {
          done(s.error());
          return finish();
        }
        r->thin = true;
        done(self->replica_info(*r));
        finish();
      });
      return;
    }
    auto job = std::make_shared<Thicken>();
    job->replica = r;
    job->done = done;
    job->finish = finish;
    job->claimed_mask.assign(r->map.size(), false);
    r->thickening = true;
    self->thicken_round(job);
  });
}

// Claims every cluster that is neither mapped nor being allocated, then waits for the
// allocations writes started before (they may fail and leave their cluster unmapped: the next
// round claims it). Once every cluster is mapped or claimed: zero, then one journal batch.
void Pool::thicken_round(const std::shared_ptr<Thicken>& job) {
  Replica& r = *job->replica;
  if (state_ != PoolState::kOnline) return thicken_finish(job, Status(ErrorCode::kFailedPrecondition, str("pool ", name_, " is ", pool_state_name(state_))));
  auto is_fresh = [&r](uint64_t v) { return r.map[v] == Replica::kUnmapped && r.allocating.count(v) == 0; };
  // Counted before anything is held: a huge thin replica in a small pool fails here cheaply.
  uint64_t need = 0;
  for (uint64_t v = 0; v < r.map.size(); v++) need += is_fresh(v) ? 1 : 0;
  if (need > free_clusters_) {
    const uint64_t cs = layout_.cluster_size_bytes;
    return thicken_finish(job, Status(ErrorCode::kNoSpace, str("making replica ", r.uuid, " thick needs ", need * cs, " bytes (", need,
                                                               " clusters it has not allocated yet); pool ", name_, " has ", free_clusters_ * cs,
                                                               " bytes free (", free_clusters_, " clusters). Free space, grow the pool, or keep the replica thin")));
  }
  std::vector<uint64_t> fresh;
  fresh.reserve(need);
  for (uint64_t v = 0; v < r.map.size(); v++) {
    if (is_fresh(v)) fresh.push_back(v);
  }
  std::vector<uint64_t> foreign;
  for (auto& [v, waiters] : r.allocating) {
    if (!job->claimed_mask[v]) foreign.push_back(v);
  }
  auto reserved = reserve_clusters(fresh.size());
  for (size_t i = 0; i < fresh.size(); i++) {
    r.allocating[fresh[i]];  // claimed: writes to it now wait for this conversion
    job->claimed_mask[fresh[i]] = true;
    job->claimed.push_back(fresh[i]);
    job->reserved.push_back(reserved[i]);
  }
  auto self = shared_from_this();
  job->rounds++;
  job->waited_for += foreign.size();
  if (!foreign.empty()) {
    auto pending = std::make_shared<size_t>(foreign.size());
    for (uint64_t v : foreign) {
      r.allocating[v].push_back([self, job, pending](Status) {
        if (--*pending == 0) self->reactor_->post([self, job] { self->thicken_round(job); });
      });
    }
    return;
  }
  // Zero first, record second (as for a thick create): the new clusters read as zeros, exactly
  // what the thin replica returned for them.
  zero_clusters(job->reserved, [self, job](Status zeroed) {
    if (!zeroed.ok()) return self->thicken_finish(job, zeroed);
    std::vector<std::pair<uint64_t, uint64_t>> v_to_p;
    for (size_t i = 0; i < job->claimed.size(); i++) v_to_p.emplace_back(job->claimed[i], job->reserved[i]);
    std::sort(v_to_p.begin(), v_to_p.end());
    auto records = run_records(RecordType::kClusterAlloc, job->replica->slot, v_to_p);
    records.push_back(Record::of(RecordType::kReplicaSetThin, ReplicaSetThinPayload{job->replica->slot, 0}));
    self->commit(std::move(records), [self, job](Status s) { self->thicken_finish(job, s); });
  });
}

void Pool::thicken_finish(const std::shared_ptr<Thicken>& job, Status status) {
  Replica& r = *job->replica;
  std::vector<std::pair<uint64_t, std::vector<std::function<void(Status)>>>> waiting;
  for (size_t i = 0; i < job->claimed.size(); i++) {
    const uint64_t v = job->claimed[i];
    auto it = r.allocating.find(v);
    assert(it != r.allocating.end());
    waiting.emplace_back(v, std::move(it->second));
    r.allocating.erase(it);
    if (status.ok()) {
      r.map[v] = job->reserved[i];
      cluster_reserved_[job->reserved[i]] = false;
    }
  }
  r.thickening = false;
  if (status.ok()) {
    r.allocated_clusters += job->claimed.size();
    r.thin = false;
    size_t writes_waited = 0;
    for (auto& [v, waiters] : waiting) {
      writes_waited += waiters.size();
      for (auto& w : waiters) w(Status());
    }
    log_line(str("pool ", name_, ": replica ", r.uuid, " is thick: allocated ", job->claimed.size(), " clusters in ", job->rounds, " rounds, after ",
                 job->waited_for, " allocations writes had started; ", writes_waited, " write parts waited for it"));
    job->done(replica_info(r));
  } else {
    unreserve(job->reserved);
    // Nothing changed: writes that waited for a claimed cluster allocate it themselves, as for
    // any thin replica.
    for (auto& [v, waiters] : waiting) {
      for (auto& w : waiters) ensure_cluster(r, v, std::move(w));
    }
    job->done(status.error());
  }
  job->finish();
}

void Pool::grow(std::function<void(Result<PoolInfoData>)> done) {
  auto self = shared_from_this();
  run_exclusive([self, done](std::function<void()> finish) {
    if (self->state_ != PoolState::kOnline) {
      done(Error{ErrorCode::kFailedPrecondition, str("pool ", self->name_, " is ", pool_state_name(self->state_))});
      return finish();
    }
    auto size = self->device_->refresh_size();
    if (!size.ok()) {
      done(size.error());
      return finish();
    }
    const Layout& l = self->layout_;
    uint64_t fits = size.value() > l.data_offset_bytes ? (size.value() - l.data_offset_bytes) / l.cluster_size_bytes : 0;
    uint64_t target = std::min(fits, l.max_cluster_count);
    if (target <= self->cluster_count_) {
      done(self->info());  // nothing to do: growing is idempotent
      return finish();
    }
    self->commit({Record::of(RecordType::kPoolGrow, PoolGrowPayload{target, size.value()})}, [self, target, done, finish](Status s) {
      if (!s.ok()) {
        done(s.error());
        return finish();
      }
      self->free_clusters_ += target - self->cluster_count_;
      self->cluster_count_ = target;
      // The superblock mirrors the new geometry for tools; the journal record is authoritative.
      auto sb = std::make_shared<AlignedBuffer>(self->encode_superblock(false));
      self->device_->write(*self->reactor_, 0, kSuperblockBytes, sb->data(), [self, sb, done, finish](int res) {
        auto complete = [self, done, finish](int r2) {
          if (r2 < 0) done(io_error(r2, "rewriting the superblock").error());
          else done(self->info());
          finish();
        };
        if (res < 0) return complete(res);
        self->device_->flush(*self->reactor_, complete);
      });
    });
  });
}

PoolCheckReportData Pool::check() const {
  PoolCheckReportData report;
  report.pool_uuid = uuid_;
  std::vector<uint32_t> owners(cluster_count_, 0);
  for (auto& [uuid, r] : replicas_) {
    for (uint64_t v = 0; v < r->map.size(); v++) {
      uint64_t p = r->map[v];
      if (p == Replica::kUnmapped) continue;
      if (p >= cluster_count_) {
        report.problems.push_back(str("replica ", uuid, " maps virtual cluster ", v, " to cluster ", p, " beyond the pool's ", cluster_count_));
        continue;
      }
      owners[p]++;
    }
  }
  for (uint64_t p = 0; p < cluster_count_; p++) {
    bool in_flight = cluster_reserved_[p] || release_pending_[p];
    if (owners[p] > 1) {
      report.doubly_owned_clusters++;
      report.problems.push_back(str("cluster ", p, " is owned ", owners[p], " times"));
    } else if (owners[p] == 1 && !cluster_used_[p]) {
      report.owned_but_free_clusters++;
      report.problems.push_back(str("cluster ", p, " is owned by a replica but free in the allocator"));
    } else if (owners[p] == 0 && cluster_used_[p] && !in_flight) {
      // Durable metadata may still name an owner whose free record is in flight.
      report.leaked_clusters++;
      report.problems.push_back(str("cluster ", p, " is allocated but owned by no replica"));
    }
  }
  uint64_t used = 0;
  for (uint64_t p = 0; p < cluster_count_; p++) used += cluster_used_[p] ? 1 : 0;
  if (used + free_clusters_ != cluster_count_) {
    report.problems.push_back(str("allocator counts ", free_clusters_, " free clusters but its bitmap has ", cluster_count_ - used));
  }
  return report;
}

// ---- replica I/O ----------------------------------------------------------------------------

Status Pool::check_io(const Replica* r, const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes) const {
  if (r == nullptr || r->state != ReplicaState::kOnline) return Status(ErrorCode::kNotFound, str("no replica ", uuid));
  if (state_ != PoolState::kOnline) return Status(ErrorCode::kFailedPrecondition, str("pool ", name_, " is ", pool_state_name(state_)));
  if (kind == IoKind::kFlush) return Status();
  if (offset_bytes % kSectorBytes != 0 || length_bytes % kSectorBytes != 0 || length_bytes == 0) {
    return Status(ErrorCode::kInvalidArgument, str("I/O offset ", offset_bytes, " and length ", length_bytes, " must be multiples of 512 (length > 0)"));
  }
  if (offset_bytes > r->size_bytes || length_bytes > r->size_bytes - offset_bytes) {
    return Status(ErrorCode::kOutOfRange, str("I/O [", offset_bytes, ", ", offset_bytes + length_bytes, ") is beyond the end of replica ", uuid,
                                              " (", r->size_bytes, " bytes)"));
  }
  return Status();
}

void Pool::ensure_cluster(Replica& r, uint64_t v, std::function<void(Status)> then) {
  if (r.map[v] != Replica::kUnmapped) return then(Status());
  if (auto it = r.allocating.find(v); it != r.allocating.end()) {
    it->second.push_back(std::move(then));
    return;
  }
  auto reserved = reserve_clusters(1);
  if (reserved.empty()) {
    return then(Status(ErrorCode::kNoSpace, str("pool ", name_, " has no free cluster for thin replica ", r.uuid,
                                                "; grow the pool, free space, or move the replica")));
  }
  uint64_t p = reserved[0];
  r.allocating[v].push_back(std::move(then));
  auto self = shared_from_this();
  Replica* rp = &r;
  auto complete = [self, rp, v, p](Status s) {
    auto waiters = std::move(rp->allocating[v]);
    rp->allocating.erase(v);
    if (s.ok()) {
      rp->map[v] = p;
      rp->allocated_clusters++;
      self->cluster_reserved_[p] = false;
    } else if (s.error().code != ErrorCode::kIoError) {
      self->unreserve({p});
    }
    for (auto& w : waiters) w(s);
  };
  // Zero first, record second: a durable allocation never exposes another replica's old bytes.
  zero_clusters({p}, [self, rp, v, p, complete](Status zeroed) {
    if (!zeroed.ok()) return complete(zeroed);
    self->commit(run_records(RecordType::kClusterAlloc, rp->slot, {{v, p}}), complete);
  });
}

void Pool::device_io_on_cluster(uint64_t p, std::function<void(std::function<void(int)>)> issue, std::function<void(int)> done) {
  cluster_ios_[p]++;
  auto self = shared_from_this();
  issue([self, p, done](int res) {
    if (--self->cluster_ios_[p] == 0 && self->release_pending_[p]) self->release_cluster(p);
    done(res);
  });
}

void Pool::io_finished(Replica& r) {
  assert(r.inflight_ios > 0 && inflight_ios_ > 0);
  r.inflight_ios--;
  inflight_ios_--;
  if (r.inflight_ios == 0 && !r.on_drained.empty()) {
    auto callbacks = std::move(r.on_drained);
    r.on_drained.clear();
    for (auto& c : callbacks) c();
  }
  maybe_idle();
}

// Statistics and drain bookkeeping for a finished replica I/O (every part done).
void Pool::account_io(Replica& r, IoKind kind, uint64_t length_bytes, uint64_t start_us, const Status& result) {
  const uint64_t latency = now_us() - start_us;
  for (IoStats* st : {&r.stats, &stats_}) {
    if (!result.ok()) st->errors++;
    switch (kind) {
      case IoKind::kRead: st->read_ops++; st->read_bytes += length_bytes; break;
      case IoKind::kWrite: st->write_ops++; st->write_bytes += length_bytes; break;
      case IoKind::kFlush: st->flush_ops++; break;
      case IoKind::kDeallocate:
      case IoKind::kWriteZeroes: st->unmap_ops++; break;
    }
    st->record_latency(latency);
  }
  io_finished(r);
}

void Pool::io(const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, uint8_t* buffer, Done done) {
  Replica* r = find_replica(uuid);
  if (Status s = check_io(r, uuid, kind, offset_bytes, length_bytes); !s.ok()) {
    if (r != nullptr) r->stats.errors++;
    stats_.errors++;
    return done(s);
  }
  r->inflight_ios++;
  inflight_ios_++;
  const uint64_t start_us = now_us();
  const uint64_t cs = layout_.cluster_size_bytes;

  // Fast path, the common case under load: a read or write inside one cluster whose mapping is
  // settled (a mapped cluster is durable: map[] is set only after its allocation record is
  // written). One device I/O and one callback, no parent bookkeeping.
  if ((kind == IoKind::kRead || kind == IoKind::kWrite) && offset_bytes % cs + length_bytes <= cs) {
    const uint64_t p = r->map[offset_bytes / cs];
    if (p != Replica::kUnmapped) {
      const uint64_t device_offset = layout_.data_offset_bytes + p * cs + offset_bytes % cs;
      const uint32_t n = static_cast<uint32_t>(length_bytes);
      cluster_ios_[p]++;
      auto complete = [self = shared_from_this(), r, p, kind, length_bytes, start_us, done = std::move(done)](int res) {
        if (--self->cluster_ios_[p] == 0 && self->release_pending_[p]) self->release_cluster(p);
        Status s = res < 0 ? io_error(res, kind == IoKind::kRead ? "replica read" : "replica write") : Status();
        self->account_io(*r, kind, length_bytes, start_us, s);
        done(s);
      };
      if (kind == IoKind::kRead) device_->read(*reactor_, device_offset, n, buffer, std::move(complete));
      else device_->write(*reactor_, device_offset, n, buffer, std::move(complete));
      return;
    }
  }

  struct Parent {
    uint64_t remaining = 1;  // +1 while parts are being issued
    Status first_error;
  };
  auto parent = std::make_shared<Parent>();
  auto self = shared_from_this();
  auto part_done = [self, r, parent, kind, length_bytes, start_us, done](Status s) {
    if (!s.ok() && parent->first_error.ok()) parent->first_error = s;
    if (--parent->remaining > 0) return;
    self->account_io(*r, kind, length_bytes, start_us, parent->first_error);
    done(parent->first_error);
  };
  auto from_res = [](const std::string& what) {
    return [what](int res) { return res < 0 ? io_error(res, what) : Status(); };
  };
  (void)from_res;

  if (kind == IoKind::kFlush) {
    parent->remaining++;
    device_->flush(*reactor_, [part_done](int res) { part_done(res < 0 ? io_error(res, "flush") : Status()); });
    part_done(Status());
    return;
  }

  std::vector<std::pair<uint64_t, uint64_t>> freed;  // whole clusters deallocated: (virtual, physical)
  for (uint64_t at = offset_bytes; at < offset_bytes + length_bytes;) {
    const uint64_t v = at / cs;
    const uint64_t in_cluster = at % cs;
    const uint32_t n = static_cast<uint32_t>(std::min(cs - in_cluster, offset_bytes + length_bytes - at));
    uint8_t* part_buffer = buffer == nullptr ? nullptr : buffer + (at - offset_bytes);
    const bool whole = in_cluster == 0 && n == cs;
    parent->remaining++;
    auto device_offset = [self, in_cluster](uint64_t p) { return self->layout_.data_offset_bytes + p * self->layout_.cluster_size_bytes + in_cluster; };
    switch (kind) {
      case IoKind::kRead: {
        uint64_t p = r->map[v];
        if (p == Replica::kUnmapped) {
          std::memset(part_buffer, 0, n);  // never written: zeros
          part_done(Status());
          break;
        }
        device_io_on_cluster(
            p, [self, p, n, part_buffer, device_offset](std::function<void(int)> cb) { self->device_->read(*self->reactor_, device_offset(p), n, part_buffer, cb); },
            [part_done](int res) { part_done(res < 0 ? io_error(res, "replica read") : Status()); });
        break;
      }
      case IoKind::kWrite: {
        ensure_cluster(*r, v, [self, r, v, n, part_buffer, part_done, device_offset](Status allocated) {
          if (!allocated.ok()) return part_done(allocated);
          uint64_t p = r->map[v];
          self->device_io_on_cluster(
              p, [self, p, n, part_buffer, device_offset](std::function<void(int)> cb) { self->device_->write(*self->reactor_, device_offset(p), n, part_buffer, cb); },
              [part_done](int res) { part_done(res < 0 ? io_error(res, "replica write") : Status()); });
        });
        break;
      }
      case IoKind::kDeallocate:
      case IoKind::kWriteZeroes: {
        uint64_t p = r->map[v];
        if (p == Replica::kUnmapped) {
          part_done(Status());  // already reads zeros
          break;
        }
        if (whole && r->thin && !r->thickening) {
          // Unmapped now (reads return zeros), returned to the allocator once the free record is durable.
          r->map[v] = Replica::kUnmapped;
          r->allocated_clusters--;
          freed.emplace_back(v, p);
          part_done(Status());
          break;
        }
        device_io_on_cluster(
            p, [self, p, n, device_offset](std::function<void(int)> cb) { self->device_->write_zeroes(*self->reactor_, device_offset(p), n, cb); },
            [part_done](int res) { part_done(res < 0 ? io_error(res, "replica write zeroes") : Status()); });
        break;
      }
      case IoKind::kFlush: break;
    }
    at += n;
  }
  if (!freed.empty()) {
    parent->remaining++;
    commit(run_records(RecordType::kClusterFree, r->slot, freed), [self, freed, part_done](Status s) {
      if (s.ok()) {
        for (auto& [v, p] : freed) self->release_cluster(p);
      }
      part_done(s);
    });
  }
  part_done(Status());
}

// ---- close ----------------------------------------------------------------------------------

void Pool::maybe_idle() {
  if (on_idle_.empty() || inflight_ios_ > 0 || journal_busy_ || !txns_.empty()) return;
  auto callbacks = std::move(on_idle_);
  on_idle_.clear();
  for (auto& c : callbacks) c();
}

void Pool::close(Done done) {
  auto self = shared_from_this();
  run_exclusive([self, done](std::function<void()> finish) {
    if (self->state_ == PoolState::kClosing || self->state_ == PoolState::kClosed) {
      done(Status(ErrorCode::kNotFound, str("pool ", self->uuid_, " is already closing")));
      return finish();
    }
    self->set_state(PoolState::kClosing);
    self->on_idle_.push_back([self, done, finish] {
      self->set_state(PoolState::kClosed);
      done(Status());
      finish();
    });
    self->maybe_idle();
  });
}

Status Pool::finish_export_sync() {
  assert(state_ == PoolState::kClosed);
  AlignedBuffer sb = encode_superblock(true);
  return device_->write_sync(0, kSuperblockBytes, sb.data());
}

Status Pool::finish_destroy_sync() {
  assert(state_ == PoolState::kClosed);
  AlignedBuffer zeros(kSuperblockBytes);
  return device_->write_sync(0, kSuperblockBytes, zeros.data());
}

}  // namespace strata
