// Whether NVMe over RDMA can be served on a network interface: its IPv4 address, and the RDMA
// device behind that address as the RDMA connection manager finds it (rdma_bind_addr, what a
// listener would do). When it cannot, `reason` says why in words an operator can act on; the
// engine then serves NVMe/TCP only and reports the reason (GetInfo), never silently.
#pragma once
#include <string>

namespace strata::nvmf {

struct RdmaProbe {
  std::string interface;
  std::string address;  // the interface's IPv4 address, when it has one
  std::string device;   // the RDMA device serving it (e.g. rxe0), when there is one
  bool usable = false;  // an RDMA device serves the address
  std::string reason;   // why not, when !usable
};

RdmaProbe probe_rdma(const std::string& interface);

}  // namespace strata::nvmf
