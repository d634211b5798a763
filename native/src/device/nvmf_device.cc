#include "device/nvmf_device.h"
#include "device/uri.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace strata {
namespace {
constexpr uint64_t kMaxZeroesChunkBytes = 64ull << 20;  // bounds one command's work on the target
constexpr uint64_t kMaxBlocksPerCommand = 1ull << 16;    // NLB is 16 bits, 0-based

Result<uint32_t> parse_u32(const std::string& uri, const std::string& key, const std::string& value, uint32_t lo, uint32_t hi) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno != 0 || n < lo || n > hi) {
    return Error{ErrorCode::kInvalidArgument, str(key, " in '", uri, "' must be an integer from ", lo, " to ", hi, ", got '", value, "'")};
  }
  return static_cast<uint32_t>(n);
}
}  // namespace

Result<std::unique_ptr<Device>> NvmfDevice::open(const std::string& uri) {
  constexpr const char* kForm = "nvmf[+rdma]://HOST:PORT/NQN[?hostnqn=NQN&io_timeout_ms=N&io_queues=N&reconnect=0|1]";
  // nvmf:// is NVMe/TCP; nvmf+rdma:// the same target over NVMe/RDMA.
  const bool rdma = uri.rfind("nvmf+rdma://", 0) == 0;
  const std::string scheme = rdma ? "nvmf+rdma://" : "nvmf://";
  std::string rest = uri.substr(scheme.size());
  std::string query;
  if (auto q = rest.find('?'); q != std::string::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto slash = rest.find('/');
  auto colon = rest.rfind(':', slash);
  if (slash == std::string::npos || colon == std::string::npos || colon == 0 || slash == rest.size() - 1) {
    return Error{ErrorCode::kInvalidArgument, str("device URI '", uri, "' must look like ", kForm)};
  }
  nvmf::InitiatorOptions o;
  o.transport = rdma ? nvmf::HostTransport::kRdma : nvmf::HostTransport::kTcp;
  o.host = rest.substr(0, colon);
  auto port = parse_u32(uri, "port", rest.substr(colon + 1, slash - colon - 1), 1, 65535);
  if (!port.ok()) return port.error();
  o.port = static_cast<uint16_t>(port.value());
  o.subnqn = rest.substr(slash + 1);
  o.hostnqn = nvmf::default_host_nqn();
  if (o.subnqn.size() > 223) return Error{ErrorCode::kInvalidArgument, str("NQN in '", uri, "' is longer than 223 bytes")};
  for (const auto& [key, value] : query_params(query)) {
    const std::string pair = str(key, "=", value);
    if (key == "hostnqn" && !value.empty() && value.size() <= 223) {
      o.hostnqn = value;
    } else if (key == "io_timeout_ms") {
      auto v = parse_u32(uri, key, value, 100, 3600 * 1000);
      if (!v.ok()) return v.error();
      o.io_timeout_ms = v.value();
    } else if (key == "reconnect" && (value == "0" || value == "1")) {
      o.reconnect = value == "1";
    } else if (key == "io_queues") {
      auto v = parse_u32(uri, key, value, 1, 64);
      if (!v.ok()) return v.error();
      o.io_queues = v.value();
    } else {
      return Error{ErrorCode::kInvalidArgument, str("device URI '", uri, "' has unknown or bad parameter '", pair, "'; form: ", kForm)};
    }
  }
  std::string base = str(scheme, o.host, ":", o.port, "/", o.subnqn);
  auto c = nvmf::HostController::connect(base, o);
  if (!c.ok()) return c.error();
  DeviceDescription d{base, DeviceKind::kBlock, "", base, c.value()->size_bytes(), c.value()->block_bytes(), "", true};
  return std::unique_ptr<Device>(new NvmfDevice(std::move(d), std::move(c.value())));
}

NvmfDevice::~NvmfDevice() { controller_->close(); }

using Op = nvmf::HostController::Op;

void NvmfDevice::read(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, void* buffer, IoCallback done) {
  controller_->io(reactor, Op::kRead, offset_bytes, length_bytes, buffer, std::move(done));
}
void NvmfDevice::write(Reactor& reactor, uint64_t offset_bytes, uint32_t length_bytes, const void* buffer, IoCallback done) {
  controller_->io(reactor, Op::kWrite, offset_bytes, length_bytes, const_cast<void*>(buffer), std::move(done));
}
void NvmfDevice::flush(Reactor& reactor, IoCallback done) { controller_->io(reactor, Op::kFlush, 0, 0, nullptr, std::move(done)); }

void NvmfDevice::write_zeroes(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  // Chunks are issued one after another; the first error ends the chain.
  // At 512-byte blocks 64 MiB would be 131072 blocks: more than NLB can say.
  uint64_t n = std::min({length_bytes, kMaxZeroesChunkBytes, kMaxBlocksPerCommand * description_.block_size_bytes});
  auto c = controller_;
  controller_->io(reactor, Op::kWriteZeroes, offset_bytes, n, nullptr, [this, &reactor, offset_bytes, length_bytes, n, c, done](int res) {
    if (res < 0 || n == length_bytes) return done(res < 0 ? res : 0);
    write_zeroes(reactor, offset_bytes + n, length_bytes - n, done);
  });
}

void NvmfDevice::deallocate(Reactor& reactor, uint64_t offset_bytes, uint64_t length_bytes, IoCallback done) {
  controller_->io(reactor, Op::kDeallocate, offset_bytes, length_bytes, nullptr, std::move(done));
}

Status NvmfDevice::read_sync(uint64_t offset_bytes, size_t length_bytes, void* buffer) {
  for (size_t done = 0; done < length_bytes;) {
    size_t n = std::min<size_t>(length_bytes - done, 1u << 20);
    int res = controller_->io_sync(Op::kRead, offset_bytes + done, n, static_cast<uint8_t*>(buffer) + done);
    if (res < 0) return Status(ErrorCode::kIoError, str("read from ", description_.uri, " failed: ", std::strerror(-res)));
    done += n;
  }
  return Status();
}

Status NvmfDevice::write_sync(uint64_t offset_bytes, size_t length_bytes, const void* buffer) {
  for (size_t done = 0; done < length_bytes;) {
    size_t n = std::min<size_t>(length_bytes - done, 1u << 20);
    int res = controller_->io_sync(Op::kWrite, offset_bytes + done, n, const_cast<uint8_t*>(static_cast<const uint8_t*>(buffer)) + done);
    if (res < 0) return Status(ErrorCode::kIoError, str("write to ", description_.uri, " failed: ", std::strerror(-res)));
    done += n;
  }
  int res = controller_->io_sync(Op::kFlush, 0, 0, nullptr);
  if (res < 0) return Status(ErrorCode::kIoError, str("flush of ", description_.uri, " failed: ", std::strerror(-res)));
  return Status();
}

}  // namespace strata
