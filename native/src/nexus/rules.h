// The nexus rules the control plane must agree with, in one place on the C++ side. The
// TypeScript copies live in common/nexus-rules.ts; the addon exports these values
// (binding.cc nexusRules()) and test/native/nexus-rules.test.ts asserts the two agree, so a
// change here that is not made there fails the tests instead of `pulumi up`.
#pragma once
#include <cstdint>
#include <string>

#include "nexus/label.h"

namespace strata::nexus {

// The first kLabelRegionBytes of every child hold the label; a child needs size + this.
constexpr uint64_t kChildLabelRegionBytes = kLabelRegionBytes;
// The label has room for this many children, so a nexus has 1..kMaxChildren.
constexpr uint32_t kMaxChildren = kLabelMaxChildren;
// A nexus's size is a positive multiple of this (the block size the target serves it with).
constexpr uint64_t kSizeAlignmentBytes = 4096;
// How long a child I/O may take before the child is faulted; the range a nexus accepts.
constexpr uint32_t kChildIoTimeoutMsMin = 100;
constexpr uint32_t kChildIoTimeoutMsMax = 600000;
constexpr uint32_t kChildIoTimeoutMsDefault = 5000;
// Child URIs: a replica on this node, or a remote namespace through the NVMe/TCP initiator.
constexpr const char* kLocalChildUriPrefix = "replica:///";  // replica:///<uuid>
constexpr const char* kRemoteChildUriPrefix = "nvmf://";     // nvmf://HOST:PORT/NQN[?params]
constexpr const char* kRemoteRdmaChildUriPrefix = "nvmf+rdma://";  // the same over NVMe/RDMA
inline bool is_remote_child_uri(const std::string& uri) {
  return uri.rfind(kRemoteChildUriPrefix, 0) == 0 || uri.rfind(kRemoteRdmaChildUriPrefix, 0) == 0;
}

static_assert(kChildIoTimeoutMsMin <= kChildIoTimeoutMsDefault && kChildIoTimeoutMsDefault <= kChildIoTimeoutMsMax);
static_assert(kChildLabelRegionBytes % kSizeAlignmentBytes == 0, "nexus data must start block-aligned on every child");
static_assert(kMaxChildren >= 1);

}  // namespace strata::nexus
