// CRC32C (Castagnoli), the checksum of every on-disk metadata structure.
#pragma once
#include <cstddef>
#include <cstdint>

namespace strata {

// Continues a CRC: crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
uint32_t crc32c(uint32_t crc, const void* data, size_t length_bytes);

}  // namespace strata
