#include "pool/metadata.h"

#include <cstring>

#include "util/crc32c.h"

namespace strata {

using namespace format;

void MetaState::reset(const Layout& new_layout, uint64_t new_cluster_count) {
  layout = new_layout;
  cluster_count = new_cluster_count;
  last_seq = 0;
  replicas.assign(layout.max_replica_count, ReplicaMeta{});
  clusters.assign(layout.max_cluster_count, ClusterEntry{kNoReplica, 0});
}

namespace {
template <typename T>
bool read_payload(const Record& record, T& out) {
  if (record.payload.size() != sizeof(T)) return false;
  std::memcpy(&out, record.payload.data(), sizeof(T));
  return true;
}
Status corrupt(const std::string& what) { return Status(ErrorCode::kDataLoss, str("pool metadata is corrupt: ", what)); }
}  // namespace

Status MetaState::apply(const Record& record) {
  switch (record.type) {
    case RecordType::kReplicaCreate: {
      ReplicaCreatePayload p{};
      if (!read_payload(record, p) || p.slot >= replicas.size()) return corrupt("bad replica create record");
      ReplicaMeta& r = replicas[p.slot];
      if (r.in_use) return corrupt(str("replica slot ", p.slot, " created twice"));
      r.in_use = true;
      std::memcpy(r.uuid.data(), p.uuid, 16);
      r.name.assign(p.name, strnlen(p.name, sizeof p.name));
      r.size_bytes = p.size_bytes;
      r.thin = (p.flags & kReplicaThin) != 0;
      break;
    }
    case RecordType::kReplicaDestroy: {
      ReplicaDestroyPayload p{};
      if (!read_payload(record, p) || p.slot >= replicas.size() || !replicas[p.slot].in_use) return corrupt("bad replica destroy record");
      replicas[p.slot] = ReplicaMeta{};
      for (auto& c : clusters) {
        if (c.replica_slot == p.slot) c = ClusterEntry{kNoReplica, 0};
      }
      break;
    }
    case RecordType::kReplicaResize: {
      ReplicaResizePayload p{};
      if (!read_payload(record, p) || p.slot >= replicas.size() || !replicas[p.slot].in_use) return corrupt("bad replica resize record");
      replicas[p.slot].size_bytes = p.size_bytes;
      break;
    }
    case RecordType::kClusterAlloc:
    case RecordType::kClusterFree: {
      ClusterRunPayload p{};
      if (!read_payload(record, p) || p.slot >= replicas.size() || !replicas[p.slot].in_use ||
          p.physical_cluster + p.count > cluster_count) {
        return corrupt("bad cluster record");
      }
      bool alloc = record.type == RecordType::kClusterAlloc;
      for (uint32_t i = 0; i < p.count; i++) {
        ClusterEntry& c = clusters[p.physical_cluster + i];
        if (alloc) {
          if (c.replica_slot != kNoReplica) return corrupt(str("cluster ", p.physical_cluster + i, " allocated twice"));
          c = ClusterEntry{p.slot, static_cast<uint32_t>(p.virtual_cluster + i)};
        } else {
          if (c.replica_slot != p.slot) return corrupt(str("cluster ", p.physical_cluster + i, " freed by a replica that does not own it"));
          c = ClusterEntry{kNoReplica, 0};
        }
      }
      break;
    }
    case RecordType::kReplicaSetThin: {
      ReplicaSetThinPayload p{};
      if (!read_payload(record, p) || p.slot >= replicas.size() || !replicas[p.slot].in_use || (p.flags & ~kReplicaThin) != 0) {
        return corrupt("bad replica set-thin record");
      }
      replicas[p.slot].thin = (p.flags & kReplicaThin) != 0;
      break;
    }
    case RecordType::kPoolGrow: {
      PoolGrowPayload p{};
      if (!read_payload(record, p) || p.cluster_count > layout.max_cluster_count) return corrupt("bad pool grow record");
      if (p.cluster_count > cluster_count) cluster_count = p.cluster_count;
      break;
    }
    default:
      return corrupt(str("unknown record type ", static_cast<int>(record.type)));
  }
  return Status();
}

AlignedBuffer encode_checkpoint(const MetaState& state, uint64_t generation, uint64_t journal_epoch) {
  const Layout& l = state.layout;
  AlignedBuffer slot(l.checkpoint_slot_bytes);
  uint8_t* body = slot.data() + kMetadataBlockBytes;
  auto* entries = reinterpret_cast<ReplicaEntry*>(body);
  for (uint32_t i = 0; i < l.max_replica_count; i++) {
    const ReplicaMeta& r = state.replicas[i];
    ReplicaEntry e{};
    if (r.in_use) {
      std::memcpy(e.uuid, r.uuid.data(), 16);
      std::memcpy(e.name, r.name.data(), std::min(r.name.size(), sizeof e.name - 1));
      e.size_bytes = r.size_bytes;
      e.flags = kReplicaInUse | (r.thin ? kReplicaThin : 0);
    }
    std::memcpy(&entries[i], &e, sizeof e);
  }
  std::memcpy(body + uint64_t{l.max_replica_count} * sizeof(ReplicaEntry), state.clusters.data(), l.max_cluster_count * sizeof(ClusterEntry));
  CheckpointHeader h{};
  std::memcpy(h.magic, kCheckpointMagic, 8);
  h.generation = generation;
  h.last_seq = state.last_seq;
  h.journal_epoch = journal_epoch;
  h.cluster_count = state.cluster_count;
  h.max_replica_count = l.max_replica_count;
  h.max_cluster_count = l.max_cluster_count;
  h.body_bytes = l.body_bytes();
  h.body_crc32c = crc32c(0, body, h.body_bytes);
  h.header_crc32c = crc32c(0, &h, offsetof(CheckpointHeader, header_crc32c));
  std::memcpy(slot.data(), &h, sizeof h);
  return slot;
}

Result<CheckpointInfo> decode_checkpoint(const uint8_t* slot, const Layout& l, MetaState& state) {
  CheckpointHeader h{};
  std::memcpy(&h, slot, sizeof h);
  if (std::memcmp(h.magic, kCheckpointMagic, 8) != 0) return Error{ErrorCode::kDataLoss, "no checkpoint in slot"};
  if (h.header_crc32c != crc32c(0, &h, offsetof(CheckpointHeader, header_crc32c))) return Error{ErrorCode::kDataLoss, "checkpoint header checksum mismatch"};
  if (h.max_replica_count != l.max_replica_count || h.max_cluster_count != l.max_cluster_count || h.body_bytes != l.body_bytes() ||
      h.cluster_count > l.max_cluster_count) {
    return Error{ErrorCode::kDataLoss, "checkpoint geometry does not match the superblock"};
  }
  const uint8_t* body = slot + kMetadataBlockBytes;
  if (h.body_crc32c != crc32c(0, body, h.body_bytes)) return Error{ErrorCode::kDataLoss, "checkpoint body checksum mismatch"};
  state.reset(l, h.cluster_count);
  state.last_seq = h.last_seq;
  const auto* entries = reinterpret_cast<const ReplicaEntry*>(body);
  for (uint32_t i = 0; i < l.max_replica_count; i++) {
    ReplicaEntry e{};
    std::memcpy(&e, &entries[i], sizeof e);
    if ((e.flags & kReplicaInUse) == 0) continue;
    ReplicaMeta& r = state.replicas[i];
    r.in_use = true;
    std::memcpy(r.uuid.data(), e.uuid, 16);
    r.name.assign(e.name, strnlen(e.name, sizeof e.name));
    r.size_bytes = e.size_bytes;
    r.thin = (e.flags & kReplicaThin) != 0;
  }
  std::memcpy(state.clusters.data(), body + uint64_t{l.max_replica_count} * sizeof(ReplicaEntry), l.max_cluster_count * sizeof(ClusterEntry));
  for (uint64_t p = 0; p < l.max_cluster_count; p++) {
    const ClusterEntry& c = state.clusters[p];
    if (c.replica_slot != kNoReplica && (c.replica_slot >= l.max_replica_count || !state.replicas[c.replica_slot].in_use || p >= h.cluster_count)) {
      return Error{ErrorCode::kDataLoss, str("checkpoint maps cluster ", p, " to a missing replica")};
    }
  }
  return CheckpointInfo{h.generation, h.journal_epoch};
}

std::vector<uint8_t> encode_batch(const std::vector<Record>& records, uint64_t first_seq, uint64_t epoch) {
  size_t total = 0;
  for (const Record& r : records) total += r.encoded_bytes();
  std::vector<uint8_t> out(round_up(total, kMetadataBlockBytes), 0);
  size_t at = 0;
  for (size_t i = 0; i < records.size(); i++) {
    const Record& r = records[i];
    RecordHeader h{};
    h.magic = kRecordMagic;
    h.type = static_cast<uint16_t>(r.type);
    h.flags = i + 1 == records.size() ? kRecordBatchEnd : 0;
    h.seq = first_seq + i;
    h.epoch = epoch;
    h.payload_bytes = static_cast<uint32_t>(r.payload.size());
    h.crc32c = 0;
    uint32_t crc = crc32c(0, &h, sizeof h);
    h.crc32c = crc32c(crc, r.payload.data(), r.payload.size());
    std::memcpy(out.data() + at, &h, sizeof h);
    std::memcpy(out.data() + at + sizeof h, r.payload.data(), r.payload.size());
    at += r.encoded_bytes();
  }
  return out;
}

Result<uint64_t> replay_journal(const uint8_t* journal, uint64_t journal_bytes, uint64_t epoch, MetaState& state) {
  uint64_t at = 0;
  uint64_t applied_end = 0;
  std::vector<Record> batch;
  uint64_t expected_seq = state.last_seq + 1;
  while (at + sizeof(RecordHeader) <= journal_bytes) {
    RecordHeader h{};
    std::memcpy(&h, journal + at, sizeof h);
    if (h.magic != kRecordMagic || h.epoch != epoch || h.seq != expected_seq ||
        at + sizeof h + h.payload_bytes > journal_bytes) {
      break;
    }
    uint32_t stored = h.crc32c;
    h.crc32c = 0;
    uint32_t crc = crc32c(crc32c(0, &h, sizeof h), journal + at + sizeof h, h.payload_bytes);
    if (crc != stored) break;
    Record r{static_cast<RecordType>(h.type), std::vector<uint8_t>(journal + at + sizeof h, journal + at + sizeof h + h.payload_bytes)};
    at += r.encoded_bytes();
    batch.push_back(std::move(r));
    expected_seq++;
    if (h.flags & kRecordBatchEnd) {
      for (const Record& record : batch) {
        if (Status s = state.apply(record); !s.ok()) return s.error();
      }
      state.last_seq = h.seq;
      batch.clear();
      at = round_up(at, kMetadataBlockBytes);
      applied_end = at;
    }
  }
  return applied_end;
}

}  // namespace strata
