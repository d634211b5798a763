// Plain structs that cross between the binding and the core (the binding copies JS objects into
// the *Options structs on the JS thread and converts the *Info structs back).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

constexpr int kLatencyBucketCount = 24;  // upper bounds 1, 2, 4, ... 2^23 µs; the last also catches slower

struct IoStats {
  uint64_t read_ops = 0, write_ops = 0, read_bytes = 0, write_bytes = 0, flush_ops = 0, unmap_ops = 0, errors = 0;
  std::array<uint64_t, kLatencyBucketCount> latency_bucket_counts{};
  uint64_t latency_sum_us = 0;  // of every recorded I/O (Prometheus histograms carry a sum)

  static uint64_t bucket_upper_us(int bucket) { return uint64_t{1} << bucket; }
  void record_latency(uint64_t latency_us) {
    int bucket = 0;
    while (bucket < kLatencyBucketCount - 1 && latency_us > bucket_upper_us(bucket)) bucket++;
    latency_bucket_counts[bucket]++;
    latency_sum_us += latency_us;
  }
};

struct CreatePoolOptions {
  std::string uuid;
  std::string name;
  std::string device_uri;
  uint64_t cluster_size_bytes;
  bool force;
};

struct CreateReplicaOptions {
  std::string pool_uuid;
  std::string uuid;
  std::string name;
  uint64_t size_bytes;
  bool thin;
};

struct DeviceInfoData {
  std::string uri, kind, path;  // path empty = null
  uint64_t size_bytes;
  uint32_t block_size_bytes;
  std::string major_minor;      // empty = null
  bool direct_io;
  std::string in_use_by;        // empty = null
};

struct PoolInfoData {
  std::string uuid, name, device_uri, state;
  uint64_t cluster_size_bytes, capacity_bytes, used_bytes, committed_bytes;
  uint32_t replica_count, format_version;
};

struct ReplicaInfoData {
  std::string uuid, name, pool_uuid;
  uint64_t size_bytes;
  bool thin;
  uint64_t allocated_bytes;
};

struct PoolCheckReportData {
  std::string pool_uuid;
  uint64_t leaked_clusters = 0, doubly_owned_clusters = 0, owned_but_free_clusters = 0;
  std::vector<std::string> problems;
};

enum class BenchPattern { kRandRead, kRandWrite, kRead, kWrite };

struct BenchOptions {
  std::string uuid;
  BenchPattern pattern;
  uint64_t block_size_bytes;
  uint32_t queue_depth;
  uint64_t duration_ms;
  uint64_t span_bytes;  // 0 = the whole replica
  // Skew (benchReplica's random patterns): hot_write_fraction of the I/Os go to the first
  // hot_space_fraction of the span, the rest to the remainder. 1 and 1 = uniform.
  double hot_write_fraction = 1.0;
  double hot_space_fraction = 1.0;
  // benchReplica: stop issuing after this many I/Os (0 = no limit; duration_ms still bounds the run).
  uint64_t max_ops = 0;
  // benchDevice: spread queue_depth over this many reactors (a device with a home reactor takes 1).
  uint32_t jobs = 1;
};

struct BenchResultData {
  uint64_t ops = 0, bytes = 0, elapsed_us = 0;
  double iops = 0, mib_per_s = 0;
  uint64_t lat_p50_us = 0, lat_p99_us = 0;
  uint64_t lat_p999_us = 0;  // benchReplica only (benchDevice leaves 0)
};

// Fills a bench result's rates and p50/p99 from its ops, bytes and elapsed time and the
// per-I/O latencies (sorted in place): one rule for benchReplica and benchDevice.
inline void summarize_bench(BenchResultData& result, std::vector<uint32_t>& latencies_us) {
  if (!latencies_us.empty()) {
    std::sort(latencies_us.begin(), latencies_us.end());
    result.lat_p50_us = latencies_us[latencies_us.size() / 2];
    result.lat_p99_us = latencies_us[std::min(latencies_us.size() - 1, latencies_us.size() * 99 / 100)];
  }
  double seconds = std::max<double>(1e-9, static_cast<double>(result.elapsed_us) / 1e6);
  result.iops = static_cast<double>(result.ops) / seconds;
  result.mib_per_s = static_cast<double>(result.bytes) / (1024.0 * 1024.0) / seconds;
}

enum class IoKind { kRead, kWrite, kFlush, kDeallocate, kWriteZeroes };

}  // namespace strata
