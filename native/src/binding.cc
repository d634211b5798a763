// The only file that reads JS values: each exported function copies its one options object
// into a plain struct on the JS thread, hands it to the Engine, and converts the result back.
// JavaScript validates (native/index.ts callers); here we check only what keeps us from crashing.
#include <napi.h>

#include <cmath>
#include <cstring>

#include "bridge.h"
#include "device/placement.h"
#include "nvmf/rdma_probe.h"
#include "device/rules.h"
#include "engine.h"
#include "nexus/rules.h"
#include "nvmf/protocol.h"

namespace strata {
namespace {

// Bad argument shapes: rejected as INVALID_ARGUMENT like any other error.
struct ArgumentError {
  std::string message;
};

Napi::Object options_of(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw ArgumentError{"expected one options object"};
  return info[0].As<Napi::Object>();
}

std::string get_string(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw ArgumentError{str("expected a string for ", key)};
  return v.As<Napi::String>().Utf8Value();
}

bool get_bool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) throw ArgumentError{str("expected a boolean for ", key)};
  return v.As<Napi::Boolean>().Value();
}

uint64_t get_u64(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw ArgumentError{str("expected a number for ", key)};
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d > 9007199254740991.0) {
    throw ArgumentError{str("expected a non-negative integer below 2^53 for ", key, ", got ", d)};
  }
  return static_cast<uint64_t>(d);
}

Napi::Number num(Napi::Env env, uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); }
Napi::Value str_or_null(Napi::Env env, const std::string& s) { return s.empty() ? env.Null() : Napi::String::New(env, s); }

Napi::Value to_js(Napi::Env env, const DeviceInfoData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uri", d.uri);
  o.Set("kind", d.kind);
  o.Set("path", str_or_null(env, d.path));
  o.Set("size_bytes", num(env, d.size_bytes));
  o.Set("block_size_bytes", num(env, d.block_size_bytes));
  o.Set("major_minor", str_or_null(env, d.major_minor));
  o.Set("direct_io", d.direct_io);
  o.Set("in_use_by", str_or_null(env, d.in_use_by));
  return o;
}

Napi::Value to_js(Napi::Env env, const PoolInfoData& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uuid", p.uuid);
  o.Set("name", p.name);
  o.Set("device_uri", p.device_uri);
  o.Set("state", p.state);
  o.Set("cluster_size_bytes", num(env, p.cluster_size_bytes));
  o.Set("capacity_bytes", num(env, p.capacity_bytes));
  o.Set("used_bytes", num(env, p.used_bytes));
  o.Set("committed_bytes", num(env, p.committed_bytes));
  o.Set("replica_count", num(env, p.replica_count));
  o.Set("format_version", num(env, p.format_version));
  return o;
}

Napi::Value to_js(Napi::Env env, const ReplicaInfoData& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uuid", r.uuid);
  o.Set("name", r.name);
  o.Set("pool_uuid", r.pool_uuid);
  o.Set("size_bytes", num(env, r.size_bytes));
  o.Set("thin", r.thin);
  o.Set("allocated_bytes", num(env, r.allocated_bytes));
  return o;
}

Napi::Value to_js(Napi::Env env, const IoStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("read_ops", num(env, s.read_ops));
  o.Set("write_ops", num(env, s.write_ops));
  o.Set("read_bytes", num(env, s.read_bytes));
  o.Set("write_bytes", num(env, s.write_bytes));
  o.Set("flush_ops", num(env, s.flush_ops));
  o.Set("unmap_ops", num(env, s.unmap_ops));
  o.Set("errors", num(env, s.errors));
  Napi::Array upper = Napi::Array::New(env, kLatencyBucketCount), counts = Napi::Array::New(env, kLatencyBucketCount);
  for (int i = 0; i < kLatencyBucketCount; i++) {
    upper.Set(i, num(env, IoStats::bucket_upper_us(i)));
    counts.Set(i, num(env, s.latency_bucket_counts[i]));
  }
  o.Set("latency_bucket_upper_us", upper);
  o.Set("latency_bucket_counts", counts);
  o.Set("latency_sum_us", num(env, s.latency_sum_us));
  return o;
}

Napi::Value to_js(Napi::Env env, const PoolCheckReportData& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("pool_uuid", r.pool_uuid);
  o.Set("leaked_clusters", num(env, r.leaked_clusters));
  o.Set("doubly_owned_clusters", num(env, r.doubly_owned_clusters));
  o.Set("owned_but_free_clusters", num(env, r.owned_but_free_clusters));
  Napi::Array problems = Napi::Array::New(env, r.problems.size());
  for (size_t i = 0; i < r.problems.size(); i++) problems.Set(i, r.problems[i]);
  o.Set("problems", problems);
  return o;
}

Napi::Value to_js(Napi::Env env, const BenchResultData& b) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ops", num(env, b.ops));
  o.Set("bytes", num(env, b.bytes));
  o.Set("elapsed_us", num(env, b.elapsed_us));
  o.Set("iops", Napi::Number::New(env, b.iops));
  o.Set("mib_per_s", Napi::Number::New(env, b.mib_per_s));
  o.Set("lat_p50_us", num(env, b.lat_p50_us));
  o.Set("lat_p99_us", num(env, b.lat_p99_us));
  o.Set("lat_p999_us", num(env, b.lat_p999_us));
  return o;
}

Napi::Value to_js(Napi::Env env, const nvmf::ListenResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("listen_port", num(env, r.listen_port));
  o.Set("discovery_port", num(env, r.discovery_port));
  if (!r.rdma.interface.empty()) {
    Napi::Object rdma = Napi::Object::New(env);
    rdma.Set("interface", r.rdma.interface);
    rdma.Set("address", r.rdma.address);
    rdma.Set("port", num(env, r.rdma.port));
    rdma.Set("device", r.rdma.device);
    rdma.Set("available", Napi::Boolean::New(env, r.rdma.available));
    rdma.Set("reason", r.rdma.reason);
    o.Set("rdma", rdma);
  }
  return o;
}

Napi::Value to_js(Napi::Env env, const nvmf::ConnectedHostData& h) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("host_nqn", h.host_nqn);
  o.Set("cntlid", num(env, h.cntlid));
  o.Set("queues", num(env, h.queues));
  return o;
}

Napi::Value to_js(Napi::Env env, const nvmf::ControllerInfo& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uri", c.uri);
  o.Set("state", c.state);
  o.Set("cntlid", num(env, c.cntlid));
  o.Set("queues", num(env, c.queues));
  o.Set("reconnects", num(env, c.reconnects));
  o.Set("last_error", c.last_error.empty() ? env.Null() : Napi::String::New(env, c.last_error));
  return o;
}

