# Shared by the interop VM scripts (guest.sh, rdma.sh): steps, the engine API, and the kernel
# host's view of one subsystem. Expects WORK, ROOT and NQN (the subsystem in use); STEP_PREFIX
# goes before every step name. Sets FAILED=1 when a step fails.

step() {  # NAME COMMAND...
  local name=$1; shift
  local t0=$(date +%s)
  if "$@" > $WORK/step.log 2>&1; then
    echo "PASS ${STEP_PREFIX:-}$name ($(( $(date +%s) - t0 )) s)"
  else
    echo "FAIL ${STEP_PREFIX:-}$name"; sed 's/^/    /' $WORK/step.log | tail -n 30; FAILED=1
  fi
}
ctl() { node "$ROOT/test/interop/ctl.js" "$@"; }

# The engine at $1 (data dir, gRPC endpoint and extra flags after it), started fresh: its log
# is $WORK/$LOG (default engine.log), and "engine ready" in it means this process.
start_engine_at() {  # DATA_DIR GRPC_ENDPOINT [FLAGS...]
  local data=$1 endpoint=$2; shift 2
  local log=$WORK/${LOG:-engine.log}
  [ -f $log ] && cat $log >> $log.previous
  : > $log
  node "$ROOT/bin/strata-engine.js" --node ${ENGINE_NODE:-vm} --data-dir $data --device-dir $WORK --token-file $WORK/token --grpc-listen $endpoint "$@" >> $log 2>&1 &
  ENGINE_PID=$!
  for _ in $(seq 1 120); do grep -q '"engine ready"' $log 2>/dev/null && return 0; sleep 0.5; done
  cat $log; return 1
}

device() {  # the block device of $NQN's namespace
  for s in /sys/class/nvme-subsystem/*; do
    [ "$(cat $s/subsysnqn 2>/dev/null)" = "$NQN" ] || continue
    for n in $s/nvme*n*; do [ -e "$n" ] && { echo /dev/$(basename $n); return 0; }; done
  done
  return 1
}
kernel_connect() {  # TRANSPORT ADDRESS PORT [nvme connect flags...]: sets DEV
  local transport=$1 address=$2 port=$3; shift 3
  nvme connect -t $transport -n $NQN -a $address -s $port --hostnqn $HOSTNQN --hostid $HOSTID "$@" || return 1
  for _ in $(seq 1 40); do DEV=$(device) && [ -b "$DEV" ] && return 0; sleep 0.5; done
  return 1
}
disconnect() { nvme disconnect -n $NQN; }
fio_verify() {  # bs jobs
  fio --name=verify-$1 --filename=$DEV --direct=1 --ioengine=libaio --rw=randwrite --bs=$1 --numjobs=$2 --iodepth=16 \
    --size=24M --offset_increment=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting --minimal | cut -d';' -f1-8
}
trim_pass() {
  fio --name=trim --filename=$DEV --direct=1 --ioengine=libaio --rw=trim --bs=1M --offset=128M --size=16M --iodepth=16 --minimal >/dev/null &&
  cmp -n $((16 << 20)) <(dd if=$DEV bs=1M skip=128 count=16 iflag=direct 2>/dev/null) /dev/zero
}
