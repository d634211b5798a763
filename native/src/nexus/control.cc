// The engine's nexus calls (create, destroy, publish, child and rebuild operations, fault
// injection): the orchestration around nexus/nexus.cc. Children are opened and closed on the
// engine's control thread (TCP connects and label reads block); everything that touches a nexus
// runs on its reactor. The registry itself (nexuses_, replica_nexus_) stays in engine.cc.
#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "device/fault_device.h"
#include "engine.h"
#include "nexus/nexus_device.h"
#include "nexus/rules.h"
#include "util/log.h"
#include "util/uuid.h"

namespace strata {

// ---- nexus ------------------------------------------------------------------------------------

namespace {
constexpr int kChildOpenAttempts = 3;
constexpr uint32_t kChildOpenBackoffMs = 200;

Status check_child_uri(const std::string& uri) {
  if (uri.rfind(nexus::kLocalChildUriPrefix, 0) == 0 || nexus::is_remote_child_uri(uri)) return Status();
  return Status(ErrorCode::kInvalidArgument, str("child '", uri, "' must be replica:///<uuid> (a replica on this node) or nvmf[+rdma]://HOST:PORT/NQN (a shared replica on another node)"));
}
}  // namespace

std::shared_ptr<nexus::Nexus> Engine::find_nexus(const std::string& uuid) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = nexuses_.find(canon(uuid));
  return it == nexuses_.end() ? nullptr : it->second;
}

Result<std::unique_ptr<Device>> Engine::open_any_device(const std::string& uri) {
  if (uri.rfind("nexus:///", 0) == 0) {
    auto n = find_nexus(uri.substr(9));
    if (!n) return Error{ErrorCode::kNotFound, str("no nexus ", uri.substr(9))};
    return std::unique_ptr<Device>(new NexusDevice(n));
  }
  if (uri.rfind("replica:///", 0) == 0) {
    const std::string id = canon(uri.substr(11));
    auto pool = find_replica_pool(id);
    if (!pool) return Error{ErrorCode::kNotFound, str("no replica ", id, " on this node")};
    std::promise<std::optional<ReplicaInfoData>> found;
    pool->reactor().post([pool, id, &found] {
      std::optional<ReplicaInfoData> info;
      for (auto& r : pool->list_replicas()) {
        if (r.uuid == id) info = r;
      }
      found.set_value(info);
    });
    auto info = found.get_future().get();
    if (!info) return Error{ErrorCode::kNotFound, str("no replica ", id, " on this node")};
    return std::unique_ptr<Device>(ReplicaDevice::open(pool, *info));
  }
  return open_device(uri, /*may_create=*/false);
}

nexus::OpenedChild Engine::open_child(const std::string& uri, uint64_t nexus_size_bytes, uint32_t io_timeout_ms, Status* fatal) {
  nexus::OpenedChild c;
  c.uri = uri;
  c.identity = nexus::child_identity(uri);
  std::string open_uri = uri;
  if (nexus::is_remote_child_uri(uri)) {
    // A child must fail fast enough for the nexus to carry on without it.
    if (uri.find("io_timeout_ms=") == std::string::npos) open_uri += str(open_uri.find('?') == std::string::npos ? "?" : "&", "io_timeout_ms=", io_timeout_ms);
    // And it never reconnects by itself: a new association may reach another replica (recreated,
    // restarted with unflushed writes lost), so it comes back only through OnlineChild, which
    // reads its label first.
    if (uri.find("reconnect=") == std::string::npos) open_uri += "&reconnect=0";
  }
  Result<std::unique_ptr<Device>> dev = Error{ErrorCode::kIoError, "not tried"};
  for (int attempt = 0; attempt < kChildOpenAttempts; attempt++) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(kChildOpenBackoffMs << (attempt - 1)));
    dev = open_any_device(open_uri);
    if (dev.ok() || dev.error().code == ErrorCode::kInvalidArgument) break;
  }
  if (!dev.ok()) {
    if (dev.error().code == ErrorCode::kInvalidArgument) *fatal = Status(dev.error());
    c.open_error = dev.error().message;
    return c;
  }
  std::shared_ptr<Device> device = std::move(dev.value());
  if (device->size_bytes() < nexus_size_bytes + nexus::kLabelRegionBytes) {
    *fatal = Status(ErrorCode::kInvalidArgument, str("child ", uri, " has ", device->size_bytes(), " bytes; a ", nexus_size_bytes, "-byte nexus needs ",
                                                     nexus_size_bytes + nexus::kLabelRegionBytes, " (the size plus ", nexus::kLabelRegionBytes, " bytes for its label)"));
    return c;
  }
  AlignedBuffer region(2 * nexus::kLabelSlotBytes);
  if (Status s = device->read_sync(0, region.size(), region.data()); !s.ok()) {
    c.open_error = str("reading its label failed: ", s.error().message);
    return c;
  }
  c.label = nexus::decode_label_region(region.data());
  c.max_io_bytes = device->max_io_bytes();
  if (fault_injection_) {
    auto f = std::make_shared<FaultDevice>(device, io_timeout_ms);
    c.faults = f;
    c.device = f;
  } else {
    c.device = device;
  }
  return c;
}

