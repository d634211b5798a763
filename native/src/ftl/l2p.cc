// The paged L2P (l2p.h): residency, LRU eviction, write-backs and the checks on the way in.
#include "ftl/l2p.h"

#include <cassert>
#include <cerrno>
#include <cstring>

#include "device/zones.h"
#include "util/crc32c.h"

namespace strata {

using ftl_format::kBlockBytes;

L2pMap::L2pMap(Device& cache, uint64_t first_block, uint64_t entries, std::vector<L2pPage> table, L2pBounds bounds)
    : cache_(cache), first_block_(first_block), entries_(entries), bounds_(bounds), pages_(std::move(table)), frame_of_(pages_.size(), nullptr) {
  assert(pages_.size() == ftl_format::l2p_pages(entries_));
}

L2pMap::~L2pMap() {
  for (Frame* f : lru_) delete f;
}

void L2pMap::attach(Reactor& reactor, std::function<void(const std::string&)> on_error) {
  reactor_ = &reactor;
  on_error_ = std::move(on_error);
}

void L2pMap::set_state(uint64_t page, L2pPageState next) {
  [[maybe_unused]] const L2pPageState prev = pages_[page].state;
  assert((prev == L2pPageState::kEmpty && next == L2pPageState::kDirty) || (prev == L2pPageState::kStored && next == L2pPageState::kClean) ||
         (prev == L2pPageState::kClean && (next == L2pPageState::kDirty || next == L2pPageState::kStored)) ||
         (prev == L2pPageState::kDirty && (next == L2pPageState::kStored || next == L2pPageState::kClean)));
  pages_[page].state = next;
}

void L2pMap::fail(const std::string& why) {
  if (error_.empty()) error_ = why;
  if (on_error_) on_error_(why);
}

void L2pMap::set_limit_pages(uint64_t pages) {
  limit_pages_ = pages;
  while (limit_pages_ > 0 && resident_ > limit_pages_) evict_one();
}

Location* L2pMap::resident(uint64_t page) {
  if (last_ != nullptr && last_->page == page) return last_->entries();
  if (Frame* f = frame_of_[page]) {
    lru_.splice(lru_.begin(), lru_, f->lru);
    last_ = f;
    return f->entries();
  }
  if (!error_.empty()) return nullptr;
  while (limit_pages_ > 0 && resident_ >= limit_pages_) evict_one();
  auto frame = std::make_unique<Frame>();
  frame->page = page;
  frame->buffer = AlignedBuffer(kBlockBytes);  // zeros: every entry unmapped
  if (pages_[page].state == L2pPageState::kStored) {
    auto w = writing_.find(page);
    if (w != writing_.end()) {
      // Its newest copy is still on its way home: that copy is the page.
      const auto& newest = w->second.next ? w->second.next : w->second.in_flight;
      std::memcpy(frame->buffer.data(), newest->data(), kBlockBytes);
    } else {
      page_reads_++;
      if (Status s = cache_.read_sync((first_block_ + page) * kBlockBytes, kBlockBytes, frame->buffer.data()); !s.ok()) {
        fail(str("reading L2P page ", page, ": ", s.error().message));
        return nullptr;
      }
    }
    if (crc32c(0, frame->buffer.data(), kBlockBytes) != pages_[page].crc) {
      fail(str("L2P page ", page, " on ", cache_.description().uri, " fails its CRC32C check"));
      return nullptr;
    }
    for (uint64_t i = 0; i < kEntriesPerPage; i++) {
      const Location l = frame->entries()[i];
      if (!bounds_.fits(l) || (l != kUnmapped && page * kEntriesPerPage + i >= entries_)) {
        fail(str("L2P page ", page, " on ", cache_.description().uri, " maps a block outside the devices"));
        return nullptr;
      }
    }
    set_state(page, L2pPageState::kClean);
  } else {
    set_state(page, L2pPageState::kDirty);  // an empty page is made resident only to be written
  }
  Frame* f = frame.release();
  lru_.push_front(f);
  f->lru = lru_.begin();
  frame_of_[page] = f;
  resident_++;
  last_ = f;
  return f->entries();
}

void L2pMap::evict_one() {
  assert(!lru_.empty());
  Frame* f = lru_.back();
  lru_.pop_back();
  frame_of_[f->page] = nullptr;
  if (last_ == f) last_ = nullptr;
  resident_--;
  if (pages_[f->page].state == L2pPageState::kDirty) {
    auto copy = std::make_shared<AlignedBuffer>(std::move(f->buffer));
    pages_[f->page].crc = crc32c(0, copy->data(), kBlockBytes);
    write_home(f->page, std::move(copy));
  }
  set_state(f->page, L2pPageState::kStored);
  delete f;
}

void L2pMap::write_home(uint64_t page, std::shared_ptr<AlignedBuffer> copy) {
  assert(reactor_ != nullptr);
  Writing& w = writing_[page];
  if (w.in_flight) {  // two writes of one block in flight may land in either order: queue it
    w.next = std::move(copy);
    return;
  }
  w.in_flight = copy;
  page_writes_++;
  cache_.write(*reactor_, (first_block_ + page) * kBlockBytes, kBlockBytes, copy->data(), [this, page, copy](int r) { written(page, r); });
}

void L2pMap::written(uint64_t page, int result) {
  if (result < 0) fail(str("writing L2P page ", page, " to ", cache_.description().uri, ": ", io_result_text(result)));
  auto it = writing_.find(page);
  assert(it != writing_.end());
  std::shared_ptr<AlignedBuffer> next = std::move(it->second.next);
  writing_.erase(it);
  if (next) return write_home(page, std::move(next));
  if (writing_.empty()) {
    auto waiting = std::move(on_idle_);
    on_idle_.clear();
    for (auto& w : waiting) w();
  }
}

Location L2pMap::get(uint64_t lba) {
  assert(lba < entries_);
  const uint64_t page = lba / kEntriesPerPage;
  if (pages_[page].state == L2pPageState::kEmpty) return kUnmapped;
  Location* e = resident(page);
  return e ? e[lba % kEntriesPerPage] : kUnmapped;
}

Location L2pMap::exchange(uint64_t lba, Location next) {
  assert(lba < entries_ && bounds_.fits(next));
  const uint64_t page = lba / kEntriesPerPage;
  Location* e = resident(page);
  if (e == nullptr) return kUnmapped;
  if (pages_[page].state == L2pPageState::kClean) set_state(page, L2pPageState::kDirty);
  const Location prev = e[lba % kEntriesPerPage];
  e[lba % kEntriesPerPage] = next;
  return prev;
}

void L2pMap::store_all(IoCallback done) {
  for (Frame* f : lru_) {
    if (pages_[f->page].state != L2pPageState::kDirty) continue;
    auto copy = std::make_shared<AlignedBuffer>(kBlockBytes);
    std::memcpy(copy->data(), f->buffer.data(), kBlockBytes);
    pages_[f->page].crc = crc32c(0, copy->data(), kBlockBytes);
    set_state(f->page, L2pPageState::kClean);
    write_home(f->page, std::move(copy));
  }
  auto flush = [this, done] {
    if (!error_.empty()) return done(-EIO);
    cache_.flush(*reactor_, [done](int r) { done(r < 0 ? r : 0); });
  };
  if (writing_.empty()) return flush();
  on_idle_.push_back(flush);
}

std::vector<L2pPage> L2pMap::table() const {
  std::vector<L2pPage> out = pages_;
  for (L2pPage& p : out) {
    assert(p.state != L2pPageState::kDirty);
    if (p.state == L2pPageState::kClean) p.state = L2pPageState::kStored;
  }
  return out;
}

}  // namespace strata
