#!/usr/bin/env bash
# Runs inside the interop VM (test/interop/vm.sh): a real strata-engine serves a replica over
# NVMe/TCP to the Linux kernel's nvme-tcp host. Prints PASS/FAIL per step; exits non-zero if
# any step failed.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=/tmp/strata-interop
mkdir -p $WORK
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:5a7a0000-0000-4000-8000-00000000c0de
HOSTID=5a7a0000-0000-4000-8000-00000000c0de
export STRATA_ENDPOINT=127.0.0.1:10124 STRATA_TOKEN=interop-token-0123456789
echo "$STRATA_TOKEN" > $WORK/token
POOL=11111111-2222-4333-8444-555555555555
REPLICA=66666666-7777-4888-8999-aaaaaaaaaaaa
NQN=nqn.2026-11.io.strata:replica:$REPLICA
FAILED=0
source "$ROOT/test/interop/lib.sh"

start_engine() { start_engine_at $WORK/data $STRATA_ENDPOINT; }
stop_engine() { kill -TERM $ENGINE_PID && wait $ENGINE_PID; }
connect() { kernel_connect tcp 127.0.0.1 4420 "$@"; }

modprobe nvme-tcp
cd "$ROOT"
step "engine starts" start_engine
step "pool, replica and share" bash -c "
  node $ROOT/test/interop/ctl.js CreatePool '{\"uuid\":\"$POOL\",\"name\":\"vm\",\"device_uri\":\"file://$WORK/disk.img?size_mib=512\",\"cluster_size_bytes\":1048576}' &&
  node $ROOT/test/interop/ctl.js CreateReplica '{\"uuid\":\"$REPLICA\",\"name\":\"r\",\"pool\":\"vm\",\"size_bytes\":268435456,\"thin\":true}' &&
  node $ROOT/test/interop/ctl.js ShareReplica '{\"uuid\":\"$REPLICA\",\"allowed_host_nqns\":[\"$HOSTNQN\"]}'"
