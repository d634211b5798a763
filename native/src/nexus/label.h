// The nexus label: a few KiB at the start of every child replica that says which nexus owns the
// replica, which membership generation it last saw, which children were in sync in that
// generation, and whether the nexus shut down cleanly. It is how a nexus learns child health
// without an external store: at open, the newest generation found on any child wins.
//
// Layout (the first kLabelRegionBytes of each child; nexus data starts after it):
//   offset 0      slot A (kLabelSlotBytes)
//   offset 4 KiB  slot B
// Generation g is written to slot g % 2, so a torn write leaves the other slot (g - 1) intact.
// Every slot carries a CRC32C; a slot with a bad CRC or magic is ignored, never trusted.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/uuid.h"

namespace strata::nexus {

constexpr uint64_t kLabelRegionBytes = 1ull << 20;  // reserved per child; a whole cluster of any pool
constexpr uint32_t kLabelSlotBytes = 4096;
constexpr uint32_t kLabelMaxChildren = 32;
constexpr uint64_t kLabelMagic = 0x4c42'4c58'4e52'5453ull;  // "STRNXLBL" little-endian
constexpr uint32_t kLabelVersion = 1;

#pragma pack(push, 1)
struct LabelChildEntry {
  uint8_t replica_uuid[16];  // identity of the child (see child_identity()); zero = unused
  uint8_t in_sync;           // 1: had every acknowledged write of this generation
  uint8_t reserved[15];
};
static_assert(sizeof(LabelChildEntry) == 32);

struct LabelSlot {
  uint64_t magic;
  uint32_t version;
  uint32_t crc32c;  // over the whole slot with this field zero
  uint8_t nexus_uuid[16];
  uint64_t generation;          // bumped on every membership change; 0 is never written
  uint64_t size_bytes;          // nexus (volume) size
  uint8_t clean_shutdown;       // 1: written by an orderly shutdown, no write was in flight
  uint8_t reserved0[3];
  uint32_t child_count;         // entries used in `children`
  uint8_t reserved1[8];
  LabelChildEntry children[kLabelMaxChildren];
  uint8_t padding[kLabelSlotBytes - 64 - sizeof(LabelChildEntry) * kLabelMaxChildren];
};
static_assert(sizeof(LabelSlot) == kLabelSlotBytes);
static_assert(offsetof(LabelSlot, crc32c) == 12);
static_assert(offsetof(LabelSlot, nexus_uuid) == 16);
static_assert(offsetof(LabelSlot, generation) == 32);
static_assert(offsetof(LabelSlot, children) == 64);
#pragma pack(pop)

// The decoded label.
struct Label {
  UuidBytes nexus_uuid{};
  uint64_t generation = 0;
  uint64_t size_bytes = 0;
  bool clean_shutdown = false;
  std::vector<UuidBytes> in_sync;  // identities of the children in sync in this generation
  std::vector<UuidBytes> members;  // every child the nexus had in this generation
};

// Encodes into exactly kLabelSlotBytes; the slot offset is generation % 2 * kLabelSlotBytes.
void encode_label(const Label& label, uint8_t* slot_out);
uint64_t label_slot_offset(uint64_t generation);
// Reads the region's two slots (2 * kLabelSlotBytes from offset 0); the valid one with the
// highest generation, or nullopt when neither slot is a valid label (a fresh replica).
std::optional<Label> decode_label_region(const uint8_t* region);

}  // namespace strata::nexus
