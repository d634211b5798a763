// DH-HMAC-CHAP: see auth.h. Cryptography is OpenSSL 3 (HMAC, SHA-2, RFC 7919 DH groups,
// random numbers); the addon uses the OpenSSL that Node.js links in, the fuzzers libcrypto.
#include "nvmf/auth.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/dh.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <array>
#include <cstring>

#include "nvmf/protocol.h"

namespace strata::nvmf::auth {
namespace {

const char* digest_name(uint8_t hash_id) {
  switch (hash_id) {
    case kHashSha256: return "SHA256";
    case kHashSha384: return "SHA384";
    case kHashSha512: return "SHA512";
    default: return nullptr;
  }
}

const char* group_name(uint8_t group) {
  switch (group) {
    case kDhFfdhe2048: return "ffdhe2048";
    case kDhFfdhe3072: return "ffdhe3072";
    case kDhFfdhe4096: return "ffdhe4096";
    case kDhFfdhe6144: return "ffdhe6144";
    case kDhFfdhe8192: return "ffdhe8192";
    default: return nullptr;
  }
}

// CRC-32 (IEEE 802.3, reflected, init and final xor ~0): what the DHHC-1 representation appends.
uint32_t crc32_ieee(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const std::vector<uint8_t>& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = uint32_t{in[i]} << 16;
    if (i + 1 < in.size()) v |= uint32_t{in[i + 1]} << 8;
    if (i + 2 < in.size()) v |= in[i + 2];
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += i + 1 < in.size() ? kBase64[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kBase64[v & 63] : '=';
  }
  return out;
}

std::optional<std::vector<uint8_t>> base64_decode(const std::string& in) {
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  std::vector<uint8_t> out;
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t j = 0; j < 4; j++) {
      char ch = in[i + j];
      int d;
      if (ch == '=') {
        if (i + 4 != in.size() || j < 2) return std::nullopt;
        pad++;
        d = 0;
      } else {
        if (pad) return std::nullopt;  // data after padding
        const char* at = std::strchr(kBase64, ch);
        if (ch == '\0' || at == nullptr) return std::nullopt;
        d = static_cast<int>(at - kBase64);
      }
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<uint8_t>(v >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(v >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(v));
  }
  return out;
}

std::vector<uint8_t> digest(uint8_t hash_id, const uint8_t* data, size_t bytes) {
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  const EVP_MD* md = EVP_get_digestbyname(digest_name(hash_id));
  if (md == nullptr || EVP_Digest(data, bytes, out.data(), &len, md, nullptr) != 1) return {};
  out.resize(len);
  return out;
}

void wipe(std::vector<uint8_t>& v) {
  if (!v.empty()) OPENSSL_cleanse(v.data(), v.size());
  v.clear();
}

bool equal_constant_time(const uint8_t* a, const std::vector<uint8_t>& b) {
  return !b.empty() && CRYPTO_memcmp(a, b.data(), b.size()) == 0;
}

uint32_t random_seq() {
  uint32_t s = 0;
  while (s == 0) random_bytes(reinterpret_cast<uint8_t*>(&s), sizeof s);  // 0 means "no bidirectional" in a Reply
  return s;
}

}  // namespace

const char* failure_name(uint8_t e) {
  switch (e) {
    case kFailFailed: return "authentication failed";
    case kFailNotUsable: return "protocol not usable";
    case kFailConcatMismatch: return "secure channel concatenation mismatch";
    case kFailHashUnusable: return "hash function not usable";
    case kFailDhgroupUnusable: return "DH group not usable";
    case kFailIncorrectPayload: return "incorrect payload";
    case kFailIncorrectMessage: return "incorrect protocol message";
    default: return "unknown reason";
  }
}

size_t hash_bytes(uint8_t hash_id) {
  switch (hash_id) {
    case kHashSha256: return 32;
    case kHashSha384: return 48;
    case kHashSha512: return 64;
    default: return 0;
  }
}

size_t dh_value_bytes(uint8_t group) {
  switch (group) {
    case kDhFfdhe2048: return 256;
    case kDhFfdhe3072: return 384;
    case kDhFfdhe4096: return 512;
    case kDhFfdhe6144: return 768;
    case kDhFfdhe8192: return 1024;
    default: return 0;
  }
}

bool dh_group_supported(uint8_t group) { return group == kDhNull || group_name(group) != nullptr; }

// ---- secrets ------------------------------------------------------------------------------------

Result<Secret> parse_secret(const std::string& text) {
  auto bad = [](const std::string& why) { return Error{ErrorCode::kInvalidArgument, str("DH-HMAC-CHAP secret is invalid: ", why)}; };
  const std::string prefix = "DHHC-1:";
  if (text.rfind(prefix, 0) != 0) return bad("it must start with DHHC-1: (as `nvme gen-dhchap-key` prints)");
  if (text.size() < prefix.size() + 3 || text[prefix.size() + 2] != ':') return bad("the hash field must be two digits (00 to 03)");
  const std::string hash_field = text.substr(prefix.size(), 2);
  if (hash_field[0] != '0' || hash_field[1] < '0' || hash_field[1] > '3') return bad("the hash field must be 00, 01, 02 or 03");
  Secret s;
  s.transform_hash = static_cast<uint8_t>(hash_field[1] - '0');
  std::string b64 = text.substr(prefix.size() + 3);
  if (!b64.empty() && b64.back() == ':') b64.pop_back();
  auto raw = base64_decode(b64);
  if (!raw) return bad("the key is not base64");
  if (raw->size() != 36 && raw->size() != 52 && raw->size() != 68) {
    std::vector<uint8_t> scrub = std::move(*raw);
    wipe(scrub);
    return bad("the key must be 32, 48 or 64 bytes followed by its CRC-32");
  }
  const size_t key_bytes = raw->size() - 4;
  const uint32_t crc = get32(raw->data() + key_bytes);
  if (crc32_ieee(raw->data(), key_bytes) != crc) {
    wipe(*raw);
    return bad("its CRC-32 does not match (a typo or a truncated copy?)");
  }
  s.key.assign(raw->begin(), raw->begin() + static_cast<long>(key_bytes));
  wipe(*raw);
  return s;
}

std::string format_secret(const Secret& s) {
  std::vector<uint8_t> raw = s.key;
  raw.resize(s.key.size() + 4);
  put32(raw.data() + s.key.size(), crc32_ieee(s.key.data(), s.key.size()));
  std::string out = str("DHHC-1:0", int(s.transform_hash), ":", base64_encode(raw), ":");
  wipe(raw);
  return out;
}

Secret generate_secret(uint8_t transform_hash, size_t key_bytes) {
  Secret s;
  s.transform_hash = transform_hash;
  s.key.resize(key_bytes);
  random_bytes(s.key.data(), key_bytes);
  return s;
}

// ---- primitives -----------------------------------------------------------------------------------

void random_bytes(uint8_t* out, size_t bytes) {
  if (RAND_bytes(out, static_cast<int>(bytes)) != 1) std::abort();  // no randomness: nothing safe to do
}

std::vector<uint8_t> hmac(uint8_t hash_id, const std::vector<uint8_t>& key, const uint8_t* data, size_t bytes) {
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  size_t len = 0;
  const char* name = digest_name(hash_id);
  if (name == nullptr ||
      EVP_Q_mac(nullptr, "HMAC", nullptr, name, nullptr, key.data(), key.size(), data, bytes, out.data(), out.size(), &len) == nullptr) {
    return {};
  }
  out.resize(len);
  return out;
}

std::vector<uint8_t> transform_key(const Secret& secret, const std::string& nqn) {
  if (secret.transform_hash == 0) return secret.key;
  std::string msg = nqn + "NVMe-over-Fabrics";
  return hmac(secret.transform_hash, secret.key, reinterpret_cast<const uint8_t*>(msg.data()), msg.size());
}

std::vector<uint8_t> response(uint8_t hash_id, const std::vector<uint8_t>& key, const std::vector<uint8_t>& challenge, uint32_t seq, uint16_t tid,
                              uint8_t sc_c, const char* role, const std::string& nqn1, const std::string& nqn2) {
  std::vector<uint8_t> m(challenge);
  uint8_t buf[4];
  put32(buf, seq);
  m.insert(m.end(), buf, buf + 4);
  put16(buf, tid);
  m.insert(m.end(), buf, buf + 2);
  m.push_back(sc_c);
  m.insert(m.end(), role, role + std::strlen(role));
  m.insert(m.end(), nqn1.begin(), nqn1.end());
  m.push_back(0);
  m.insert(m.end(), nqn2.begin(), nqn2.end());
  auto out = hmac(hash_id, key, m.data(), m.size());
  wipe(m);
  return out;
}

std::vector<uint8_t> augmented_challenge(uint8_t hash_id, const std::vector<uint8_t>& session_key, const std::vector<uint8_t>& challenge) {
  std::vector<uint8_t> hashed = digest(hash_id, session_key.data(), session_key.size());
  auto out = hmac(hash_id, hashed, challenge.data(), challenge.size());
  wipe(hashed);
  return out;
}

// ---- DH -------------------------------------------------------------------------------------------

Result<std::unique_ptr<DhKey>> DhKey::generate(uint8_t group) {
  const char* name = group_name(group);
  if (name == nullptr) return Error{ErrorCode::kInvalidArgument, str("DH group ", int(group), " is not supported")};
  std::unique_ptr<DhKey> k(new DhKey());
  k->group_ = group;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(name), 0), OSSL_PARAM_construct_end()};
  EVP_PKEY* pkey = nullptr;
  bool ok = ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_CTX_set_params(ctx, params) == 1 && EVP_PKEY_generate(ctx, &pkey) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return Error{ErrorCode::kIoError, str("cannot generate a ", name, " key")};
  k->pkey_ = pkey;
  BIGNUM* pub = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, &pub) != 1) return Error{ErrorCode::kIoError, "cannot read the DH public value"};
  k->public_.resize(dh_value_bytes(group));
  int n = BN_bn2binpad(pub, k->public_.data(), static_cast<int>(k->public_.size()));
  BN_free(pub);
  if (n < 0) return Error{ErrorCode::kIoError, "DH public value too large"};
  return k;
}