step "nvme discover lists the subsystem" bash -c "nvme discover -t tcp -a 127.0.0.1 -s 8009 --hostnqn $HOSTNQN --hostid $HOSTID | tee /dev/stderr | grep -q $NQN"
step "nvme discover as another host lists nothing" bash -c "! nvme discover -t tcp -a 127.0.0.1 -s 8009 --hostnqn nqn.2014-08.org.example:stranger 2>&1 | grep -q $NQN"
step "nvme connect from a host that is not allowed is refused" bash -c "! nvme connect -t tcp -n $NQN -a 127.0.0.1 -s 4420 --hostnqn nqn.2014-08.org.example:stranger"
step "nvme connect" connect
echo "    device: ${DEV:-none}"
step "ListSubsystems shows the kernel host" bash -c "node $ROOT/test/interop/ctl.js ListSubsystems '{}' | grep -q $HOSTNQN"
step "fio verify 4K, 2 jobs, iodepth 16" fio_verify 4k 2
step "fio verify 128K, 2 jobs, iodepth 16" fio_verify 128k 2
step "trim pass reads back zeros" trim_pass
step "write a marker" bash -c "dd if=/dev/urandom of=$WORK/marker bs=1M count=4 2>/dev/null && dd if=$WORK/marker of=$DEV bs=1M seek=200 oflag=direct conv=fsync 2>/dev/null"
step "nvme disconnect" disconnect
step "engine restarts" bash -c "kill -TERM $ENGINE_PID; while kill -0 $ENGINE_PID 2>/dev/null; do sleep 0.2; done"
step "engine starts again" start_engine
step "nvme connect after restart" connect
step "marker survived the restart" bash -c "cmp -n $((4 << 20)) $WORK/marker <(dd if=$DEV bs=1M skip=200 count=4 iflag=direct 2>/dev/null)"
step "nvme disconnect" disconnect
step "nvme connect with header and data digests (-g -G)" connect -g -G
step "fio verify 4K with digests" fio_verify 4k 2
step "nvme disconnect (digests)" disconnect
# A nexus (RAID-1 over three replicas on this engine) published to the kernel host.
NEXUS=77777777-8888-4999-8aaa-bbbbbbbbbbbb
nexus_up() {
  local children=""
  for i in 1 2 3; do
    ctl CreateReplica "{\"uuid\":\"0000000$i-7777-4888-8999-aaaaaaaaaaaa\",\"name\":\"n$i\",\"pool\":\"vm\",\"size_bytes\":68157440,\"thin\":true}" >/dev/null || return 1
    children="$children${children:+,}\"replica:///0000000$i-7777-4888-8999-aaaaaaaaaaaa\""
  done
  ctl CreateNexus "{\"uuid\":\"$NEXUS\",\"size_bytes\":67108864,\"children\":[$children]}" &&
  ctl PublishNexus "{\"uuid\":\"$NEXUS\",\"frontend_host_nqn\":\"$HOSTNQN\"}"
}
step "a three-replica nexus, published to this host" nexus_up
NQN=nqn.2026-11.io.strata:nexus:$NEXUS
step "nvme connect to the nexus" connect
step "fio verify 4K on the nexus, 2 jobs, iodepth 16" fio_verify 4k 2
step "fio verify 128K on the nexus" bash -c "fio --name=v128 --filename=$DEV --direct=1 --ioengine=libaio --rw=randwrite --bs=128k --iodepth=16 --size=48M --verify=crc32c --verify_fatal=1 --do_verify=1 --minimal >/dev/null"
nexus_healthy() {
  ctl ListNexus '{}' | node -e '
    const n = JSON.parse(require("fs").readFileSync(0, "utf8")).nexuses[0];
    const w = n.children.map((c) => c.write_ops);
    console.error(n.health, n.children.map((c) => c.state), w);
    process.exit(n.health === "online" && w.every((x) => x > 0 && x === w[0]) ? 0 : 1);'
}
step "nexus online, every write on all three children" nexus_healthy
# Growing the nexus in place: the kernel host stays connected, gets the Namespace Attribute
# Changed notice, and its block device takes the new size without a reconnect.
controllers() {  # the kernel's controllers of our subsystem, as name:cntlid
  for s in /sys/class/nvme-subsystem/*; do
    [ "$(cat $s/subsysnqn 2>/dev/null)" = "$NQN" ] || continue
    for c in $s/nvme[0-9]*; do [ -e "$c/cntlid" ] && echo -n "$(basename $c):$(cat $c/cntlid) "; done
  done
}
nexus_grow() {
  local blk=$(basename $DEV) grown=$((96 << 20))
  local ctrl=$(controllers) before=$(cat /sys/block/$blk/size)
  echo "controller(s) before: $ctrl"
  [ "$before" = $((67108864 / 512)) ] || { echo "size before: $before sectors"; return 1; }
  dd if=/dev/urandom of=$WORK/nexus-pattern bs=128k count=256 2>/dev/null &&
  dd if=$WORK/nexus-pattern of=$DEV bs=128k oflag=direct conv=fsync 2>/dev/null || return 1
  for i in 1 2 3; do
    ctl ResizeReplica "{\"uuid\":\"0000000$i-7777-4888-8999-aaaaaaaaaaaa\",\"size_bytes\":$((grown + (1 << 20)))}" >/dev/null || return 1
  done
  ctl ResizeNexus "{\"uuid\":\"$NEXUS\",\"size_bytes\":$grown}" >/dev/null || return 1
  local after
  for _ in $(seq 1 40); do after=$(cat /sys/block/$blk/size); [ "$after" = $((grown / 512)) ] && break; sleep 0.25; done
  echo "/sys/block/$blk/size: $before -> $after sectors"
  dmesg | grep -i "capacity change" | tail -n 2
  [ "$after" = $((grown / 512)) ] || { echo "the kernel did not take the new size"; return 1; }
  [ -n "$ctrl" ] && [ "$(controllers)" = "$ctrl" ] || { echo "the controller changed ($(controllers)): not the same connection"; return 1; }
  cmp $WORK/nexus-pattern <(dd if=$DEV bs=128k count=256 iflag=direct 2>/dev/null) || { echo "the pattern differs after the resize"; return 1; }
  dd if=/dev/urandom of=$WORK/nexus-grown bs=128k count=64 2>/dev/null &&
  dd if=$WORK/nexus-grown of=$DEV bs=128k seek=$(((grown - (8 << 20)) / (128 << 10))) oflag=direct conv=fsync 2>/dev/null || { echo "a write into the grown range failed"; return 1; }
  cmp $WORK/nexus-grown <(dd if=$DEV bs=128k skip=$(((grown - (8 << 20)) / (128 << 10))) count=64 iflag=direct 2>/dev/null) || { echo "the grown range reads back differently"; return 1; }
}
step "grow the nexus in place: the kernel sees the new size without reconnecting, data intact" nexus_grow
sed 's/^/    /' $WORK/step.log | head -n 4
step "nvme disconnect (nexus)" disconnect
kill -TERM $ENGINE_PID 2>/dev/null; wait $ENGINE_PID 2>/dev/null

# The reverse: our initiator against the kernel's own nvmet-tcp target (configfs): a 64 MiB
# namespace on a loop device over a tmpfs file (a block namespace: tmpfs files cannot zero a
# range, loop punches holes for discard and write zeroes), port 4421 on the guest's loopback.
KNQN=nqn.2026-11.io.strata:interop:kernel-target
CFG=/sys/kernel/config/nvmet
kernel_target() {
  modprobe nvmet && modprobe nvmet-tcp && modprobe loop || return 1
  truncate -s 64M $WORK/knvmet.img || return 1
  KLOOP=$(losetup -f --show $WORK/knvmet.img) || return 1
  mkdir -p $CFG/subsystems/$KNQN/namespaces/1 $CFG/ports/1 || return 1
  echo 1 > $CFG/subsystems/$KNQN/attr_allow_any_host
  echo -n $KLOOP > $CFG/subsystems/$KNQN/namespaces/1/device_path
  echo 1 > $CFG/subsystems/$KNQN/namespaces/1/enable || return 1
  echo tcp > $CFG/ports/1/addr_trtype; echo ipv4 > $CFG/ports/1/addr_adrfam
  echo 127.0.0.1 > $CFG/ports/1/addr_traddr; echo 4421 > $CFG/ports/1/addr_trsvcid
  ln -s $CFG/subsystems/$KNQN $CFG/ports/1/subsystems/$KNQN
}
step "kernel nvmet-tcp target on 127.0.0.1:4421" kernel_target
node "$ROOT/test/interop/initiator.js" "nvmf://127.0.0.1:4421/$KNQN?hostnqn=$HOSTNQN" || FAILED=1
rm -f $CFG/ports/1/subsystems/$KNQN 2>/dev/null

# DH-HMAC-CHAP: the refusals on any kernel; the full exchange where the kernel supports it.
bash "$ROOT/test/interop/auth.sh" || FAILED=1

# NVMe over RDMA on soft-RoCE: the kernel's nvme-rdma host against our target.
bash "$ROOT/test/interop/rdma.sh" || FAILED=1

[ $FAILED = 0 ] && echo "INTEROP PASS" || { echo "INTEROP FAIL"; echo "--- engine log tail"; tail -n 30 $WORK/engine.log; }
exit $FAILED