Napi::Value to_js(Napi::Env env, const nvmf::SubsystemData& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("nqn", s.nqn);
  o.Set("replica_uuid", s.replica_uuid);
  o.Set("kind", s.kind);
  Napi::Array hosts = Napi::Array::New(env, s.allowed_host_nqns.size());
  for (size_t i = 0; i < s.allowed_host_nqns.size(); i++) hosts.Set(i, s.allowed_host_nqns[i]);
  o.Set("allowed_host_nqns", hosts);
  Napi::Array dhchap = Napi::Array::New(env, s.dhchap_host_nqns.size());
  for (size_t i = 0; i < s.dhchap_host_nqns.size(); i++) dhchap.Set(i, s.dhchap_host_nqns[i]);
  o.Set("dhchap_host_nqns", dhchap);
  Napi::Array connected = Napi::Array::New(env, s.connected_hosts.size());
  for (size_t i = 0; i < s.connected_hosts.size(); i++) connected.Set(i, to_js(env, s.connected_hosts[i]));
  o.Set("connected_hosts", connected);
  return o;
}

Napi::Value to_js(Napi::Env env, const nexus::RebuildInfo& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("child_uri", r.child_uri);
  o.Set("source_uri", r.source_uri);
  o.Set("state", r.state);
  o.Set("partial", r.partial);
  o.Set("resync", r.resync);
  o.Set("bytes_done", num(env, r.bytes_done));
  o.Set("bytes_total", num(env, r.bytes_total));
  o.Set("volume_bytes", num(env, r.volume_bytes));
  o.Set("segments_skipped", num(env, r.segments_skipped));
  o.Set("mib_per_s", Napi::Number::New(env, r.mib_per_s));
  o.Set("start_ms", num(env, r.start_ms));
  o.Set("end_ms", r.end_ms == 0 ? env.Null() : num(env, r.end_ms));
  o.Set("error", str_or_null(env, r.error));
  return o;
}

Napi::Value to_js(Napi::Env env, const nexus::ChildInfo& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uri", c.uri);
  o.Set("state", c.state);
  o.Set("reason", c.reason);
  o.Set("last_error", str_or_null(env, c.last_error));
  o.Set("read_ops", num(env, c.read_ops));
  o.Set("write_ops", num(env, c.write_ops));
  o.Set("errors", num(env, c.errors));
  o.Set("missed_bytes", num(env, c.missed_bytes));
  o.Set("rebuild", c.has_rebuild ? to_js(env, c.rebuild) : env.Null());
  return o;
}

Napi::Value to_js(Napi::Env env, const nexus::NexusInfoData& n) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uuid", n.uuid);
  o.Set("state", n.state);
  o.Set("health", n.health);
  o.Set("size_bytes", num(env, n.size_bytes));
  o.Set("generation", num(env, n.generation));
  o.Set("opened_after_unclean_shutdown", n.opened_after_unclean_shutdown);
  o.Set("nqn", str_or_null(env, n.nqn));
  o.Set("frontend_host_nqn", str_or_null(env, n.frontend_host_nqn));
  Napi::Array children = Napi::Array::New(env, n.children.size());
  for (size_t i = 0; i < n.children.size(); i++) children.Set(i, to_js(env, n.children[i]));
  o.Set("children", children);
  o.Set("stats", to_js(env, n.stats));
  return o;
}

Napi::Value to_js(Napi::Env env, const ZoneReportData& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("zone_size_bytes", num(env, r.zone_size_bytes));
  o.Set("block_size_bytes", num(env, r.block_size_bytes));
  o.Set("max_open", r.max_open == 0 ? env.Null() : num(env, r.max_open));
  o.Set("max_active", r.max_active == 0 ? env.Null() : num(env, r.max_active));
  o.Set("open_count", num(env, r.open_count));
  o.Set("active_count", num(env, r.active_count));
  Napi::Array zones = Napi::Array::New(env, r.zones.size());
  for (size_t i = 0; i < r.zones.size(); i++) {
    Napi::Object z = Napi::Object::New(env);
    z.Set("start_bytes", num(env, r.zones[i].start_bytes));
    z.Set("capacity_bytes", num(env, r.zones[i].capacity_bytes));
    z.Set("write_pointer_bytes", num(env, r.zones[i].write_pointer_bytes));
    z.Set("state", zone_state_name(r.zones[i].state));
    zones.Set(i, z);
  }
  o.Set("zones", zones);
  return o;
}

Napi::Value to_js(Napi::Env env, const ZoneAppendData& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("offset_bytes", num(env, a.offset_bytes));
  o.Set("lba", num(env, a.lba));
  return o;
}

Napi::Value to_js(Napi::Env env, const FtlCreated& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uri", c.uri);
  o.Set("uuid", c.uuid);
  o.Set("size_bytes", num(env, c.size_bytes));
  return o;
}

Napi::Value to_js(Napi::Env env, const FtlStatsData& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uuid", s.uuid);
  o.Set("uri", s.uri);
  o.Set("logical_bytes", num(env, s.logical_bytes));
  o.Set("host_write_bytes", num(env, s.host_write_bytes));
  o.Set("host_read_bytes", num(env, s.host_read_bytes));
  o.Set("cache_write_bytes", num(env, s.cache_write_bytes));
  o.Set("base_write_bytes_host", num(env, s.base_write_bytes_host));
  o.Set("base_write_bytes_gc", num(env, s.base_write_bytes_gc));
  o.Set("base_write_bytes_meta", num(env, s.base_write_bytes_meta));
  o.Set("base_writes", num(env, s.base_writes));
  o.Set("base_sequential_writes", num(env, s.base_sequential_writes));
  o.Set("gc_relocated_blocks", num(env, s.gc_relocated_blocks));
  o.Set("gc_victims", num(env, s.gc_victims));
  o.Set("throttle_events", num(env, s.throttle_events));
  o.Set("padded_band_closes", num(env, s.padded_band_closes));
  o.Set("band_count", num(env, s.band_count));
  o.Set("free_bands", num(env, s.free_bands));
  o.Set("chunk_count", num(env, s.chunk_count));
  o.Set("free_chunks", num(env, s.free_chunks));
  o.Set("recovered_records", num(env, s.recovered_records));
  o.Set("recovered_bands", num(env, s.recovered_bands));
  o.Set("loaded_from_checkpoint", Napi::Boolean::New(env, s.loaded_from_checkpoint));
  o.Set("failed_reason", str_or_null(env, s.failed_reason));
  o.Set("map_bytes", num(env, s.map_bytes));
  o.Set("map_limit_bytes", num(env, s.map_limit_bytes));
  o.Set("map_resident_bytes", num(env, s.map_resident_bytes));
  o.Set("map_page_reads", num(env, s.map_page_reads));
  o.Set("map_page_writes", num(env, s.map_page_writes));
  o.Set("base_fdp_handles", num(env, s.base_fdp_handles));
  o.Set("base_fdp_host_write_bytes", num(env, s.base_fdp_host_write_bytes));
  o.Set("base_fdp_media_write_bytes", num(env, s.base_fdp_media_write_bytes));
  Napi::Array by_handle = Napi::Array::New(env, s.base_fdp_handle_write_bytes.size());
  for (size_t i = 0; i < s.base_fdp_handle_write_bytes.size(); i++) by_handle.Set(i, num(env, s.base_fdp_handle_write_bytes[i]));
  o.Set("base_fdp_handle_write_bytes", by_handle);
  return o;
}

