// The FTL's runtime (private to ftl/): maps, chunk and band lifecycles, the write path and the
// background worker. ftl_device.h is the public face.
#pragma once
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "ftl/ftl_device.h"
#include "ftl/l2p.h"

namespace strata {

// GC starts when fewer bands than this are free; compaction leaves the last 2 to GC. One home
// for the rule: the capacity computed at create keeps these bands (and the two open ones) out.
inline uint32_t ftl_gc_threshold_bands(uint32_t band_count) { return band_count * 5 / 100 + 3; }
uint32_t ftl_reserved_bands(uint32_t band_count);

enum class ChunkState {
  kFree,      // holds nothing the maps point at; may be opened
  kOpen,      // taking new records
  kFull,      // no more records; waits for its writes to land, then for compaction
  kDraining,  // compaction is copying its valid blocks into the hot band
  kDrained,   // copied; freed once the hot band that took its last blocks is closed
};
const char* chunk_state_name(ChunkState s);

enum class BandState {
  kFree,      // erased; may be opened
  kOpen,      // being written (hot: compaction, cold: GC), no footer yet; the maps do not point here
  kClosed,    // footer durable; the maps may point here
  kVictim,    // GC is relocating its valid blocks
  kRelocated, // relocated; erased once the cold band that took its last blocks is closed
  kErasing,   // deallocate / zone reset in flight
};
const char* band_state_name(BandState s);

class FtlDevice final : public Device {
 public:
  struct Geometry {
    ftl_format::Superblock sb;
    ftl_format::BandGeometry band;
  };
  // What recovery found, handed to the constructor.
  struct Loaded {
    std::vector<L2pPage> l2p_pages;       // the map's page table: its pages are home already
    std::vector<uint32_t> band_valid;     // per band: blocks the map points at
    std::vector<uint64_t> slot_lba;  // per cache block: the LBA its data holds, or kNoLba
    std::vector<uint64_t> slot_seq;
    struct ChunkFound {
      uint64_t chunk_seq = 0;    // 0: empty
      uint32_t write_blocks = 0;
      std::vector<ftl_format::FooterEntry> trims;
    };
    std::vector<ChunkFound> chunks;
    std::vector<bool> band_closed;
    std::vector<uint64_t> band_closed_at;  // from a checkpoint; zeros after a scan
    uint64_t next_seq = 1;
    uint64_t records = 0;
    uint64_t host_blocks = 0;       // from a checkpoint
    bool from_checkpoint = false;
    uint64_t map_limit_bytes = 0;   // 0: the whole map resident
  };
  static constexpr uint64_t kNoLba = ~uint64_t{0};

  FtlDevice(DeviceDescription description, std::shared_ptr<Device> cache, std::shared_ptr<Device> base, Geometry geometry,
            std::unique_ptr<Reactor> reactor);
  ~FtlDevice() override;

  // Installs what recovery found; erases the bands that were open at the crash. Control thread,
  // before any I/O.
  Status install(Loaded loaded);

