#!/usr/bin/env bash
# `npm run test:interop-rdma-pulumi` (inside the interop VM): soft-RoCE as rdma.sh sets it up,
# then rdma-pulumi.js: a Volume with both legs on RDMA through `strata cluster up
# --rdma-interface` and the real Pulumi CLI, its data verified over NVMe/RDMA.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IFACE=strata-rdma0
ADDR=10.99.0.1
for m in dummy rdma_rxe rdma_ucm ib_uverbs; do modprobe $m || exit 1; done
ip link add $IFACE type dummy && ip addr add $ADDR/24 dev $IFACE && ip link set $IFACE up || exit 1
rdma link add rxe0 type rxe netdev $IFACE || exit 1
ulimit -l unlimited
cd "$ROOT"
node "$ROOT/test/interop/rdma-pulumi.js" $IFACE $ADDR
