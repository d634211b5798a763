#!/usr/bin/env bash
# `npm run bench:interop` (runs inside the interop VM, see test/interop/vm.sh): the Linux kernel's
# NVMe/TCP host running fio against OUR target and against the kernel's own nvmet-tcp target,
# each backed by an identical loop device (a tmpfs file), alternating per workload and round.
# Prints a table and, as the last line, one JSON object of strata/nvmet ratios. Under software
# emulation absolute numbers mean little; the ratio is the result.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=/tmp/strata-bench
mkdir -p $WORK
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:5a7a0000-0000-4000-8000-0000000be7c4
export STRATA_ENDPOINT=127.0.0.1:10124 STRATA_TOKEN=bench-token-0123456789abcdef
echo "$STRATA_TOKEN" > $WORK/token
RUNTIME=${STRATA_BENCH_RUNTIME_S:-8}
ROUNDS=${STRATA_BENCH_ROUNDS:-2}
ctl() { node "$ROOT/test/interop/ctl.js" "$@"; }
die() { echo "bench: $*" >&2; exit 1; }

# STRATA_BENCH_BACKING picks the identical block devices under both targets:
#  loop     (default) a loop device over a tmpfs file each. The loop driver does not take
#           non-blocking submissions, so io_uring hands each of our O_DIRECT reads to an io-wq
#           thread; nvmet submits its bio from its own worker.
#  null_blk a memory-backed null_blk device each: blk-mq, accepts non-blocking submissions, as
#           an NVMe SSD's driver does, so our reads are issued inline from the reactor.
BACKING=${STRATA_BENCH_BACKING:-loop}
modprobe nvme-tcp && modprobe nvmet && modprobe nvmet-tcp || die "modules"
case $BACKING in
  loop)
    modprobe loop || die "modprobe loop"
    for x in a b; do truncate -s 320M $WORK/$x.img; done
    DEV_A=$(losetup -f --show $WORK/a.img) && DEV_B=$(losetup -f --show $WORK/b.img) || die "losetup" ;;
  null_blk)
    modprobe null_blk nr_devices=0 || die "modprobe null_blk"
    for x in a b; do
      d=/sys/kernel/config/nullb/bench_$x
      mkdir -p $d && echo 320 > $d/size && echo 4096 > $d/blocksize && echo 1 > $d/memory_backed && echo 2 > $d/queue_mode && echo 1 > $d/power || die "null_blk $x"
    done
    for x in a b; do  # the guest has no udev: make the device node from sysfs if it is missing
      n=bench_$x  # 6.1 names the disk after its configfs item; older kernels nullb<index>
      [ -e /sys/block/$n ] || n=nullb$(cat /sys/kernel/config/nullb/bench_$x/index)
      [ -b /dev/$n ] || mknod /dev/$n b $(tr : ' ' < /sys/block/$n/dev) || die "mknod $n"
      if [ $x = a ]; then DEV_A=/dev/$n; else DEV_B=/dev/$n; fi
    done
    [ -b $DEV_A ] && [ -b $DEV_B ] || die "null_blk devices $DEV_A $DEV_B" ;;
  *) die "STRATA_BENCH_BACKING must be loop or null_blk, got '$BACKING'" ;;
esac

# Ours: a pool on device A, a thick 256 MiB replica, shared to this host.
node "$ROOT/bin/strata-engine.js" --node bench --data-dir $WORK/data --token-file $WORK/token --grpc-listen $STRATA_ENDPOINT --cores 1 > $WORK/engine.log 2>&1 &
for _ in $(seq 1 120); do grep -q '"engine ready"' $WORK/engine.log && break; sleep 0.5; done
R=88888888-9999-4aaa-8bbb-cccccccccccc
ctl CreatePool "{\"uuid\":\"11111111-2222-4333-8444-999999999999\",\"name\":\"bench\",\"device_uri\":\"uring://$DEV_A\",\"cluster_size_bytes\":4194304}" >/dev/null || die "pool"
ctl CreateReplica "{\"uuid\":\"$R\",\"name\":\"b\",\"pool\":\"bench\",\"size_bytes\":268435456,\"thin\":false}" >/dev/null || die "replica"
ctl ShareReplica "{\"uuid\":\"$R\",\"allowed_host_nqns\":[\"$HOSTNQN\"]}" >/dev/null || die "share"
OURS=nqn.2026-11.io.strata:replica:$R

# The kernel's: device B as a block namespace on port 4421.
KNQN=nqn.2026-11.io.strata:bench:nvmet
CFG=/sys/kernel/config/nvmet
mkdir -p $CFG/subsystems/$KNQN/namespaces/1 $CFG/ports/1
echo 1 > $CFG/subsystems/$KNQN/attr_allow_any_host
echo -n $DEV_B > $CFG/subsystems/$KNQN/namespaces/1/device_path
echo 1 > $CFG/subsystems/$KNQN/namespaces/1/enable || die "nvmet namespace"
echo tcp > $CFG/ports/1/addr_trtype; echo ipv4 > $CFG/ports/1/addr_adrfam
echo 127.0.0.1 > $CFG/ports/1/addr_traddr; echo 4421 > $CFG/ports/1/addr_trsvcid
ln -s $CFG/subsystems/$KNQN $CFG/ports/1/subsystems/$KNQN

