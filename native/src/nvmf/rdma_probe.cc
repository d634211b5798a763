#include "nvmf/rdma_probe.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <infiniband/verbs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <rdma/rdma_cma.h>

#include <cerrno>
#include <cstring>

#include "util/status.h"

namespace strata::nvmf {

RdmaProbe probe_rdma(const std::string& interface) {
  RdmaProbe p;
  p.interface = interface;
  if (interface.empty() || if_nametoindex(interface.c_str()) == 0) {
    p.reason = str("network interface '", interface, "' does not exist");
    return p;
  }
  sockaddr_in addr{};
  bool loopback = false;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
      if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || interface != i->ifa_name) continue;
      loopback = (i->ifa_flags & IFF_LOOPBACK) != 0;
      std::memcpy(&addr, i->ifa_addr, sizeof addr);
      char text[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &addr.sin_addr, text, sizeof text);
      p.address = text;
      break;
    }
    freeifaddrs(list);
  }
  if (p.address.empty()) {
    p.reason = str("network interface '", interface, "' has no IPv4 address to listen on");
    return p;
  }
  if (loopback) {
    // The RDMA CM binds a loopback address to whichever device it finds first: that is not
    // the interface an operator named, so it is refused here rather than half-working.
    p.reason = str("network interface '", interface, "' is a loopback interface; RDMA needs one with an RDMA device behind it",
                   " (for soft-RoCE: rdma link add rxe0 type rxe netdev IFACE)");
    return p;
  }
  rdma_event_channel* channel = rdma_create_event_channel();
  if (channel == nullptr) {
    p.reason = str("no RDMA connection manager on this host (rdma_create_event_channel: ", std::strerror(errno),
                   "): no RDMA device, or the rdma_ucm module is not loaded (/dev/infiniband/rdma_cm)");
    return p;
  }
  rdma_cm_id* id = nullptr;
  if (rdma_create_id(channel, &id, nullptr, RDMA_PS_TCP) != 0) {
    p.reason = str("rdma_create_id: ", std::strerror(errno));
  } else {
    addr.sin_port = 0;
    if (rdma_bind_addr(id, reinterpret_cast<sockaddr*>(&addr)) != 0 || id->verbs == nullptr) {
      p.reason = str("no RDMA device serves ", interface, "'s address ", p.address, " (rdma_bind_addr: ", std::strerror(errno),
                     "); for soft-RoCE: rdma link add rxe0 type rxe netdev ", interface);
    } else {
      p.device = ibv_get_device_name(id->verbs->device);
      p.usable = true;
    }
    rdma_destroy_id(id);
  }
  rdma_destroy_event_channel(channel);
  return p;
}

}  // namespace strata::nvmf