void Engine::create_nexus(CreateNexusOptions o, Callback<nexus::NexusInfoData> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (Status s = check_running(); !s.ok()) return done(s.error());
  }
  auto id = canonical_uuid(o.uuid);
  if (!id) return done(Error{ErrorCode::kInvalidArgument, str("nexus uuid '", o.uuid, "' is not a uuid")});
  o.uuid = *id;
  if (o.size_bytes == 0 || o.size_bytes % nexus::kSizeAlignmentBytes != 0) {
    return done(Error{ErrorCode::kInvalidArgument, str("nexus size_bytes ", o.size_bytes, " must be a positive multiple of ", nexus::kSizeAlignmentBytes)});
  }
  if (o.children.empty() || o.children.size() > nexus::kMaxChildren) {
    return done(Error{ErrorCode::kInvalidArgument, str("a nexus needs 1 to ", nexus::kMaxChildren, " children, got ", o.children.size())});
  }
  std::set<std::string> seen;
  for (auto& c : o.children) {
    if (Status s = check_child_uri(c); !s.ok()) return done(s.error());
    if (!seen.insert(c).second) return done(Error{ErrorCode::kInvalidArgument, str("child ", c, " is listed twice")});
  }
  if (o.child_io_timeout_ms < nexus::kChildIoTimeoutMsMin || o.child_io_timeout_ms > nexus::kChildIoTimeoutMsMax) {
    return done(Error{ErrorCode::kInvalidArgument, str("child_io_timeout_ms must be ", nexus::kChildIoTimeoutMsMin, " to ", nexus::kChildIoTimeoutMsMax)});
  }
  if (auto existing = find_nexus(o.uuid)) {
    // Idempotent by uuid: the same spec returns the nexus; another spec names the difference.
    existing->reactor().post([existing, o, done] {
      if (existing->size_bytes() != o.size_bytes) return done(Error{ErrorCode::kAlreadyExists, str("nexus ", o.uuid, " exists with size_bytes ", existing->size_bytes())});
      auto have = existing->child_uris();
      if (std::set<std::string>(have.begin(), have.end()) != std::set<std::string>(o.children.begin(), o.children.end())) {
        return done(Error{ErrorCode::kAlreadyExists, str("nexus ", o.uuid, " exists with other children; use AddChild/RemoveChild")});
      }
      done(existing->info());
    });
    return;
  }
  control_->post([this, o, done] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (nexuses_.count(o.uuid)) return done(Error{ErrorCode::kAlreadyExists, str("nexus ", o.uuid, " is being created")});
      for (auto& c : o.children) {
        if (c.rfind("replica:///", 0) != 0) continue;
        auto rid = canon(c.substr(11));
        if (auto n = replica_nexus_.find(rid); n != replica_nexus_.end()) {
          return done(Error{ErrorCode::kFailedPrecondition, str("replica ", rid, " is already a child of nexus ", n->second)});
        }
      }
    }
    std::vector<nexus::OpenedChild> children;
    Status fatal;
    for (auto& uri : o.children) {
      children.push_back(open_child(uri, o.size_bytes, o.child_io_timeout_ms, &fatal));
      if (!fatal.ok() && o.restore) {
        // At restart one child that cannot be opened (too small: its replica was not grown with
        // the nexus) leaves the nexus degraded; the rest of it is still served.
        children.back().open_error = fatal.error().message;
        fatal = Status();
      }
      if (!fatal.ok()) break;
    }
    auto retire = [this](std::shared_ptr<Device> d) { control_->post([d] {}); };
    auto close_all = [&] {
      for (auto& c : children) c.device.reset();
    };
    if (!fatal.ok()) {
      close_all();
      return done(fatal.error());
    }
    nexus::NexusOptions no{o.uuid, o.size_bytes, o.child_io_timeout_ms, o.restore};
    auto opened = nexus::Nexus::open(no, children, retire);
    if (!opened.ok()) {
      close_all();
      return done(opened.error());
    }
    auto n = opened.value();
    // Run on the reactor of the first local child's pool: its I/O then needs no thread hop.
    Reactor* reactor = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& c : o.children) {
        if (c.rfind("replica:///", 0) != 0) continue;
        auto rp = replica_pool_.find(canon(c.substr(11)));
        if (rp == replica_pool_.end()) continue;
        if (auto p = pools_.find(rp->second); p != pools_.end()) reactor = &p->second->reactor();
        if (reactor) break;
      }
      if (!reactor) reactor = reactors_[next_reactor_++ % reactors_.size()].get();
      n->attach(reactor);
      nexuses_[o.uuid] = n;
      for (auto& c : o.children) {
        if (c.rfind("replica:///", 0) == 0) replica_nexus_[canon(c.substr(11))] = o.uuid;
      }
    }
    reactor->post([n, done] {
      n->start();
      done(n->info());
    });
  });
}