template <typename T>
Napi::Value to_js(Napi::Env env, const std::vector<T>& items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++) a.Set(i, to_js(env, items[i]));
  return a;
}

// Runs `body(completer)` and returns its promise; argument errors reject it.
template <typename T>
Napi::Value async_call(const Napi::CallbackInfo& info, ToJs<T> convert, const std::function<void(const Napi::Object&, std::function<void(Result<T>)>)>& body) {
  Napi::Env env = info.Env();
  auto [promise, complete] = PromiseBridge<T>::create(env, std::move(convert));
  try {
    Napi::Object o = info.Length() >= 1 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
    body(o, complete);
  } catch (const ArgumentError& e) {
    complete(Error{ErrorCode::kInvalidArgument, e.message});
  }
  return promise;
}

template <typename T>
ToJs<T> default_to_js() {
  return [](Napi::Env env, T& v) { return to_js(env, v); };
}

ToJs<Unit> undefined_to_js() {
  return [](Napi::Env env, Unit&) { return env.Undefined(); };
}

std::function<void(Status)> unit_done(std::function<void(Result<Unit>)> done) {
  return [done](Status s) { s.ok() ? done(Unit{}) : done(s.error()); };
}

Napi::Value Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int cores = 1;
  bool fault_injection = false;
  std::optional<std::vector<std::string>> device_dirs;
  try {
    Napi::Object o = options_of(info);
    cores = static_cast<int>(std::min<uint64_t>(get_u64(o, "cores"), 1 << 20));
    if (!o.Get("fault_injection").IsUndefined()) fault_injection = get_bool(o, "fault_injection");
    if (!o.Get("device_dirs").IsUndefined()) {
      Napi::Value v = o.Get("device_dirs");
      if (!v.IsArray()) throw ArgumentError{"expected an array of directory paths for device_dirs"};
      Napi::Array a = v.As<Napi::Array>();
      device_dirs.emplace();
      for (uint32_t i = 0; i < a.Length(); i++) {
        if (!a.Get(i).IsString()) throw ArgumentError{str("expected a string for device_dirs[", i, "]")};
        device_dirs->push_back(a.Get(i).As<Napi::String>().Utf8Value());
      }
    }
  } catch (const ArgumentError& e) {
    Napi::Error err = Napi::Error::New(env, e.message);
    err.Set("code", "INVALID_ARGUMENT");
    throw err;
  }
  if (device_dirs) {
    if (Status s = set_file_device_dirs(device_dirs); !s.ok()) throw Napi::Error(env, make_js_error(env, s.error()));
  }
  Status s = Engine::instance().start(cores, fault_injection);
  if (!s.ok()) throw Napi::Error(env, make_js_error(env, s.error()));
  return env.Undefined();
}

// reactorCounters(): each reactor's counters since start (reactor.h ReactorCounters), for
// benchmarks to report wakeups, syscalls and hops per I/O. Synchronous: relaxed atomic reads.
Napi::Value ReactorCountersJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<ReactorCounters> all = Engine::instance().reactor_counters();
  Napi::Array out = Napi::Array::New(env, all.size());
  for (size_t i = 0; i < all.size(); i++) {
    const ReactorCounters& c = all[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("sleeps", num(env, c.sleeps));
    o.Set("enters", num(env, c.enters));
    o.Set("completions", num(env, c.completions));
    o.Set("posts_remote", num(env, c.posts_remote));
    o.Set("posts_local", num(env, c.posts_local));
    o.Set("wakeup_writes", num(env, c.wakeup_writes));
    o.Set("polls", num(env, c.polls));
    o.Set("poll_hits", num(env, c.poll_hits));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [](const Napi::Object&, auto done) { Engine::instance().shutdown(unit_done(done)); });
}

Napi::Value ProbeDevice(const Napi::CallbackInfo& info) {
  return async_call<DeviceInfoData>(info, default_to_js<DeviceInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().probe_device(get_string(o, "uri"), done);
  });
}

Napi::Value ListDevices(const Napi::CallbackInfo& info) {
  return async_call<std::vector<DeviceInfoData>>(info, default_to_js<std::vector<DeviceInfoData>>(),
                                                 [](const Napi::Object&, auto done) { Engine::instance().list_devices(done); });
}

Napi::Value CreatePool(const Napi::CallbackInfo& info) {
  return async_call<PoolInfoData>(info, default_to_js<PoolInfoData>(), [&](const Napi::Object& o, auto done) {
    CreatePoolOptions opts{get_string(o, "uuid"), get_string(o, "name"), get_string(o, "device_uri"), get_u64(o, "cluster_size_bytes"), get_bool(o, "force")};
    Engine::instance().create_pool(std::move(opts), done);
  });
}

Napi::Value ImportPool(const Napi::CallbackInfo& info) {
  return async_call<PoolInfoData>(info, default_to_js<PoolInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().import_pool(get_string(o, "device_uri"), done);
  });
}

Napi::Value ExportPool(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().export_pool(get_string(o, "uuid"), unit_done(done));
  });
}

Napi::Value DestroyPool(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().destroy_pool(get_string(o, "uuid"), unit_done(done));
  });
}

Napi::Value GrowPool(const Napi::CallbackInfo& info) {
  return async_call<PoolInfoData>(info, default_to_js<PoolInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().grow_pool(get_string(o, "uuid"), done);
  });
}

