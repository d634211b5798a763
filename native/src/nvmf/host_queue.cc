// The transport-independent host side (host_queue.h): a host queue's command ids, timeouts,
// keep-alive and loss, and the setup commands (Connect, DH-HMAC-CHAP, properties, Identify).
#include "nvmf/host_queue.h"

#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "util/crc32c.h"

namespace strata::nvmf {
namespace {
constexpr uint64_t kTickMs = 1000;
}  // namespace

uint64_t host_now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// ---- a host queue -------------------------------------------------------------------------------

HostQueue::HostQueue(std::weak_ptr<HostController> ctrl, Reactor* reactor, uint16_t qid, uint32_t depth, uint32_t in_capsule_bytes)
    : reactor_(reactor), qid_(qid), ctrl_(std::move(ctrl)), in_capsule_bytes_(in_capsule_bytes) {
  for (uint32_t i = depth; i > 0; i--) free_cids_.push_back(static_cast<uint16_t>(i));
  timer_ts_.tv_sec = static_cast<long long>(kTickMs / 1000);
}

void HostQueue::connected() {
  connected_ = true;
  free_cids_.insert(free_cids_.end(), quarantined_cids_.begin(), quarantined_cids_.end());
  quarantined_cids_.clear();
  for (auto& [cid, io] : pending_) send_command(*io);
  if (!timer_armed_) arm_timer();
}

void HostQueue::submit(std::unique_ptr<HostIo> io) {
  if (closed_) return io->done(-ESHUTDOWN);
  if (dead_) return io->done(-ENOTCONN);
  if (free_cids_.empty()) {
    waiting_.push_back(std::move(io));
    return;
  }
  uint16_t cid = free_cids_.back();
  free_cids_.pop_back();
  put16(io->sqe + 2, cid);
  // The timeout runs from here: time spent waiting behind a full queue (a burst of
  // deallocates) says nothing about the target's health.
  if (io->timeout_ms > 0) io->deadline_ms = host_now_ms() + io->timeout_ms;
  HostIo& ref = *io;
  pending_[cid] = std::move(io);
  if (connected_) send_command(ref);
}

// Keep-alive on the admin queue.
void HostQueue::keep_alive() {
  auto io = std::make_unique<HostIo>();
  std::memset(io->sqe, 0, 64);
  io->sqe[0] = opc::kKeepAlive;
  io->deadline_ms = host_now_ms() + 60000;
  io->done = [](int) {};
  submit(std::move(io));
}

void HostQueue::close() {
  closed_ = true;
  connected_ = false;
  shut_down_transport();
  fail_all(-ESHUTDOWN);
}

void HostQueue::fail_all(int error) {
  auto pending = std::move(pending_);
  pending_.clear();
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& [cid, io] : pending) free_cids_.push_back(cid), io->done(error);
  for (auto& io : waiting) io->done(error);
}

void HostQueue::lost(const std::string& why) {
  if (!connected_) return;
  connected_ = false;
  shut_down_transport();
  if (closed_) return;
  if (!reconnect_) {
    // Nothing pending is re-sent on another association: it fails now, as does every later
    // I/O, so the owner learns of the loss at once.
    dead_ = true;
    fail_all(-ENOTCONN);
  }
  if (auto c = ctrl_.lock()) c->connection_lost(str("queue ", qid_, ": ", why));
}

HostIo* HostQueue::find(uint16_t cid) {
  auto it = pending_.find(cid);
  return it == pending_.end() ? nullptr : it->second.get();
}

void HostQueue::complete(uint16_t cid, int result) {
  auto it = pending_.find(cid);
  if (it == pending_.end()) return;
  std::unique_ptr<HostIo> io = std::move(it->second);
  pending_.erase(it);
  free_cids_.push_back(cid);
  if (!waiting_.empty()) {
    auto next = std::move(waiting_.front());
    waiting_.pop_front();
    submit(std::move(next));
  }
  io->done(result);
}

void HostQueue::arm_timer() {
  timer_armed_ = true;
  auto self = shared_from_this();
  reactor_->submit([ts = &timer_ts_](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, ts, 0, 0); }, [self](int) { self->tick(); });
}

