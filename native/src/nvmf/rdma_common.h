// What the NVMe/RDMA target (rdma.h) and host (rdma_host.h) share: the RDMA CM private data
// and SGL formats of the NVMe-oF RDMA binding, protection domains, and pools of data buffers
// registered once (never per I/O).
#pragma once
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "util/aligned_buffer.h"
#include "util/status.h"

namespace strata::nvmf {

// The NVMe-oF RDMA CM private data: all little-endian.
namespace rdma_cm {
constexpr size_t kRequestBytes = 32;  // RECFMT, QID, HRQSIZE, HSQSIZE, CNTLID, reserved
constexpr size_t kAcceptBytes = 32;   // RECFMT, CRQSIZE, reserved
constexpr size_t kRejectBytes = 4;    // RECFMT, STS
constexpr uint16_t kRecfmt = 0;
// Reject status (STS) values.
constexpr uint16_t kInvalidLength = 0x01, kInvalidRecfmt = 0x02, kInvalidQid = 0x03, kInvalidHsqsize = 0x04,
                   kInvalidHrqsize = 0x05, kNoResources = 0x06;
std::string reject_text(uint16_t status);
}  // namespace rdma_cm

// SGL descriptor type bytes the RDMA binding adds (type << 4 | subtype).
constexpr uint8_t kSglKeyedDataBlock = 0x40;            // keyed data block, address
constexpr uint8_t kSglKeyedDataBlockInvalidate = 0x4F;  // ... and invalidate the key with the response
// A keyed SGL data block descriptor in an SQE's DPTR (bytes 24..39): address, 3-byte length, key.
void put_keyed_sgl(uint8_t* sqe, uint64_t address, uint32_t length, uint32_t key);

Status set_nonblocking(int fd);
// ibv_reg_mr without verbs.h's macro of the same name (which trips clang's
// -Wdeprecated-enum-enum-conversion under C++20): the library function itself.
ibv_mr* register_memory(ibv_pd* pd, void* address, size_t bytes, int access);
std::string address_of(sockaddr* sa);

// A protection domain; freed when its last user (a pool, a queue) lets go.
struct RdmaPd {
  ibv_pd* pd = nullptr;
  static Result<std::shared_ptr<RdmaPd>> alloc(ibv_context* verbs);
  ~RdmaPd();
};

struct RdmaBufferClass {
  size_t buffer_bytes;
  size_t count;
};

// Data buffers in size classes, one registration for all of them. A lease takes the smallest
// free buffer that fits; when the classes that fit run dry it gets a buffer registered for it
// alone (counted): slower, never wrong. Each leased buffer holds the pool, so memory a backend
// or the device still uses is never unregistered under it.
class RdmaBufferPool : public std::enable_shared_from_this<RdmaBufferPool> {
 public:
  struct Lease {
    std::shared_ptr<AlignedBuffer> buffer;  // null when even a one-off registration failed
    uint32_t lkey = 0;
    uint32_t rkey = 0;
  };
  static Result<std::shared_ptr<RdmaBufferPool>> create(std::shared_ptr<RdmaPd> pd, std::vector<RdmaBufferClass> classes, int access);
  ~RdmaBufferPool();
  Lease take(size_t bytes);  // any thread
  uint64_t fallback_registrations() const { return fallbacks_.load(); }

 private:
  struct SizeClass {
    size_t buffer_bytes;
    size_t offset;  // into region_
    std::vector<uint32_t> free;
  };
  std::shared_ptr<RdmaPd> pd_;
  int access_ = 0;
  uint8_t* region_ = nullptr;
  ibv_mr* mr_ = nullptr;
  std::mutex mutex_;  // guards the free lists
  std::vector<SizeClass> classes_;
  std::atomic<uint64_t> fallbacks_{0};
};

}  // namespace strata::nvmf