Napi::Value ListPools(const Napi::CallbackInfo& info) {
  return async_call<std::vector<PoolInfoData>>(info, default_to_js<std::vector<PoolInfoData>>(),
                                               [](const Napi::Object&, auto done) { Engine::instance().list_pools(done); });
}

Napi::Value CheckPool(const Napi::CallbackInfo& info) {
  return async_call<PoolCheckReportData>(info, default_to_js<PoolCheckReportData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().check_pool(get_string(o, "uuid"), done);
  });
}

Napi::Value CreateReplica(const Napi::CallbackInfo& info) {
  return async_call<ReplicaInfoData>(info, default_to_js<ReplicaInfoData>(), [&](const Napi::Object& o, auto done) {
    CreateReplicaOptions opts{get_string(o, "pool_uuid"), get_string(o, "uuid"), get_string(o, "name"), get_u64(o, "size_bytes"), get_bool(o, "thin")};
    Engine::instance().create_replica(std::move(opts), done);
  });
}

Napi::Value ResizeReplica(const Napi::CallbackInfo& info) {
  return async_call<ReplicaInfoData>(info, default_to_js<ReplicaInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().resize_replica(get_string(o, "uuid"), get_u64(o, "size_bytes"), done);
  });
}

Napi::Value SetReplicaThin(const Napi::CallbackInfo& info) {
  return async_call<ReplicaInfoData>(info, default_to_js<ReplicaInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().set_replica_thin(get_string(o, "uuid"), get_bool(o, "thin"), done);
  });
}

Napi::Value DestroyReplica(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().destroy_replica(get_string(o, "uuid"), unit_done(done));
  });
}

Napi::Value ListReplicas(const Napi::CallbackInfo& info) {
  return async_call<std::vector<ReplicaInfoData>>(info, default_to_js<std::vector<ReplicaInfoData>>(),
                                                  [](const Napi::Object&, auto done) { Engine::instance().list_replicas(done); });
}

Napi::Value GetStats(const Napi::CallbackInfo& info) {
  return async_call<IoStats>(info, default_to_js<IoStats>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().get_stats(get_string(o, "uuid"), done);
  });
}

constexpr uint64_t kMaxToolIoBytes = 64 << 20;  // replicaRead/Write are for tests and tools

Napi::Value ReplicaWrite(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    std::string uuid = get_string(o, "uuid");
    uint64_t offset = get_u64(o, "offset_bytes");
    Napi::Value data = o.Get("data");
    if (!data.IsBuffer()) throw ArgumentError{"expected a Buffer for data"};
    auto bytes = data.As<Napi::Buffer<uint8_t>>();
    if (bytes.Length() > kMaxToolIoBytes) throw ArgumentError{str("replicaWrite takes at most ", kMaxToolIoBytes, " bytes per call")};
    auto buffer = std::make_shared<AlignedBuffer>(bytes.Length());  // the copy leaves the JS heap here
    std::memcpy(buffer->data(), bytes.Data(), bytes.Length());
    Engine::instance().replica_io(uuid, IoKind::kWrite, offset, bytes.Length(), buffer, unit_done(done));
  });
}

Napi::Value ReplicaRead(const Napi::CallbackInfo& info) {
  auto buffer = std::make_shared<std::shared_ptr<AlignedBuffer>>();
  ToJs<Unit> convert = [buffer](Napi::Env env, Unit&) -> Napi::Value {
    return Napi::Buffer<uint8_t>::Copy(env, (*buffer)->data(), (*buffer)->size());
  };
  return async_call<Unit>(info, convert, [&](const Napi::Object& o, auto done) {
    std::string uuid = get_string(o, "uuid");
    uint64_t offset = get_u64(o, "offset_bytes");
    uint64_t length = get_u64(o, "length_bytes");
    if (length > kMaxToolIoBytes) throw ArgumentError{str("replicaRead takes at most ", kMaxToolIoBytes, " bytes per call")};
    *buffer = std::make_shared<AlignedBuffer>(length);
    Engine::instance().replica_io(uuid, IoKind::kRead, offset, length, *buffer, unit_done(done));
  });
}

Napi::Value ReplicaFlush(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().replica_io(get_string(o, "uuid"), IoKind::kFlush, 0, 0, nullptr, unit_done(done));
  });
}

Napi::Value RangeOp(const Napi::CallbackInfo& info, IoKind kind) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().replica_io(get_string(o, "uuid"), kind, get_u64(o, "offset_bytes"), get_u64(o, "length_bytes"), nullptr, unit_done(done));
  });
}

Napi::Value ReplicaDeallocate(const Napi::CallbackInfo& info) { return RangeOp(info, IoKind::kDeallocate); }
Napi::Value ReplicaWriteZeroes(const Napi::CallbackInfo& info) { return RangeOp(info, IoKind::kWriteZeroes); }

Napi::Value BenchReplica(const Napi::CallbackInfo& info) {
  return async_call<BenchResultData>(info, default_to_js<BenchResultData>(), [&](const Napi::Object& o, auto done) {
    std::string pattern = get_string(o, "pattern");
    BenchPattern p;
    if (pattern == "randread") p = BenchPattern::kRandRead;
    else if (pattern == "randwrite") p = BenchPattern::kRandWrite;
    else if (pattern == "read") p = BenchPattern::kRead;
    else if (pattern == "write") p = BenchPattern::kWrite;
    else throw ArgumentError{str("pattern '", pattern, "' must be randread, randwrite, read or write")};
    BenchOptions opts{get_string(o, "uuid"), p, get_u64(o, "block_size_bytes"),
                      static_cast<uint32_t>(std::min<uint64_t>(get_u64(o, "queue_depth"), 1 << 20)), get_u64(o, "duration_ms"), get_u64(o, "span_bytes")};
    for (auto [key, field] : {std::pair{"hot_write_fraction", &opts.hot_write_fraction}, std::pair{"hot_space_fraction", &opts.hot_space_fraction}}) {
      Napi::Value v = o.Get(key);
      if (v.IsUndefined() || v.IsNull()) continue;
      if (!v.IsNumber()) throw ArgumentError{str(key, " must be a number")};
      *field = v.As<Napi::Number>().DoubleValue();
    }
    if (!o.Get("max_ops").IsUndefined()) opts.max_ops = get_u64(o, "max_ops");
    Engine::instance().bench_replica(std::move(opts), done);
  });
}

uint16_t get_port(const Napi::Object& o, const char* key) {
  uint64_t port = get_u64(o, key);
  if (port > 65535) throw ArgumentError{str(key, " must be 0 to 65535, got ", port)};
  return static_cast<uint16_t>(port);
}