void Engine::io_nexus(const std::string& uuid, IoKind kind, uint64_t offset_bytes, uint64_t length_bytes, std::shared_ptr<AlignedBuffer> buffer,
                      StatusCallback done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  n->reactor().post([n, kind, offset_bytes, length_bytes, buffer, done] {
    n->io(kind, offset_bytes, length_bytes, buffer ? buffer->data() : nullptr, [buffer, done](Status s) { done(s); });
  });
}

void Engine::shutdown_nexus(const std::string& uuid, StatusCallback done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    target = nvmf_.get();
  }
  // Hosts go first: they see the namespace disappear rather than I/O errors.
  if (target) target->unshare(n->uuid(), nvmf::NamespaceKind::kNexus);
  n->reactor().post([n, done] {
    n->set_published("", "");
    n->shutdown(done);
  });
}

void Engine::destroy_nexus(const std::string& uuid, StatusCallback done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Status());  // already gone
  shutdown_nexus(uuid, [this, n, done](Status s) {
    if (!s.ok()) return done(s);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      nexuses_.erase(n->uuid());
      std::erase_if(replica_nexus_, [&](auto& kv) { return kv.second == n->uuid(); });
    }
    done(Status());  // the replicas and their data stay
  });
}

void Engine::publish_nexus(const std::string& uuid, const std::string& frontend_host_nqn, std::optional<HostSecret> frontend_secret,
                           Callback<std::string> done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Error{ErrorCode::kNotFound, str("no nexus ", uuid)});
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    target = nvmf_.get();
  }
  if (!target) return done(Error{ErrorCode::kFailedPrecondition, "the NVMe/TCP target is not started"});
  if (frontend_host_nqn.empty() || frontend_host_nqn.size() > 223) return done(Error{ErrorCode::kInvalidArgument, "frontend host NQN must be 1 to 223 bytes"});
  std::vector<HostSecret> secrets;
  if (frontend_secret) secrets.push_back(HostSecret{frontend_host_nqn, frontend_secret->secret, frontend_secret->ctrl_secret});
  auto keys = parse_host_secrets(secrets, {frontend_host_nqn});
  if (!keys.ok()) return done(keys.error());
  auto shared_keys = std::make_shared<std::map<std::string, nvmf::auth::HostKeys>>(std::move(keys.value()));
  n->reactor().post([n, target, frontend_host_nqn, shared_keys, done] {
    auto info = n->info();
    if (info.state != "open") return done(Error{ErrorCode::kFailedPrecondition, str("nexus ", n->uuid(), " is ", info.state)});
    if (!info.frontend_host_nqn.empty() && info.frontend_host_nqn != frontend_host_nqn) {
      return done(Error{ErrorCode::kFailedPrecondition, str("nexus ", n->uuid(), " is published to ", info.frontend_host_nqn,
                                                            "; unpublish it from that frontend first")});
    }
    std::string nqn = target->share(n->uuid(), n->size_bytes(), {frontend_host_nqn}, nvmf::NamespaceKind::kNexus, *shared_keys);
    n->set_published(nqn, frontend_host_nqn);
    done(nqn);
  });
}

