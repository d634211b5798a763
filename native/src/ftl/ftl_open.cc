// Creating an FTL (format once), opening one (load, never format) and recovery: the maps rebuilt
// from the band footers and the cache log, the newest sequence number winning per block.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <mutex>

#include "device/uri.h"
#include "device/zones.h"
#include "ftl/ftl.h"
#include "util/crc32c.h"

namespace strata {

using namespace ftl_format;

namespace {

constexpr const char* kFtlGrammar =
    "ftl://?cache=<percent-encoded device URI>&base=<percent-encoded device URI>[&op_percent=N][&band_mib=N][&chunk_kib=N]";
constexpr uint64_t kForeignProbeBytes = 1 << 20;

// The FTLs open in this process: one opener per FTL, and a device under one cannot be formatted.
struct OpenFtl {
  FtlDevice* device;
  std::string cache_identity, base_identity;
};
std::mutex registry_mutex;
std::map<std::string, OpenFtl>& registry() {
  static std::map<std::string, OpenFtl> open;
  return open;
}

std::optional<std::string> ftl_using(const std::string& identity) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  for (auto& [uuid, f] : registry()) {
    if (f.cache_identity == identity || f.base_identity == identity) return uuid;
  }
  return std::nullopt;
}

int run_io(Reactor& reactor, const std::function<void(IoCallback)>& start) {
  std::promise<int> result;
  reactor.post([&] { start([&result](int r) { result.set_value(r); }); });
  return result.get_future().get();
}

std::string ftl_uri(const std::string& cache_uri, const std::string& base_uri) {
  return str("ftl://?cache=", percent_encode(cache_uri), "&base=", percent_encode(base_uri));
}

struct ParsedFtlUri {
  std::string cache, base;
  // The geometry the opener expects; absent: whatever the superblock says.
  std::optional<uint64_t> op_percent, band_mib, chunk_kib;
};

Result<ParsedFtlUri> parse_ftl_uri(const std::string& uri) {
  const std::string prefix = "ftl://?";
  if (uri.rfind(prefix, 0) != 0) return Error{ErrorCode::kInvalidArgument, str("FTL device URI '", uri, "' must look like ", kFtlGrammar)};
  ParsedFtlUri p;
  for (const auto& [key, value] : query_params(uri.substr(prefix.size()))) {
    std::optional<uint64_t>* number = key == "op_percent" ? &p.op_percent : key == "band_mib" ? &p.band_mib : key == "chunk_kib" ? &p.chunk_kib : nullptr;
    if (number != nullptr) {
      auto n = parse_whole_number(value, 1, 1 << 20);
      if (!n || number->has_value()) return Error{ErrorCode::kInvalidArgument, str(key, " in '", uri, "' must be given once, as a whole number, got '", value, "'")};
      *number = n;
      continue;
    }
    std::string* slot = key == "cache" ? &p.cache : key == "base" ? &p.base : nullptr;
    if (slot == nullptr) return Error{ErrorCode::kInvalidArgument, str("FTL device URI '", uri, "' has unknown parameter '", key, "'; the grammar is ", kFtlGrammar)};
    if (!slot->empty()) return Error{ErrorCode::kInvalidArgument, str("FTL device URI '", uri, "' names ", key, " twice")};
    auto decoded = percent_decode(value, key == "cache" ? "cache" : "base");
    if (!decoded.ok()) return decoded.error();
    *slot = decoded.value();
  }
  if (p.cache.empty() || p.base.empty()) return Error{ErrorCode::kInvalidArgument, str("FTL device URI '", uri, "' needs cache and base: ", kFtlGrammar)};
  return p;
}

Status check_inner(const std::string& cache_uri, const std::string& base_uri) {
  for (const std::string* u : {&cache_uri, &base_uri}) {
    if (u->rfind("ftl://", 0) == 0) return Status(ErrorCode::kInvalidArgument, str("an FTL cannot sit on another FTL (", *u, ")"));
  }
  if (cache_uri.rfind("zoned://", 0) == 0) {
    return Status(ErrorCode::kInvalidArgument, str("cache device ", cache_uri, " is zoned; the cache takes random writes and must be a conventional device"));
  }
  return Status();
}

// What the first MiB of a device says about it: nothing (zeros), an FTL superblock, or data.
struct Probe {
  bool zeros = true;
  std::optional<DecodedSuperblock> superblock;
};
Result<Probe> probe(Device& device) {
  Probe p;
  if (Zones* z = device.zoned()) {
    for (const ZoneInfo& zone : z->report().zones) {
      if (zone.state != ZoneState::kEmpty) p.zeros = false;
    }
  }
  const uint64_t bytes = std::min<uint64_t>(kForeignProbeBytes, device.size_bytes() / kBlockBytes * kBlockBytes);
  AlignedBuffer buf(bytes);
  if (Status s = device.read_sync(0, bytes, buf.data()); !s.ok()) return s.error();
  for (uint64_t i = 0; i < bytes; i++) {
    if (buf.data()[i] != 0) {
      p.zeros = false;
      break;
    }
  }
  p.superblock = decode_superblock(buf.data());
  return p;
}

Result<Superblock> read_superblock(Device& device, Role role, const char* what) {
  const std::string& uri = device.description().uri;
  AlignedBuffer buf(kBlockBytes);
  if (Status s = device.read_sync(0, kBlockBytes, buf.data()); !s.ok()) return s.error();
  auto d = decode_superblock(buf.data());
  if (!d) {
    return Error{ErrorCode::kFailedPrecondition, str(what, " device ", uri, " holds no FTL superblock; an FTL is created once (CreateFtl, the CsalDevice resource), and opening never formats")};
  }
  if (!d->crc_ok) return Error{ErrorCode::kDataLoss, str("the FTL superblock on ", what, " device ", uri, " fails its CRC32C check")};
  if (d->sb.version != kVersion) {
    return Error{ErrorCode::kUnimplemented, str("the FTL on ", uri, " has format version ", d->sb.version, "; this engine reads version ", kVersion)};
  }
  if (d->sb.role != role) {
    return Error{ErrorCode::kFailedPrecondition, str("device ", uri, " is the ", d->sb.role == Role::kCache ? "cache" : "base", " device of FTL ",
                                                     format_uuid(d->sb.ftl_uuid), ", given as the ", what)};
  }
  return d->sb;
}

bool same_geometry(const Superblock& a, const Superblock& b) {
  return a.chunk_blocks == b.chunk_blocks && a.band_blocks == b.band_blocks && a.op_percent == b.op_percent && a.band_count == b.band_count &&
         a.chunk_count == b.chunk_count && a.logical_blocks == b.logical_blocks && a.band_start_block == b.band_start_block &&
         a.cache_size_bytes == b.cache_size_bytes && a.base_size_bytes == b.base_size_bytes && a.zoned_base == b.zoned_base &&
         a.checkpoint_blocks == b.checkpoint_blocks && a.chunk_start_block == b.chunk_start_block;
}

}  // namespace