std::vector<std::string> get_strings(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw ArgumentError{str("expected an array of strings for ", key)};
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value item = a.Get(i);
    if (!item.IsString()) throw ArgumentError{str("expected a string for ", key, "[", i, "]")};
    out.push_back(item.As<Napi::String>().Utf8Value());
  }
  return out;
}

std::string get_optional_string(const Napi::Object& o, const char* key);

Napi::Value StartNvmf(const Napi::CallbackInfo& info) {
  return async_call<nvmf::ListenResult>(info, default_to_js<nvmf::ListenResult>(), [&](const Napi::Object& o, auto done) {
    nvmf::ListenOptions opts{get_string(o, "listen_host"), get_port(o, "listen_port"), get_string(o, "discovery_host"), get_port(o, "discovery_port"),
                             get_optional_string(o, "rdma_interface")};
    Engine::instance().start_nvmf(std::move(opts), done);
  });
}

// Optional string: absent, undefined or null read as "".
std::string get_optional_string(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  return get_string(o, key);
}

// [{host_nqn, dhchap_secret, dhchap_ctrl_secret?}], absent = none.
std::vector<Engine::HostSecret> get_host_secrets(const Napi::Object& o, const char* key) {
  std::vector<Engine::HostSecret> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw ArgumentError{str("expected an array for ", key)};
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw ArgumentError{str("expected objects in ", key)};
    Napi::Object h = e.As<Napi::Object>();
    out.push_back(Engine::HostSecret{get_string(h, "host_nqn"), get_string(h, "dhchap_secret"), get_optional_string(h, "dhchap_ctrl_secret")});
  }
  return out;
}

Napi::Value ShareReplica(const Napi::CallbackInfo& info) {
  ToJs<std::string> convert = [](Napi::Env env, std::string& nqn) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("nqn", nqn);
    return o;
  };
  return async_call<std::string>(info, convert, [&](const Napi::Object& o, auto done) {
    Engine::instance().share_replica(get_string(o, "uuid"), get_strings(o, "allowed_host_nqns"), get_host_secrets(o, "host_secrets"), done);
  });
}

Napi::Value SetHostSecret(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    unit_done(done)(nvmf::set_host_secret(get_string(o, "host_nqn"), get_optional_string(o, "dhchap_secret"),
                                          get_optional_string(o, "dhchap_ctrl_secret")));
  });
}

Napi::Value UnshareReplica(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().unshare_replica(get_string(o, "uuid"), unit_done(done));
  });
}

Napi::Value ListSubsystems(const Napi::CallbackInfo& info) {
  return async_call<std::vector<nvmf::SubsystemData>>(info, default_to_js<std::vector<nvmf::SubsystemData>>(),
                                                      [](const Napi::Object&, auto done) { Engine::instance().list_subsystems(done); });
}

Napi::Value ListControllers(const Napi::CallbackInfo& info) {
  return async_call<std::vector<nvmf::ControllerInfo>>(info, default_to_js<std::vector<nvmf::ControllerInfo>>(),
                                                       [](const Napi::Object&, auto done) { Engine::instance().list_controllers(done); });
}

BenchPattern get_pattern(const Napi::Object& o) {
  std::string pattern = get_string(o, "pattern");
  if (pattern == "randread") return BenchPattern::kRandRead;
  if (pattern == "randwrite") return BenchPattern::kRandWrite;
  if (pattern == "read") return BenchPattern::kRead;
  if (pattern == "write") return BenchPattern::kWrite;
  throw ArgumentError{str("pattern '", pattern, "' must be randread, randwrite, read or write")};
}

Napi::Value BenchDevice(const Napi::CallbackInfo& info) {
  return async_call<BenchResultData>(info, default_to_js<BenchResultData>(), [&](const Napi::Object& o, auto done) {
    BenchOptions opts{get_string(o, "uri"), get_pattern(o), get_u64(o, "block_size_bytes"),
                      static_cast<uint32_t>(std::min<uint64_t>(get_u64(o, "queue_depth"), 1 << 20)), get_u64(o, "duration_ms"), get_u64(o, "span_bytes")};
    if (o.Has("jobs") && !o.Get("jobs").IsUndefined()) opts.jobs = static_cast<uint32_t>(std::min<uint64_t>(get_u64(o, "jobs"), 1 << 20));
    Engine::instance().bench_device(std::move(opts), done);
  });
}

// deviceIo({uri, kind, offset_bytes, length_bytes, data}): tests and tools only.
Napi::Value DeviceIo(const Napi::CallbackInfo& info) {
  auto buffer = std::make_shared<std::shared_ptr<AlignedBuffer>>();
  auto is_read = std::make_shared<bool>(false);
  ToJs<Unit> convert = [buffer, is_read](Napi::Env env, Unit&) -> Napi::Value {
    if (!*is_read) return env.Undefined();
    return Napi::Buffer<uint8_t>::Copy(env, (*buffer)->data(), (*buffer)->size());
  };
  return async_call<Unit>(info, convert, [&](const Napi::Object& o, auto done) {
    std::string kind = get_string(o, "kind");
    uint64_t offset = get_u64(o, "offset_bytes");
    uint64_t length = get_u64(o, "length_bytes");
    IoKind k;
    if (kind == "read") k = IoKind::kRead;
    else if (kind == "write") k = IoKind::kWrite;
    else if (kind == "flush") k = IoKind::kFlush;
    else if (kind == "deallocate") k = IoKind::kDeallocate;
    else if (kind == "write_zeroes") k = IoKind::kWriteZeroes;
    else throw ArgumentError{str("kind '", kind, "' must be read, write, flush, deallocate or write_zeroes")};
    if ((k == IoKind::kRead || k == IoKind::kWrite) && (length == 0 || length > kMaxToolIoBytes)) {
      throw ArgumentError{str("deviceIo moves 1 to ", kMaxToolIoBytes, " bytes per call")};
    }
    *is_read = k == IoKind::kRead;
    if (k == IoKind::kRead || k == IoKind::kWrite) *buffer = std::make_shared<AlignedBuffer>(length);
    if (k == IoKind::kWrite) {
      Napi::Value v = o.Get("data");
      if (!v.IsBuffer() || v.As<Napi::Buffer<uint8_t>>().Length() != length) throw ArgumentError{"deviceIo write needs data: a Buffer of length_bytes"};
      std::memcpy((*buffer)->data(), v.As<Napi::Buffer<uint8_t>>().Data(), length);
    }
    Engine::instance().device_io(get_string(o, "uri"), k, offset, length, *buffer, unit_done(done));
  });
}

