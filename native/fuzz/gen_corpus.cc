// Writes the seed corpora (native/fuzz/corpus/{pdu,dispatch}) from the same PDU builders the
// harnesses use, so seeds are valid conversations: ICReq, Connect (in-capsule and via R2T),
// Property Set, Identify, Get Log Page 0x70, 4 KiB in-capsule write, 128 KiB write via R2T,
// read, flush; with and without digests.  Usage: gen_corpus <corpus dir>
#include <fstream>

#include "fuzz/harness.h"

using namespace fuzz;
using Bytes = std::vector<uint8_t>;

namespace {

void append(Bytes& a, const Bytes& b) { a.insert(a.end(), b.begin(), b.end()); }

void write_file(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes sqe(uint8_t opcode, uint16_t cid, uint32_t nsid, uint8_t sgl_type, uint32_t sgl_bytes) {
  Bytes s(64, 0);
  s[0] = opcode;
  s[1] = 0x40;  // PSDT: SGL
  put16(s.data() + 2, cid);
  put32(s.data() + 4, nsid);
  put32(s.data() + 32, sgl_bytes);
  s[39] = sgl_type;
  return s;
}

Bytes identify(uint16_t cid, uint8_t cns) {
  Bytes s = sqe(opc::kIdentify, cid, 0, kSglTransportDataBlock, 4096);
  put32(s.data() + 40, cns);
  return s;
}

Bytes get_log(uint16_t cid, uint8_t lid, uint32_t bytes) {
  Bytes s = sqe(opc::kGetLogPage, cid, 0, kSglTransportDataBlock, bytes);
  put32(s.data() + 40, lid | (((bytes / 4) - 1) << 16));
  return s;
}

Bytes rw(uint8_t opcode, uint16_t cid, uint64_t slba, uint32_t blocks, uint8_t sgl_type) {
  Bytes s = sqe(opcode, cid, 1, sgl_type, blocks * 4096);
  put64(s.data() + 40, slba);
  put32(s.data() + 48, blocks - 1);
  return s;
}

// fuzz_dispatch record
void record(Bytes& out, uint8_t ctl, const Bytes& s, uint16_t len, uint8_t fill) {
  out.push_back(ctl);
  append(out, s);
  out.push_back(static_cast<uint8_t>(len));
  out.push_back(static_cast<uint8_t>(len >> 8));
  out.insert(out.end(), len, fill);
}

// An AUTH_Send (in-capsule message) or AUTH_Receive (4 KiB) SQE.
Bytes auth_sqe(bool send, uint16_t cid, uint32_t length) {
  Bytes s = sqe(opc::kFabrics, cid, 0, send ? kSglDataBlockOffset : kSglTransportDataBlock, length);
  s[4] = send ? opc::kFctypeAuthSend : opc::kFctypeAuthReceive;
  s[41] = 0x01;
  s[42] = 0x01;
  s[43] = 0xE9;
  put32(s.data() + 44, length);
  return s;
}

void record_data(Bytes& out, uint8_t ctl, const Bytes& s, const Bytes& data) {
  out.push_back(ctl);
  append(out, s);
  out.push_back(static_cast<uint8_t>(data.size()));
  out.push_back(static_cast<uint8_t>(data.size() >> 8));
  append(out, data);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  const std::string nqn = subsystem_nqn(kReplicaUuid);
  for (int dg = 0; dg < 4; dg++) {
    const bool hd = dg & 1, dd = dg & 2;
    const std::string tag = std::to_string(dg);
    // pdu: admin queue bring-up on the I/O port
    Bytes a{0};
    append(a, ic_req(hd, dd));
    append(a, connect_pdu(nqn, 0, 0xFFFF, hd, dd));
    append(a, property_set_pdu(2, 0x14, 0x00460001, hd));
    { auto s = identify(3, 1); append(a, capsule(s.data(), nullptr, 0, hd, dd)); }
    write_file(dir + "/pdu/admin-" + tag, a);
    // pdu: same, delivered 8 bytes at a time
    a[0] = 2;
    write_file(dir + "/pdu/admin-split-" + tag, a);
    // pdu: discovery
    Bytes d{1};
    append(d, ic_req(hd, dd));
    append(d, connect_pdu(kDiscoveryNqn, 0, 0xFFFF, hd, dd));
    { auto s = get_log(2, 0x70, 4096); append(d, capsule(s.data(), nullptr, 0, hd, dd)); }
    write_file(dir + "/pdu/discovery-" + tag, d);
    // pdu: Connect whose 1024 bytes come by R2T/H2CData (TTAG 0, CID 1)
    Bytes r{0};
    append(r, ic_req(hd, dd));
    {
      auto s = connect_sqe(1, 0, 31, 0);
      s[39] = kSglTransportDataBlock;
      append(r, capsule(s.data(), nullptr, 0, hd, dd));
      auto cd = connect_data(nqn, 0xFFFF);
      append(r, h2c_data(1, 0, 0, cd.data(), 512, false, hd, dd));
      append(r, h2c_data(1, 0, 512, cd.data() + 512, 512, true, hd, dd));
    }
    write_file(dir + "/pdu/connect-r2t-" + tag, r);

    // dispatch: admin Identify + log pages + features, I/O write/read/flush
    Bytes x{static_cast<uint8_t>(dg)};
    record(x, 0x04, identify(10, 1), 0, 0);
    record(x, 0x04, identify(11, 0), 0, 0);
    record(x, 0x04, identify(12, 2), 0, 0);
    record(x, 0x04, get_log(13, 0x02, 512), 0, 0);
    { Bytes s = sqe(opc::kSetFeatures, 14, 0, 0, 0); put32(s.data() + 40, 0x07); put32(s.data() + 44, 0x00030003); record(x, 0x04, s, 0, 0); }
    record(x, 0x07, rw(opc::kWrite, 20, 3, 1, kSglDataBlockOffset), 4096, 0x5A);
    record(x, 0x05 | 0x10, rw(opc::kWrite, 21, 8, 32, kSglTransportDataBlock), 4096, 0xA5);
    record(x, 0x05, rw(opc::kRead, 22, 3, 1, kSglTransportDataBlock), 0, 0);
    record(x, 0x05, sqe(opc::kFlush, 23, 1, 0, 0), 0, 0);
    { Bytes s = sqe(opc::kDatasetManagement, 24, 1, kSglDataBlockOffset, 16); put32(s.data() + 44, 4); Bytes range(16, 0); put32(range.data() + 4, 2); put64(range.data() + 8, 8); x.push_back(0x07); append(x, s); x.push_back(16); x.push_back(0); append(x, range); }
    record(x, 0x05, rw(opc::kWriteZeroes, 25, 60, 4, 0), 0, 0);
    record(x, 0x04, sqe(opc::kAsyncEventRequest, 26, 0, 0, 0), 0, 0);
    record(x, 0x04, sqe(opc::kKeepAlive, 27, 0, 0, 0), 0, 0);
    write_file(dir + "/dispatch/session-" + tag, x);

    // dispatch, authentication required: Negotiate, Challenge, a Reply (wrong), Failure1;
    // then an admin command before authentication.
    Bytes au{static_cast<uint8_t>(dg | 0x08)};
    Bytes negotiate(8 + 64, 0);
    put16(negotiate.data() + 4, 7);  // T_ID
    negotiate[7] = 1;                // NAPD
    negotiate[8] = 0x01;             // DH-HMAC-CHAP
    negotiate[10] = 3;
    negotiate[11] = 2;
    negotiate[12] = 1, negotiate[13] = 2, negotiate[14] = 3;  // SHA-256/384/512
    negotiate[42] = 0, negotiate[43] = 1;                     // NULL, ffdhe2048
    record_data(au, 0x02, auth_sqe(true, 30, static_cast<uint32_t>(negotiate.size())), negotiate);
    record(au, 0x00, auth_sqe(false, 31, 4096), 0, 0);
    Bytes reply(16 + 2 * 32, 0x33);
    reply[0] = 0x01, reply[1] = 0x02, reply[2] = reply[3] = 0;
    put16(reply.data() + 4, 7);
    reply[6] = 32, reply[7] = 0, reply[8] = 1, reply[9] = 0;
    put16(reply.data() + 10, 0);
    put32(reply.data() + 12, 99);
    record_data(au, 0x02, auth_sqe(true, 32, static_cast<uint32_t>(reply.size())), reply);
    record(au, 0x00, auth_sqe(false, 33, 4096), 0, 0);
    record(au, 0x04, identify(34, 1), 0, 0);
    write_file(dir + "/dispatch/auth-" + tag, au);
  }
  return 0;
}
