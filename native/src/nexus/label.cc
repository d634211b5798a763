#include "nexus/label.h"

#include <cassert>
#include <cstring>

#include "util/crc32c.h"

namespace strata::nexus {

uint64_t label_slot_offset(uint64_t generation) { return (generation % 2) * kLabelSlotBytes; }

void encode_label(const Label& label, uint8_t* slot_out) {
  assert(label.generation > 0);
  assert(label.members.size() <= kLabelMaxChildren);
  LabelSlot s;
  std::memset(&s, 0, sizeof(s));
  s.magic = kLabelMagic;
  s.version = kLabelVersion;
  std::memcpy(s.nexus_uuid, label.nexus_uuid.data(), 16);
  s.generation = label.generation;
  s.size_bytes = label.size_bytes;
  s.clean_shutdown = label.clean_shutdown ? 1 : 0;
  s.child_count = static_cast<uint32_t>(label.members.size());
  for (size_t i = 0; i < label.members.size(); i++) {
    std::memcpy(s.children[i].replica_uuid, label.members[i].data(), 16);
    for (const UuidBytes& id : label.in_sync) {
      if (id == label.members[i]) s.children[i].in_sync = 1;
    }
  }
  s.crc32c = crc32c(0, &s, sizeof(s));
  std::memcpy(slot_out, &s, sizeof(s));
}

namespace {
std::optional<Label> decode_slot(const uint8_t* p) {
  LabelSlot s;
  std::memcpy(&s, p, sizeof(s));
  if (s.magic != kLabelMagic || s.version != kLabelVersion) return std::nullopt;
  uint32_t stored = s.crc32c;
  s.crc32c = 0;
  if (crc32c(0, &s, sizeof(s)) != stored) return std::nullopt;
  if (s.generation == 0 || s.child_count > kLabelMaxChildren) return std::nullopt;
  Label l;
  std::memcpy(l.nexus_uuid.data(), s.nexus_uuid, 16);
  l.generation = s.generation;
  l.size_bytes = s.size_bytes;
  l.clean_shutdown = s.clean_shutdown != 0;
  for (uint32_t i = 0; i < s.child_count; i++) {
    UuidBytes id;
    std::memcpy(id.data(), s.children[i].replica_uuid, 16);
    l.members.push_back(id);
    if (s.children[i].in_sync) l.in_sync.push_back(id);
  }
  return l;
}
}  // namespace

std::optional<Label> decode_label_region(const uint8_t* region) {
  auto a = decode_slot(region);
  auto b = decode_slot(region + kLabelSlotBytes);
  if (a && b) return a->generation >= b->generation ? a : b;
  return a ? a : b;
}

}  // namespace strata::nexus