DhKey::~DhKey() { EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_)); }

Result<std::vector<uint8_t>> DhKey::shared_secret(const uint8_t* peer, size_t bytes) const {
  if (bytes != public_.size()) return Error{ErrorCode::kInvalidArgument, "DH value of the wrong size"};
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  BIGNUM* bn = BN_bin2bn(peer, static_cast<int>(bytes), nullptr);
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* peer_key = nullptr;
  EVP_PKEY_CTX* fctx = nullptr;
  EVP_PKEY_CTX* dctx = nullptr;
  std::vector<uint8_t> out;
  bool ok = bld != nullptr && bn != nullptr && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group_name(group_), 0) == 1 &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PUB_KEY, bn) == 1 && (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr &&
            (fctx = EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr)) != nullptr && EVP_PKEY_fromdata_init(fctx) == 1 &&
            EVP_PKEY_fromdata(fctx, &peer_key, EVP_PKEY_PUBLIC_KEY, params) == 1 &&
            (dctx = EVP_PKEY_CTX_new(static_cast<EVP_PKEY*>(pkey_), nullptr)) != nullptr && EVP_PKEY_derive_init(dctx) == 1 &&
            EVP_PKEY_CTX_set_dh_pad(dctx, 1) == 1 && EVP_PKEY_derive_set_peer(dctx, peer_key) == 1;  // checks the value is in the group
  size_t len = 0;
  if (ok) ok = EVP_PKEY_derive(dctx, nullptr, &len) == 1;
  if (ok) {
    out.resize(len);
    ok = EVP_PKEY_derive(dctx, out.data(), &len) == 1;
    out.resize(len);
  }
  EVP_PKEY_CTX_free(dctx);
  EVP_PKEY_CTX_free(fctx);
  EVP_PKEY_free(peer_key);
  OSSL_PARAM_free(params);
  BN_free(bn);
  OSSL_PARAM_BLD_free(bld);
  if (!ok) {
    wipe(out);
    return Error{ErrorCode::kInvalidArgument, "the peer's DH value is not usable"};
  }
  return out;
}