// createFtl({cache_uri, base_uri, op_percent?, band_mib?, chunk_kib?, force?}),
// destroyFtl({uri}), listFtl(): CSAL tiered devices (ftl/ftl_device.h).
Napi::Value CreateFtl(const Napi::CallbackInfo& info) {
  return async_call<FtlCreated>(info, default_to_js<FtlCreated>(), [&](const Napi::Object& o, auto done) {
    FtlCreateOptions c;
    c.cache_uri = get_string(o, "cache_uri");
    c.base_uri = get_string(o, "base_uri");
    auto small = [&](const char* key, uint32_t fallback) { return o.Has(key) && !o.Get(key).IsUndefined() ? uint32_t(std::min<uint64_t>(get_u64(o, key), UINT32_MAX)) : fallback; };
    c.op_percent = small("op_percent", c.op_percent);
    c.band_mib = small("band_mib", c.band_mib);
    c.chunk_kib = small("chunk_kib", c.chunk_kib);
    c.force = o.Has("force") && !o.Get("force").IsUndefined() && get_bool(o, "force");
    if (o.Has("uuid") && !o.Get("uuid").IsUndefined()) c.uuid = get_string(o, "uuid");
    Engine::instance().create_ftl(c, done);
  });
}

Napi::Value DestroyFtl(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().destroy_ftl(get_string(o, "uri"), unit_done(done));
  });
}

Napi::Value ListFtl(const Napi::CallbackInfo& info) {
  return async_call<std::vector<FtlStatsData>>(info, default_to_js<std::vector<FtlStatsData>>(), [&](const Napi::Object&, auto done) {
    Engine::instance().list_ftl(done);
  });
}

// zoneReport({uri}), zoneManage({uri, action, zone_start_bytes}), zoneAppend({uri,
// zone_start_bytes, data}): zoned devices, tests and tools only.
Napi::Value ZoneReport(const Napi::CallbackInfo& info) {
  return async_call<ZoneReportData>(info, default_to_js<ZoneReportData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().zone_report(get_string(o, "uri"), done);
  });
}

Napi::Value ZoneManage(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    std::string action = get_string(o, "action");
    ZoneAction a;
    if (action == "open") a = ZoneAction::kOpen;
    else if (action == "close") a = ZoneAction::kClose;
    else if (action == "finish") a = ZoneAction::kFinish;
    else if (action == "reset") a = ZoneAction::kReset;
    else throw ArgumentError{str("zone action '", action, "' must be open, close, finish or reset")};
    Engine::instance().zone_manage(get_string(o, "uri"), a, get_u64(o, "zone_start_bytes"), unit_done(done));
  });
}

Napi::Value ZoneAppend(const Napi::CallbackInfo& info) {
  return async_call<ZoneAppendData>(info, default_to_js<ZoneAppendData>(), [&](const Napi::Object& o, auto done) {
    Napi::Value v = o.Get("data");
    if (!v.IsBuffer()) throw ArgumentError{"zoneAppend needs data: a Buffer"};
    auto bytes = v.As<Napi::Buffer<uint8_t>>();
    if (bytes.Length() == 0 || bytes.Length() > kMaxToolIoBytes) throw ArgumentError{str("zoneAppend moves 1 to ", kMaxToolIoBytes, " bytes per call")};
    auto buffer = std::make_shared<AlignedBuffer>(bytes.Length());
    std::memcpy(buffer->data(), bytes.Data(), bytes.Length());
    Engine::instance().zone_append(get_string(o, "uri"), get_u64(o, "zone_start_bytes"), buffer, done);
  });
}

Napi::Value CopyDevice(const Napi::CallbackInfo& info) {
  return async_call<BenchResultData>(info, default_to_js<BenchResultData>(), [&](const Napi::Object& o, auto done) {
    Engine::CopyOptions opts;
    opts.src_uri = get_string(o, "src_uri");
    opts.dst_uri = get_string(o, "dst_uri");
    opts.offset_bytes = get_u64(o, "offset_bytes");
    opts.length_bytes = get_u64(o, "length_bytes");
    opts.segment_bytes = get_u64(o, "segment_bytes");
    opts.queue_depth = static_cast<uint32_t>(std::min<uint64_t>(get_u64(o, "queue_depth"), 1 << 20));
    Engine::instance().copy_device(std::move(opts), done);
  });
}

// ---- nexus ----

Napi::Value CreateNexus(const Napi::CallbackInfo& info) {
  return async_call<nexus::NexusInfoData>(info, default_to_js<nexus::NexusInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::CreateNexusOptions opts;
    opts.uuid = get_string(o, "uuid");
    opts.size_bytes = get_u64(o, "size_bytes");
    opts.children = get_strings(o, "children");
    if (!o.Get("child_io_timeout_ms").IsUndefined()) opts.child_io_timeout_ms = static_cast<uint32_t>(std::min<uint64_t>(get_u64(o, "child_io_timeout_ms"), UINT32_MAX));
    if (!o.Get("restore").IsUndefined()) opts.restore = get_bool(o, "restore");
    Engine::instance().create_nexus(std::move(opts), done);
  });
}

Napi::Value ResizeNexus(const Napi::CallbackInfo& info) {
  return async_call<nexus::NexusInfoData>(info, default_to_js<nexus::NexusInfoData>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().resize_nexus(get_string(o, "uuid"), get_u64(o, "size_bytes"), done);
  });
}

Napi::Value DestroyNexus(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) { Engine::instance().destroy_nexus(get_string(o, "uuid"), unit_done(done)); });
}

Napi::Value ShutdownNexus(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) { Engine::instance().shutdown_nexus(get_string(o, "uuid"), unit_done(done)); });
}

Napi::Value PublishNexus(const Napi::CallbackInfo& info) {
  ToJs<std::string> convert = [](Napi::Env env, std::string& nqn) -> Napi::Value {
    Napi::Object o = Napi::Object::New(env);
    o.Set("nqn", nqn);
    return o;
  };
  return async_call<std::string>(info, convert, [&](const Napi::Object& o, auto done) {
    std::optional<Engine::HostSecret> secret;
    std::string text = get_optional_string(o, "frontend_dhchap_secret");
    if (!text.empty()) secret = Engine::HostSecret{"", text, get_optional_string(o, "frontend_dhchap_ctrl_secret")};
    Engine::instance().publish_nexus(get_string(o, "uuid"), get_string(o, "frontend_host_nqn"), std::move(secret), done);
  });
}

