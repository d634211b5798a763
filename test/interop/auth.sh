#!/usr/bin/env bash
# Runs inside the interop VM (test/interop/vm.sh): DH-HMAC-CHAP between the Linux kernel and
# Strata. The kernel host (`nvme connect --dhchap-secret`, keys from `nvme gen-dhchap-key`)
# against a strata-engine share that requires authentication, and our initiator against the
# kernel's nvmet-tcp with a host key. Needs a kernel built with CONFIG_NVME_HOST_AUTH and
# CONFIG_NVME_TARGET_AUTH (Debian's 6.1 lacks both, its 6.12 has them):
#   STRATA_VM_KERNEL=linux-image-6.12.100+deb12-amd64 bash test/interop/vm.sh test/interop/auth.sh
# On a kernel without them only the refusals are checked, and the script says so.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=/tmp/strata-interop-auth
mkdir -p $WORK
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:5a7a0000-0000-4000-8000-0000000a0717
HOSTID=5a7a0000-0000-4000-8000-0000000a0717
export STRATA_ENDPOINT=127.0.0.1:10125 STRATA_TOKEN=interop-auth-token-0123456789
echo "$STRATA_TOKEN" > $WORK/token
POOL=11111111-2222-4333-8444-a00000000001
REPLICA=66666666-7777-4888-8999-a00000000002
NQN=nqn.2026-11.io.strata:replica:$REPLICA
PORT=4430
FAILED=0
step() { local name=$1; shift; local t0=$(date +%s); if "$@" > $WORK/step.log 2>&1; then echo "PASS $name ($(( $(date +%s) - t0 )) s)"; else echo "FAIL $name"; sed 's/^/    /' $WORK/step.log | tail -n 30; FAILED=1; fi; }
ctl() { node "$ROOT/test/interop/ctl.js" "$@"; }

