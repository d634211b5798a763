// The one bridge from native completion to a JS Promise. A call creates a Deferred and a
// ThreadSafeFunction on the JS thread; the core later calls the completer once, from any
// thread, with a Result<T>; the completer hops back to the JS thread, where `to_js` converts
// the value and the promise resolves (or rejects with an Error carrying `code`).
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <optional>

#include "util/status.h"

namespace strata {

inline Napi::Value make_js_error(Napi::Env env, const Error& error) {
  Napi::Error e = Napi::Error::New(env, error.message);
  e.Set("code", Napi::String::New(env, error_code_name(error.code)));
  return e.Value();
}

template <typename T>
using ToJs = std::function<Napi::Value(Napi::Env, T&)>;

template <typename T>
class PromiseBridge {
 public:
  // Returns the promise and a completer to hand to the core. The completer must be called
  // exactly once; until then the pending call keeps the Node event loop alive.
  static std::pair<Napi::Promise, std::function<void(Result<T>)>> create(Napi::Env env, ToJs<T> to_js) {
    auto* bridge = new PromiseBridge(env, std::move(to_js));
    Napi::Promise promise = bridge->deferred_.Promise();
    auto completer = [bridge](Result<T> result) {
      bridge->result_.emplace(std::move(result));
      // Once queued, the JS thread owns the bridge and may delete it at any moment, so use a
      // copy of the handle; the function itself lives until our Release().
      Napi::ThreadSafeFunction tsfn = bridge->tsfn_;
      napi_status status = tsfn.BlockingCall(bridge, &PromiseBridge::settle);
      tsfn.Release();
      (void)status;
    };
    return {promise, completer};
  }

 private:
  PromiseBridge(Napi::Env env, ToJs<T> to_js)
      : deferred_(Napi::Promise::Deferred::New(env)),
        to_js_(std::move(to_js)),
        tsfn_(Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "strata-native", 0, 1)) {}

  static void settle(Napi::Env env, Napi::Function /*unused*/, PromiseBridge* bridge) {
    std::unique_ptr<PromiseBridge> owned(bridge);
    if (env == nullptr) return;  // the environment is shutting down
    Napi::HandleScope scope(env);
    Result<T>& result = *owned->result_;
    if (!result.ok()) {
      owned->deferred_.Reject(make_js_error(env, result.error()));
      return;
    }
    try {
      owned->deferred_.Resolve(owned->to_js_(env, result.value()));
    } catch (const Napi::Error& e) {
      owned->deferred_.Reject(e.Value());
    }
  }

  Napi::Promise::Deferred deferred_;
  ToJs<T> to_js_;
  Napi::ThreadSafeFunction tsfn_;
  std::optional<Result<T>> result_;
};

// A unit value for calls that resolve with nothing (Promise<void>).
struct Unit {};

}  // namespace strata
