// libFuzzer target: arbitrary bytes as the host's side of one NVMe/TCP connection, from the
// very first byte (so ICReq negotiation, hlen/plen/pdo checks, digests, sequence errors and
// PDUs split across reads are all in reach).
//
// Input: byte 0 = options (bit 0: accepted on the discovery port; bits 1-7: the stream is
// delivered in pieces of (value * 7 + 1) bytes, to exercise reassembly), then the stream.
#include "fuzz/harness.h"

using namespace fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static Reactor reactor(0);  // never started: the seam keeps the connection off its ring
  const uint8_t options = data[0];
  data++;
  size--;
  MemoryNamespace ns;
  Target target({&reactor}, ns.backend());
  target.share(kReplicaUuid, kNamespaceBytes, {kHostNqn});
  {
    HostConn host(target, reactor, options & 1, 1);
    const size_t piece = (options >> 1) ? (options >> 1) * 7u + 1 : size;
    for (size_t off = 0; off < size && !host.conn->closed_for_test(); off += piece) {
      const size_t n = std::min(piece, size - off);
      host.conn->feed_for_test(data + off, n);
      host.conn->run_posted_for_test();
    }
    host.hang_up();
  }
  return 0;
}