start_engine() {
  : > $WORK/engine.log
  node "$ROOT/bin/strata-engine.js" --node vm-auth --data-dir $WORK/data --device-dir $WORK --token-file $WORK/token --grpc-listen $STRATA_ENDPOINT \
    --nvmf-listen 127.0.0.1:$PORT --nvmf-discovery-listen 127.0.0.1:8010 >> $WORK/engine.log 2>&1 &
  ENGINE_PID=$!
  for _ in $(seq 1 120); do grep -q '"engine ready"' $WORK/engine.log 2>/dev/null && return 0; sleep 0.5; done
  cat $WORK/engine.log; return 1
}
device() {
  for s in /sys/class/nvme-subsystem/*; do
    [ "$(cat $s/subsysnqn 2>/dev/null)" = "$NQN" ] || continue
    for n in $s/nvme*n*; do [ -e "$n" ] && { echo /dev/$(basename $n); return 0; }; done
  done
  return 1
}
connect() {  # extra nvme connect arguments (secrets)
  nvme connect -t tcp -n $NQN -a 127.0.0.1 -s $PORT --hostnqn $HOSTNQN --hostid $HOSTID "$@" || return 1
  for _ in $(seq 1 40); do DEV=$(device) && [ -b "$DEV" ] && return 0; sleep 0.5; done
  return 1
}
refused() {  # nvme connect must fail and leave no controller behind
  if nvme connect -t tcp -n $NQN -a 127.0.0.1 -s $PORT --hostnqn $HOSTNQN --hostid $HOSTID "$@"; then
    nvme disconnect -n $NQN; echo "connect succeeded"; return 1
  fi
  ! device
}
disconnect() { nvme disconnect -n $NQN; }
fio_verify() {
  fio --name=verify --filename=$DEV --direct=1 --ioengine=libaio --rw=randwrite --bs=4k --numjobs=2 --iodepth=16 \
    --size=16M --offset_increment=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting --minimal | cut -d';' -f1-8
}
share() {  # allowed host with secret [ctrl secret]
  ctl ShareReplica "{\"uuid\":\"$REPLICA\",\"allowed_host_nqns\":[],\"hosts\":[{\"nqn\":\"$HOSTNQN\",\"dhchap_secret\":\"$1\",\"dhchap_ctrl_secret\":\"${2:-}\"}]}"
}

modprobe nvme-tcp
if modprobe nvme-auth 2>/dev/null || grep -q nvme-auth /lib/modules/$(uname -r)/modules.builtin 2>/dev/null; then KERNEL_AUTH=1; else KERNEL_AUTH=0; fi
echo "    kernel $(uname -r): DH-HMAC-CHAP $([ $KERNEL_AUTH = 1 ] && echo supported || echo 'NOT supported (CONFIG_NVME_AUTH off)')"
cd "$ROOT"
# Keys as nvme-cli makes them: a SHA-256-transformed host key and a SHA-384 controller key.
HOSTKEY=$(nvme gen-dhchap-key --hmac=1 --nqn $HOSTNQN)
CTRLKEY=$(nvme gen-dhchap-key --hmac=2 --nqn $NQN)
WRONGKEY=$(nvme gen-dhchap-key --hmac=1 --nqn $HOSTNQN)
step "engine starts" start_engine
step "pool, replica, share requiring DH-HMAC-CHAP" bash -c "
  node $ROOT/test/interop/ctl.js CreatePool '{\"uuid\":\"$POOL\",\"name\":\"vm\",\"device_uri\":\"file://$WORK/disk.img?size_mib=256\",\"cluster_size_bytes\":1048576}' &&
  node $ROOT/test/interop/ctl.js CreateReplica '{\"uuid\":\"$REPLICA\",\"name\":\"r\",\"pool\":\"vm\",\"size_bytes\":134217728,\"thin\":true}'" 
step "ShareReplica with the host's secret" share "$HOSTKEY"
step "nvme connect without a secret is refused" refused
step "nvme connect with a wrong secret is refused" refused --dhchap-secret="$WRONGKEY"
if [ $KERNEL_AUTH = 1 ]; then
  step "nvme connect --dhchap-secret (every queue authenticates)" connect --dhchap-secret="$HOSTKEY"
  echo "    device: ${DEV:-none}"
  step "fio verify 4K, 2 jobs, iodepth 16, authenticated" fio_verify
  step "nvme disconnect" disconnect
  step "ShareReplica with host and controller secrets" share "$HOSTKEY" "$CTRLKEY"
  step "nvme connect bidirectional (--dhchap-ctrl-secret): the kernel checks our response" connect --dhchap-secret="$HOSTKEY" --dhchap-ctrl-secret="$CTRLKEY"
  step "fio verify, bidirectional" fio_verify
  step "nvme disconnect (bidirectional)" disconnect
  step "a kernel expecting another controller secret refuses our target" refused --dhchap-secret="$HOSTKEY" --dhchap-ctrl-secret="$(nvme gen-dhchap-key --hmac=2 --nqn $NQN)"
else
  step "nvme connect with the right secret is refused too: this kernel cannot authenticate" refused --dhchap-secret="$HOSTKEY"
fi
step "the engine log holds no secret" bash -c "! grep -F -e '${HOSTKEY:10:30}' -e '${CTRLKEY:10:30}' $WORK/engine.log"
kill -TERM $ENGINE_PID 2>/dev/null; wait $ENGINE_PID 2>/dev/null

# Our initiator against the kernel's nvmet-tcp, which requires DH-HMAC-CHAP from our host NQN.
if [ $KERNEL_AUTH = 1 ]; then
  KNQN=nqn.2026-11.io.strata:interop:kernel-auth-target
  CFG=/sys/kernel/config/nvmet
  kernel_target() {
    modprobe nvmet && modprobe nvmet-tcp && modprobe loop || return 1
    truncate -s 64M $WORK/knvmet.img || return 1
    KLOOP=$(losetup -f --show $WORK/knvmet.img) || return 1
    mkdir -p $CFG/hosts/$HOSTNQN $CFG/subsystems/$KNQN/namespaces/1 $CFG/ports/2 || return 1
    echo -n "$HOSTKEY" > $CFG/hosts/$HOSTNQN/dhchap_key || return 1
    echo -n "$CTRLKEY" > $CFG/hosts/$HOSTNQN/dhchap_ctrl_key || return 1
    echo 0 > $CFG/subsystems/$KNQN/attr_allow_any_host
    ln -s $CFG/hosts/$HOSTNQN $CFG/subsystems/$KNQN/allowed_hosts/$HOSTNQN || return 1
    echo -n $KLOOP > $CFG/subsystems/$KNQN/namespaces/1/device_path
    echo 1 > $CFG/subsystems/$KNQN/namespaces/1/enable || return 1
    echo tcp > $CFG/ports/2/addr_trtype; echo ipv4 > $CFG/ports/2/addr_adrfam
    echo 127.0.0.1 > $CFG/ports/2/addr_traddr; echo 4431 > $CFG/ports/2/addr_trsvcid
    ln -s $CFG/subsystems/$KNQN $CFG/ports/2/subsystems/$KNQN
  }
  step "kernel nvmet-tcp target requiring DH-HMAC-CHAP (host and controller keys)" kernel_target
  step "our initiator without the secret is refused by the kernel target" bash -c "
    node -e 'const n=require(\"$ROOT/dist/native\").loadNative(); n.start({cores:1});
      n.probeDevice({uri:\"nvmf://127.0.0.1:4431/$KNQN?hostnqn=$HOSTNQN\"}).then(()=>process.exit(1),(e)=>{console.log(e.message);n.shutdown().then(()=>process.exit(0));});'"
  STRATA_DHCHAP_SECRET="$HOSTKEY" STRATA_DHCHAP_CTRL_SECRET="$CTRLKEY" node "$ROOT/test/interop/initiator.js" "nvmf://127.0.0.1:4431/$KNQN?hostnqn=$HOSTNQN" || FAILED=1
  rm -f $CFG/ports/2/subsystems/$KNQN 2>/dev/null
fi

# A CSAL tiered device declared in Pulumi, serving a volume to this host (frontends authenticate).
if [ $KERNEL_AUTH = 1 ]; then bash "$ROOT/test/interop/csal.sh" || FAILED=1; fi

[ $FAILED = 0 ] && echo "INTEROP AUTH PASS" || { echo "INTEROP AUTH FAIL"; echo "--- engine log tail"; tail -n 30 $WORK/engine.log; }
exit $FAILED
