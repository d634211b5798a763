#!/usr/bin/env bash
# `npm run bench:rdma` (inside the interop VM, test/interop/vm.sh): the kernel host against OUR
# target over NVMe/RDMA (soft-RoCE: rxe on a dummy interface) and over NVMe/TCP in the same run,
# two thick replicas on one loop-device pool, alternating per workload and round. Reports IOPS,
# p50/p99 completion latency and the engine's CPU time per I/O (utime+stime from /proc).
# Functional numbers only: soft-RoCE is the kernel doing RDMA in software, under TCG.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=/tmp/strata-bench-rdma
mkdir -p $WORK
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:5a7a0000-0000-4000-8000-0000000be7d4
export STRATA_ENDPOINT=127.0.0.1:10144 STRATA_TOKEN=bench-token-0123456789abcdef
echo "$STRATA_TOKEN" > $WORK/token
RUNTIME=${STRATA_BENCH_RUNTIME_S:-8}
ROUNDS=${STRATA_BENCH_ROUNDS:-2}
IFACE=strata-rdma0
ADDR=10.99.0.1
ctl() { node "$ROOT/test/interop/ctl.js" "$@"; }
die() { echo "bench: $*" >&2; exit 1; }

for m in dummy rdma_rxe rdma_ucm ib_uverbs nvme-rdma nvme-tcp loop; do modprobe $m || die "modprobe $m"; done
ip link add $IFACE type dummy && ip addr add $ADDR/24 dev $IFACE && ip link set $IFACE up || die "dummy interface"
rdma link add rxe0 type rxe netdev $IFACE || die "rxe"
ulimit -l unlimited
truncate -s 600M $WORK/disk.img
LOOP=$(losetup -f --show $WORK/disk.img) || die "losetup"

node "$ROOT/bin/strata-engine.js" --node bench --data-dir $WORK/data --token-file $WORK/token --grpc-listen $STRATA_ENDPOINT --cores 1 \
  --nvmf-listen 127.0.0.1:4450 --nvmf-discovery-listen 127.0.0.1:8049 --rdma-interface $IFACE > $WORK/engine.log 2>&1 &
ENGINE_PID=$!
for _ in $(seq 1 120); do grep -q '"engine ready"' $WORK/engine.log && break; sleep 0.5; done
ctl CreatePool "{\"uuid\":\"11111111-2222-4333-8444-99999999aaaa\",\"name\":\"bench\",\"device_uri\":\"uring://$LOOP\",\"cluster_size_bytes\":4194304}" >/dev/null || die "pool"
for side in tcp rdma; do
  r=88888888-9999-4aaa-8bbb-00000000$([ $side = tcp ] && echo 0001 || echo 0002)
  ctl CreateReplica "{\"uuid\":\"$r\",\"name\":\"$side\",\"pool\":\"bench\",\"size_bytes\":268435456,\"thin\":false}" >/dev/null || die "replica"
  ctl ShareReplica "{\"uuid\":\"$r\",\"allowed_host_nqns\":[\"$HOSTNQN\"]}" >/dev/null || die "share"
  eval "NQN_$side=nqn.2026-11.io.strata:replica:$r"
done
dev_of() {
  for s in /sys/class/nvme-subsystem/*; do
    [ "$(cat $s/subsysnqn 2>/dev/null)" = "$1" ] || continue
    for n in $s/nvme*n*; do [ -e "$n" ] && { echo /dev/$(basename $n); return 0; }; done
  done
  return 1
}
nvme connect -t tcp -n $NQN_tcp -a 127.0.0.1 -s 4450 --hostnqn $HOSTNQN >/dev/null || die "connect tcp"
nvme connect -t rdma -n $NQN_rdma -a $ADDR -s 4450 --hostnqn $HOSTNQN >/dev/null || die "connect rdma"
for _ in $(seq 1 40); do DEV_tcp=$(dev_of $NQN_tcp) && DEV_rdma=$(dev_of $NQN_rdma) && break; sleep 0.5; done
[ -b "${DEV_tcp:-}" ] && [ -b "${DEV_rdma:-}" ] || die "devices"
for d in $DEV_tcp $DEV_rdma; do dd if=/dev/zero of=$d bs=1M count=256 oflag=direct 2>/dev/null; done

cpu_ticks() { awk '{print $14 + $15}' /proc/$ENGINE_PID/stat; }
run() {  # device rw bs iodepth -> "iops p50_us p99_us ios"
  fio --name=b --filename=$1 --direct=1 --ioengine=libaio --rw=$2 --bs=$3 --iodepth=$4 --size=256M --time_based --runtime=$RUNTIME \
    --output-format=json 2>/dev/null | node -e '
      const j = JSON.parse(require("fs").readFileSync(0, "utf8")).jobs[0];
      const s = j.read.io_bytes > 0 ? j.read : j.write;
      const p = s.clat_ns.percentile || {};
      console.log(s.iops.toFixed(0), (p["50.000000"] || 0) / 1000, (p["99.000000"] || 0) / 1000, s.total_ios);'
}
HZ=$(getconf CLK_TCK)
RESULTS=$WORK/results.txt
: > $RESULTS
for round in $(seq 1 $ROUNDS); do
  for w in "randread_4k_qd1 randread 4k 1" "randread_4k_qd32 randread 4k 32" "randwrite_4k_qd32 randwrite 4k 32"; do
    set -- $w
    if [ $((round % 2)) = 1 ]; then order="rdma tcp"; else order="tcp rdma"; fi
    for side in $order; do
      dev=$DEV_tcp; [ $side = rdma ] && dev=$DEV_rdma
      t0=$(cpu_ticks)
      out=$(run $dev $2 $3 $4)
      t1=$(cpu_ticks)
      echo "$1 $side $out $((t1 - t0))" >> $RESULTS
    done
  done
done
nvme disconnect -n $NQN_tcp >/dev/null; nvme disconnect -n $NQN_rdma >/dev/null
kill -TERM $ENGINE_PID 2>/dev/null; wait 2>/dev/null
node -e '
  const hz = Number(process.argv[2]);
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const names = [...new Set(rows.map((r) => r[0]))];
  const out = {};
  console.log("kernel host in the VM (TCG), fio, medians: our target over NVMe/RDMA (soft-RoCE) vs NVMe/TCP, same engine, same pool");
  console.log("| workload | RDMA IOPS | RDMA p50/p99 us | RDMA engine CPU us/IO | TCP IOPS | TCP p50/p99 us | TCP engine CPU us/IO | RDMA/TCP IOPS |");
  for (const n of names) {
    const pick = (side) => {
      const rs = rows.filter((r) => r[0] === n && r[1] === side);
      return { iops: med(rs.map((r) => Number(r[2]))), p50: med(rs.map((r) => Number(r[3]))), p99: med(rs.map((r) => Number(r[4]))),
               cpu: med(rs.map((r) => (Number(r[6]) * 1e6) / hz / Math.max(1, Number(r[5])))) };
    };
    const r = pick("rdma"), t = pick("tcp");
    console.log(`| ${n} | ${r.iops} | ${r.p50}/${r.p99} | ${r.cpu.toFixed(1)} | ${t.iops} | ${t.p50}/${t.p99} | ${t.cpu.toFixed(1)} | ${(r.iops / t.iops).toFixed(2)} |`);
    out[`rdma_vs_tcp_${n}_iops_ratio`] = Number((r.iops / t.iops).toFixed(3));
    out[`rdma_vs_tcp_${n}_cpu_per_io_ratio`] = Number((r.cpu / t.cpu).toFixed(3));
  }
  console.log(JSON.stringify(out));' $RESULTS $HZ
