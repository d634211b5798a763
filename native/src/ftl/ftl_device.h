// The CSAL tiered device: a flash translation layer over a fast cache device and a large base
// device (rules and layout: ftl/FORMAT.md).
//
//   ftl://?cache=<percent-encoded URI>&base=<percent-encoded URI>
//
// Every host write is appended to the cache as a record (a header block naming the LBAs, the
// sequence number and each block's CRC32C, then the data) and acknowledged once it is written
// there, in sequence order. A background worker drains full cache chunks into base bands,
// strictly sequentially within each band, and garbage-collects base bands greedily; relocated
// (cold) and host (hot) data go to different open bands. Opening only loads: create_ftl formats.
//
// Threads: the FTL owns one reactor; its maps and queues live on that thread only. I/O from any
// other reactor is posted to it and completes back on the caller's reactor; the *_sync calls
// (control thread) post and wait.
#pragma once
#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"
#include "ftl/format.h"
#include "util/aligned_buffer.h"

namespace strata {

struct FtlCreateOptions {
  std::string cache_uri;
  std::string base_uri;
  uint32_t op_percent = ftl_format::kOpPercentDefault;  // base band space kept spare for GC
  uint32_t band_mib = 0;  // 0: kBandMibDefault on a conventional base, the zone on a zoned one
  uint32_t chunk_kib = ftl_format::kChunkKibDefault;
  bool force = false;        // format over devices that hold data (or another FTL)
  // The FTL's uuid (empty: random). With it, create is idempotent: devices that already hold
  // this FTL with the same geometry are returned as they are, never formatted again, and a
  // create of it interrupted half-way is finished without `force`.
  std::string uuid;
};

struct FtlCreated {
  std::string uri;   // ftl://?cache=…&base=…, what a pool takes as its disk
  std::string uuid;
  uint64_t size_bytes;
};

// Formats an FTL over two devices (nothing else may have them open). Refuses devices holding
// data unless `force`; writes the superblocks last, so a crash in between leaves no FTL.
Result<FtlCreated> create_ftl(const FtlCreateOptions& options);

// Wipes both superblocks, so the devices hold no FTL; refused while the FTL is open here. An
// FTL already gone (no superblock on either device) succeeds.
Status destroy_ftl(const std::string& uri);

// Parses an ftl:// URI and loads the FTL (never formats): checks both superblocks, then
// rebuilds the maps from the band footers and the cache log.
Result<std::unique_ptr<Device>> open_ftl_device(const std::string& uri, bool may_create);

struct FtlStatsData {
  std::string uuid;
  std::string uri;
  uint64_t logical_bytes = 0;
  uint64_t host_write_bytes = 0;
  uint64_t host_read_bytes = 0;
  uint64_t cache_write_bytes = 0;       // data and record headers
  uint64_t base_write_bytes_host = 0;   // compaction: cache → base
  uint64_t base_write_bytes_gc = 0;     // GC relocation: base → base
  uint64_t base_write_bytes_meta = 0;   // band footers and padding
  uint64_t base_writes = 0;
  uint64_t base_sequential_writes = 0;  // started where the band's previous write ended
  uint64_t gc_relocated_blocks = 0;
  uint64_t gc_victims = 0;
  uint64_t throttle_events = 0;         // host writes that waited for a free cache chunk
  uint64_t padded_band_closes = 0;
  uint32_t band_count = 0;
  uint32_t free_bands = 0;
  uint32_t chunk_count = 0;
  uint32_t free_chunks = 0;
  uint64_t recovered_records = 0;       // at the last open
  uint64_t recovered_bands = 0;
  bool loaded_from_checkpoint = false;  // the last open read the clean-shutdown checkpoint, no scan
  std::string failed_reason;            // non-empty once a cache or base write failed
  uint64_t map_bytes = 0;               // the whole L2P (8 bytes a logical block, in 4 KiB pages)
  uint64_t map_limit_bytes = 0;         // resident at most (0: all of it may be)
  uint64_t map_resident_bytes = 0;
  uint64_t map_page_reads = 0;          // misses: pages read back from the cache
  uint64_t map_page_writes = 0;         // changed pages written home (evictions, checkpoint)
  // On an FDP base (fdp://): its placement handles and its statistics log page (host bytes
  // written, and media bytes written including the drive's own GC copies). Zero otherwise.
  uint32_t base_fdp_handles = 0;
  uint64_t base_fdp_host_write_bytes = 0;
  uint64_t base_fdp_media_write_bytes = 0;
  std::vector<uint64_t> base_fdp_handle_write_bytes;  // by handle: 0 hot bands, 1 cold
};

// The map memory limit of an FTL, by uuid: applied when it opens (recovery then also works in
// windows of this size) and at once if it is open. 0: the whole map resident. Any thread.
void set_ftl_map_limit(const std::string& uuid, uint64_t bytes);
// The fewest map pages kept resident whatever the limit: a read touches at most two.
constexpr uint64_t kMinMapPages = 8;
inline uint64_t map_limit_pages(uint64_t bytes) { return bytes == 0 ? 0 : std::max<uint64_t>(kMinMapPages, bytes / ftl_format::kBlockBytes); }

// Stats of an FTL open in this process, by uuid; NOT_FOUND if none is.
Result<FtlStatsData> ftl_stats(const std::string& uuid);
std::vector<FtlStatsData> list_ftl_stats();

}  // namespace strata