// ---- controller side ------------------------------------------------------------------------------

ControllerTransaction::~ControllerTransaction() {
  wipe(c1_);
  wipe(c2_);
  wipe(session_key_);
  wipe(keys_.host.key);
  if (keys_.ctrl) wipe(keys_.ctrl->key);
}

void ControllerTransaction::fail(uint8_t explanation, std::string why) {
  step_ = Step::kFailure1;
  authenticated_ = false;
  failure_explanation_ = explanation;
  failure_text_ = std::move(why);
}

void ControllerTransaction::on_send(const uint8_t* d, size_t n) {
  if (step_ == Step::kFailed) return;
  if (n < 8) return fail(kFailIncorrectPayload, str("a ", n, "-byte message"));
  const uint8_t type = d[0], id = d[1];
  if (type == kTypeCommon && id == kIdNegotiate) return negotiate(d, n);  // also restarts a transaction (re-authentication)
  if (get16(d + 4) != tid_) return fail(kFailIncorrectPayload, str("transaction id ", get16(d + 4), ", expected ", tid_));
  if (type == kTypeCommon && id == kIdFailure2) {
    failed_ = true;
    authenticated_ = false;
    step_ = Step::kFailed;
    failure_text_ = str("the host rejected the controller's response (", failure_name(n >= 8 ? d[7] : 0), ")");
    return;
  }
  if (type != kTypeDhchap) return fail(kFailIncorrectMessage, str("message type ", int(type), "/", int(id)));
  if (id == kIdReply && step_ == Step::kReply) return reply(d, n);
  if (id == kIdSuccess2 && step_ == Step::kSuccess2) {
    step_ = Step::kDone;
    authenticated_ = true;
    return;
  }
  fail(kFailIncorrectMessage, str("message ", int(id), " out of sequence"));
}

