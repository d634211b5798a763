#include "nvmf/rdma_common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "nvmf/protocol.h"

namespace strata::nvmf {

std::string rdma_cm::reject_text(uint16_t status) {
  switch (status) {
    case kInvalidLength: return "invalid private data length";
    case kInvalidRecfmt: return "invalid record format";
    case kInvalidQid: return "invalid queue id";
    case kInvalidHsqsize: return "invalid host send queue size";
    case kInvalidHrqsize: return "invalid host receive queue size";
    case kNoResources: return "no resources";
  }
  return str("status ", status);
}

void put_keyed_sgl(uint8_t* sqe, uint64_t address, uint32_t length, uint32_t key) {
  uint8_t* d = sqe + 24;
  put64(d, address);
  d[8] = static_cast<uint8_t>(length);
  d[9] = static_cast<uint8_t>(length >> 8);
  d[10] = static_cast<uint8_t>(length >> 16);
  put32(d + 11, key);
  d[15] = kSglKeyedDataBlock;
}

ibv_mr* register_memory(ibv_pd* pd, void* address, size_t bytes, int access) { return (ibv_reg_mr)(pd, address, bytes, access); }

Status set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return Error{ErrorCode::kIoError, str("fcntl O_NONBLOCK: ", std::strerror(errno))};
  return Status{};
}

std::string address_of(sockaddr* sa) {
  if (sa == nullptr || sa->sa_family != AF_INET) return "?";
  auto* a = reinterpret_cast<sockaddr_in*>(sa);
  char text[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
  return str(text, ":", ntohs(a->sin_port));
}

Result<std::shared_ptr<RdmaPd>> RdmaPd::alloc(ibv_context* verbs) {
  auto p = std::make_shared<RdmaPd>();
  p->pd = ibv_alloc_pd(verbs);
  if (p->pd == nullptr) return Error{ErrorCode::kIoError, str("ibv_alloc_pd: ", std::strerror(errno))};
  return p;
}

RdmaPd::~RdmaPd() {
  if (pd != nullptr) ibv_dealloc_pd(pd);
}

Result<std::shared_ptr<RdmaBufferPool>> RdmaBufferPool::create(std::shared_ptr<RdmaPd> pd, std::vector<RdmaBufferClass> classes, int access) {
  auto pool = std::make_shared<RdmaBufferPool>();
  pool->pd_ = std::move(pd);
  pool->access_ = access;
  size_t total = 0;
  for (auto& c : classes) {
    SizeClass sc{c.buffer_bytes, total, {}};
    for (uint32_t i = static_cast<uint32_t>(c.count); i-- > 0;) sc.free.push_back(i);
    total += c.buffer_bytes * c.count;
    pool->classes_.push_back(std::move(sc));
  }
  void* p = nullptr;
  if (posix_memalign(&p, kDirectIoAlignmentBytes, total) != 0) return Error{ErrorCode::kNoSpace, "cannot allocate RDMA data buffers"};
  pool->region_ = static_cast<uint8_t*>(p);
  pool->mr_ = register_memory(pool->pd_->pd, pool->region_, total, access);
  if (pool->mr_ == nullptr) {
    return Error{ErrorCode::kIoError, str("cannot register ", total >> 20, " MiB of RDMA data buffers (ibv_reg_mr: ", std::strerror(errno),
                                          "); is the locked-memory limit (ulimit -l) too low?")};
  }
  return pool;
}

RdmaBufferPool::~RdmaBufferPool() {
  if (mr_ != nullptr) ibv_dereg_mr(mr_);
  std::free(region_);
}

RdmaBufferPool::Lease RdmaBufferPool::take(size_t bytes) {
  auto self = shared_from_this();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t ci = 0; ci < classes_.size(); ci++) {
      SizeClass& c = classes_[ci];
      if (c.buffer_bytes < bytes || c.free.empty()) continue;
      const uint32_t index = c.free.back();
      c.free.pop_back();
      uint8_t* data = region_ + c.offset + size_t{index} * c.buffer_bytes;
      return Lease{AlignedBuffer::borrow(data, bytes,
                                         [self, ci, index] {
                                           std::lock_guard<std::mutex> l(self->mutex_);
                                           self->classes_[ci].free.push_back(index);
                                         }),
                   mr_->lkey, mr_->rkey};
    }
  }
  fallbacks_++;
  auto owned = std::make_shared<AlignedBuffer>(bytes);
  ibv_mr* mr = register_memory(pd_->pd, owned->data(), std::max<size_t>(bytes, 1), access_);
  if (mr == nullptr) return Lease{};
  return Lease{AlignedBuffer::borrow(owned->data(), bytes, [self, owned, mr] { ibv_dereg_mr(mr); }), mr->lkey, mr->rkey};
}

}  // namespace strata::nvmf