void unregister_ftl(const std::string& uuid) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry().erase(uuid);
}

uint32_t ftl_reserved_bands(uint32_t band_count) { return ftl_gc_threshold_bands(band_count) + 2; }

// ---- create ------------------------------------------------------------------------------------

Result<FtlCreated> create_ftl(const FtlCreateOptions& o) {
  if (Status s = check_inner(o.cache_uri, o.base_uri); !s.ok()) return s.error();
  if (o.op_percent < kOpPercentMin || o.op_percent > kOpPercentMax) {
    return Error{ErrorCode::kInvalidArgument, str("over-provisioning ", o.op_percent, "% is outside ", kOpPercentMin, "..", kOpPercentMax, "%")};
  }
  if (o.chunk_kib < kChunkKibMin || o.chunk_kib > kChunkKibMax || o.chunk_kib % 4 != 0) {
    return Error{ErrorCode::kInvalidArgument, str("chunk size ", o.chunk_kib, " KiB must be a multiple of 4 KiB from ", kChunkKibMin, " to ", kChunkKibMax, " KiB")};
  }
  auto cache_or = open_device(o.cache_uri, /*may_create=*/true);
  if (!cache_or.ok()) return cache_or.error();
  auto base_or = open_device(o.base_uri, /*may_create=*/true);
  if (!base_or.ok()) return base_or.error();
  std::shared_ptr<Device> cache = std::move(cache_or.value()), base = std::move(base_or.value());
  if (cache->description().identity == base->description().identity) {
    return Error{ErrorCode::kInvalidArgument, str("cache ", o.cache_uri, " and base ", o.base_uri, " are the same device")};
  }
  for (auto* d : {cache.get(), base.get()}) {
    if (auto user = ftl_using(d->description().identity)) {
      return Error{ErrorCode::kFailedPrecondition, str("device ", d->description().uri, " is in use by open FTL ", *user)};
    }
    if (kBlockBytes % d->description().block_size_bytes != 0) {
      return Error{ErrorCode::kInvalidArgument, str("device ", d->description().uri, " has ", d->description().block_size_bytes, "-byte blocks; the FTL needs 4 KiB to be a whole number of them")};
    }
  }
  std::optional<UuidBytes> wanted;
  if (!o.uuid.empty()) {
    wanted = parse_uuid(o.uuid);
    if (!wanted) return Error{ErrorCode::kInvalidArgument, str("FTL uuid '", o.uuid, "' is not a uuid")};
  }
  // Devices holding data are formatted only when asked to; devices of this very FTL are ours.
  std::optional<Superblock> existing[2];
  int index = 0;
  for (auto [d, what] : {std::pair{cache.get(), "cache"}, std::pair{base.get(), "base"}}) {
    auto p = probe(*d);
    if (!p.ok()) return p.error();
    const auto& found = p.value().superblock;
    const int i = index++;
    if (wanted && found && found->crc_ok && found->sb.ftl_uuid == *wanted) {
      existing[i] = found->sb;
      continue;
    }
    if (o.force || p.value().zeros) continue;
    if (found) {
      return Error{ErrorCode::kFailedPrecondition, str(what, " device ", d->description().uri, " already belongs to FTL ", format_uuid(found->sb.ftl_uuid),
                                                       "; open it with its ftl:// URI, or pass force to format over it")};
    }
    return Error{ErrorCode::kFailedPrecondition, str(what, " device ", d->description().uri, " holds data; pass force to format over it")};
  }

  Superblock sb;
  const uint64_t cache_blocks = cache->size_bytes() / kBlockBytes;
  const uint64_t base_blocks = base->size_bytes() / kBlockBytes;
  sb.chunk_blocks = o.chunk_kib / 4;
  Zones* zones = base->zoned();
  if (zones) {
    const uint64_t zone = zones->zone_size_bytes();
    if (o.band_mib && (uint64_t{o.band_mib} << 20) != zone) {
      return Error{ErrorCode::kInvalidArgument, str("band size ", o.band_mib, " MiB differs from the zoned base's zone size ", zone >> 20, " MiB; on a zoned base a band is one zone")};
    }
    sb.band_blocks = uint32_t(zone / kBlockBytes);
    sb.band_start_block = sb.band_blocks;  // zone 0 holds the superblock
    sb.zoned_base = 1;
  } else {
    const uint32_t band_mib = o.band_mib ? o.band_mib : kBandMibDefault;
    if (band_mib > kBandMibMax) return Error{ErrorCode::kInvalidArgument, str("band size ", band_mib, " MiB exceeds ", kBandMibMax, " MiB")};
    sb.band_blocks = band_mib * 256;
    sb.band_start_block = 256;  // the superblock's MiB
  }
  const uint64_t bands = base_blocks > sb.band_start_block ? (base_blocks - sb.band_start_block) / sb.band_blocks : 0;
  const uint32_t reserved = ftl_reserved_bands(uint32_t(std::min<uint64_t>(bands, UINT32_MAX)));
  if (bands < uint64_t{reserved} + 2) {
    return Error{ErrorCode::kInvalidArgument, str("base device ", o.base_uri, " (", base->size_bytes(), " bytes) holds ", bands, " bands of ", sb.band_blocks / 256,
                                                  " MiB; at least ", reserved + 2, " are needed (", reserved, " stay free for GC); use a smaller band_mib or a larger base")};
  }
  sb.band_count = uint32_t(bands);
  sb.op_percent = o.op_percent;
  const BandGeometry bg = band_geometry(sb.band_blocks);
  sb.logical_blocks = uint64_t(sb.band_count - reserved) * bg.data_blocks * (100 - o.op_percent) / 100;
  // The cache: superblock, the checkpoint area (sized for the most chunks the cache could
  // hold, so it always fits), then the chunks.
  const uint64_t most_chunks = cache_blocks > 1 ? (cache_blocks - 1) / sb.chunk_blocks : 0;
  const uint64_t checkpoint_blocks = 1 + (checkpoint_max_area_bytes(sb.logical_blocks, sb.band_count, most_chunks, sb.chunk_blocks) + kBlockBytes - 1) / kBlockBytes;
  const uint64_t chunks = cache_blocks > 1 + checkpoint_blocks ? (cache_blocks - 1 - checkpoint_blocks) / sb.chunk_blocks : 0;
  if (chunks < 4) {
    return Error{ErrorCode::kInvalidArgument, str("cache device ", o.cache_uri, " (", cache->size_bytes(), " bytes) holds ", chunks, " chunks of ", o.chunk_kib,
                                                  " KiB after its ", checkpoint_blocks * kBlockBytes / 1024, " KiB checkpoint area; at least 4 are needed")};
  }
  sb.chunk_count = uint32_t(std::min<uint64_t>(chunks, UINT32_MAX));
  sb.checkpoint_blocks = uint32_t(checkpoint_blocks);
  sb.chunk_start_block = 1 + checkpoint_blocks;
  sb.cache_size_bytes = cache->size_bytes();
  sb.base_size_bytes = base->size_bytes();
  if (wanted) {
    sb.ftl_uuid = *wanted;
  } else {
    for (size_t i = 0; i < 16; i += 8) {
      const uint64_t r = random_u64();
      std::memcpy(sb.ftl_uuid.data() + i, &r, 8);
    }
    sb.ftl_uuid[6] = (sb.ftl_uuid[6] & 0x0F) | 0x40;  // version 4
    sb.ftl_uuid[8] = (sb.ftl_uuid[8] & 0x3F) | 0x80;
  }
  // Created already (a retried create): both superblocks name this FTL with this geometry.
  if (existing[0] && existing[1]) {
    Superblock mine = sb;
    mine.role = existing[0]->role;
    if (same_geometry(*existing[0], mine) && same_geometry(*existing[1], mine)) {
      return FtlCreated{ftl_uri(cache->description().uri, base->description().uri), format_uuid(sb.ftl_uuid), sb.logical_blocks * kBlockBytes};
    }
    if (!o.force) {
      return Error{ErrorCode::kAlreadyExists, str("FTL ", format_uuid(sb.ftl_uuid), " exists on these devices with another geometry (over-provisioning ", existing[0]->op_percent,
                                                  "%, ", existing[0]->band_blocks / 256, " MiB bands, ", existing[0]->chunk_blocks * 4, " KiB chunks); pass force to format it anew")};
    }
  }

  // Erase the base (old footers would otherwise look like closed bands) and the old
  // superblocks, then write the superblocks: base first, cache last.
  Reactor reactor(-1);
  if (Status s = reactor.start(); !s.ok()) return s.error();
  auto erase_and_write = [&]() -> Status {
    int r = 0;
    if (zones) {
      const uint64_t zone_count = base->size_bytes() / zones->zone_size_bytes();
      r = run_io(reactor, [&](IoCallback d) { base->deallocate(reactor, 0, zone_count * zones->zone_size_bytes(), d); });
    } else {
      r = run_io(reactor, [&](IoCallback d) { base->deallocate(reactor, 0, base_blocks * kBlockBytes, d); });
    }
    if (r < 0) return Status(ErrorCode::kIoError, str("erasing base device ", o.base_uri, ": ", io_result_text(r)));
    r = run_io(reactor, [&](IoCallback d) { cache->deallocate(reactor, 0, cache_blocks * kBlockBytes, d); });
    if (r < 0) return Status(ErrorCode::kIoError, str("erasing cache device ", o.cache_uri, ": ", io_result_text(r)));
    AlignedBuffer block(kBlockBytes);
    sb.role = Role::kBase;
    encode_superblock(sb, block.data());
    if (Status s = base->write_sync(0, kBlockBytes, block.data()); !s.ok()) return s;
    if (zones) {  // the superblock zone holds no open or active resource from now on
      r = run_io(reactor, [&](IoCallback d) { zones->manage(reactor, ZoneAction::kFinish, 0, d); });
      if (r < 0) return Status(ErrorCode::kIoError, str("finishing the superblock zone of ", o.base_uri, ": ", io_result_text(r)));
    }
    sb.role = Role::kCache;
    encode_superblock(sb, block.data());
    return cache->write_sync(0, kBlockBytes, block.data());
  };
  Status s = erase_and_write();
  reactor.stop();
  if (!s.ok()) return s.error();
  return FtlCreated{ftl_uri(cache->description().uri, base->description().uri), format_uuid(sb.ftl_uuid), sb.logical_blocks * kBlockBytes};
}

