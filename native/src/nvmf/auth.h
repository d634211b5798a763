// NVMe in-band authentication: DH-HMAC-CHAP (NVMe Base 2.0 section 8.13 / TP 8006), the protocol
// Linux speaks with `nvme connect --dhchap-secret` / `--dhchap-ctrl-secret`. Written from the
// spec's message layouts (the Linux host and target were read for behaviour, not copied):
//
//   host                                      controller
//   AUTH_Send     Negotiate (hashes, DH groups) ->
//   AUTH_Receive                             <- Challenge (hash, DH group, C1, seq S1, g^y)
//   AUTH_Send     Reply (R1, [C2, S2], g^x)  ->  the controller checks R1: the host is authentic
//   AUTH_Receive                             <- Success1 ([R2] when the host sent C2) or Failure1
//   AUTH_Send     Success2 (when bidirectional) or Failure2 (R2 was wrong)
//
// R1 = HMAC(Kh', Ca1 | S1 | T_ID | SC_C | "HostHost" | HOSTNQN | 0 | SUBNQN), R2 likewise with
// Kc', S2, "Controller" and the NQNs swapped. Kh' is the host secret transformed with the host
// NQN (Kc' with the subsystem NQN) when the secret says so; Ca = C with the NULL DH group, else
// HMAC(H(g^xy), C).
//
// Secrets never leave this file in clear: no log line, error message or list carries them.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace strata::nvmf::auth {

// AUTH_Send / AUTH_Receive SQE fields (offsets into the 64-byte SQE).
constexpr uint8_t kSecpDhchap = 0xE9;  // SECP: the DH-HMAC-CHAP security protocol
constexpr size_t kSqeSpsp0 = 41, kSqeSpsp1 = 42, kSqeSecp = 43, kSqeLength = 44;  // TL (send) / AL (receive)

// Message header bytes: AUTH_TYPE then AUTH_ID.
constexpr uint8_t kTypeCommon = 0x00, kTypeDhchap = 0x01;
constexpr uint8_t kIdNegotiate = 0x00, kIdChallenge = 0x01, kIdReply = 0x02, kIdSuccess1 = 0x03, kIdSuccess2 = 0x04,
                  kIdFailure2 = 0xF0, kIdFailure1 = 0xF1;
constexpr uint8_t kProtocolDhchap = 0x01;  // AUTHID of a protocol descriptor

// Hash function and DH group identifiers.
constexpr uint8_t kHashSha256 = 0x01, kHashSha384 = 0x02, kHashSha512 = 0x03;
constexpr uint8_t kDhNull = 0x00, kDhFfdhe2048 = 0x01, kDhFfdhe3072 = 0x02, kDhFfdhe4096 = 0x03, kDhFfdhe6144 = 0x04,
                  kDhFfdhe8192 = 0x05;

// Failure reason code explanations (REASON CODE is always 1, "authentication failed").
constexpr uint8_t kFailFailed = 0x01, kFailNotUsable = 0x02, kFailConcatMismatch = 0x03, kFailHashUnusable = 0x04,
                  kFailDhgroupUnusable = 0x05, kFailIncorrectPayload = 0x06, kFailIncorrectMessage = 0x07;
const char* failure_name(uint8_t explanation);

// 32, 48 or 64 bytes for a supported hash, else 0.
size_t hash_bytes(uint8_t hash_id);
// The public value size of a DH group (0 for the NULL group), or 0 for an unknown group.
size_t dh_value_bytes(uint8_t group);
bool dh_group_supported(uint8_t group);

// A DH-HMAC-CHAP secret in the representation nvme-cli prints ("DHHC-1:XX:<base64 of key and
// its CRC-32>:"). XX names the hash that transforms the key with an NQN (00: used as is).
struct Secret {
  uint8_t transform_hash = 0;
  std::vector<uint8_t> key;  // 32, 48 or 64 bytes
};
// Parses and checks (prefix, hash id, base64, length, CRC-32). Errors never quote the text.
Result<Secret> parse_secret(const std::string& text);
// The same representation back (tests, key generation).
std::string format_secret(const Secret& secret);
// A fresh random secret of `key_bytes` (32/48/64) with the given transform hash.
Secret generate_secret(uint8_t transform_hash, size_t key_bytes);

// Primitives (exposed for tests and the host side).
std::vector<uint8_t> hmac(uint8_t hash_id, const std::vector<uint8_t>& key, const uint8_t* data, size_t bytes);
std::vector<uint8_t> transform_key(const Secret& secret, const std::string& nqn);
void random_bytes(uint8_t* out, size_t bytes);
// The response value: HMAC(key, Ca | seq | tid | sc_c | role | nqn1 | 0 | nqn2).
std::vector<uint8_t> response(uint8_t hash_id, const std::vector<uint8_t>& transformed_key, const std::vector<uint8_t>& challenge, uint32_t seq,
                              uint16_t tid, uint8_t sc_c, const char* role, const std::string& nqn1, const std::string& nqn2);
