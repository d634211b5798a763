// NVMe/TCP and NVMe-oF wire constants and little-endian accessors. Offsets are from the
// NVMe/TCP transport binding, the NVMe-oF spec and the NVMe base spec (1.3-era layouts);
// every PDU is parsed from bytes with these helpers, never by casting network data to structs.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

namespace strata::nvmf {

static_assert(std::endian::native == std::endian::little, "wire parsing below assumes a little-endian host");

inline uint16_t get16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t get64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
inline void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
// Copies text into a fixed-size field, padded with `pad` (NVMe ASCII fields pad with spaces,
// NQN and transport-address fields with NUL).
inline void put_text(uint8_t* p, size_t field_bytes, const std::string& text, char pad) {
  std::memset(p, pad, field_bytes);
  std::memcpy(p, text.data(), std::min(text.size(), field_bytes));
}

// ---- PDU framing ------------------------------------------------------------------------------
namespace pdu {
constexpr uint8_t kIcReq = 0x00, kIcResp = 0x01, kH2cTermReq = 0x02, kC2hTermReq = 0x03, kCapsuleCmd = 0x04,
                  kCapsuleResp = 0x05, kH2cData = 0x06, kC2hData = 0x07, kR2t = 0x09;
constexpr uint8_t kFlagHdgst = 0x01, kFlagDdgst = 0x02, kFlagLast = 0x04, kFlagSuccess = 0x08;
constexpr uint32_t kCommonHeaderBytes = 8;
constexpr uint32_t kIcBytes = 128;             // ICReq/ICResp hlen == plen
constexpr uint32_t kCapsuleCmdHeaderBytes = 72;  // 8 + 64-byte SQE
constexpr uint32_t kCapsuleRespHeaderBytes = 24;  // 8 + 16-byte CQE
constexpr uint32_t kDataHeaderBytes = 24;      // H2CData, C2HData, R2T
constexpr uint32_t kTermReqHeaderBytes = 24;
constexpr uint32_t kTermReqMaxCopiedBytes = 128;  // offending header bytes a TermReq carries
constexpr uint32_t kDigestBytes = 4;
}  // namespace pdu

// Fatal error status of a TermReq (NVMe/TCP).
enum class Fes : uint16_t {
  kInvalidHeaderField = 1,
  kPduSequenceError = 2,
  kHeaderDigestError = 3,
  kDataOutOfRange = 4,
  kDataLimitExceeded = 5,
  kUnsupportedParameter = 6,
};

// ---- what this target offers -----------------------------------------------------------------
constexpr uint32_t kInCapsuleDataBytes = 8192;                 // IOCCSZ = (64 + 8192) / 16
constexpr uint32_t kIoccsz = (64 + kInCapsuleDataBytes) / 16;  // in 16-byte units
constexpr uint32_t kMaxH2cDataBytes = 128 * 1024;              // multiple of 4, >= 4096
constexpr uint8_t kMdts = 8;                                   // 2^8 * 4 KiB pages = 1 MiB
constexpr uint32_t kMaxTransferBytes = (1u << kMdts) * 4096;
constexpr uint32_t kBlockBytes = 4096;  // one LBA format: 4 KiB, no metadata
constexpr uint8_t kLbads = 12;
constexpr uint32_t kQueueEntriesMax = 128;  // CAP.MQES + 1
constexpr uint16_t kIoQueuesMax = 64;
constexpr uint8_t kAerlZeroBased = 3;  // four Async Event Requests held at most
constexpr uint16_t kKasUnits100Ms = 10;  // keep-alive granularity: 1 s
constexpr const char* kDiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";
constexpr const char* kSubsystemNqnPrefix = "nqn.2026-11.io.strata:replica:";
constexpr const char* kNexusNqnPrefix = "nqn.2026-11.io.strata:nexus:";
constexpr const char* kNodeNqnPrefix = "nqn.2026-11.io.strata:node:";  // a node's host NQN (initiator)
constexpr uint32_t kVersion13 = 0x00010300;
// Connect response DW0 bit 17 (ATR): the host must authenticate (DH-HMAC-CHAP) on this queue.
constexpr uint32_t kConnectAuthRequired = 1u << 17;

// ---- command and status codes ----------------------------------------------------------------
namespace opc {
constexpr uint8_t kFabrics = 0x7F;
constexpr uint8_t kFctypePropertySet = 0x00, kFctypeConnect = 0x01, kFctypePropertyGet = 0x04, kFctypeAuthSend = 0x05,
                  kFctypeAuthReceive = 0x06;
// admin
constexpr uint8_t kGetLogPage = 0x02, kIdentify = 0x06, kAbort = 0x08, kSetFeatures = 0x09, kGetFeatures = 0x0A,
                  kAsyncEventRequest = 0x0C, kKeepAlive = 0x18;
// NVM
constexpr uint8_t kFlush = 0x00, kWrite = 0x01, kRead = 0x02, kWriteZeroes = 0x08, kDatasetManagement = 0x09;
}  // namespace opc

// CQE status field: DNR bit 15, SCT bits 11:9, SC bits 8:1, phase bit 0 (always 0 over fabrics).
constexpr uint16_t make_status(uint8_t sct, uint8_t sc, bool dnr = true) {
  return static_cast<uint16_t>((dnr ? 0x8000 : 0) | ((sct & 0x7) << 9) | (sc << 1));
}
namespace sc {
constexpr uint16_t kSuccess = 0;
constexpr uint16_t kInvalidOpcode = make_status(0, 0x01);
constexpr uint16_t kInvalidField = make_status(0, 0x02);
constexpr uint16_t kInternalError = make_status(0, 0x06, false);
constexpr uint16_t kAbortedSqDeletion = make_status(0, 0x08, false);
constexpr uint16_t kInvalidNamespace = make_status(0, 0x0B);
constexpr uint16_t kCommandSequenceError = make_status(0, 0x0C);
constexpr uint16_t kDataSglLengthInvalid = make_status(0, 0x0F);
constexpr uint16_t kSglDescriptorTypeInvalid = make_status(0, 0x11);
constexpr uint16_t kSglOffsetInvalid = make_status(0, 0x16);
constexpr uint16_t kTransientTransportError = make_status(0, 0x22, false);
constexpr uint16_t kLbaOutOfRange = make_status(0, 0x80);
constexpr uint16_t kCapacityExceeded = make_status(0, 0x81);
constexpr uint16_t kAerLimitExceeded = make_status(1, 0x05);
constexpr uint16_t kInvalidLogPage = make_status(1, 0x09);
constexpr uint16_t kConnectIncompatibleFormat = make_status(1, 0x80);
constexpr uint16_t kConnectControllerBusy = make_status(1, 0x81);
constexpr uint16_t kConnectControllerBusyRetry = make_status(1, 0x81, false);  // DNR clear: the host retries
constexpr uint16_t kConnectInvalidParameters = make_status(1, 0x82);
constexpr uint16_t kConnectInvalidHost = make_status(1, 0x84);
constexpr uint16_t kAuthRequired = make_status(1, 0x91);  // in-band authentication has not succeeded on this queue
constexpr uint16_t kWriteFault = make_status(2, 0x80, false);
constexpr uint16_t kUnrecoveredReadError = make_status(2, 0x81, false);
}  // namespace sc

// Asynchronous events (NVMe base spec): Set Features 0x0B bit 8 enables namespace attribute
// notices; such a notice completes an AER with type Notice (2), info 0x00 (Namespace Attribute
// Changed) and log page 0x04 (Changed Namespace List), which holds up to 1024 NSIDs.
constexpr uint32_t kAecNamespaceAttribute = 1u << 8;
constexpr uint32_t kAenNamespaceAttributeChanged = 0x2u | (0x00u << 8) | (0x04u << 16);
constexpr uint8_t kLogChangedNamespaces = 0x04;
constexpr uint32_t kChangedNamespaceLogBytes = 4096;

// SGL descriptor type bytes (type << 4 | subtype).
constexpr uint8_t kSglDataBlockOffset = 0x01;    // in-capsule data
constexpr uint8_t kSglTransportDataBlock = 0x5A;  // data moved by R2T/H2CData or C2HData

}  // namespace strata::nvmf