Status destroy_ftl(const std::string& uri) {
  auto parsed = parse_ftl_uri(uri);
  if (!parsed.ok()) return parsed.error();
  if (Status s = check_inner(parsed.value().cache, parsed.value().base); !s.ok()) return s;
  std::shared_ptr<Device> devices[2];
  std::optional<UuidBytes> owner[2];
  const char* what[2] = {"cache", "base"};
  for (int i = 0; i < 2; i++) {
    auto d = open_device(i == 0 ? parsed.value().cache : parsed.value().base, false);
    if (!d.ok()) return d.error();
    devices[i] = std::move(d.value());
    AlignedBuffer buf(kBlockBytes);
    if (Status s = devices[i]->read_sync(0, kBlockBytes, buf.data()); !s.ok()) return s;
    if (auto sb = decode_superblock(buf.data())) owner[i] = sb->sb.ftl_uuid;
  }
  if (owner[0] && owner[1] && *owner[0] != *owner[1]) {
    return Status(ErrorCode::kFailedPrecondition, str("cache ", devices[0]->description().uri, " belongs to FTL ", format_uuid(*owner[0]), " but base ",
                                                      devices[1]->description().uri, " to FTL ", format_uuid(*owner[1]), "; refusing to wipe either"));
  }
  for (int i = 0; i < 2; i++) {
    if (!owner[i]) continue;
    std::lock_guard<std::mutex> lock(registry_mutex);
    if (registry().count(format_uuid(*owner[i]))) {
      return Status(ErrorCode::kFailedPrecondition, str("FTL ", format_uuid(*owner[i]), " is open (a pool is on it); destroy or export the pool first"));
    }
  }
  // Base first, cache last: a crash in between leaves a cache superblock without its base,
  // which opening refuses and a second destroy finishes.
  Reactor reactor(-1);
  if (Status s = reactor.start(); !s.ok()) return s;
  Status result;
  for (int i : {1, 0}) {
    if (!owner[i]) continue;
    Device& d = *devices[i];
    int r = 0;
    if (Zones* z = d.zoned()) {
      r = run_io(reactor, [&](IoCallback done) { d.deallocate(reactor, 0, z->zone_size_bytes(), done); });
    } else {
      r = run_io(reactor, [&](IoCallback done) { d.write_zeroes(reactor, 0, kBlockBytes, done); });
      if (r >= 0) r = run_io(reactor, [&](IoCallback done) { d.flush(reactor, done); });
    }
    if (r < 0) {
      result = Status(ErrorCode::kIoError, str("wiping the FTL superblock on ", what[i], " device ", d.description().uri, ": ", io_result_text(r)));
      break;
    }
  }
  reactor.stop();
  return result;
}

