// Minimal logging to stderr; the engine owns real log routing. Off unless STRATA_NATIVE_LOG=1.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>

namespace strata {

inline bool log_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("STRATA_NATIVE_LOG");
    return v != nullptr && v[0] == '1';
  }();
  return enabled;
}

inline void log_line(const std::string& line) {
  if (log_enabled()) std::fprintf(stderr, "[strata-native] %s\n", line.c_str());
}

}  // namespace strata
