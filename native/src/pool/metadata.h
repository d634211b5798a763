// The durable metadata model: what the device says, as of the last record written. The same
// apply() runs during journal replay at import and after each journal write at runtime, so a
// checkpoint written from this model is exactly what replay would rebuild.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pool/format.h"
#include "util/aligned_buffer.h"
#include "util/status.h"
#include "util/uuid.h"

namespace strata {

struct ReplicaMeta {
  bool in_use = false;
  UuidBytes uuid{};
  std::string name;
  uint64_t size_bytes = 0;
  bool thin = false;
};

// One journal record before it gets a seq: type + payload bytes.
struct Record {
  format::RecordType type;
  std::vector<uint8_t> payload;

  template <typename Payload>
  static Record of(format::RecordType type, const Payload& payload) {
    const auto* p = reinterpret_cast<const uint8_t*>(&payload);
    return Record{type, std::vector<uint8_t>(p, p + sizeof(Payload))};
  }
  // Bytes this record takes in the journal (header + payload, 8-byte aligned).
  size_t encoded_bytes() const { return format::round_up(sizeof(format::RecordHeader) + payload.size(), 8); }
};

struct MetaState {
  format::Layout layout{};
  uint64_t cluster_count = 0;
  uint64_t last_seq = 0;
  std::vector<ReplicaMeta> replicas;             // indexed by slot; size = max_replica_count
  std::vector<format::ClusterEntry> clusters;    // indexed by physical cluster; size = max_cluster_count

  void reset(const format::Layout& layout, uint64_t cluster_count);
  // Applies one record; an error means the record contradicts the state (corrupt metadata).
  Status apply(const Record& record);
};

// Serialises the checkpoint for `state` into a slot-sized aligned buffer.
AlignedBuffer encode_checkpoint(const MetaState& state, uint64_t generation, uint64_t journal_epoch);
// Decodes a slot; DATA_LOSS when its header or body checksum does not match.
struct CheckpointInfo {
  uint64_t generation;
  uint64_t journal_epoch;
};
Result<CheckpointInfo> decode_checkpoint(const uint8_t* slot, const format::Layout& layout, MetaState& state);

// Appends records (seq first_seq, first_seq+1, ...) as one atomic batch; the last carries
// kRecordBatchEnd. Returns the encoded bytes, padded to kMetadataBlockBytes.
std::vector<uint8_t> encode_batch(const std::vector<Record>& records, uint64_t first_seq, uint64_t epoch);

// Replays the journal into `state`: whole batches with consecutive seqs and the checkpoint's
// epoch, stopping at the first torn, stale or corrupt record. Returns the byte position after
// the last applied batch (where the next batch goes).
Result<uint64_t> replay_journal(const uint8_t* journal, uint64_t journal_bytes, uint64_t epoch, MetaState& state);

}  // namespace strata