Napi::Value UnpublishNexus(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().unpublish_nexus(get_string(o, "uuid"), get_string(o, "frontend_host_nqn"), unit_done(done));
  });
}

Napi::Value ListNexus(const Napi::CallbackInfo& info) {
  return async_call<std::vector<nexus::NexusInfoData>>(info, default_to_js<std::vector<nexus::NexusInfoData>>(),
                                                       [](const Napi::Object&, auto done) { Engine::instance().list_nexus(done); });
}

Napi::Value NexusChild(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().child_op(get_string(o, "uuid"), get_string(o, "child_uri"), get_string(o, "action"), unit_done(done));
  });
}

Napi::Value NexusRebuild(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    Engine::instance().rebuild_op(get_string(o, "uuid"), get_string(o, "child_uri"), get_string(o, "action"), unit_done(done));
  });
}

Napi::Value RebuildStats(const Napi::CallbackInfo& info) {
  return async_call<nexus::RebuildInfo>(info, default_to_js<nexus::RebuildInfo>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().rebuild_stats(get_string(o, "uuid"), get_string(o, "child_uri"), done);
  });
}

Napi::Value RebuildHistory(const Napi::CallbackInfo& info) {
  return async_call<std::vector<nexus::RebuildInfo>>(info, default_to_js<std::vector<nexus::RebuildInfo>>(), [&](const Napi::Object& o, auto done) {
    Engine::instance().rebuild_history(get_string(o, "uuid"), done);
  });
}

// injectFault({uuid, child_uri, clear?, op, error, delay_ms, offset_bytes, length_bytes, count})
Napi::Value InjectFault(const Napi::CallbackInfo& info) {
  return async_call<Unit>(info, undefined_to_js(), [&](const Napi::Object& o, auto done) {
    if (!o.Get("drop_connection").IsUndefined() && get_bool(o, "drop_connection")) {
      return Engine::instance().drop_child_connection(get_string(o, "uuid"), get_string(o, "child_uri"), unit_done(done));
    }
    std::optional<FaultRule> rule;
    if (o.Get("clear").IsUndefined() || !get_bool(o, "clear")) {
      FaultRule r;
      std::string op = get_string(o, "op");
      if (op == "read") r.op = FaultOp::kRead;
      else if (op == "write") r.op = FaultOp::kWrite;
      else if (op == "any") r.op = FaultOp::kAny;
      else throw ArgumentError{str("fault op '", op, "' must be read, write or any")};
      std::string error = get_string(o, "error");
      if (error == "none") r.error = 0;
      else if (error == "eio") r.error = EIO;
      else if (error == "enospc") r.error = ENOSPC;
      else throw ArgumentError{str("fault error '", error, "' must be none, eio or enospc")};
      r.delay_ms = static_cast<uint32_t>(std::min<uint64_t>(get_u64(o, "delay_ms"), 3600000));
      r.offset_bytes = get_u64(o, "offset_bytes");
      r.length_bytes = get_u64(o, "length_bytes");
      r.remaining = get_u64(o, "count");
      rule = r;
    }
    Engine::instance().inject_fault(get_string(o, "uuid"), get_string(o, "child_uri"), rule, unit_done(done));
  });
}

// ---- rules ----

// The nexus and NQN rules as C++ enforces them, so the TypeScript copies (common/nexus-rules.ts)
// can be tested against them. Synchronous: plain constants.
Napi::Value NexusRules(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("label_region_bytes", num(env, nexus::kChildLabelRegionBytes));
  o.Set("max_children", num(env, nexus::kMaxChildren));
  o.Set("size_alignment_bytes", num(env, nexus::kSizeAlignmentBytes));
  o.Set("child_io_timeout_ms_min", num(env, nexus::kChildIoTimeoutMsMin));
  o.Set("child_io_timeout_ms_max", num(env, nexus::kChildIoTimeoutMsMax));
  o.Set("child_io_timeout_ms_default", num(env, nexus::kChildIoTimeoutMsDefault));
  o.Set("local_child_uri_prefix", Napi::String::New(env, nexus::kLocalChildUriPrefix));
  o.Set("remote_child_uri_prefix", Napi::String::New(env, nexus::kRemoteChildUriPrefix));
  o.Set("remote_rdma_child_uri_prefix", Napi::String::New(env, nexus::kRemoteRdmaChildUriPrefix));
  o.Set("replica_nqn_prefix", Napi::String::New(env, nvmf::kSubsystemNqnPrefix));
  o.Set("nexus_nqn_prefix", Napi::String::New(env, nvmf::kNexusNqnPrefix));
  o.Set("node_nqn_prefix", Napi::String::New(env, nvmf::kNodeNqnPrefix));
  return o;
}

