// The pool's on-disk structures (see FORMAT.md). Little-endian, packed, pinned by static_assert:
// changing any of them is a format version change.
#pragma once
#include <cstddef>
#include <cstdint>

namespace strata::format {

constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kSuperblockBytes = 4096;
constexpr uint64_t kMetadataBlockBytes = 4096;   // unit of every metadata write
constexpr uint64_t kDataAlignmentBytes = 1 << 20;  // data starts on a 1 MiB boundary
constexpr uint64_t kMinClusterSizeBytes = 1 << 20;
constexpr uint64_t kMaxClusterSizeBytes = uint64_t{1} << 30;
constexpr uint64_t kGrowthFactor = 16;            // room reserved for the pool to grow 16x
constexpr uint64_t kMinMaxClusterCount = 4096;    // ... but at least this many clusters
constexpr uint64_t kMaxMaxClusterCount = 1 << 22;  // and at most 4M clusters (16 TiB at 4 MiB)
constexpr uint32_t kMaxReplicaCount = 4096;
constexpr uint64_t kMinJournalBytes = 1 << 20;
constexpr uint64_t kMaxJournalBytes = 64 << 20;
constexpr uint32_t kNoReplica = 0xFFFFFFFFu;

constexpr char kSuperblockMagic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'P', 'L'};
constexpr char kCheckpointMagic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'C', 'K'};
constexpr uint32_t kRecordMagic = 0x4E524A53;  // "SJRN"

#pragma pack(push, 1)

struct Superblock {
  char magic[8];                        // "STRATAPL"
  uint32_t format_version;              // kFormatVersion
  uint32_t flags;                       // none defined; must be 0
  uint8_t pool_uuid[16];
  char name[64];                        // NUL-padded
  uint64_t cluster_size_bytes;          // power of two, >= 1 MiB
  uint64_t device_size_bytes;           // at format time, updated by grow
  uint64_t data_offset_bytes;           // first byte of cluster 0
  uint64_t cluster_count;               // at format / last grow; the journal is authoritative
  uint64_t max_cluster_count;           // what the metadata region is sized for
  uint64_t metadata_offset_bytes;       // = kSuperblockBytes
  uint64_t metadata_size_bytes;         // two checkpoint slots + journal
  uint64_t checkpoint_slot_bytes;       // each slot
  uint64_t journal_offset_bytes;
  uint64_t journal_size_bytes;
  uint32_t max_replica_count;
  uint32_t clean_shutdown;              // 1 after export/shutdown, 0 while imported
  uint32_t crc32c;                      // over bytes [0, offsetof(crc32c))
  uint32_t reserved;
};
static_assert(sizeof(Superblock) == 192);
static_assert(offsetof(Superblock, format_version) == 8);
static_assert(offsetof(Superblock, name) == 32);
static_assert(offsetof(Superblock, cluster_size_bytes) == 96);
static_assert(offsetof(Superblock, clean_shutdown) == 180);
static_assert(offsetof(Superblock, crc32c) == 184);

struct CheckpointHeader {
  char magic[8];               // "STRATACK"
  uint64_t generation;         // the newest valid slot (highest generation) wins
  uint64_t last_seq;           // journal records up to this seq are included
  uint64_t journal_epoch;      // records that follow this checkpoint carry this epoch
  uint64_t cluster_count;
  uint32_t max_replica_count;
  uint32_t reserved0;
  uint64_t max_cluster_count;
  uint64_t body_bytes;         // replica table + cluster map
  uint32_t body_crc32c;
  uint32_t header_crc32c;      // over bytes [0, offsetof(header_crc32c))
};
static_assert(sizeof(CheckpointHeader) == 72);
static_assert(offsetof(CheckpointHeader, header_crc32c) == 68);

struct ReplicaEntry {
  uint8_t uuid[16];
  char name[64];
  uint64_t size_bytes;
  uint32_t flags;              // kReplicaInUse | kReplicaThin
  uint32_t reserved;
};
static_assert(sizeof(ReplicaEntry) == 96);
constexpr uint32_t kReplicaInUse = 1;
constexpr uint32_t kReplicaThin = 2;

struct ClusterEntry {
  uint32_t replica_slot;       // kNoReplica when free
  uint32_t virtual_cluster;
};
static_assert(sizeof(ClusterEntry) == 8);

enum class RecordType : uint16_t {
  kReplicaCreate = 1,
  kReplicaDestroy = 2,
  kReplicaResize = 3,
  kClusterAlloc = 4,
  kClusterFree = 5,
  kPoolGrow = 6,
  kReplicaSetThin = 7,
};