void Engine::unpublish_nexus(const std::string& uuid, const std::string& frontend_host_nqn, StatusCallback done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  nvmf::Target* target;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    target = nvmf_.get();
  }
  n->reactor().post([n, target, frontend_host_nqn, done] {
    auto info = n->info();
    if (info.frontend_host_nqn.empty()) return done(Status());  // not published: nothing to do
    if (info.frontend_host_nqn != frontend_host_nqn) {
      return done(Status(ErrorCode::kFailedPrecondition, str("nexus ", n->uuid(), " is published to ", info.frontend_host_nqn, ", not to ", frontend_host_nqn,
                                                             "; the target stays")));
    }
    if (target) target->unshare(n->uuid(), nvmf::NamespaceKind::kNexus);
    n->set_published("", "");
    done(Status());
  });
}

void Engine::resize_nexus(const std::string& uuid, uint64_t size_bytes, Callback<nexus::NexusInfoData> done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Error{ErrorCode::kNotFound, str("no nexus ", uuid)});
  if (size_bytes == 0 || size_bytes % nexus::kSizeAlignmentBytes != 0) {
    return done(Error{ErrorCode::kInvalidArgument, str("nexus size_bytes ", size_bytes, " must be a positive multiple of ", nexus::kSizeAlignmentBytes)});
  }
  // 1. On the reactor: refuse a shrink, answer the same size, else collect the write set.
  n->reactor().post([this, n, size_bytes, done] {
    if (size_bytes < n->size_bytes()) {
      return done(Error{ErrorCode::kInvalidArgument, str("nexus ", n->uuid(), " has ", n->size_bytes(), " bytes; shrinking it to ", size_bytes,
                                                         " is not supported (a nexus only grows)")});
    }
    if (size_bytes == n->size_bytes()) return done(n->info());
    auto devices = n->write_set_devices();
    // 2. On the control thread (blocking): re-read each child's size. A remote child's replica
    // grew on its node; this initiator learns it only by identifying the namespace again.
    control_->post([this, n, size_bytes, devices, done] {
      for (auto& [uri, device] : devices) {
        auto size = device->refresh_size();
        if (!size.ok()) {
          return done(Error{ErrorCode::kFailedPrecondition, str("child ", uri, ": reading its size failed: ", size.error().message, ". Nothing was changed")});
        }
      }
      // 3. On the reactor: grow (it checks every child again: the write set may have changed).
      n->reactor().post([this, n, size_bytes, done] {
        n->grow(size_bytes, [this, n, done](Status s) {
          if (!s.ok()) return done(s.error());
          // 4. The published namespace grows; its hosts get a namespace attribute notice.
          nvmf::Target* target;
          {
            std::lock_guard<std::mutex> lock(mutex_);
            target = nvmf_.get();
          }
          auto info = n->info();
          if (target && !info.nqn.empty()) target->resize(n->uuid(), nvmf::NamespaceKind::kNexus, n->size_bytes());
          done(info);
        });
      });
    });
  });
}

void Engine::list_nexus(Callback<std::vector<nexus::NexusInfoData>> done) {
  std::vector<std::shared_ptr<nexus::Nexus>> all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, n] : nexuses_) all.push_back(n);
  }
  struct Gather {
    std::mutex m;
    std::vector<nexus::NexusInfoData> out;
    size_t left;
  };
  auto g = std::make_shared<Gather>();
  g->left = all.size();
  if (all.empty()) return done(std::vector<nexus::NexusInfoData>{});
  for (auto& n : all) {
    n->reactor().post([n, g, done] {
      auto info = n->info();
      std::lock_guard<std::mutex> lock(g->m);
      g->out.push_back(std::move(info));
      if (--g->left == 0) {
        std::sort(g->out.begin(), g->out.end(), [](auto& a, auto& b) { return a.uuid < b.uuid; });
        done(std::move(g->out));
      }
    });
  }
}

