#!/usr/bin/env bash
# Runs inside the interop VM (test/interop/vm.sh) on a kernel with NVMe in-band authentication
# (called by auth.sh on Debian's 6.12): a CSAL tiered device declared in Pulumi, the user's way.
# `strata cluster up` (one node, with a cache and a base file), the quickstart with its tiered
# volume published to this host, `strata up` through the real Pulumi CLI; then the kernel host
# connects with the volume's DH-HMAC-CHAP secret and fio verifies data through nexus -> replica
# -> pool -> FTL, also after the engine is SIGKILLed and comes back. Prints PASS/FAIL per step.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=/tmp/strata-interop-csal
rm -rf $WORK && mkdir -p $WORK
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:5a7a0000-0000-4000-8000-00000000c5a1
HOSTID=5a7a0000-0000-4000-8000-00000000c5a1
export STRATA_HOME=$WORK/home STRATA_STACK=vm-csal
FAILED=0
step() { local name=$1; shift; local t0=$(date +%s); if "$@" > $WORK/step.log 2>&1; then echo "PASS $name ($(( $(date +%s) - t0 )) s)"; else echo "FAIL $name"; sed 's/^/    /' $WORK/step.log | tail -n 40; FAILED=1; fi; }
strata() { node "$ROOT/bin/strata.js" "$@"; }
pulumi_cli() {
  PULUMI_BACKEND_URL=file://$STRATA_HOME/pulumi-state PULUMI_CONFIG_PASSPHRASE=$(cat $STRATA_HOME/pulumi-passphrase) \
  PULUMI_HOME=$STRATA_HOME/pulumi-home PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true \
    "$ROOT/tools/pulumi/bin/pulumi" "$@" --stack $STRATA_STACK --non-interactive
}
device() {
  for s in /sys/class/nvme-subsystem/*; do
    [ "$(cat $s/subsysnqn 2>/dev/null)" = "$NQN" ] || continue
    for n in $s/nvme*n*; do [ -e "$n" ] && { echo /dev/$(basename $n); return 0; }; done
  done
  return 1
}
connect() {
  # tieredConnect is "-a HOST -s PORT -n NQN"
  nvme connect -t tcp $CONNECT --hostnqn $HOSTNQN --hostid $HOSTID --dhchap-secret="$SECRET" || return 1
  for _ in $(seq 1 40); do DEV=$(device) && [ -b "$DEV" ] && return 0; sleep 0.5; done
  return 1
}
disconnect() { nvme disconnect -n $NQN; }
fio_verify() {  # bs
  fio --name=csal-$1 --filename=$DEV --direct=1 --ioengine=libaio --rw=randwrite --bs=$1 --numjobs=2 --iodepth=16 \
    --size=48M --offset_increment=96M --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting --minimal | cut -d';' -f1-8
}

modprobe nvme-tcp
cd "$ROOT"
# The passphrase `strata` would make at its first Pulumi command; made here so `pulumi config
# set` can run before it.
mkdir -p $STRATA_HOME/pulumi-state && head -c 24 /dev/urandom | base64 | tr -d '/+=' > $STRATA_HOME/pulumi-passphrase
step "strata cluster up: one node with a CSAL device's cache and base files" strata cluster up --nodes 1 --base-port 10140 --disk-mib 2048
step "the tiered volume's frontend is this host (pulumi config set)" pulumi_cli config set tieredFrontendHostNqn $HOSTNQN
step "strata up: a CsalDevice, a pool on its uri, a volume on that pool published here" strata up
CONNECT=$(strata output tieredConnect 2>/dev/null)
SECRET=$(strata output tieredDhchapSecret 2>/dev/null)
NQN=${CONNECT##*-n }
echo "    $CONNECT"
status_shows() { strata cluster status | tee /dev/stderr | grep -E "$1"; }
step "the engine formatted the CSAL device and the tier pool is on it" status_shows '^tier +node-a .* pool-tier '

step "nvme connect --dhchap-secret to the tiered volume" connect
echo "    device: ${DEV:-none}"
step "fio verify 4K on the CSAL-backed volume, 2 jobs, iodepth 16" fio_verify 4k
step "fio verify 128K on the CSAL-backed volume" fio_verify 128k
step "write a marker" bash -c "dd if=/dev/urandom of=$WORK/marker bs=1M count=8 2>/dev/null && dd if=$WORK/marker of=$DEV bs=1M seek=100 oflag=direct conv=fsync 2>/dev/null"
step "nvme disconnect" disconnect
step "SIGKILL the engine, cluster up starts it again (the FTL recovers from its log and bands)" bash -c "
  pid=\$(node -e 'console.log(JSON.parse(require(\"fs\").readFileSync(process.argv[1], \"utf8\")).nodes[0].pid)' $STRATA_HOME/cluster/cluster.json)
  kill -KILL \$pid; while kill -0 \$pid 2>/dev/null; do sleep 0.2; done
  node $ROOT/bin/strata.js cluster up --nodes 1 --base-port 10140 --disk-mib 2048"
step "nvme connect after the crash" connect
step "the marker reads back" bash -c "cmp -n $((8 << 20)) $WORK/marker <(dd if=$DEV bs=1M skip=100 count=8 iflag=direct 2>/dev/null)"
step "fio verify 4K after the crash" fio_verify 4k
step "nvme disconnect" disconnect
step "cluster status reports the CSAL device's write amplification" status_shows '^tier +node-a .* pool-tier +[0-9.]+ [KMG]iB +[0-9]+\.[0-9]{2} '
# (No destroy here: the VM is thrown away, and test/e2e/quickstart.test.ts destroys the same
# program on the host; under software emulation it would cost minutes.)
[ $FAILED = 0 ] && echo "INTEROP CSAL PASS" || echo "INTEROP CSAL FAIL"
exit $FAILED