void ControllerTransaction::negotiate(const uint8_t* d, size_t n) {
  // 8-byte header (type, id, reserved, T_ID, SC_C, NAPD), then NAPD 64-byte protocol descriptors.
  tid_ = get16(d + 4);
  const uint8_t sc_c = d[6], napd = d[7];
  if (sc_c != 0) return fail(kFailConcatMismatch, "the host asked for secure channel concatenation (not supported)");
  if (napd == 0 || n < 8 + 64u * napd) return fail(kFailIncorrectPayload, str("Negotiate with ", int(napd), " descriptors in ", n, " bytes"));
  for (uint8_t i = 0; i < napd; i++) {
    const uint8_t* p = d + 8 + 64 * i;
    if (p[0] != kProtocolDhchap) continue;
    const uint8_t halen = p[2], dhlen = p[3];
    if (halen > 30 || dhlen > 30) return fail(kFailIncorrectPayload, "Negotiate lists more than 30 hashes or DH groups");
    // The host lists in order of preference; take its first choice that we implement.
    hash_ = 0;
    for (uint8_t h = 0; h < halen && hash_ == 0; h++) {
      if (hash_bytes(p[4 + h]) != 0) hash_ = p[4 + h];
    }
    if (hash_ == 0) return fail(kFailHashUnusable, "no offered hash function is supported (SHA-256/384/512 are)");
    bool found = false;
    for (uint8_t g = 0; g < dhlen && !found; g++) {
      if (dh_group_supported(p[34 + g])) {
        dh_group_ = p[34 + g];
        found = true;
      }
    }
    if (!found) return fail(kFailDhgroupUnusable, "no offered DH group is supported (NULL and ffdhe2048..8192 are)");
    c1_.clear();
    c2_.clear();
    session_key_.clear();
    dh_.reset();
    step_ = Step::kChallenge;
    return;
  }
  fail(kFailNotUsable, "Negotiate offers no DH-HMAC-CHAP descriptor");
}