void Engine::child_op(const std::string& uuid, const std::string& child_uri, const std::string& action, StatusCallback done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  if (Status s = check_child_uri(child_uri); !s.ok()) return done(s);
  const bool local = child_uri.rfind("replica:///", 0) == 0;
  const std::string rid = local ? canon(child_uri.substr(11)) : "";
  if (action == "fault") return n->reactor().post([n, child_uri, done] { n->fault_child(child_uri, done); });
  if (action == "remove") {
    return n->reactor().post([this, n, child_uri, rid, done] {
      n->remove_child(child_uri, [this, n, rid, done](Status s) {
        if (s.ok() && !rid.empty()) {
          std::lock_guard<std::mutex> lock(mutex_);
          if (auto it = replica_nexus_.find(rid); it != replica_nexus_.end() && it->second == n->uuid()) replica_nexus_.erase(it);
        }
        done(s);
      });
    });
  }
  if (action == "add") {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!rid.empty()) {
        auto it = replica_nexus_.find(rid);
        if (it != replica_nexus_.end() && it->second != n->uuid()) return done(Status(ErrorCode::kFailedPrecondition, str("replica ", rid, " is a child of nexus ", it->second)));
      }
    }
    return control_->post([this, n, child_uri, rid, done] {
      Status fatal;
      auto opened = open_child(child_uri, n->size_bytes(), n->child_io_timeout_ms(), &fatal);
      if (!fatal.ok()) return done(fatal);
      if (!opened.device) return done(Status(ErrorCode::kFailedPrecondition, str("child ", child_uri, " could not be opened: ", opened.open_error)));
      auto uid = parse_uuid(n->uuid()).value();
      if (opened.label && opened.label->nexus_uuid != uid) {
        return done(Status(ErrorCode::kFailedPrecondition, str("child ", child_uri, " carries the label of nexus ", format_uuid(opened.label->nexus_uuid))));
      }
      if (!rid.empty()) {
        std::lock_guard<std::mutex> lock(mutex_);
        replica_nexus_[rid] = n->uuid();
      }
      n->reactor().post([n, opened, done] { n->add_child(opened, done); });
    });
  }
  if (action == "online") {
    return n->reactor().post([this, n, child_uri, done] {
      n->prepare_online(child_uri, [this, n, child_uri, done](Status s) {
        if (!s.ok()) return done(s.error().code == ErrorCode::kAlreadyExists ? Status() : s);
        control_->post([this, n, child_uri, done] {
          Status fatal;
          auto reopened = open_child(child_uri, n->size_bytes(), n->child_io_timeout_ms(), &fatal);
          if (!fatal.ok()) reopened.open_error = fatal.error().message;
          n->reactor().post([n, reopened, done] { n->finish_online(reopened, done); });
        });
      });
    });
  }
  done(Status(ErrorCode::kInvalidArgument, str("child action '", action, "' must be add, remove, fault or online")));
}

void Engine::rebuild_op(const std::string& uuid, const std::string& child_uri, const std::string& action, StatusCallback done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  n->reactor().post([n, child_uri, action, done] {
    if (action == "start") return n->rebuild_start(child_uri, done);
    if (action == "pause") return done(n->rebuild_pause(child_uri));
    if (action == "resume") return done(n->rebuild_resume(child_uri));
    if (action == "stop") return done(n->rebuild_stop(child_uri));
    done(Status(ErrorCode::kInvalidArgument, str("rebuild action '", action, "' must be start, pause, resume or stop")));
  });
}

void Engine::rebuild_stats(const std::string& uuid, const std::string& child_uri, Callback<nexus::RebuildInfo> done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Error{ErrorCode::kNotFound, str("no nexus ", uuid)});
  n->reactor().post([n, child_uri, done] { done(n->rebuild_stats(child_uri)); });
}

void Engine::rebuild_history(const std::string& uuid, Callback<std::vector<nexus::RebuildInfo>> done) {
  auto n = find_nexus(uuid);
  if (!n) return done(Error{ErrorCode::kNotFound, str("no nexus ", uuid)});
  n->reactor().post([n, done] { done(n->rebuild_history()); });
}

void Engine::inject_fault(const std::string& uuid, const std::string& child_uri, std::optional<FaultRule> rule, StatusCallback done) {
  if (!fault_injection_) return done(Status(ErrorCode::kFailedPrecondition, "fault injection is off: start the engine with --enable-fault-injection (tests only)"));
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  n->reactor().post([n, child_uri, rule, done] { done(rule ? n->inject_fault(child_uri, *rule) : n->clear_faults(child_uri)); });
}

void Engine::drop_child_connection(const std::string& uuid, const std::string& child_uri, StatusCallback done) {
  if (!fault_injection_) return done(Status(ErrorCode::kFailedPrecondition, "fault injection is off: start the engine with --enable-fault-injection (tests only)"));
  auto n = find_nexus(uuid);
  if (!n) return done(Status(ErrorCode::kNotFound, str("no nexus ", uuid)));
  n->reactor().post([n, child_uri, done] {
    auto device = n->child_device(child_uri);
    if (!device) return done(Status(ErrorCode::kFailedPrecondition, str("child ", child_uri, " is not open")));
    done(device->drop_connections("connection dropped by fault injection"));
  });
}

}  // namespace strata