dev_of() {
  for s in /sys/class/nvme-subsystem/*; do
    [ "$(cat $s/subsysnqn 2>/dev/null)" = "$1" ] || continue
    for n in $s/nvme*n*; do [ -e "$n" ] && { echo /dev/$(basename $n); return 0; }; done
  done
  return 1
}
nvme connect -t tcp -n $OURS -a 127.0.0.1 -s 4420 --hostnqn $HOSTNQN >/dev/null || die "connect ours"
nvme connect -t tcp -n $KNQN -a 127.0.0.1 -s 4421 --hostnqn $HOSTNQN >/dev/null || die "connect nvmet"
for _ in $(seq 1 40); do DEV_OURS=$(dev_of $OURS) && DEV_K=$(dev_of $KNQN) && break; sleep 0.5; done
[ -b "${DEV_OURS:-}" ] && [ -b "${DEV_K:-}" ] || die "devices"
# Both written end to end once: no first-write effects.
for d in $DEV_OURS $DEV_K; do dd if=/dev/zero of=$d bs=1M count=256 oflag=direct 2>/dev/null; done

# Busy CPU time of the whole guest so far, in clock ticks (/proc/stat: every state but idle and
# iowait). Whole-system, because nvmet-tcp's work runs in kernel threads and softirqs no process
# owns; the host side (fio, nvme-tcp) is the same on both sides, so the difference is the target's.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
run() {  # name device rw bs iodepth -> "iops p50_us cpu_us_per_io"
  local t0 t1
  t0=$(busy_ticks)
  fio --name=$1 --filename=$2 --direct=1 --ioengine=libaio --rw=$3 --bs=$4 --iodepth=$5 --size=256M --time_based --runtime=$RUNTIME \
    --output-format=json 2>/dev/null > $WORK/fio.json
  t1=$(busy_ticks)
  node -e '
      const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).jobs[0];
      const side = j.read.io_bytes > 0 ? j.read : j.write;
      const ticks = Number(process.argv[3]) - Number(process.argv[2]), hz = Number(process.argv[4]);
      console.log(side.iops.toFixed(0), ((side.clat_ns.percentile || {})["50.000000"] || 0) / 1000, ((ticks / hz) * 1e6 / Math.max(1, side.total_ios)).toFixed(1));' \
    $WORK/fio.json "$t0" "$t1" "$(getconf CLK_TCK)"
}
RESULTS=$WORK/results.txt
: > $RESULTS
for round in $(seq 1 $ROUNDS); do
  for w in "randread_4k_qd32 randread 4k 32" "randwrite_4k_qd32 randwrite 4k 32" "randread_4k_qd1 randread 4k 1"; do
    set -- $w
    if [ $((round % 2)) = 1 ]; then order="ours nvmet"; else order="nvmet ours"; fi
    for side in $order; do
      dev=$DEV_OURS; [ $side = nvmet ] && dev=$DEV_K
      echo "$1 $side $(run $1 $dev $2 $3 $4)" >> $RESULTS
    done
  done
done
nvme disconnect -n $OURS >/dev/null; nvme disconnect -n $KNQN >/dev/null
kill -TERM %1 2>/dev/null; wait 2>/dev/null
# Tear down what this run set up, so another run (another backing) can follow in the same boot.
rm -f $CFG/ports/1/subsystems/$KNQN
echo 0 > $CFG/subsystems/$KNQN/namespaces/1/enable
rmdir $CFG/subsystems/$KNQN/namespaces/1 $CFG/subsystems/$KNQN $CFG/ports/1 2>/dev/null
case $BACKING in
  loop) losetup -d $DEV_A $DEV_B ;;
  null_blk) for x in a b; do echo 0 > /sys/kernel/config/nullb/bench_$x/power; rmdir /sys/kernel/config/nullb/bench_$x; done ;;
esac
rm -rf $WORK/data
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const names = [...new Set(rows.map((r) => r[0]))];
  const out = {};
  console.log("kernel NVMe/TCP host in the VM (TCG), fio, medians: strata target vs nvmet-tcp, identical " + process.argv[2] + " devices");
  console.log("| workload | strata IOPS | strata p50 us | nvmet IOPS | nvmet p50 us | strata/nvmet | CPU us/IO strata | CPU us/IO nvmet | CPU ratio |");
  for (const n of names) {
    const pick = (side, i) => med(rows.filter((r) => r[0] === n && r[1] === side).map((r) => Number(r[i])));
    const [si, sl, ki, kl, sc, kc] = [pick("ours", 2), pick("ours", 3), pick("nvmet", 2), pick("nvmet", 3), pick("ours", 4), pick("nvmet", 4)];
    console.log(`| ${n} | ${si} | ${sl} | ${ki} | ${kl} | ${(si / ki).toFixed(2)} | ${sc} | ${kc} | ${(sc / kc).toFixed(2)} |`);
    out[`kernel_host_strata_vs_nvmet_${n}_ratio`] = Number((si / ki).toFixed(3));
    out[`cpu_per_io_vs_nvmet_${n}_ratio`] = Number((sc / kc).toFixed(3));
  }
  // The headline: CPU per I/O at depth, where both targets are busy (at qd1 ours polls by design).
  out.cpu_per_io_vs_nvmet_ratio = out.cpu_per_io_vs_nvmet_randread_4k_qd32_ratio;
  console.log(JSON.stringify(out));' $RESULTS $BACKING