void ControllerTransaction::reply(const uint8_t* d, size_t n) {
  // 16-byte header: type, id, reserved(2), T_ID, HL, reserved, CVALID, reserved, DHVLEN, SEQNUM;
  // then R1 (HL), C2 (HL), the host's DH value (DHVLEN).
  if (n < 16) return fail(kFailIncorrectPayload, "a Reply shorter than its header");
  const size_t hl = d[6];
  const bool cvalid = d[8] & 1;
  const size_t dhvlen = get16(d + 10);
  if (hl != hash_bytes(hash_) || 16 + 2 * hl + dhvlen > n) return fail(kFailIncorrectPayload, "malformed Reply");
  if (dhvlen != dh_value_bytes(dh_group_)) return fail(kFailIncorrectPayload, str("Reply DH value of ", dhvlen, " bytes, expected ", dh_value_bytes(dh_group_)));
  const uint32_t seq = get32(d + 12);
  const uint8_t* r1 = d + 16;
  if (dh_) {
    auto z = dh_->shared_secret(d + 16 + 2 * hl, dhvlen);
    if (!z.ok()) return fail(kFailDhgroupUnusable, z.error().message);
    session_key_ = std::move(z.value());
  }
  std::vector<uint8_t> challenge = dh_ ? augmented_challenge(hash_, session_key_, c1_) : c1_;
  std::vector<uint8_t> kh = transform_key(keys_.host, host_nqn_);
  std::vector<uint8_t> expected = response(hash_, kh, challenge, s1_, tid_, 0, "HostHost", host_nqn_, sub_nqn_);
  wipe(kh);
  wipe(challenge);
  const bool match = equal_constant_time(r1, expected);
  wipe(expected);
  if (!match) return fail(kFailFailed, "the host's response does not match its secret");
  if (cvalid && seq != 0) {
    if (!keys_.ctrl) return fail(kFailFailed, "the host asked the controller to authenticate, but no controller secret is configured for it");
    c2_.assign(d + 16 + hl, d + 16 + 2 * hl);
    s2_ = seq;
  } else {
    c2_.clear();
    authenticated_ = true;  // unidirectional: the host is authentic now
  }
  step_ = Step::kSuccess1;
}