// ---- open and recovery ------------------------------------------------------------------------

namespace {

// Per logical block of one window [first, first + where.size()) during recovery: where its
// newest copy is and that copy's seq.
struct Newest {
  uint64_t first;
  std::vector<Location> where;
  std::vector<uint64_t> seq;
  bool covers(uint64_t lba) const { return lba >= first && lba - first < where.size(); }
  void data(uint64_t lba, uint64_t s, Location at) {
    if (!covers(lba)) return;
    // Strictly newer: an equal seq is the same data (a GC copy), the first seen stays.
    if (s > seq[lba - first]) {
      seq[lba - first] = s;
      where[lba - first] = at;
    }
  }
  void trim(uint64_t lba, uint64_t count, uint64_t s) {
    const uint64_t from = std::max(lba, first), to = std::min(lba + count, first + where.size());
    for (uint64_t i = from; i < to; i++) {
      if (s > seq[i - first]) {
        seq[i - first] = s;
        where[i - first] = kUnmapped;
      }
    }
  }
};

}  // namespace

namespace {

// The checkpoint, when a valid one is there (nullopt: none, or not whole: scan instead), already
// invalidated on the device.
Result<std::optional<FtlDevice::Loaded>> load_checkpoint(Device& cache, const Superblock& sb) {
  if (sb.checkpoint_blocks < 2) return std::optional<FtlDevice::Loaded>();
  AlignedBuffer header(kBlockBytes);
  if (Status s = cache.read_sync(kBlockBytes, kBlockBytes, header.data()); !s.ok()) return s.error();
  auto h = decode_checkpoint_header(header.data(), sb.ftl_uuid);
  if (!h) return std::optional<FtlDevice::Loaded>();
  const uint64_t chunk_area = uint64_t(sb.chunk_count) * sb.chunk_blocks;
  const uint64_t pages = l2p_pages(sb.logical_blocks);
  const uint64_t fixed = kCheckpointPageBytes * pages + kCheckpointBandBytes * sb.band_count + kCheckpointChunkBytes * sb.chunk_count + kCheckpointSlotBytes * chunk_area;
  const uint64_t body_block = checkpoint_body_block(sb.logical_blocks);
  const uint64_t body_blocks = (h->body_bytes + kBlockBytes - 1) / kBlockBytes;
  if (h->body_bytes < fixed || (h->body_bytes - fixed) % kCheckpointTrimBytes != 0 || body_block + body_blocks > 1 + uint64_t(sb.checkpoint_blocks)) {
    return std::optional<FtlDevice::Loaded>();
  }
  AlignedBuffer body(body_blocks * kBlockBytes);
  if (Status s = cache.read_sync(body_block * kBlockBytes, body_blocks * kBlockBytes, body.data()); !s.ok()) return s.error();
  if (crc32c(0, body.data(), h->body_bytes) != h->body_crc) return std::optional<FtlDevice::Loaded>();
  const uint8_t* p = body.data();
  auto get = [&p] {
    uint64_t v;
    std::memcpy(&v, p, 8);
    p += 8;
    return v;
  };
  auto inconsistent = [&](const char* what) {
    return Error{ErrorCode::kDataLoss, str("the checkpoint of FTL ", format_uuid(sb.ftl_uuid), " on ", cache.description().uri, " is inconsistent: ", what)};
  };
  FtlDevice::Loaded loaded;
  loaded.from_checkpoint = true;
  loaded.next_seq = h->next_seq;
  loaded.host_blocks = h->host_blocks;
  // The map stays in its pages; each is checked against this CRC when it is read.
  loaded.l2p_pages.resize(pages);
  for (L2pPage& page : loaded.l2p_pages) {
    const uint64_t v = get();
    if ((v >> 33) != 0) return inconsistent("a page table entry has unknown flags");
    page.state = (v >> 32) != 0 ? L2pPageState::kStored : L2pPageState::kEmpty;
    page.crc = uint32_t(v);
  }
  const uint64_t cache_end = sb.chunk_start_block + chunk_area;
  loaded.band_closed.resize(sb.band_count);
  loaded.band_closed_at.resize(sb.band_count);
  loaded.band_valid.resize(sb.band_count);
  const uint64_t band_data_blocks = band_geometry(sb.band_blocks).data_blocks;
  for (uint32_t b = 0; b < sb.band_count; b++) {
    loaded.band_closed[b] = get() != 0;
    loaded.band_closed_at[b] = get();
    const uint64_t valid = get();
    if (valid > band_data_blocks || (valid > 0 && !loaded.band_closed[b])) return inconsistent("a band's valid count");
    loaded.band_valid[b] = uint32_t(valid);
  }
  loaded.chunks.resize(sb.chunk_count);
  std::vector<uint64_t> trim_counts(sb.chunk_count);
  uint64_t trims_total = 0;
  for (uint32_t c = 0; c < sb.chunk_count; c++) {
    loaded.chunks[c].chunk_seq = get();
    loaded.chunks[c].write_blocks = uint32_t(std::min<uint64_t>(get(), sb.chunk_blocks));
    trims_total += trim_counts[c] = get();
  }
  if (trims_total * kCheckpointTrimBytes != h->body_bytes - fixed) return inconsistent("its trim count");
  loaded.slot_lba.assign(cache_end, FtlDevice::kNoLba);
  loaded.slot_seq.assign(cache_end, 0);
  for (uint64_t i = 0; i < chunk_area; i++) {
    loaded.slot_lba[sb.chunk_start_block + i] = get();
    loaded.slot_seq[sb.chunk_start_block + i] = get();
  }
  for (uint32_t c = 0; c < sb.chunk_count; c++) {
    for (uint64_t t = 0; t < trim_counts[c]; t++) {
      FooterEntry e;
      e.lba = get();
      e.seq = get();
      e.trim_blocks = get();
      loaded.chunks[c].trims.push_back(e);
    }
  }
  // Used once: from now on only a new clean shutdown may leave one.
  AlignedBuffer zeros(kBlockBytes);
  if (Status s = cache.write_sync(kBlockBytes, kBlockBytes, zeros.data()); !s.ok()) return s.error();
  return std::optional<FtlDevice::Loaded>(std::move(loaded));
}

}  // namespace

