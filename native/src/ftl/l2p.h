// The FTL's logical-to-physical map, paged below a memory limit (as SPDK's FTL pages its L2P).
//
// The map is cut into pages of 512 entries (one 4 KiB block). Each page's home is a block of the
// cache's checkpoint area (block 2 + page). At most `limit_pages` pages are resident; to make room
// the least recently used one is dropped, written home first if it changed. A page's CRC32C is kept
// in memory for every page (4 bytes a page: 1/1024 of the map), so a page read back is checked
// against what was written, and its entries against the devices' bounds.
//
// The home blocks are trusted only through a clean-shutdown checkpoint (which stores the page
// table); after a crash, recovery rebuilds every page and writes it home before the FTL serves.
//
// Threads: the FTL's reactor only, once attached. A miss reads its page synchronously (one 4 KiB
// cache read on the FTL's reactor); write-backs are asynchronous, one in flight per page.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"
#include "ftl/format.h"
#include "util/aligned_buffer.h"

namespace strata {

// A logical block's place: 0 = unmapped (reads zeros), else the device (top two bits) and the
// block index on it.
using Location = uint64_t;
constexpr Location kUnmapped = 0;
constexpr Location kCacheTag = uint64_t{1} << 62;
constexpr Location kBaseTag = uint64_t{2} << 62;
constexpr Location kIndexMask = (uint64_t{1} << 62) - 1;
inline bool in_cache(Location l) { return (l & ~kIndexMask) == kCacheTag; }
inline bool in_base(Location l) { return (l & ~kIndexMask) == kBaseTag; }
inline uint64_t block_of(Location l) { return l & kIndexMask; }

enum class L2pPageState : uint8_t {
  kEmpty,   // every entry unmapped; no copy in memory or on the device
  kStored,  // only in its home block (its CRC32C known)
  kClean,   // resident, equal to its stored copy
  kDirty,   // resident, changed since it was last stored (or never stored)
};

struct L2pPage {
  L2pPageState state = L2pPageState::kEmpty;
  uint32_t crc = 0;  // of the stored copy
};

// Where map entries may point: a page read back pointing elsewhere is corrupt.
struct L2pBounds {
  uint64_t cache_first = 0, cache_end = 0;  // chunk blocks
  uint64_t base_first = 0, base_end = 0;    // band blocks
  bool fits(Location l) const {
    return l == kUnmapped || (in_cache(l) && block_of(l) >= cache_first && block_of(l) < cache_end) ||
           (in_base(l) && block_of(l) >= base_first && block_of(l) < base_end);
  }
};

class L2pMap {
 public:
  static constexpr uint64_t kEntriesPerPage = ftl_format::kL2pEntriesPerPage;

  // `table`: one entry per page (ftl_format::l2p_pages(entries)), as the loader left them (kEmpty
  // or kStored). `first_block`: the home of page 0 on `cache`.
  L2pMap(Device& cache, uint64_t first_block, uint64_t entries, std::vector<L2pPage> table, L2pBounds bounds);
  ~L2pMap();

  // Before any get or set: the reactor write-backs run on, and where a failed page read or write
  // goes (the FTL fails: a map it cannot read serves nothing).
  void attach(Reactor& reactor, std::function<void(const std::string&)> on_error);
  // 0: no limit. Lowering it evicts down to it now.
  void set_limit_pages(uint64_t pages);
  uint64_t limit_pages() const { return limit_pages_; }

  // Unmapped when the page cannot be read (on_error has been told; callers check ok()).
  Location get(uint64_t lba);
  // Sets an entry and returns what it held.
  Location exchange(uint64_t lba, Location next);
  bool ok() const { return error_.empty(); }
  // A page write-back is still in flight (the map must outlive it).
  bool writing() const { return !writing_.empty(); }

  // Writes every changed page home and flushes the cache device; done(0) once all of it is
  // durable (then table() has no dirty page), else a negative errno.
  void store_all(IoCallback done);
  // The page table as a checkpoint stores it: resident clean pages are stored pages.
  std::vector<L2pPage> table() const;

  uint64_t resident_pages() const { return resident_; }
  uint64_t page_count() const { return pages_.size(); }
  uint64_t page_reads() const { return page_reads_; }
  uint64_t page_writes() const { return page_writes_; }

 private:
  struct Frame {
    uint64_t page;
    AlignedBuffer buffer;
    std::list<Frame*>::iterator lru;
    Location* entries() { return reinterpret_cast<Location*>(buffer.data()); }
  };
  // Write-backs of one page, in order: the one in flight and the newest waiting behind it.
  struct Writing {
    std::shared_ptr<AlignedBuffer> in_flight, next;
  };

  // The one place a page's state changes (asserts the transition).
  void set_state(uint64_t page, L2pPageState next);
  // The resident entries of a page (paged in if needed); null if it cannot be read.
  Location* resident(uint64_t page);
  void evict_one();
  void write_home(uint64_t page, std::shared_ptr<AlignedBuffer> copy);
  void written(uint64_t page, int result);
  void fail(const std::string& why);

  Device& cache_;
  const uint64_t first_block_;
  const uint64_t entries_;
  const L2pBounds bounds_;
  std::vector<L2pPage> pages_;
  std::vector<Frame*> frame_of_;   // per page, null when not resident
  std::list<Frame*> lru_;          // most recent first
  Frame* last_ = nullptr;          // the last page touched: repeated hits skip the LRU move
  std::map<uint64_t, Writing> writing_;
  std::vector<std::function<void()>> on_idle_;  // store_all waiting for the write-backs
  Reactor* reactor_ = nullptr;
  std::function<void(const std::string&)> on_error_;
  uint64_t limit_pages_ = 0;
  uint64_t resident_ = 0;
  uint64_t page_reads_ = 0, page_writes_ = 0;
  std::string error_;
};

}  // namespace strata
