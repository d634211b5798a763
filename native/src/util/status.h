// Errors crossing from the core to the binding: a code the engine maps to gRPC status in one
// place, and a message that says what was wrong and what to do. The core never throws.
#pragma once
#include <cassert>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

namespace strata {

enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermissionDenied,
  kFailedPrecondition,
  kNoSpace,
  kOutOfRange,
  kDataLoss,
  kUnimplemented,
  kIoError,
};

const char* error_code_name(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;
};

// Builds a message from pieces: str("pool ", name, " is full").
template <typename... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

class Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design
  Status(ErrorCode code, std::string message) : error_(Error{code, std::move(message)}) {}
  bool ok() const { return !error_.has_value(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT
  Result(Error error) : error_(std::move(error)) {}  // NOLINT
  Result(ErrorCode code, std::string message) : error_(Error{code, std::move(message)}) {}
  Result(const Status& status) : error_(status.error()) { assert(!status.ok()); }  // NOLINT
  bool ok() const { return value_.has_value(); }
  const Error& error() const { return *error_; }
  Status status() const { return ok() ? Status() : Status(*error_); }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }

 private:
  std::optional<T> value_;
  std::optional<Error> error_;
};

}  // namespace strata