namespace {

// After a crash: the maps rebuilt from every band's footer and every chunk's records, the
// highest seq winning per block. With a map memory limit the logical space is rebuilt in windows
// that fit it (the footers and the cache are read once per window, as SPDK's recovery iterates),
// and each window's map pages are written home before the next.
Result<FtlDevice::Loaded> recover(Device& cache, Device& base, const FtlDevice::Geometry& geo, uint64_t limit_bytes) {
  const Superblock& sb = geo.sb;
  const std::string uuid = format_uuid(sb.ftl_uuid);
  FtlDevice::Loaded loaded;
  const uint64_t pages = l2p_pages(sb.logical_blocks);
  // A window's where and seq take 16 bytes a block: the limit holds limit/16 of them.
  const uint64_t window_pages = limit_bytes == 0 ? pages : std::max<uint64_t>(1, limit_bytes / 16 / kL2pEntriesPerPage);
  loaded.l2p_pages.resize(pages);
  loaded.band_valid.assign(sb.band_count, 0);
  loaded.band_closed.assign(sb.band_count, false);
  loaded.slot_lba.assign(sb.chunk_start_block + uint64_t(sb.chunk_count) * sb.chunk_blocks, FtlDevice::kNoLba);
  loaded.slot_seq.assign(loaded.slot_lba.size(), 0);
  loaded.chunks.resize(sb.chunk_count);
  uint64_t max_seq = 0;
  AlignedBuffer footer_buf(size_t(geo.band.footer_blocks) * kBlockBytes);
  AlignedBuffer chunk_buf(size_t(sb.chunk_blocks) * kBlockBytes);
  for (uint64_t first_page = 0; first_page < pages; first_page += window_pages) {
    const uint64_t window_page_count = std::min(window_pages, pages - first_page);
    const uint64_t first_lba = first_page * kL2pEntriesPerPage;
    const uint64_t lbas = std::min(window_page_count * kL2pEntriesPerPage, sb.logical_blocks - first_lba);
    const bool first_window = first_page == 0;
    Newest newest{first_lba, std::vector<Location>(lbas, kUnmapped), std::vector<uint64_t>(lbas, 0)};
    // 1. Closed bands: their footers.
    for (uint32_t b = 0; b < sb.band_count; b++) {
      const uint64_t first = sb.band_start_block + uint64_t(b) * sb.band_blocks;
      if (Status s = base.read_sync((first + geo.band.data_blocks) * kBlockBytes, footer_buf.size(), footer_buf.data()); !s.ok()) return s.error();
      auto footer = decode_footer(footer_buf.data(), geo.band.footer_blocks, sb.ftl_uuid, b);
      if (!footer) continue;
      uint64_t index = 0;
      for (const FooterEntry& e : footer->entries) {
        if (e.lba >= sb.logical_blocks || e.trim_blocks > sb.logical_blocks - e.lba || index > footer->data_blocks) {
          return Error{ErrorCode::kDataLoss, str("band ", b, " footer on ", base.description().uri, " names blocks beyond FTL ", uuid, "'s ", sb.logical_blocks)};
        }
        max_seq = std::max(max_seq, e.seq);
        if (e.trim_blocks) {
          newest.trim(e.lba, e.trim_blocks, e.seq);
        } else {
          newest.data(e.lba, e.seq, kBaseTag | (first + index++));
        }
      }
      max_seq = std::max(max_seq, footer->close_seq);
      loaded.band_closed[b] = true;
    }
    // 2. The cache log, chunk by chunk: each chunk's records from its start while they are whole
    //    and of this use of the chunk. Records are acknowledged in seq order, so every
    //    acknowledged record precedes the first that fails these checks.
    for (uint32_t c = 0; c < sb.chunk_count; c++) {
      const uint64_t first = sb.chunk_start_block + uint64_t(c) * sb.chunk_blocks;
      if (Status s = cache.read_sync(first * kBlockBytes, chunk_buf.size(), chunk_buf.data()); !s.ok()) return s.error();
      auto& found = loaded.chunks[c];
      uint32_t pos = 0;
      uint64_t chunk_seq = 0, prev_seq = 0;
      while (pos < sb.chunk_blocks) {
        auto h = decode_record_header(chunk_buf.data() + size_t(pos) * kBlockBytes, sb.ftl_uuid);
        if (!h) break;
        if (pos == 0 ? h->chunk_seq != h->seq : (h->chunk_seq != chunk_seq || h->seq <= prev_seq)) break;
        const uint64_t data_blocks = h->kind == RecordKind::kData ? h->block_count : 0;
        if (pos + 1 + data_blocks > sb.chunk_blocks || h->lba >= sb.logical_blocks || h->block_count > sb.logical_blocks - h->lba) break;
        bool whole = true;
        for (uint64_t i = 0; i < data_blocks && whole; i++) {
          whole = crc32c(0, chunk_buf.data() + size_t(pos + 1 + i) * kBlockBytes, kBlockBytes) == h->data_crcs[i];
        }
        if (!whole) break;  // torn: never acknowledged
        if (pos == 0) chunk_seq = h->seq;
        prev_seq = h->seq;
        max_seq = std::max(max_seq, h->seq);
        if (h->kind == RecordKind::kData) {
          for (uint64_t i = 0; i < data_blocks; i++) {
            const uint64_t block = first + pos + 1 + i;
            newest.data(h->lba + i, h->seq, kCacheTag | block);
            if (first_window) {
              loaded.slot_lba[block] = h->lba + i;
              loaded.slot_seq[block] = h->seq;
            }
          }
        } else {
          newest.trim(h->lba, h->block_count, h->seq);
          if (first_window) found.trims.push_back({h->lba, h->seq, h->block_count});
        }
        if (first_window) loaded.records++;
        pos += uint32_t(1 + data_blocks);
      }
      if (first_window) {
        found.chunk_seq = chunk_seq;
        found.write_blocks = pos;
      }
    }
    // 3. The window's map pages, home: one write, each page's CRC into the table.
    AlignedBuffer window(window_page_count * kBlockBytes);
    std::memcpy(window.data(), newest.where.data(), lbas * sizeof(Location));
    bool any = false;
    for (uint64_t i = 0; i < lbas; i++) {
      const Location l = newest.where[i];
      if (in_base(l)) loaded.band_valid[(block_of(l) - sb.band_start_block) / sb.band_blocks]++;
    }
    for (uint64_t p = 0; p < window_page_count; p++) {
      const uint8_t* page = window.data() + p * kBlockBytes;
      const bool empty = std::all_of(page, page + kBlockBytes, [](uint8_t byte) { return byte == 0; });
      loaded.l2p_pages[first_page + p] = empty ? L2pPage{} : L2pPage{L2pPageState::kStored, crc32c(0, page, kBlockBytes)};
      any = any || !empty;
    }
    if (any) {
      if (Status s = cache.write_sync((kL2pFirstBlock + first_page) * kBlockBytes, window.size(), window.data()); !s.ok()) return s.error();
    }
  }
  loaded.next_seq = max_seq + 1;
  return loaded;
}

// Map memory limits by FTL uuid (set_ftl_map_limit).
std::mutex limits_mutex;
std::map<std::string, uint64_t>& map_limits() {
  static std::map<std::string, uint64_t> limits;
  return limits;
}

}  // namespace

