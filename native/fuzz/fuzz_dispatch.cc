// libFuzzer target: the command dispatcher. A controller is set up the way a well-behaved host
// does it (ICReq, admin Connect, CC.EN = 1, I/O queue Connect), then the input drives arbitrary
// 64-byte SQEs, with in-capsule data or data sent in answer to our R2Ts, into the admin or the
// I/O queue. Backend completions arrive when the input says so, to reach states with several
// commands in flight.
//
// Input: byte 0 = setup (bit 0 HDGST, bit 1 DDGST, bit 2 SQ flow control off, bit 3 the host
// must authenticate: only the admin queue is connected, and it stays unauthenticated, so the
// records reach the DH-HMAC-CHAP message parsers and the "authenticate first" gate), then records:
//   [ctl][64-byte SQE][len lo][len hi][len bytes of data]
//   ctl bit 0: queue (0 admin, 1 I/O); bit 1: data goes in-capsule (else it answers the oldest
//   outstanding R2T, in H2CData PDUs of ctl>>4 * 4 KiB + 512 bytes); bit 2: deliver backend
//   completions now; bit 3: keep the fuzzer's SGL (else it is made to match the data).
#include "fuzz/harness.h"

using namespace fuzz;

namespace {

void answer_r2t(HostConn& q, const uint8_t* data, size_t len, uint32_t chunk, bool hdgst, bool ddgst) {
  if (q.peer.r2ts.empty()) return;
  const Peer::R2t r = q.peer.r2ts.front();
  q.peer.r2ts.erase(q.peer.r2ts.begin());
  std::vector<uint8_t> payload(r.length, 0);
  std::memcpy(payload.data(), data, std::min<size_t>(len, r.length));
  for (uint32_t off = 0; off < r.length && !q.conn->closed_for_test(); off += chunk) {
    const uint32_t n = std::min(chunk, r.length - off);
    q.send(h2c_data(r.cid, r.ttag, r.offset + off, payload.data() + off, n, off + n == r.length, hdgst, ddgst));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static Reactor reactor(0);
  const bool hdgst = data[0] & 1, ddgst = data[0] & 2;
  const bool no_flow = data[0] & 4;
  const bool auth_required = data[0] & 8;
  data++;
  size--;
  MemoryNamespace ns;
  Target target({&reactor}, ns.backend());
  std::map<std::string, auth::HostKeys> keys;
  if (auth_required) keys.emplace(kHostNqn, auth::HostKeys{auth::Secret{1, std::vector<uint8_t>(32, 0x5A)}, auth::Secret{0, std::vector<uint8_t>(48, 0xA5)}});
  const std::string nqn = target.share(kReplicaUuid, kNamespaceBytes, {kHostNqn}, NamespaceKind::kReplica, keys);
  {
    HostConn admin(target, reactor, false, 1), io(target, reactor, false, 2);
    admin.send(ic_req(hdgst, ddgst));
    admin.send(connect_pdu(nqn, 0, 0xFFFF, hdgst, ddgst));
    if (admin.peer.statuses.size() != 1 || admin.peer.statuses[0] != 0) die("admin Connect failed in setup");
    const uint16_t cntlid = admin.peer.last_result16;
    if (!auth_required) {
      admin.send(property_set_pdu(2, 0x14, 0x00460001, hdgst));  // CC: EN, IOSQES 6, IOCQES 4
      io.send(ic_req(hdgst, ddgst));
      auto s = connect_sqe(1, 1, 127, 0);
      if (no_flow) put16(s.data() + 46, 0x04);  // CATTR: SQ flow control disabled
      auto d = connect_data(nqn, cntlid);
      io.send(capsule(s.data(), d.data(), d.size(), hdgst, ddgst));
      if (io.peer.statuses.size() != 1 || io.peer.statuses[0] != 0) die("I/O Connect failed in setup");
    }

    size_t pos = 0;
    while (pos + 1 + 64 + 2 <= size) {
      const uint8_t ctl = data[pos];
      std::vector<uint8_t> sqe(data + pos + 1, data + pos + 65);
      size_t len = data[pos + 65] | (size_t{data[pos + 66]} << 8);
      pos += 67;
      len = std::min(len, size - pos);
      const uint8_t* payload = data + pos;
      pos += len;
      HostConn& q = (ctl & 1) ? io : admin;
      if (q.conn->closed_for_test()) continue;
      const bool in_capsule = ctl & 2;
      const size_t capsule_bytes = in_capsule ? std::min<size_t>(len, kInCapsuleDataBytes) : 0;
      if (!(ctl & 8)) {
        // Make the SGL agree with how the data travels, so the dispatcher is reached instead of
        // the SGL checks (those are covered when bit 3 is set).
        put64(sqe.data() + 24, 0);
        sqe[1] = static_cast<uint8_t>((sqe[1] & 0x3f) | 0x40);  // PSDT: SGL
        if (capsule_bytes > 0) {
          put32(sqe.data() + 32, static_cast<uint32_t>(capsule_bytes));
          sqe[39] = kSglDataBlockOffset;
        } else {
          sqe[39] = kSglTransportDataBlock;
        }
      }
      auto pdu = capsule(sqe.data(), payload, capsule_bytes, hdgst, ddgst);
      q.conn->feed_for_test(pdu.data(), pdu.size());
      if (!in_capsule) answer_r2t(q, payload, len, (ctl >> 4) * 4096u + 512u, hdgst, ddgst);
      if (ctl & 4) {
        admin.conn->run_posted_for_test();
        io.conn->run_posted_for_test();
      }
    }
    admin.conn->run_posted_for_test();
    io.conn->run_posted_for_test();
    io.hang_up();
    admin.hang_up();
  }
  return 0;
}