void HostQueue::tick() {
  timer_armed_ = false;
  if (closed_ && pending_.empty()) return;
  uint64_t now = host_now_ms();
  std::vector<uint16_t> expired;
  for (auto& [cid, io] : pending_) if (now >= io->deadline_ms) expired.push_back(cid);
  for (uint16_t cid : expired) {
    // The command id stays out of use until the connection is replaced: a late answer from
    // the target must never complete a newer command that reused it.
    std::unique_ptr<HostIo> io = std::move(pending_[cid]);
    pending_.erase(cid);
    quarantined_cids_.push_back(cid);
    io->done(-ETIMEDOUT);
  }
  if (!expired.empty() && connected_) lost(str(expired.size(), " command(s) timed out; resetting the connection"));
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (now >= (*it)->deadline_ms) {
      auto io = std::move(*it);
      it = waiting_.erase(it);
      io->done(-ETIMEDOUT);
    } else {
      ++it;
    }
  }
  if (keep_alive_ms_ > 0 && connected_ && now - last_keep_alive_ms_ >= keep_alive_ms_) {
    last_keep_alive_ms_ = now;
    keep_alive();
  }
  if (!closed_) arm_timer();
}

// ---- setup --------------------------------------------------------------------------------------

std::string status_text(uint16_t status) {
  return str("status 0x", std::hex, status, std::dec, " (SCT ", (status >> 8) & 7, ", SC 0x", std::hex, status & 0xff, ")");
}

void sqe_fabrics(uint8_t* sqe, uint8_t fctype, uint16_t cid) {
  std::memset(sqe, 0, 64);
  sqe[0] = opc::kFabrics;
  sqe[1] = 0x40;  // PSDT: SGL
  put16(sqe + 2, cid);
  sqe[4] = fctype;
}

void sgl_transport(uint8_t* sqe, uint32_t len) {
  put32(sqe + 32, len);
  sqe[39] = kSglTransportDataBlock;
}
void sgl_in_capsule(uint8_t* sqe, uint32_t len) {
  put32(sqe + 32, len);
  sqe[39] = kSglDataBlockOffset;
}

Status authenticate(SetupChannel& channel, const InitiatorOptions& o, uint16_t qid);

Result<uint16_t> connect_command(SetupChannel& channel, const InitiatorOptions& o, uint16_t qid, uint16_t cntlid) {
  uint8_t sqe[64];
  sqe_fabrics(sqe, opc::kFctypeConnect, 1);
  sgl_in_capsule(sqe, 1024);
  put16(sqe + 42, qid);
  put16(sqe + 44, static_cast<uint16_t>((qid == 0 ? 32 : o.queue_depth) - 1));
  put32(sqe + 48, qid == 0 ? o.kato_ms : 0);
  std::vector<uint8_t> data(1024, 0);
  // Host Identifier: stable for a host NQN and distinct between NQNs (targets key controllers,
  // reservations and I/O-queue checks on it): four CRC32Cs of the NQN with different seeds,
  // marked as a version-4-style uuid.
  for (uint32_t i = 0; i < 4; i++) {
    const uint32_t h = crc32c(0x9e3779b9u * (i + 1), o.hostnqn.data(), o.hostnqn.size());
    std::memcpy(data.data() + 4 * i, &h, 4);
  }
  data[6] = static_cast<uint8_t>((data[6] & 0x0f) | 0x40);
  data[8] = static_cast<uint8_t>((data[8] & 0x3f) | 0x80);
  put16(data.data() + 16, qid == 0 ? 0xFFFF : cntlid);
  put_text(data.data() + 256, 256, o.subnqn, '\0');
  put_text(data.data() + 512, 256, o.hostnqn, '\0');
  auto c = channel.command(sqe, data.data(), 1024, nullptr);
  if (!c.ok()) return c.error();
  if (c.value().status != 0) {
    std::string why = c.value().status == (sc::kConnectInvalidHost >> 1) ? str("host ", o.hostnqn, " is not allowed to connect to ", o.subnqn)
                                                                         : str("Connect to ", o.subnqn, " as ", o.hostnqn, " failed: ", status_text(c.value().status));
    return Error{ErrorCode::kPermissionDenied, why};
  }
  const uint16_t granted = static_cast<uint16_t>(c.value().dw0 & 0xFFFF);
  if (c.value().dw0 & kConnectAuthRequired) {
    if (Status s = authenticate(channel, o, qid); !s.ok()) return s.error();
  }
  return granted;
}

Result<uint64_t> property(SetupChannel& channel, bool set, uint32_t offset, uint64_t value) {
  uint8_t sqe[64];
  sqe_fabrics(sqe, set ? opc::kFctypePropertySet : opc::kFctypePropertyGet, 2);
  sqe[40] = offset == 0 ? 1 : 0;  // CAP is 8 bytes
  put32(sqe + 44, offset);
  put64(sqe + 48, value);
  auto c = channel.command(sqe, nullptr, 0, nullptr);
  if (!c.ok()) return c.error();
  if (c.value().status != 0) return Error{ErrorCode::kIoError, str("Property ", set ? "Set" : "Get", " 0x", std::hex, offset, std::dec, ": ", status_text(c.value().status))};
  return uint64_t{c.value().dw0};
}

