// How much memory this node may use, for limits on what requests make the engine allocate
// (RAM devices, replica cluster maps). An allocation beyond these would end in std::bad_alloc
// or the OOM killer, taking every volume on the node down with it.
#pragma once
#include <sys/sysinfo.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace strata {

// MemTotal, or the cgroup v2 memory.max when that is lower (an engine in a container).
inline uint64_t node_memory_bytes() {
  static const uint64_t bytes = [] {
    struct sysinfo info {};
    uint64_t total = sysinfo(&info) == 0 ? static_cast<uint64_t>(info.totalram) * info.mem_unit : 0;
    std::ifstream cgroup("/sys/fs/cgroup/memory.max");
    std::string limit;
    if (cgroup >> limit && !limit.empty() && limit.find_first_not_of("0123456789") == std::string::npos) {
      uint64_t cgroup_bytes = std::stoull(limit);
      if (total == 0 || cgroup_bytes < total) total = cgroup_bytes;
    }
    // sysinfo never fails on Linux; if it did, 1 GiB keeps the limits conservative.
    return total != 0 ? total : uint64_t{1} << 30;
  }();
  return bytes;
}

}  // namespace strata
