// Shared pieces of the NVMe/TCP fuzzers: an in-memory namespace behind the target's IoBackend,
// a socket-less Connection (Connection::attach_test_sink), PDU builders for a well-behaved
// host, and a checker for every byte the target sends back. The checker is the oracle beyond
// ASan/UBSan: whatever the host sends, our own output must stay well-framed and digest-correct,
// and the backend must never see an I/O outside the namespace.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "nvmf/tcp.h"
#include "nvmf/protocol.h"
#include "nvmf/target.h"
#include "reactor/reactor.h"
#include "util/crc32c.h"

namespace fuzz {
using namespace strata;
using namespace strata::nvmf;

inline constexpr const char* kReplicaUuid = "6f1f5c2e-0c3a-4d5e-9a7b-1c2d3e4f5a6b";
inline constexpr const char* kHostNqn = "nqn.2014-08.org.nvmexpress:uuid:fuzz-host";
inline constexpr uint64_t kNamespaceBytes = 64 * 4096;  // small, so LBA checks are reached often

[[noreturn]] inline void die(const char* why) {
  std::fprintf(stderr, "fuzz oracle: %s\n", why);
  std::abort();
}

inline uint32_t crc(const uint8_t* p, size_t n) { return crc32c(0, p, n); }

// What the target sent on one connection, re-framed and checked PDU by PDU.
struct Peer {
  bool hdgst = false, ddgst = false;  // as negotiated (set after the ICResp arrived)
  std::vector<uint8_t> bytes;
  size_t parsed = 0;
  struct R2t { uint16_t cid, ttag; uint32_t offset, length; };
  std::vector<R2t> r2ts;
  std::vector<uint16_t> statuses;  // CapsuleResp status fields, in order
  uint16_t last_result16 = 0;      // DW0 low half of the last CapsuleResp (Connect: cntlid)
  bool term_req = false;

