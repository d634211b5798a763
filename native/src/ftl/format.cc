#include "ftl/format.h"

#include <cstring>

#include "util/bytes.h"
#include "util/crc32c.h"

namespace strata::ftl_format {

namespace {

// CRC32C over `length` bytes with the 4-byte CRC field at `crc_offset` taken as zero.
uint32_t crc_with_hole(const uint8_t* data, size_t length, size_t crc_offset) {
  const uint8_t zero[4] = {0, 0, 0, 0};
  uint32_t crc = crc32c(0, data, crc_offset);
  crc = crc32c(crc, zero, 4);
  return crc32c(crc, data + crc_offset + 4, length - crc_offset - 4);
}

}  // namespace

// Superblock, little-endian: magic[8] @0, version u32 @8, crc32c u32 @12 (over the block),
// role u32 @16, block_bytes u32 @20, ftl_uuid[16] @24, chunk_blocks u32 @40, band_blocks u32 @44,
// op_percent u32 @48, band_count u32 @52, chunk_count u32 @56, zoned_base u32 @60,
// logical_blocks u64 @64, band_start_block u64 @72, cache_size_bytes u64 @80, base_size_bytes u64 @88,
// chunk_start_block u64 @96, checkpoint_blocks u32 @104.
void encode_superblock(const Superblock& sb, uint8_t* b) {
  std::memset(b, 0, kBlockBytes);
  std::memcpy(b, kSuperblockMagic, 8);
  put_u32(b + 8, sb.version);
  put_u32(b + 16, static_cast<uint32_t>(sb.role));
  put_u32(b + 20, kBlockBytes);
  std::memcpy(b + 24, sb.ftl_uuid.data(), 16);
  put_u32(b + 40, sb.chunk_blocks);
  put_u32(b + 44, sb.band_blocks);
  put_u32(b + 48, sb.op_percent);
  put_u32(b + 52, sb.band_count);
  put_u32(b + 56, sb.chunk_count);
  put_u32(b + 60, sb.zoned_base);
  put_u64(b + 64, sb.logical_blocks);
  put_u64(b + 72, sb.band_start_block);
  put_u64(b + 80, sb.cache_size_bytes);
  put_u64(b + 88, sb.base_size_bytes);
  put_u64(b + 96, sb.chunk_start_block);
  put_u32(b + 104, sb.checkpoint_blocks);
  put_u32(b + 12, crc_with_hole(b, kBlockBytes, 12));
}

std::optional<DecodedSuperblock> decode_superblock(const uint8_t* b) {
  if (std::memcmp(b, kSuperblockMagic, 8) != 0) return std::nullopt;
  DecodedSuperblock d{};
  d.crc_ok = get_u32(b + 12) == crc_with_hole(b, kBlockBytes, 12) && get_u32(b + 20) == kBlockBytes;
  Superblock& sb = d.sb;
  sb.version = get_u32(b + 8);
  sb.role = static_cast<Role>(get_u32(b + 16));
  std::memcpy(sb.ftl_uuid.data(), b + 24, 16);
  sb.chunk_blocks = get_u32(b + 40);
  sb.band_blocks = get_u32(b + 44);
  sb.op_percent = get_u32(b + 48);
  sb.band_count = get_u32(b + 52);
  sb.chunk_count = get_u32(b + 56);
  sb.zoned_base = get_u32(b + 60);
  sb.logical_blocks = get_u64(b + 64);
  sb.band_start_block = get_u64(b + 72);
  sb.cache_size_bytes = get_u64(b + 80);
  sb.base_size_bytes = get_u64(b + 88);
  sb.chunk_start_block = get_u64(b + 96);
  sb.checkpoint_blocks = get_u32(b + 104);
  return d;
}

// Checkpoint header: magic[8] @0, crc32c u32 @8 (over the block), body_crc u32 @12, ftl_uuid[16]
// @16, next_seq u64 @32, host_blocks u64 @40, body_bytes u64 @48.
void encode_checkpoint_header(const CheckpointHeader& h, uint8_t* b) {
  std::memset(b, 0, kBlockBytes);
  std::memcpy(b, kCheckpointMagic, 8);
  put_u32(b + 12, h.body_crc);
  std::memcpy(b + 16, h.ftl_uuid.data(), 16);
  put_u64(b + 32, h.next_seq);
  put_u64(b + 40, h.host_blocks);
  put_u64(b + 48, h.body_bytes);
  put_u32(b + 8, crc_with_hole(b, kBlockBytes, 8));
}

std::optional<CheckpointHeader> decode_checkpoint_header(const uint8_t* b, const UuidBytes& ftl_uuid) {
  if (std::memcmp(b, kCheckpointMagic, 8) != 0 || get_u32(b + 8) != crc_with_hole(b, kBlockBytes, 8)) return std::nullopt;
  if (std::memcmp(b + 16, ftl_uuid.data(), 16) != 0) return std::nullopt;
  CheckpointHeader h;
  h.ftl_uuid = ftl_uuid;
  h.body_crc = get_u32(b + 12);
  h.next_seq = get_u64(b + 32);
  h.host_blocks = get_u64(b + 40);
  h.body_bytes = get_u64(b + 48);
  return h;
}

// Record header: magic[8] @0, crc32c u32 @8 (over the block), kind u32 @12, ftl_uuid[16] @16,
// chunk_seq u64 @32, seq u64 @40, lba u64 @48, block_count u64 @56, then one CRC32C u32 per
// data block from @64.
void encode_record_header(const RecordHeader& h, uint8_t* b) {
  std::memset(b, 0, kBlockBytes);
  std::memcpy(b, kRecordMagic, 8);
  put_u32(b + 12, static_cast<uint32_t>(h.kind));
  std::memcpy(b + 16, h.ftl_uuid.data(), 16);
  put_u64(b + 32, h.chunk_seq);
  put_u64(b + 40, h.seq);
  put_u64(b + 48, h.lba);
  put_u64(b + 56, h.block_count);
  for (size_t i = 0; i < h.data_crcs.size(); i++) put_u32(b + kRecordHeaderBytes + 4 * i, h.data_crcs[i]);
  put_u32(b + 8, crc_with_hole(b, kBlockBytes, 8));
}

std::optional<RecordHeader> decode_record_header(const uint8_t* b, const UuidBytes& ftl_uuid) {
  if (std::memcmp(b, kRecordMagic, 8) != 0) return std::nullopt;
  if (get_u32(b + 8) != crc_with_hole(b, kBlockBytes, 8)) return std::nullopt;
  if (std::memcmp(b + 16, ftl_uuid.data(), 16) != 0) return std::nullopt;
  RecordHeader h;
  h.kind = static_cast<RecordKind>(get_u32(b + 12));
  h.ftl_uuid = ftl_uuid;
  h.chunk_seq = get_u64(b + 32);
  h.seq = get_u64(b + 40);
  h.lba = get_u64(b + 48);
  h.block_count = get_u64(b + 56);
  if (h.kind == RecordKind::kData) {
    if (h.block_count == 0 || h.block_count > kMaxRecordBlocks) return std::nullopt;
    h.data_crcs.resize(h.block_count);
    for (size_t i = 0; i < h.block_count; i++) h.data_crcs[i] = get_u32(b + kRecordHeaderBytes + 4 * i);
  } else if (h.kind != RecordKind::kTrim || h.block_count == 0) {
    return std::nullopt;
  }
  return h;
}

BandGeometry band_geometry(uint32_t band_blocks) {
  // The largest data area whose entries (one a block, plus one trim entry per 8) fit in the rest.
  for (uint32_t footer = 1; footer < band_blocks; footer++) {
    const uint32_t data = band_blocks - footer;
    const uint64_t entries = uint64_t{data} + data / 8;
    if (kFooterHeaderBytes + entries * kFooterEntryBytes <= uint64_t{footer} * kBlockBytes) {
      return {footer, data, static_cast<uint32_t>(entries)};
    }
  }
  return {band_blocks, 0, 0};
}

// Footer: magic[8] @0, crc32c u32 @8 (over footer_blocks), band_index u32 @12, ftl_uuid[16] @16,
// close_seq u64 @32, data_blocks u32 @40, entry_count u32 @44, zeros to 64; entries of 24 bytes
// (lba u64, seq u64, trim_blocks u64) from @64.
void encode_footer(const Footer& f, uint8_t* out, uint32_t footer_blocks) {
  const size_t bytes = size_t{footer_blocks} * kBlockBytes;
  std::memset(out, 0, bytes);
  std::memcpy(out, kFooterMagic, 8);
  put_u32(out + 12, f.band_index);
  std::memcpy(out + 16, f.ftl_uuid.data(), 16);
  put_u64(out + 32, f.close_seq);
  put_u32(out + 40, f.data_blocks);
  put_u32(out + 44, static_cast<uint32_t>(f.entries.size()));
  uint8_t* e = out + kFooterHeaderBytes;
  for (const FooterEntry& entry : f.entries) {
    put_u64(e, entry.lba);
    put_u64(e + 8, entry.seq);
    put_u64(e + 16, entry.trim_blocks);
    e += kFooterEntryBytes;
  }
  put_u32(out + 8, crc_with_hole(out, bytes, 8));
}

std::optional<Footer> decode_footer(const uint8_t* in, uint32_t footer_blocks, const UuidBytes& ftl_uuid, uint32_t band_index) {
  const size_t bytes = size_t{footer_blocks} * kBlockBytes;
  if (std::memcmp(in, kFooterMagic, 8) != 0) return std::nullopt;
  if (get_u32(in + 8) != crc_with_hole(in, bytes, 8)) return std::nullopt;
  if (std::memcmp(in + 16, ftl_uuid.data(), 16) != 0 || get_u32(in + 12) != band_index) return std::nullopt;
  Footer f;
  f.ftl_uuid = ftl_uuid;
  f.band_index = band_index;
  f.close_seq = get_u64(in + 32);
  f.data_blocks = get_u32(in + 40);
  const uint32_t count = get_u32(in + 44);
  if (kFooterHeaderBytes + uint64_t{count} * kFooterEntryBytes > bytes) return std::nullopt;
  f.entries.resize(count);
  const uint8_t* e = in + kFooterHeaderBytes;
  for (FooterEntry& entry : f.entries) {
    entry.lba = get_u64(e);
    entry.seq = get_u64(e + 8);
    entry.trim_blocks = get_u64(e + 16);
    e += kFooterEntryBytes;
  }
  return f;
}

}  // namespace strata::ftl_format
