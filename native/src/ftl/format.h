// The FTL's on-disk records (layout and rules: ftl/FORMAT.md). Every record carries a CRC32C
// and the FTL's uuid, and is checked again whenever it is read back.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "util/uuid.h"

namespace strata::ftl_format {

constexpr uint32_t kBlockBytes = 4096;
constexpr uint32_t kVersion = 1;

// What a create accepts (the control plane's copy: common/csal-rules.ts, kept equal by
// test/native/csal-rules.test.ts through the addon's ftlRules()).
constexpr uint32_t kOpPercentMin = 5, kOpPercentMax = 90, kOpPercentDefault = 20;
constexpr uint32_t kBandMibMax = 4096, kBandMibDefault = 64;
constexpr uint32_t kChunkKibMin = 64, kChunkKibMax = 65536, kChunkKibDefault = 1024;

// ---- superblock: block 0 of both devices ---------------------------------------------------------
constexpr char kSuperblockMagic[8] = {'S', 'T', 'R', 'A', 'T', 'A', 'F', 'T'};
enum class Role : uint32_t { kCache = 1, kBase = 2 };

struct Superblock {
  uint32_t version = kVersion;
  Role role = Role::kCache;
  UuidBytes ftl_uuid{};
  uint32_t chunk_blocks = 0;      // cache chunk, including its record headers
  uint32_t band_blocks = 0;       // base band, including its footer
  uint32_t op_percent = 0;        // over-provisioning of the base's band space
  uint32_t band_count = 0;
  uint32_t chunk_count = 0;
  uint64_t logical_blocks = 0;    // what the host sees
  uint64_t band_start_block = 0;  // first band's block on the base (a whole zone on a zoned base)
  uint64_t cache_size_bytes = 0;  // the devices as created (they may grow, never shrink)
  uint64_t base_size_bytes = 0;
  uint32_t zoned_base = 0;
  uint32_t checkpoint_blocks = 0;  // cache blocks 1.. hold the clean-shutdown checkpoint
  uint64_t chunk_start_block = 1;  // the cache's first chunk: after the checkpoint area
};
void encode_superblock(const Superblock& sb, uint8_t* block);
// nullopt: no superblock at all (no magic). A superblock with a bad CRC is returned with
// `crc_ok` false so the caller can say DATA_LOSS instead of "not an FTL".
struct DecodedSuperblock {
  Superblock sb;
  bool crc_ok;
};
std::optional<DecodedSuperblock> decode_superblock(const uint8_t* block);

// ---- checkpoint: cache block 1 (header), the L2P pages from block 2, then the body -------------
// Written at clean shutdown, after everything else is durable; invalidated (zeroed) when the FTL
// is opened from it, before any new write, so after a crash recovery never trusts an old one.
// The L2P pages' blocks are also where the paged map (l2p.h) writes pages back at run time:
// only a valid header vouches for them, through the page table in the body.
constexpr char kCheckpointMagic[8] = {'S', 'T', 'R', 'F', 'T', 'L', 'C', '2'};
struct CheckpointHeader {
  UuidBytes ftl_uuid{};
  uint64_t next_seq = 0;
  uint64_t host_blocks = 0;  // host blocks written so far: the clock band ages are read against
  uint64_t body_bytes = 0;
  uint32_t body_crc = 0;
};
void encode_checkpoint_header(const CheckpointHeader& h, uint8_t* block);
std::optional<CheckpointHeader> decode_checkpoint_header(const uint8_t* block, const UuidBytes& ftl_uuid);
// The L2P: 8 bytes a logical block, 512 entries a 4 KiB page.
constexpr uint64_t kL2pEntriesPerPage = kBlockBytes / 8;
inline uint64_t l2p_pages(uint64_t logical_blocks) { return (logical_blocks + kL2pEntriesPerPage - 1) / kL2pEntriesPerPage; }
// Cache block of L2P page 0; the body follows the last page.
constexpr uint64_t kL2pFirstBlock = 2;
inline uint64_t checkpoint_body_block(uint64_t logical_blocks) { return kL2pFirstBlock + l2p_pages(logical_blocks); }
// Bytes a body entry takes.
constexpr uint64_t kCheckpointPageBytes = 8, kCheckpointBandBytes = 24, kCheckpointChunkBytes = 24, kCheckpointSlotBytes = 16,
                   kCheckpointTrimBytes = 24;
// The area after the header at its largest: the L2P pages, then the body: the page table (8
// bytes a page: stored flag, CRC32C), 24 bytes a band (closed, age, valid blocks), 24 a chunk, 16
// a chunk block (its LBA and seq) and, at worst, a 24-byte trim entry per chunk block.
inline uint64_t checkpoint_max_area_bytes(uint64_t logical_blocks, uint64_t band_count, uint64_t chunk_count, uint64_t chunk_blocks) {
  const uint64_t pages = l2p_pages(logical_blocks);
  return pages * kBlockBytes + kCheckpointPageBytes * pages + kCheckpointBandBytes * band_count + kCheckpointChunkBytes * chunk_count +
         (kCheckpointSlotBytes + kCheckpointTrimBytes) * chunk_count * chunk_blocks;
}

// ---- cache records: a header block, then its data blocks ----------------------------------------
constexpr char kRecordMagic[8] = {'S', 'T', 'R', 'F', 'T', 'L', 'R', 'C'};
enum class RecordKind : uint32_t { kData = 1, kTrim = 2 };
// A data record holds at most this many blocks: its header lists one CRC per block.
constexpr uint32_t kMaxRecordBlocks = 256;
constexpr uint32_t kRecordHeaderBytes = 64;

struct RecordHeader {
  RecordKind kind = RecordKind::kData;
  UuidBytes ftl_uuid{};
  uint64_t chunk_seq = 0;  // the seq of the chunk's first record: tells this use of the chunk from earlier ones
  uint64_t seq = 0;        // global, never reused; the newest seq of an LBA wins
  uint64_t lba = 0;
  uint64_t block_count = 0;          // data blocks that follow (data) or blocks trimmed (trim)
  std::vector<uint32_t> data_crcs;   // one per data block (data records)
};
void encode_record_header(const RecordHeader& h, uint8_t* block);
std::optional<RecordHeader> decode_record_header(const uint8_t* block, const UuidBytes& ftl_uuid);

// ---- band footer: the last blocks of a closed band ----------------------------------------------
constexpr char kFooterMagic[8] = {'S', 'T', 'R', 'F', 'T', 'L', 'B', 'F'};
constexpr uint32_t kFooterHeaderBytes = 64;
constexpr uint32_t kFooterEntryBytes = 24;

// One entry per data block of the band, in block order (trim_blocks 0), and trim entries
// (trim_blocks > 0) that keep a trim's shadow over older copies after its cache record is gone.
struct FooterEntry {
  uint64_t lba = 0;
  uint64_t seq = 0;
  uint64_t trim_blocks = 0;
};
struct Footer {
  UuidBytes ftl_uuid{};
  uint32_t band_index = 0;
  uint64_t close_seq = 0;
  uint32_t data_blocks = 0;  // data blocks written before the padding
  std::vector<FooterEntry> entries;
};
// Blocks a footer takes in a band of band_blocks, and the data blocks left; the footer has room
// for one entry a data block plus one trim entry for every 8 data blocks.
struct BandGeometry {
  uint32_t footer_blocks;
  uint32_t data_blocks;
  uint32_t entry_capacity;
};
BandGeometry band_geometry(uint32_t band_blocks);
void encode_footer(const Footer& f, uint8_t* out, uint32_t footer_blocks);
std::optional<Footer> decode_footer(const uint8_t* in, uint32_t footer_blocks, const UuidBytes& ftl_uuid, uint32_t band_index);

}  // namespace strata::ftl_format