struct RecordHeader {
  uint32_t magic;              // kRecordMagic
  uint16_t type;               // RecordType
  uint16_t flags;              // kRecordBatchEnd on the last record of an atomic batch
  uint64_t seq;                // consecutive from checkpoint.last_seq + 1
  uint64_t epoch;              // = checkpoint.journal_epoch; stale records never match
  uint32_t payload_bytes;
  uint32_t crc32c;             // over header (crc32c = 0) + payload
};
static_assert(sizeof(RecordHeader) == 32);
constexpr uint16_t kRecordBatchEnd = 1;

struct ReplicaCreatePayload {
  uint32_t slot;
  uint32_t flags;              // kReplicaThin
  uint8_t uuid[16];
  char name[64];
  uint64_t size_bytes;
};
static_assert(sizeof(ReplicaCreatePayload) == 96);

struct ReplicaDestroyPayload {
  uint32_t slot;
  uint32_t reserved;
};
static_assert(sizeof(ReplicaDestroyPayload) == 8);

struct ReplicaResizePayload {
  uint32_t slot;
  uint32_t reserved;
  uint64_t size_bytes;
};
static_assert(sizeof(ReplicaResizePayload) == 16);

// A run of `count` clusters: virtual [v, v+count) -> physical [p, p+count).
struct ClusterRunPayload {
  uint32_t slot;
  uint32_t count;
  uint64_t virtual_cluster;
  uint64_t physical_cluster;
};
static_assert(sizeof(ClusterRunPayload) == 24);

// Thin <-> thick conversion: the replica's new kReplicaThin flag. Thin -> thick carries the
// kClusterAlloc records of every cluster the replica lacked in the same batch.
struct ReplicaSetThinPayload {
  uint32_t slot;
  uint32_t flags;              // kReplicaThin, or 0 for thick
};
static_assert(sizeof(ReplicaSetThinPayload) == 8);
static_assert(offsetof(ReplicaSetThinPayload, flags) == 4);

struct PoolGrowPayload {
  uint64_t cluster_count;
  uint64_t device_size_bytes;
};
static_assert(sizeof(PoolGrowPayload) == 16);

#pragma pack(pop)

constexpr uint64_t round_up(uint64_t value, uint64_t unit) { return (value + unit - 1) / unit * unit; }

// Where everything lives on a device, derived from the format-time parameters.
struct Layout {
  uint64_t cluster_size_bytes;
  uint64_t max_cluster_count;
  uint32_t max_replica_count;
  uint64_t checkpoint_slot_bytes;
  uint64_t journal_offset_bytes;
  uint64_t journal_size_bytes;
  uint64_t metadata_size_bytes;
  uint64_t data_offset_bytes;

  uint64_t slot_offset_bytes(int slot) const { return kSuperblockBytes + static_cast<uint64_t>(slot) * checkpoint_slot_bytes; }
  uint64_t body_bytes() const { return uint64_t{max_replica_count} * sizeof(ReplicaEntry) + max_cluster_count * sizeof(ClusterEntry); }
};

inline Layout make_layout(uint64_t cluster_size_bytes, uint64_t max_cluster_count, uint32_t max_replica_count) {
  Layout l{};
  l.cluster_size_bytes = cluster_size_bytes;
  l.max_cluster_count = max_cluster_count;
  l.max_replica_count = max_replica_count;
  l.checkpoint_slot_bytes = round_up(kMetadataBlockBytes + l.body_bytes(), kMetadataBlockBytes);
  uint64_t journal = round_up(max_cluster_count * 64, kMetadataBlockBytes);
  l.journal_size_bytes = journal < kMinJournalBytes ? kMinJournalBytes : journal > kMaxJournalBytes ? kMaxJournalBytes : journal;
  l.journal_offset_bytes = kSuperblockBytes + 2 * l.checkpoint_slot_bytes;
  l.metadata_size_bytes = 2 * l.checkpoint_slot_bytes + l.journal_size_bytes;
  l.data_offset_bytes = round_up(l.journal_offset_bytes + l.journal_size_bytes, kDataAlignmentBytes);
  return l;
}

// The max cluster count reserved for a device of `device_size_bytes` at format time.
inline uint64_t reserved_max_cluster_count(uint64_t device_size_bytes, uint64_t cluster_size_bytes) {
  uint64_t grown = device_size_bytes / cluster_size_bytes * kGrowthFactor;
  if (grown < kMinMaxClusterCount) grown = kMinMaxClusterCount;
  if (grown > kMaxMaxClusterCount) grown = kMaxMaxClusterCount;
  return grown;
}

}  // namespace strata::format