Result<std::vector<uint8_t>> identify(SetupChannel& channel, uint8_t cns, uint32_t nsid) {
  uint8_t sqe[64] = {};
  sqe[0] = opc::kIdentify;
  sqe[1] = 0x40;
  put16(sqe + 2, 3);
  put32(sqe + 4, nsid);
  sgl_transport(sqe, 4096);
  put32(sqe + 40, cns);
  std::vector<uint8_t> data(4096);
  auto c = channel.command(sqe, nullptr, 0, &data);
  if (!c.ok()) return c.error();
  if (c.value().status != 0) return Error{ErrorCode::kIoError, str("Identify CNS ", int(cns), ": ", status_text(c.value().status))};
  return data;
}

// AUTH_Send of one message (in-capsule) / AUTH_Receive into a 4 KiB buffer (as Linux sizes it).
static Status auth_send(SetupChannel& channel, const std::vector<uint8_t>& message) {
  uint8_t sqe[64];
  sqe_fabrics(sqe, opc::kFctypeAuthSend, 5);
  sgl_in_capsule(sqe, static_cast<uint32_t>(message.size()));
  sqe[auth::kSqeSpsp0] = 0x01;
  sqe[auth::kSqeSpsp1] = 0x01;
  sqe[auth::kSqeSecp] = auth::kSecpDhchap;
  put32(sqe + auth::kSqeLength, static_cast<uint32_t>(message.size()));
  auto c = channel.command(sqe, message.data(), static_cast<uint32_t>(message.size()), nullptr);
  if (!c.ok()) return c.error();
  if (c.value().status != 0) return Status(ErrorCode::kPermissionDenied, str("AUTH_Send: ", status_text(c.value().status)));
  return Status();
}

static Result<std::vector<uint8_t>> auth_receive(SetupChannel& channel) {
  constexpr uint32_t kAl = 4096;
  uint8_t sqe[64];
  sqe_fabrics(sqe, opc::kFctypeAuthReceive, 6);
  sgl_transport(sqe, kAl);
  sqe[auth::kSqeSpsp0] = 0x01;
  sqe[auth::kSqeSpsp1] = 0x01;
  sqe[auth::kSqeSecp] = auth::kSecpDhchap;
  put32(sqe + auth::kSqeLength, kAl);
  std::vector<uint8_t> data(kAl);
  auto c = channel.command(sqe, nullptr, 0, &data);
  if (!c.ok()) return c.error();
  if (c.value().status != 0) return Error{ErrorCode::kPermissionDenied, str("AUTH_Receive: ", status_text(c.value().status))};
  return data;
}

// The host side of DH-HMAC-CHAP on one freshly connected queue.
Status authenticate(SetupChannel& channel, const InitiatorOptions& o, uint16_t qid) {
  auto keys = host_keys_for(o.hostnqn);
  if (!keys) {
    return Status(ErrorCode::kPermissionDenied, str(o.subnqn, " requires DH-HMAC-CHAP authentication, but no secret is set for host ", o.hostnqn,
                                                    " (engine flag --dhchap-secret-file)"));
  }
  auth::HostTransaction t(std::move(*keys), o.hostnqn, o.subnqn, next_auth_transaction_id());
  auto why = [&](const Error& e) { return Status(e.code, str("authentication to ", o.subnqn, " (qid ", qid, ") failed: ", e.message)); };
  // Our preference: the NULL group costs nothing, ffdhe2048 binds each response to a fresh key.
  if (Status s = auth_send(channel, t.negotiate({auth::kHashSha256, auth::kHashSha384, auth::kHashSha512},
                                           {auth::kDhFfdhe2048, auth::kDhNull, auth::kDhFfdhe3072, auth::kDhFfdhe4096}));
      !s.ok()) {
    return why(s.error());
  }
  auto challenge = auth_receive(channel);
  if (!challenge.ok()) return why(challenge.error());
  auto reply = t.reply(challenge.value().data(), challenge.value().size());
  if (!reply.ok()) return why(reply.error());
  if (Status s = auth_send(channel, reply.value()); !s.ok()) return why(s.error());
  auto success1 = auth_receive(channel);
  if (!success1.ok()) return why(success1.error());
  if (Status s = t.success1(success1.value().data(), success1.value().size()); !s.ok()) {
    (void)auth_send(channel, t.failure2(auth::kFailFailed));
    return why(s.error());
  }
  if (t.bidirectional()) {
    if (Status s = auth_send(channel, t.success2()); !s.ok()) return why(s.error());
  }
  return Status();
}


}  // namespace strata::nvmf