std::vector<uint8_t> ControllerTransaction::on_receive(uint32_t al) {
  std::vector<uint8_t> m;
  switch (step_) {
    case Step::kChallenge: {
      const size_t hl = hash_bytes(hash_);
      const size_t dhv = dh_value_bytes(dh_group_);
      if (dh_group_ != kDhNull) {
        auto k = DhKey::generate(dh_group_);
        if (!k.ok()) {
          fail(kFailDhgroupUnusable, k.error().message);
          return on_receive(al);
        }
        dh_ = std::move(k.value());
      }
      m.assign(16 + hl + dhv, 0);
      m[0] = kTypeDhchap;
      m[1] = kIdChallenge;
      put16(&m[4], tid_);
      m[6] = static_cast<uint8_t>(hl);
      m[8] = hash_;
      m[9] = dh_group_;
      put16(&m[10], static_cast<uint16_t>(dhv));
      s1_ = random_seq();
      put32(&m[12], s1_);
      c1_.resize(hl);
      random_bytes(c1_.data(), hl);
      std::memcpy(&m[16], c1_.data(), hl);
      if (dh_) std::memcpy(&m[16 + hl], dh_->public_value().data(), dhv);
      step_ = Step::kReply;
      break;
    }
    case Step::kSuccess1: {
      const size_t hl = hash_bytes(hash_);
      m.assign(16 + hl, 0);
      m[0] = kTypeDhchap;
      m[1] = kIdSuccess1;
      put16(&m[4], tid_);
      m[6] = static_cast<uint8_t>(hl);
      if (!c2_.empty()) {
        std::vector<uint8_t> challenge = dh_ ? augmented_challenge(hash_, session_key_, c2_) : c2_;
        std::vector<uint8_t> kc = transform_key(*keys_.ctrl, sub_nqn_);
        std::vector<uint8_t> r2 = response(hash_, kc, challenge, s2_, tid_, 0, "Controller", sub_nqn_, host_nqn_);
        wipe(kc);
        wipe(challenge);
        m[8] = 1;  // RVALID
        std::memcpy(&m[16], r2.data(), std::min(r2.size(), hl));
        wipe(r2);
        step_ = Step::kSuccess2;
      } else {
        step_ = Step::kDone;
      }
      wipe(c1_);
      wipe(session_key_);
      break;
    }
    default:
      // Asked for a message with nothing to say (out of sequence), or a failure to report.
      if (step_ != Step::kFailure1) fail(kFailIncorrectMessage, "AUTH_Receive out of sequence");
      m.assign(8, 0);
      m[0] = kTypeCommon;
      m[1] = kIdFailure1;
      put16(&m[4], tid_);
      m[6] = 0x01;  // REASON CODE: authentication failure
      m[7] = failure_explanation_;
      step_ = Step::kFailed;
      failed_ = true;
      authenticated_ = false;
      break;
  }
  if (m.size() > al) m.resize(al);  // the host's buffer is too small: it gets what fits (and fails its checks)
  return m;
}

// ---- host side ------------------------------------------------------------------------------------

HostTransaction::~HostTransaction() {
  wipe(c2_);
  wipe(session_key_);
  wipe(keys_.host.key);
  if (keys_.ctrl) wipe(keys_.ctrl->key);
}

std::vector<uint8_t> HostTransaction::negotiate(const std::vector<uint8_t>& hashes, const std::vector<uint8_t>& groups) {
  std::vector<uint8_t> m(8 + 64, 0);
  m[0] = kTypeCommon;
  m[1] = kIdNegotiate;
  put16(&m[4], tid_);
  m[6] = 0;  // SC_C: no secure channel concatenation
  m[7] = 1;  // NAPD
  m[8] = kProtocolDhchap;
  m[10] = static_cast<uint8_t>(std::min<size_t>(hashes.size(), 30));
  m[11] = static_cast<uint8_t>(std::min<size_t>(groups.size(), 30));
  for (size_t i = 0; i < m[10]; i++) m[12 + i] = hashes[i];
  for (size_t i = 0; i < m[11]; i++) m[12 + 30 + i] = groups[i];
  return m;
}

namespace {
Error failure_from(const uint8_t* d, size_t n, const char* when) {
  if (n >= 8 && d[0] == kTypeCommon && d[1] == kIdFailure1) {
    return Error{ErrorCode::kPermissionDenied, str("the target refused authentication ", when, ": ", failure_name(d[7]))};
  }
  return Error{ErrorCode::kPermissionDenied, str("unexpected authentication message ", when, " (type ", n > 0 ? int(d[0]) : -1, ", id ", n > 1 ? int(d[1]) : -1, ")")};
}
}  // namespace

