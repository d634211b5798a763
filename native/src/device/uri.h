// The parts of a device URI every scheme's parser shares: the query's key=value pairs, the
// whole numbers in them, and the percent-encoding of a device URI nested in another's query
// (zoned://?base=, ftl://?cache=&base=). One home, so every scheme reads its parameters alike
// (three hand-copied loops had grown before).
#pragma once
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "util/status.h"

namespace strata {

struct QueryParam {
  std::string key;
  std::string value;  // "" for a key without '='
};

// "a=1&b=2" -> {a,1},{b,2}, in order; an empty query gives none.
inline std::vector<QueryParam> query_params(const std::string& query) {
  std::vector<QueryParam> params;
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    std::string pair = query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    size_t eq = pair.find('=');
    params.push_back({pair.substr(0, eq), eq == std::string::npos ? "" : pair.substr(eq + 1)});
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return params;
}

// A decimal whole number from min to max, the whole string; nullopt otherwise.
inline std::optional<uint64_t> parse_whole_number(const std::string& text, uint64_t min, uint64_t max) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return std::nullopt;
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(text.c_str(), &end, 10);
  if (*end != '\0' || errno != 0 || n < min || n > max) return std::nullopt;
  return n;
}

// A nested device URI from its percent-encoded query value; `what` names the parameter.
inline Result<std::string> percent_decode(const std::string& in, const char* what = "base") {
  std::string out;
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) || !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      return Error{ErrorCode::kInvalidArgument, str(what, " '", in, "' has a '%' not followed by two hex digits")};
    }
    out += static_cast<char>(std::strtol(in.substr(i + 1, 2).c_str(), nullptr, 16));
    i += 2;
  }
  return out;
}

inline std::string percent_encode(const std::string& in) {
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == ':') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace strata