// Ca = HMAC(H(session key), C) when a DH group is in use.
std::vector<uint8_t> augmented_challenge(uint8_t hash_id, const std::vector<uint8_t>& session_key, const std::vector<uint8_t>& challenge);

// One ephemeral finite-field DH key of an RFC 7919 group (OpenSSL).
class DhKey {
 public:
  static Result<std::unique_ptr<DhKey>> generate(uint8_t group);
  ~DhKey();
  const std::vector<uint8_t>& public_value() const { return public_; }  // padded to the group size
  // g^xy, padded to the group size; fails on a public value outside the group.
  Result<std::vector<uint8_t>> shared_secret(const uint8_t* peer, size_t bytes) const;

 private:
  DhKey() = default;
  uint8_t group_ = 0;
  void* pkey_ = nullptr;  // EVP_PKEY*
  std::vector<uint8_t> public_;
};

// What a subsystem demands of one allowed host.
struct HostKeys {
  Secret host;                 // the host proves it knows this
  std::optional<Secret> ctrl;  // when set, the controller can prove itself (bidirectional)
};

// The controller side of one queue's transaction. Messages arrive as AUTH_Send payloads;
// AUTH_Receive asks for the next message to send.
class ControllerTransaction {
 public:
  ControllerTransaction(HostKeys keys, std::string host_nqn, std::string sub_nqn)
      : keys_(std::move(keys)), host_nqn_(std::move(host_nqn)), sub_nqn_(std::move(sub_nqn)) {}
  // An AUTH_Send payload. Never fails the command: a bad message moves to the failure step,
  // which the next AUTH_Receive reports (as the spec and Linux do).
  void on_send(const uint8_t* data, size_t bytes);
  // The next message for an AUTH_Receive of at most `al` bytes.
  std::vector<uint8_t> on_receive(uint32_t al);
  bool authenticated() const { return authenticated_; }
  // The transaction ended in failure (after Failure1 was handed out, or the host's Failure2).
  bool failed() const { return failed_; }
  // Why it failed, for logs (never contains key material).
  const std::string& failure() const { return failure_text_; }
  // Bytes to remember nothing of: zeroed in the destructor.
  ~ControllerTransaction();

 private:
  enum class Step {
    kNegotiate,  // waiting for the host's Negotiate
    kChallenge,  // Negotiate accepted: the next AUTH_Receive gets the Challenge
    kReply,      // Challenge sent: waiting for the Reply
    kSuccess1,   // Reply verified: the next AUTH_Receive gets Success1
    kSuccess2,   // bidirectional: waiting for Success2 (or Failure2)
    kDone,       // authenticated
    kFailure1,   // the next AUTH_Receive gets Failure1, then the transaction has failed
    kFailed,     // over; the connection is to be closed
  };
  void fail(uint8_t explanation, std::string why);
  void negotiate(const uint8_t* d, size_t n);
  void reply(const uint8_t* d, size_t n);

  HostKeys keys_;
  const std::string host_nqn_, sub_nqn_;
  Step step_ = Step::kNegotiate;
  bool authenticated_ = false, failed_ = false;
  uint8_t failure_explanation_ = kFailFailed;
  std::string failure_text_;
  uint16_t tid_ = 0;
  uint8_t hash_ = 0, dh_group_ = 0;
  uint32_t s1_ = 0, s2_ = 0;
  std::vector<uint8_t> c1_, c2_, session_key_;
  std::unique_ptr<DhKey> dh_;
};

// The host side of one queue's transaction (the initiator): build each message, check the
// controller's.
class HostTransaction {
 public:
  HostTransaction(HostKeys keys, std::string host_nqn, std::string sub_nqn, uint16_t tid)
      : keys_(std::move(keys)), host_nqn_(std::move(host_nqn)), sub_nqn_(std::move(sub_nqn)), tid_(tid) {}
  ~HostTransaction();
  // Hash functions and DH groups offered, in order of preference.
  std::vector<uint8_t> negotiate(const std::vector<uint8_t>& hashes = {kHashSha256, kHashSha384, kHashSha512},
                                 const std::vector<uint8_t>& groups = {kDhNull, kDhFfdhe2048, kDhFfdhe3072, kDhFfdhe4096});
  // Takes the Challenge (or a Failure1) and returns the Reply.
  Result<std::vector<uint8_t>> reply(const uint8_t* data, size_t bytes);
  // Takes Success1 (or Failure1); checks the controller's response when bidirectional.
  Status success1(const uint8_t* data, size_t bytes);
  bool bidirectional() const { return keys_.ctrl.has_value(); }
  std::vector<uint8_t> success2() const;
  std::vector<uint8_t> failure2(uint8_t explanation) const;

 private:
  HostKeys keys_;
  const std::string host_nqn_, sub_nqn_;
  const uint16_t tid_;
  uint8_t hash_ = 0;
  uint32_t s2_ = 0;
  std::vector<uint8_t> c2_, session_key_;
};

}  // namespace strata::nvmf::auth