  void take(const uint8_t* p, size_t n) {
    bytes.insert(bytes.end(), p, p + n);
    check();
  }
  void check() {
    while (bytes.size() - parsed >= 8) {
      const uint8_t* h = bytes.data() + parsed;
      const uint8_t type = h[0], flags = h[1], hlen = h[2], pdo = h[3];
      uint32_t plen;
      std::memcpy(&plen, h + 4, 4);
      if (plen < hlen || plen > (8u << 20)) die("our PDU has plen < hlen or absurd plen");
      if (bytes.size() - parsed < plen) return;
      const bool hd = flags & pdu::kFlagHdgst, dd = flags & pdu::kFlagDdgst;
      switch (type) {
        case pdu::kIcResp:
          if (hlen != 128 || plen != 128) die("ICResp hlen/plen");
          hdgst = h[11] & 1;
          ddgst = h[11] & 2;
          break;
        case pdu::kCapsuleResp: {
          if (hlen != 24 || plen != 24u + (hd ? 4 : 0)) die("CapsuleResp hlen/plen");
          uint16_t st;
          std::memcpy(&st, h + 22, 2);
          statuses.push_back(st);
          std::memcpy(&last_result16, h + 8, 2);
          break;
        }
        case pdu::kR2t: {
          if (hlen != 24 || plen != 24u + (hd ? 4 : 0)) die("R2T hlen/plen");
          R2t r;
          std::memcpy(&r.cid, h + 8, 2);
          std::memcpy(&r.ttag, h + 10, 2);
          std::memcpy(&r.offset, h + 12, 4);
          std::memcpy(&r.length, h + 16, 4);
          if (r.length == 0) die("R2T for zero bytes");
          r2ts.push_back(r);
          break;
        }
        case pdu::kC2hData: {
          if (hlen != 24 || pdo < hlen + (hd ? 4u : 0u) || pdo > plen) die("C2HData hlen/pdo");
          uint32_t datal;
          std::memcpy(&datal, h + 16, 4);
          if (pdo + datal + (dd ? 4u : 0u) != plen) die("C2HData DATAL disagrees with PLEN");
          if (dd) {
            uint32_t d;
            std::memcpy(&d, h + pdo + datal, 4);
            if (d != crc(h + pdo, datal)) die("C2HData data digest wrong");
          }
          break;
        }
        case pdu::kC2hTermReq:
          if (hlen != 24 || plen < 24 || plen > 24 + 128) die("TermReq hlen/plen");
          term_req = true;
          break;
        default: die("the target sent a PDU type it never should");
      }
      if (hd != hdgst && type != pdu::kIcResp && type != pdu::kC2hTermReq) die("HDGST flag differs from negotiation");
      if (hd) {
        uint32_t d;
        std::memcpy(&d, h + hlen, 4);
        if (d != crc(h, hlen)) die("header digest wrong");
      }
      parsed += plen;
    }
  }
};

// The namespace: one byte array. Asserts what Connection promises the pool.
struct MemoryNamespace {
  std::vector<uint8_t> data = std::vector<uint8_t>(kNamespaceBytes);
  IoBackend backend() {
    return [this](const Subsystem&, IoKind kind, uint64_t off, uint64_t len, std::shared_ptr<AlignedBuffer> buf,
                  std::function<void(Status)> done) {
      if (kind != IoKind::kFlush && (off > data.size() || len > data.size() - off)) die("backend I/O outside the namespace");
      switch (kind) {
        case IoKind::kRead:
          if (!buf || buf->size() < len) die("read buffer smaller than the I/O");
          std::memcpy(buf->data(), data.data() + off, len);
          break;
        case IoKind::kWrite:
          if (!buf || buf->size() < len) die("write buffer smaller than the I/O");
          std::memcpy(data.data() + off, buf->data(), len);
          break;
        case IoKind::kDeallocate:
        case IoKind::kWriteZeroes: std::memset(data.data() + off, 0, len); break;
        case IoKind::kFlush: break;
      }
      done(Status());
    };
  }
};

// One host connection without a socket.
struct HostConn {
  std::shared_ptr<TcpConnection> conn;
  Peer peer;
  HostConn(Target& target, Reactor& reactor, bool discovery_port, uint64_t id) {
    conn = std::make_shared<TcpConnection>(target, reactor, -1, discovery_port, id, "fuzz");
    conn->attach_test_sink([this](const uint8_t* p, size_t n) { peer.take(p, n); });
  }
  void send(const std::vector<uint8_t>& b) {
    conn->feed_for_test(b.data(), b.size());
    conn->run_posted_for_test();
  }
  // The host hangs up; run what that posts (controller teardown, close_async) so no
  // self-referencing task outlives the harness (LeakSanitizer would report it).
  void hang_up() {
    conn->peer_closed_for_test();
    while (conn->run_posted_for_test() > 0) {
    }
  }
};

// ---- a well-behaved host's PDUs ---------------------------------------------------------------

inline std::vector<uint8_t> ic_req(bool hdgst, bool ddgst) {
  std::vector<uint8_t> p(128, 0);
  p[0] = pdu::kIcReq;
  p[2] = 128;
  put32(p.data() + 4, 128);
  p[11] = (hdgst ? 1 : 0) | (ddgst ? 2 : 0);
  return p;
}

// A CapsuleCmd carrying `sqe` and, if any, in-capsule `data` (pdo 72 or after the header digest).
inline std::vector<uint8_t> capsule(const uint8_t* sqe, const uint8_t* data, size_t data_bytes, bool hdgst, bool ddgst) {
  const uint32_t hd = hdgst ? 4 : 0, dd = (ddgst && data_bytes) ? 4 : 0;
  const uint32_t pdo = data_bytes ? 72 + hd : 0;
  std::vector<uint8_t> p(72 + hd + data_bytes + dd, 0);
  p[0] = pdu::kCapsuleCmd;
  p[1] = (hdgst ? pdu::kFlagHdgst : 0) | (dd ? pdu::kFlagDdgst : 0);
  p[2] = 72;
  p[3] = static_cast<uint8_t>(pdo);
  put32(p.data() + 4, static_cast<uint32_t>(p.size()));
  std::memcpy(p.data() + 8, sqe, 64);
  if (hd) put32(p.data() + 72, crc(p.data(), 72));
  if (data_bytes) {
    std::memcpy(p.data() + pdo, data, data_bytes);
    if (dd) put32(p.data() + pdo + data_bytes, crc(data, data_bytes));
  }
  return p;
}

inline std::vector<uint8_t> h2c_data(uint16_t cid, uint16_t ttag, uint32_t offset, const uint8_t* data, uint32_t n, bool last,
                                     bool hdgst, bool ddgst) {
  const uint32_t hd = hdgst ? 4 : 0, dd = ddgst ? 4 : 0, pdo = 24 + hd;
  std::vector<uint8_t> p(pdo + n + dd, 0);
  p[0] = pdu::kH2cData;
  p[1] = (hdgst ? pdu::kFlagHdgst : 0) | (ddgst ? pdu::kFlagDdgst : 0) | (last ? pdu::kFlagLast : 0);
  p[2] = 24;
  p[3] = static_cast<uint8_t>(pdo);
  put32(p.data() + 4, static_cast<uint32_t>(p.size()));
  put16(p.data() + 8, cid);
  put16(p.data() + 10, ttag);
  put32(p.data() + 12, offset);
  put32(p.data() + 16, n);
  if (hd) put32(p.data() + 24, crc(p.data(), 24));
  if (n) std::memcpy(p.data() + pdo, data, n);
  if (dd) put32(p.data() + pdo + n, crc(data, n));
  return p;
}

inline std::vector<uint8_t> connect_sqe(uint16_t cid, uint16_t qid, uint16_t sqsize, uint32_t kato_ms) {
  std::vector<uint8_t> s(64, 0);
  s[0] = opc::kFabrics;
  s[1] = 0x40;  // PSDT: SGL
  put16(s.data() + 2, cid);
  s[4] = opc::kFctypeConnect;
  put32(s.data() + 24 + 8, 1024);
  s[24 + 15] = kSglDataBlockOffset;
  put16(s.data() + 42, qid);
  put16(s.data() + 44, sqsize);
  put32(s.data() + 48, kato_ms);
  return s;
}

inline std::vector<uint8_t> connect_data(const std::string& subnqn, uint16_t cntlid) {
  std::vector<uint8_t> d(1024, 0);
  for (int i = 0; i < 16; i++) d[i] = static_cast<uint8_t>(0xA0 + i);
  put16(d.data() + 16, cntlid);
  std::memcpy(d.data() + 256, subnqn.data(), subnqn.size());
  std::memcpy(d.data() + 512, kHostNqn, std::strlen(kHostNqn));
  return d;
}

inline std::vector<uint8_t> connect_pdu(const std::string& subnqn, uint16_t qid, uint16_t cntlid, bool hdgst, bool ddgst) {
  auto s = connect_sqe(1, qid, 31, 0);
  auto d = connect_data(subnqn, cntlid);
  return capsule(s.data(), d.data(), d.size(), hdgst, ddgst);
}

inline std::vector<uint8_t> property_set_pdu(uint16_t cid, uint32_t offset, uint64_t value, bool hdgst) {
  std::vector<uint8_t> s(64, 0);
  s[0] = opc::kFabrics;
  s[1] = 0x40;  // PSDT: SGL
  put16(s.data() + 2, cid);
  s[4] = opc::kFctypePropertySet;
  put32(s.data() + 44, offset);
  put64(s.data() + 48, value);
  return capsule(s.data(), nullptr, 0, hdgst, false);
}

}  // namespace fuzz