Result<std::vector<uint8_t>> HostTransaction::reply(const uint8_t* d, size_t n) {
  if (n < 16 || d[0] != kTypeDhchap || d[1] != kIdChallenge) return failure_from(d, n, "after Negotiate");
  if (get16(d + 4) != tid_) return Error{ErrorCode::kPermissionDenied, "Challenge for another transaction"};
  hash_ = d[8];
  const size_t hl = d[6];
  const uint8_t group = d[9];
  const size_t dhvlen = get16(d + 10);
  const uint32_t s1 = get32(d + 12);
  if (hash_bytes(hash_) == 0 || hl != hash_bytes(hash_)) return Error{ErrorCode::kPermissionDenied, str("Challenge names hash ", int(hash_), " with ", hl, " bytes")};
  if (!dh_group_supported(group) || dhvlen != dh_value_bytes(group) || 16 + hl + dhvlen > n) {
    return Error{ErrorCode::kPermissionDenied, str("Challenge with DH group ", int(group), " and a ", dhvlen, "-byte value")};
  }
  std::vector<uint8_t> c1(d + 16, d + 16 + hl);
  std::unique_ptr<DhKey> dh;
  if (group != kDhNull) {
    auto k = DhKey::generate(group);
    if (!k.ok()) return k.error();
    dh = std::move(k.value());
    auto z = dh->shared_secret(d + 16 + hl, dhvlen);
    if (!z.ok()) return z.error();
    session_key_ = std::move(z.value());
  }
  std::vector<uint8_t> challenge = dh ? augmented_challenge(hash_, session_key_, c1) : c1;
  std::vector<uint8_t> kh = transform_key(keys_.host, host_nqn_);
  std::vector<uint8_t> r1 = response(hash_, kh, challenge, s1, tid_, 0, "HostHost", host_nqn_, sub_nqn_);
  wipe(kh);
  wipe(challenge);
  wipe(c1);
  const size_t dhv = dh ? dh->public_value().size() : 0;
  std::vector<uint8_t> m(16 + 2 * hl + dhv, 0);
  m[0] = kTypeDhchap;
  m[1] = kIdReply;
  put16(&m[4], tid_);
  m[6] = static_cast<uint8_t>(hl);
  put16(&m[10], static_cast<uint16_t>(dhv));
  std::memcpy(&m[16], r1.data(), std::min(r1.size(), hl));
  wipe(r1);
  if (keys_.ctrl) {
    c2_.resize(hl);
    random_bytes(c2_.data(), hl);
    s2_ = random_seq();
    m[8] = 1;  // CVALID
    put32(&m[12], s2_);
    std::memcpy(&m[16 + hl], c2_.data(), hl);
  }
  if (dh) std::memcpy(&m[16 + 2 * hl], dh->public_value().data(), dhv);
  return m;
}

Status HostTransaction::success1(const uint8_t* d, size_t n) {
  if (n < 16 || d[0] != kTypeDhchap || d[1] != kIdSuccess1) return failure_from(d, n, "after Reply");
  if (get16(d + 4) != tid_) return Status(ErrorCode::kPermissionDenied, "Success1 for another transaction");
  if (!keys_.ctrl) return Status();
  const size_t hl = hash_bytes(hash_);
  if (d[6] != hl || !(d[8] & 1) || n < 16 + hl) return Status(ErrorCode::kPermissionDenied, "the target did not prove its identity (no controller response)");
  std::vector<uint8_t> challenge = session_key_.empty() ? c2_ : augmented_challenge(hash_, session_key_, c2_);
  std::vector<uint8_t> kc = transform_key(*keys_.ctrl, sub_nqn_);
  std::vector<uint8_t> expected = response(hash_, kc, challenge, s2_, tid_, 0, "Controller", sub_nqn_, host_nqn_);
  wipe(kc);
  wipe(challenge);
  const bool match = equal_constant_time(d + 16, expected);
  wipe(expected);
  if (!match) return Status(ErrorCode::kPermissionDenied, "the target's response does not match the controller secret");
  return Status();
}

std::vector<uint8_t> HostTransaction::success2() const {
  std::vector<uint8_t> m(16, 0);
  m[0] = kTypeDhchap;
  m[1] = kIdSuccess2;
  put16(&m[4], tid_);
  return m;
}

std::vector<uint8_t> HostTransaction::failure2(uint8_t explanation) const {
  std::vector<uint8_t> m(8, 0);
  m[0] = kTypeCommon;
  m[1] = kIdFailure2;
  put16(&m[4], tid_);
  m[6] = 0x01;
  m[7] = explanation;
  return m;
}

}  // namespace strata::nvmf::auth
