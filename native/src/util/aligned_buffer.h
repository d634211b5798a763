// Heap buffers aligned for O_DIRECT (4 KiB satisfies every logical block size we allow).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

namespace strata {

constexpr size_t kDirectIoAlignmentBytes = 4096;

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size_bytes) : size_(size_bytes) {
    size_t rounded = (size_bytes + kDirectIoAlignmentBytes - 1) / kDirectIoAlignmentBytes * kDirectIoAlignmentBytes;
    if (rounded == 0) rounded = kDirectIoAlignmentBytes;
    void* p = nullptr;
    if (posix_memalign(&p, kDirectIoAlignmentBytes, rounded) != 0) throw std::bad_alloc();
    std::memset(p, 0, rounded);
    data_ = static_cast<uint8_t*>(p);
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), owned_(std::exchange(other.owned_, true)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(owned_, other.owned_);
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() {
    if (owned_) std::free(data_);
  }
  // A buffer over memory someone else owns (an RDMA transport's registered region): the
  // returned pointer's deleter runs `release` to give the memory back, never free().
  template <typename Release>
  static std::shared_ptr<AlignedBuffer> borrow(uint8_t* data, size_t size_bytes, Release release) {
    auto* b = new AlignedBuffer();
    b->data_ = data;
    b->size_ = size_bytes;
    b->owned_ = false;
    return std::shared_ptr<AlignedBuffer>(b, [release](AlignedBuffer* p) mutable {
      delete p;
      release();
    });
  }
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool owned_ = true;
};

}  // namespace strata