// The CSAL device limits C++ enforces (ftl/format.h); their TypeScript copy is common/csal-rules.ts.
// setFtlMapLimit({uuid, bytes}): the FTL's map memory limit, now if it is open and whenever it
// opens (0: all resident). Synchronous: it only posts to the FTL's reactor.
Napi::Value SetFtlMapLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "setFtlMapLimit takes {uuid, bytes}").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  try {
    const Napi::Object o = info[0].As<Napi::Object>();
    set_ftl_map_limit(get_string(o, "uuid"), get_u64(o, "bytes"));
  } catch (const ArgumentError& e) {
    Napi::TypeError::New(env, e.message).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// probeRdma({interface}): whether NVMe over RDMA could be served on that interface, and why
// not. Synchronous: a few syscalls, for engine start.
Napi::Value ProbeRdma(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "probeRdma takes {interface}").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string interface;
  try {
    interface = get_string(info[0].As<Napi::Object>(), "interface");
  } catch (const ArgumentError& e) {
    Napi::TypeError::New(env, e.message).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const nvmf::RdmaProbe p = nvmf::probe_rdma(interface);
  Napi::Object o = Napi::Object::New(env);
  o.Set("interface", p.interface);
  o.Set("address", p.address);
  o.Set("device", p.device);
  o.Set("usable", Napi::Boolean::New(env, p.usable));
  o.Set("reason", p.reason);
  return o;
}

Napi::Value FtlRules(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("op_percent_min", num(env, ftl_format::kOpPercentMin));
  o.Set("op_percent_max", num(env, ftl_format::kOpPercentMax));
  o.Set("op_percent_default", num(env, ftl_format::kOpPercentDefault));
  o.Set("band_mib_max", num(env, ftl_format::kBandMibMax));
  o.Set("band_mib_default", num(env, ftl_format::kBandMibDefault));
  o.Set("chunk_kib_min", num(env, ftl_format::kChunkKibMin));
  o.Set("chunk_kib_max", num(env, ftl_format::kChunkKibMax));
  o.Set("chunk_kib_default", num(env, ftl_format::kChunkKibDefault));
  o.Set("map_entries_per_page", num(env, ftl_format::kL2pEntriesPerPage));
  o.Set("map_min_resident_bytes", num(env, kMinMapPages * ftl_format::kBlockBytes));
  o.Set("fdp_handles_max", num(env, fdp_rules::kHandlesMax));
  o.Set("fdp_ru_mib_default", num(env, fdp_rules::kRuMibDefault));
  o.Set("fdp_ru_mib_max", num(env, fdp_rules::kRuMibMax));
  o.Set("fdp_op_percent_default", num(env, fdp_rules::kOpPercentDefault));
  o.Set("fdp_op_percent_max", num(env, fdp_rules::kOpPercentMax));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("nexusRules", Napi::Function::New(env, NexusRules, "nexusRules"));
  exports.Set("ftlRules", Napi::Function::New(env, FtlRules, "ftlRules"));
  exports.Set("start", Napi::Function::New(env, Start, "start"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("reactorCounters", Napi::Function::New(env, ReactorCountersJs, "reactorCounters"));
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDevice, "probeDevice"));
  exports.Set("listDevices", Napi::Function::New(env, ListDevices, "listDevices"));
  exports.Set("createPool", Napi::Function::New(env, CreatePool, "createPool"));
  exports.Set("importPool", Napi::Function::New(env, ImportPool, "importPool"));
  exports.Set("exportPool", Napi::Function::New(env, ExportPool, "exportPool"));
  exports.Set("destroyPool", Napi::Function::New(env, DestroyPool, "destroyPool"));
  exports.Set("growPool", Napi::Function::New(env, GrowPool, "growPool"));
  exports.Set("listPools", Napi::Function::New(env, ListPools, "listPools"));
  exports.Set("checkPool", Napi::Function::New(env, CheckPool, "checkPool"));
  exports.Set("createReplica", Napi::Function::New(env, CreateReplica, "createReplica"));
  exports.Set("resizeReplica", Napi::Function::New(env, ResizeReplica, "resizeReplica"));
  exports.Set("setReplicaThin", Napi::Function::New(env, SetReplicaThin, "setReplicaThin"));
  exports.Set("destroyReplica", Napi::Function::New(env, DestroyReplica, "destroyReplica"));
  exports.Set("listReplicas", Napi::Function::New(env, ListReplicas, "listReplicas"));
  exports.Set("getStats", Napi::Function::New(env, GetStats, "getStats"));
  exports.Set("replicaWrite", Napi::Function::New(env, ReplicaWrite, "replicaWrite"));
  exports.Set("replicaRead", Napi::Function::New(env, ReplicaRead, "replicaRead"));
  exports.Set("replicaFlush", Napi::Function::New(env, ReplicaFlush, "replicaFlush"));
  exports.Set("replicaDeallocate", Napi::Function::New(env, ReplicaDeallocate, "replicaDeallocate"));
  exports.Set("replicaWriteZeroes", Napi::Function::New(env, ReplicaWriteZeroes, "replicaWriteZeroes"));
  exports.Set("benchReplica", Napi::Function::New(env, BenchReplica, "benchReplica"));
  exports.Set("startNvmf", Napi::Function::New(env, StartNvmf, "startNvmf"));
  exports.Set("shareReplica", Napi::Function::New(env, ShareReplica, "shareReplica"));
  exports.Set("unshareReplica", Napi::Function::New(env, UnshareReplica, "unshareReplica"));
  exports.Set("setHostSecret", Napi::Function::New(env, SetHostSecret, "setHostSecret"));
  exports.Set("listSubsystems", Napi::Function::New(env, ListSubsystems, "listSubsystems"));
  exports.Set("listControllers", Napi::Function::New(env, ListControllers, "listControllers"));
  exports.Set("benchDevice", Napi::Function::New(env, BenchDevice, "benchDevice"));
  exports.Set("deviceIo", Napi::Function::New(env, DeviceIo, "deviceIo"));
  exports.Set("copyDevice", Napi::Function::New(env, CopyDevice, "copyDevice"));
  exports.Set("zoneReport", Napi::Function::New(env, ZoneReport, "zoneReport"));
  exports.Set("createFtl", Napi::Function::New(env, CreateFtl, "createFtl"));
  exports.Set("destroyFtl", Napi::Function::New(env, DestroyFtl, "destroyFtl"));
  exports.Set("listFtl", Napi::Function::New(env, ListFtl, "listFtl"));
  exports.Set("setFtlMapLimit", Napi::Function::New(env, SetFtlMapLimit, "setFtlMapLimit"));
  exports.Set("probeRdma", Napi::Function::New(env, ProbeRdma, "probeRdma"));
  exports.Set("zoneManage", Napi::Function::New(env, ZoneManage, "zoneManage"));
  exports.Set("zoneAppend", Napi::Function::New(env, ZoneAppend, "zoneAppend"));
  exports.Set("createNexus", Napi::Function::New(env, CreateNexus, "createNexus"));
  exports.Set("resizeNexus", Napi::Function::New(env, ResizeNexus, "resizeNexus"));
  exports.Set("destroyNexus", Napi::Function::New(env, DestroyNexus, "destroyNexus"));
  exports.Set("shutdownNexus", Napi::Function::New(env, ShutdownNexus, "shutdownNexus"));
  exports.Set("publishNexus", Napi::Function::New(env, PublishNexus, "publishNexus"));
  exports.Set("unpublishNexus", Napi::Function::New(env, UnpublishNexus, "unpublishNexus"));
  exports.Set("listNexus", Napi::Function::New(env, ListNexus, "listNexus"));
  exports.Set("nexusChild", Napi::Function::New(env, NexusChild, "nexusChild"));
  exports.Set("nexusRebuild", Napi::Function::New(env, NexusRebuild, "nexusRebuild"));
  exports.Set("rebuildStats", Napi::Function::New(env, RebuildStats, "rebuildStats"));
  exports.Set("rebuildHistory", Napi::Function::New(env, RebuildHistory, "rebuildHistory"));
  exports.Set("injectFault", Napi::Function::New(env, InjectFault, "injectFault"));
  return exports;
}

}  // namespace
}  // namespace strata

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return strata::Init(env, exports); }
NODE_API_MODULE(strata_native, InitModule)