void set_ftl_map_limit(const std::string& uuid, uint64_t bytes) {
  {
    std::lock_guard<std::mutex> lock(limits_mutex);
    map_limits()[canon(uuid)] = bytes;
  }
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto it = registry().find(canon(uuid));
  if (it != registry().end()) it->second.device->set_map_limit_bytes(bytes);
}

Result<std::unique_ptr<Device>> open_ftl_device(const std::string& uri, bool may_create) {
  (void)may_create;  // opening never creates: create_ftl does
  auto parsed = parse_ftl_uri(uri);
  if (!parsed.ok()) return parsed.error();
  if (Status s = check_inner(parsed.value().cache, parsed.value().base); !s.ok()) return s.error();
  auto cache_or = open_device(parsed.value().cache, false);
  if (!cache_or.ok()) return cache_or.error();
  auto base_or = open_device(parsed.value().base, false);
  if (!base_or.ok()) return base_or.error();
  std::shared_ptr<Device> cache = std::move(cache_or.value()), base = std::move(base_or.value());
  auto cache_sb = read_superblock(*cache, Role::kCache, "cache");
  if (!cache_sb.ok()) return cache_sb.error();
  auto base_sb = read_superblock(*base, Role::kBase, "base");
  if (!base_sb.ok()) return base_sb.error();
  const Superblock& sb = cache_sb.value();
  if (sb.ftl_uuid != base_sb.value().ftl_uuid) {
    return Error{ErrorCode::kFailedPrecondition, str("cache device ", cache->description().uri, " belongs to FTL ", format_uuid(sb.ftl_uuid), " but base device ",
                                                     base->description().uri, " to FTL ", format_uuid(base_sb.value().ftl_uuid))};
  }
  if (!same_geometry(sb, base_sb.value())) {
    return Error{ErrorCode::kDataLoss, str("the superblocks of FTL ", format_uuid(sb.ftl_uuid), " on ", cache->description().uri, " and ", base->description().uri,
                                           " disagree on its geometry")};
  }
  if (cache->size_bytes() < sb.cache_size_bytes || base->size_bytes() < sb.base_size_bytes) {
    return Error{ErrorCode::kFailedPrecondition, str("a device of FTL ", format_uuid(sb.ftl_uuid), " is smaller than when it was created (cache ", cache->size_bytes(), " < ",
                                                     sb.cache_size_bytes, " or base ", base->size_bytes(), " < ", sb.base_size_bytes, " bytes)")};
  }
  Zones* zones = base->zoned();
  if ((zones != nullptr) != (sb.zoned_base != 0) || (zones && zones->zone_size_bytes() != uint64_t(sb.band_blocks) * kBlockBytes)) {
    return Error{ErrorCode::kFailedPrecondition, str("base device ", base->description().uri, " is ", zones ? "zoned" : "conventional", " with other zones than FTL ",
                                                     format_uuid(sb.ftl_uuid), " was created on")};
  }
  const std::string uuid = format_uuid(sb.ftl_uuid);
  const ParsedFtlUri& want = parsed.value();
  const std::pair<std::optional<uint64_t>, uint64_t> geometry[] = {
      {want.op_percent, sb.op_percent}, {want.band_mib, sb.band_blocks / 256}, {want.chunk_kib, uint64_t(sb.chunk_blocks) * 4}};
  const char* names[] = {"op_percent", "band_mib", "chunk_kib"};
  for (int i = 0; i < 3; i++) {
    if (geometry[i].first && *geometry[i].first != geometry[i].second) {
      return Error{ErrorCode::kFailedPrecondition, str("FTL ", uuid, " was created with ", names[i], "=", geometry[i].second, ", the URI '", uri, "' says ", *geometry[i].first)};
    }
  }
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    if (registry().count(uuid)) return Error{ErrorCode::kFailedPrecondition, str("FTL ", uuid, " is open already in this engine (a pool or another user holds it)")};
  }

  FtlDevice::Geometry geo{sb, band_geometry(sb.band_blocks)};
  uint64_t limit_bytes = 0;
  {
    std::lock_guard<std::mutex> lock(limits_mutex);
    auto it = map_limits().find(uuid);
    if (it != map_limits().end()) limit_bytes = it->second;
  }
  FtlDevice::Loaded loaded;
  // A clean shutdown left a checkpoint: load it (no scan), and invalidate it before anything is
  // written, so a crash from here on is recovered by the scan, never from this stale picture.
  {
    auto from = load_checkpoint(*cache, sb);
    if (!from.ok()) return from.error();
    if (from.value()) loaded = std::move(*from.value());
  }
  if (!loaded.from_checkpoint) {
    auto scanned = recover(*cache, *base, geo, limit_bytes);
    if (!scanned.ok()) return scanned.error();
    loaded = std::move(scanned.value());
  }
  loaded.map_limit_bytes = limit_bytes;

  DeviceDescription d;
  d.uri = ftl_uri(cache->description().uri, base->description().uri);
  d.kind = base->description().kind;
  d.identity = "ftl:" + uuid;
  d.size_bytes = sb.logical_blocks * kBlockBytes;
  d.block_size_bytes = kBlockBytes;
  d.direct_io = true;
  auto reactor = std::make_unique<Reactor>(-1);
  if (Status s = reactor->start(); !s.ok()) return s.error();
  const std::string cache_identity = cache->description().identity, base_identity = base->description().identity;
  auto device = std::make_unique<FtlDevice>(d, cache, base, geo, std::move(reactor));
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    if (registry().count(uuid)) return Error{ErrorCode::kFailedPrecondition, str("FTL ", uuid, " is open already in this engine")};
    registry()[uuid] = OpenFtl{device.get(), cache_identity, base_identity};
  }
  if (Status s = device->install(std::move(loaded)); !s.ok()) return s.error();
  return std::unique_ptr<Device>(std::move(device));
}

Result<FtlStatsData> ftl_stats(const std::string& uuid) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto it = registry().find(canon(uuid));
  if (it == registry().end()) return Error{ErrorCode::kNotFound, str("no FTL ", uuid, " is open in this engine")};
  return it->second.device->stats();
}

std::vector<FtlStatsData> list_ftl_stats() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  std::vector<FtlStatsData> out;
  for (auto& [uuid, f] : registry()) out.push_back(f.device->stats());
  return out;
}

}  // namespace strata