  void read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) override;
  void write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) override;
  void flush(Reactor& reactor, IoCallback done) override;
  void write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) override;
  Status read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) override;
  Status write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) override;
  Result<uint64_t> refresh_size() override { return description_.size_bytes; }
  uint32_t max_io_bytes() const override { return 1u << 20; }

  FtlStatsData stats();
  // The map's memory limit (0: all of it resident); applies now. Any thread.
  void set_map_limit_bytes(uint64_t bytes);
  const std::string& uuid_text() const { return uuid_text_; }

 private:
  struct Chunk {
    ChunkState state = ChunkState::kFree;
    uint64_t chunk_seq = 0;
    uint32_t write_blocks = 0;    // blocks taken by records
    uint32_t writes_in_flight = 0;
    uint32_t readers = 0;
    uint32_t compact_block = 0;   // compaction's cursor
    size_t compact_trim = 0;
    int drain_band = -1;          // the hot band that must close before the chunk is freed
    bool free_when_unread = false;
    std::vector<ftl_format::FooterEntry> trims;  // trim records, in seq order
  };
  struct Band {
    BandState state = BandState::kFree;
    uint32_t valid_blocks = 0;
    uint32_t readers = 0;
    int drain_band = -1;          // victims: the cold band that must close before the erase
    bool erase_when_unread = false;
    uint64_t last_write_end = 0;  // for the sequential-write statistic
    uint64_t closed_at = 0;       // host blocks written when it closed: its age for GC
  };
  // A block (or trim) copied into an open band, and where it came from.
  struct Pending {
    ftl_format::FooterEntry entry;
    Location source = kUnmapped;  // data: the copy the maps point at now
  };
  struct OpenBand {
    int band = -1;
    bool cold = false;
    uint32_t data_blocks = 0;  // written so far
    std::vector<Pending> pending;
    std::vector<int> feeders;  // chunks (hot) or victims (cold) waiting for this band to close
  };
  // One host write or trim: its records land, then it completes.
  struct HostOp {
    IoCallback done;
    uint32_t records_left = 0;
    int result = 0;
    uint64_t bytes = 0;
  };
  struct Record {
    uint64_t seq;
    int chunk;
    uint64_t first_block;  // header's cache block
    ftl_format::RecordKind kind;
    uint64_t lba;
    uint64_t block_count;
    std::shared_ptr<HostOp> op;
    AlignedBuffer buffer;
    bool landed = false;
    int result = 0;
  };
  struct WaitingWrite {
    uint64_t lba;
    uint64_t blocks;
    const uint8_t* data;  // null: trim
    IoCallback done;
  };
  struct VictimCursor {
    int band = -1;
    std::vector<ftl_format::FooterEntry> entries;
    size_t next = 0;
    uint32_t data_index = 0;  // data block of entries[next]
  };

  // ---- lifecycles: the one place each state changes (asserts the transition)
  void set_chunk_state(int chunk, ChunkState next);
  void set_band_state(int band, BandState next);

  // ---- host path (FTL reactor)
  void submit_write(uint64_t lba, uint64_t blocks, const uint8_t* data, IoCallback done);
  bool admit(uint64_t data_blocks) const;
  void start_write(WaitingWrite w);
  void admit_waiting();
  int take_chunk_room(uint32_t blocks_needed);
  void close_open_chunk();
  void record_landed(Record* record, int result);
  void apply(Record& record);
  void do_read(uint64_t lba, uint64_t blocks, uint8_t* out, IoCallback done);
  void set_l2p(uint64_t lba, Location next);
  void fail(const std::string& why);
  // Control thread: an I/O result as words, with the reason the FTL failed if it has.
  std::string failure_text(int result);

  // ---- background worker (FTL reactor)
  void kick();
  void step_done();
  bool gc_needed() const;
  // Cost-benefit (LFS): the closed band with the most (1 - u) * age / (1 + u), u its valid
  // fraction. Unlike greedy it leaves young bands, whose blocks are still being overwritten,
  // to lose more of them first: under skew, fewer hot blocks are copied only to die.
  int pick_victim() const;
  void gc_step();
  void compact_step(int chunk);
  bool open_band(OpenBand& band, bool cold);
  // A band write: through the band's placement handle on an FDP base (hot 0, cold 1).
  void base_write(bool cold, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done);
  // Reads `sources` (cache or base blocks) and appends them to `band` with their entries, then `done`.
  void append_blocks(OpenBand& band, std::vector<Pending> blocks, bool gc, std::function<void()> done);
  void close_band(OpenBand& band, std::function<void()> done);
  void free_chunk(int chunk);
  void erase_band(int band);
  // A read in flight on a chunk or band keeps it from being reused until it completes.
  void unpin(Location where);
  void pin(Location where);
  // Whole 4 KiB blocks within the logical space: the one range check of every entry point.
  bool in_blocks(uint64_t offset_bytes, uint64_t length_bytes) const {
    return offset_bytes % ftl_format::kBlockBytes == 0 && length_bytes % ftl_format::kBlockBytes == 0 && offset_bytes + length_bytes <= size_bytes();
  }
  uint64_t band_first_block(int band) const { return geo_.sb.band_start_block + uint64_t(band) * geo_.sb.band_blocks; }
  uint64_t chunk_first_block(int chunk) const { return geo_.sb.chunk_start_block + uint64_t(chunk) * geo_.sb.chunk_blocks; }
  int chunk_of(uint64_t cache_block) const { return int((cache_block - geo_.sb.chunk_start_block) / geo_.sb.chunk_blocks); }
  // Clean shutdown: the maps, band and chunk states as they are now, into the cache's
  // checkpoint area (body, then header), so the next open needs no scan. Control thread, idle FTL.
  void write_checkpoint();
  int band_of(uint64_t base_block) const { return int((base_block - geo_.sb.band_start_block) / geo_.sb.band_blocks); }

  void on_reactor(std::function<void()> task);
  int run_sync(const std::function<void(IoCallback)>& start);

  std::shared_ptr<Device> cache_, base_;
  Geometry geo_;
  std::string uuid_text_;
  std::unique_ptr<Reactor> reactor_;

  // Everything below: FTL reactor only.
  std::unique_ptr<L2pMap> map_;
  std::vector<uint64_t> slot_lba_, slot_seq_;
  std::vector<Chunk> chunks_;
  std::vector<Band> bands_;
  std::deque<int> free_chunks_, full_chunks_, free_bands_;
  int open_chunk_ = -1;
  OpenBand hot_, cold_;
  VictimCursor victim_;
  std::deque<std::unique_ptr<Record>> in_flight_;  // seq order
  std::deque<WaitingWrite> waiting_;
  uint64_t next_seq_ = 1;
  bool worker_busy_ = false;
  bool stopping_ = false;
  bool installed_ = false;  // install() succeeded: the state is whole, a checkpoint of it is worth writing
  uint32_t gc_threshold_bands_ = 3;
  std::string failed_;
  FtlStatsData stats_;
};

}  // namespace strata
