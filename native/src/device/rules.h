// The rules on which devices a pool may take, beyond the kind and major allow list in open.cc:
// regular files only inside the engine's device directories, and no foreign signature
// (partition table, filesystem, volume-manager or swap label) under a new pool unless forced,
// since formatting over one destroys data that is not ours.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "device/device.h"

namespace strata {

// A description of the first foreign signature found ("an ext2/3/4 filesystem (magic 0xEF53 at
// byte 1080)"), nullopt when there is none. A Strata superblock is not foreign. I/O errors
// are returned as errors.
Result<std::optional<std::string>> find_foreign_signature(Device& device);

// Directories regular-file devices must resolve into (after symlinks). nullopt: no directory
// rule (tools and tests; strata-engine always passes its --device-dir list). Each directory
// must exist; they are stored resolved.
Status set_file_device_dirs(const std::optional<std::vector<std::string>>& dirs);

}  // namespace strata
