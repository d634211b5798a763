// The parts of a device URI every scheme's parser shares: the query's key=value pairs and the
// whole numbers in them. One home, so file://, malloc://, nvmf:// and zoned:// read their
// parameters alike (three hand-copied loops had grown before).
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

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

}  // namespace strata
