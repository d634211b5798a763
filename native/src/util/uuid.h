// UUIDs as 16 bytes on disk and as canonical lowercase text across the boundary.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace strata {

using UuidBytes = std::array<uint8_t, 16>;

// Accepts the canonical 8-4-4-4-12 hex form (any case); nullopt otherwise.
std::optional<UuidBytes> parse_uuid(const std::string& text);
std::string format_uuid(const UuidBytes& bytes);
// Canonical lowercase form of a valid uuid text, or nullopt.
std::optional<std::string> canonical_uuid(const std::string& text);
// Lowercase canonical form of a uuid, or the text unchanged (so registry lookups simply miss).
inline std::string canon(const std::string& uuid) { return canonical_uuid(uuid).value_or(uuid); }
uint64_t random_u64();

}  // namespace strata
