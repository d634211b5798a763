#!/usr/bin/env bash
# Boots Debian's stock kernel in QEMU (TCG unless STRATA_VM_ACCEL=kvm) with the host's / as a
# read-only overlay root, runs `bash SCRIPT ARGS...` inside as root, and exits with its code.
# Everything large lives in $STRATA_VM_CACHE (default /var/cache/strata-vm), outside the repo.
#   test/interop/vm.sh SCRIPT [ARGS...]      (env: STRATA_VM_TIMEOUT_S, STRATA_VM_MEM_MB, STRATA_VM_SMP,
#                                            STRATA_VM_KERNEL: another Debian kernel (meta-)package
#                                            than linux-image-amd64, e.g. linux-image-6.12-amd64)
set -euo pipefail
CACHE=${STRATA_VM_CACHE:-/var/cache/strata-vm}
HERE=$(cd "$(dirname "$0")" && pwd)
log() { echo "[vm] $*" >&2; }
[ $# -ge 1 ] || { echo "usage: vm.sh SCRIPT [ARGS...]" >&2; exit 2; }
SCRIPT=$(readlink -f "$1"); shift

need=""
for p in qemu-system-x86 busybox-static nvme-cli fio kmod cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  log "installing:$need"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

mkdir -p "$CACHE/debs"
KMETA=${STRATA_VM_KERNEL:-linux-image-amd64}
KPKG=$(apt-cache depends "$KMETA" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || [ -z "${STRATA_VM_KERNEL:-}" ] || KPKG=$STRATA_VM_KERNEL  # a versioned package, not a meta-package
[ -n "$KPKG" ] || KPKG=$(ls "$CACHE"/debs/linux-image-*-amd64_*.deb 2>/dev/null | sed 's#.*/##; s#_.*##' | sort -V | tail -1)
[ -n "$KPKG" ] || { echo "cannot find the linux-image-amd64 kernel package" >&2; exit 1; }
KVER=${KPKG#linux-image-}
if ! ls "$CACHE"/debs/"$KPKG"_*.deb >/dev/null 2>&1; then
  log "downloading $KPKG"
  (cd "$CACHE/debs" && apt-get download "$KPKG" >/dev/null 2>&1)
fi
KROOT=$CACHE/kroot
# Another kernel gets its own tree, so runs on the default kernel are never disturbed.
[ -n "${STRATA_VM_KERNEL:-}" ] && KROOT=$CACHE/kroot-$KVER
if [ ! -f "$KROOT/lib/modules/$KVER/modules.dep" ]; then
  log "extracting $KPKG"
  rm -rf "$KROOT"
  dpkg -x "$(ls "$CACHE"/debs/"$KPKG"_*.deb | head -1)" "$KROOT"
  depmod -b "$KROOT" "$KVER"
fi
INITRD=$CACHE/initramfs-$KVER.cpio.gz
if [ ! -f "$INITRD" ] || [ "$HERE/init.sh" -nt "$INITRD" ] || [ "$HERE/vm.sh" -nt "$INITRD" ]; then
  log "building $INITRD"
  STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
  trap 'rm -rf "$STAGE"' EXIT
  mkdir -p "$STAGE"/{bin,sbin,etc,proc,sys,dev,host,share,newroot,ovl,tmp,lib/modules/$KVER}
  cp /bin/busybox "$STAGE/bin/busybox"
  for a in sh mount insmod poweroff sleep cat echo sync; do ln -sf busybox "$STAGE/bin/$a"; done
  for m in virtio_pci virtio_console 9pnet_virtio 9p overlay configfs; do
    modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | awk '!seen[$0]++' | sed "s#^$KROOT/*lib/modules/$KVER/##" > "$STAGE/etc/boot-modules"
  while read -r rel; do
    mkdir -p "$STAGE/lib/modules/$KVER/$(dirname "$rel")"
    cp "$KROOT/lib/modules/$KVER/$rel" "$STAGE/lib/modules/$KVER/$rel"
  done < "$STAGE/etc/boot-modules"
  echo "$KVER" > "$STAGE/etc/kver"
  install -m 0755 "$HERE/init.sh" "$STAGE/init"
  (cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$INITRD"
fi

mkdir -p "$CACHE/runs"
RUN=$(mktemp -d "$CACHE/runs/run.XXXXXX")
{
  printf 'cd %q\n' "$PWD"
  printf 'exec bash %q' "$SCRIPT"
  for a in "$@"; do printf ' %q' "$a"; done
  printf '\n'
} > "$RUN/cmd"
: > "$RUN/output.log"
ACCEL=${STRATA_VM_ACCEL:-tcg}
[ "$ACCEL" = tcg ] && ACCEL_OPT="tcg,thread=multi" || ACCEL_OPT=kvm
qemu-system-x86_64 -M pc -accel "$ACCEL_OPT" -cpu max -smp "${STRATA_VM_SMP:-2}" -m "${STRATA_VM_MEM_MB:-3072}" \
  -nodefaults -no-user-config -display none -vga none -no-reboot -net none \
  -kernel "$KROOT/boot/vmlinuz-$KVER" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 loglevel=4 strata.kmods=$KROOT/lib/modules/$KVER strata.root=$PWD" \
  -serial "file:$RUN/console.log" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$RUN,mount_tag=share,security_model=none,multidevs=remap" > "$RUN/qemu.log" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null || true' EXIT
tail -n +1 -s 0.5 -F --pid=$QPID "$RUN/output.log" 2>/dev/null &
DEADLINE=$(( $(date +%s) + ${STRATA_VM_TIMEOUT_S:-1800} ))
while kill -0 $QPID 2>/dev/null; do
  if [ "$(date +%s)" -ge $DEADLINE ]; then log "timeout; console tail:"; tail -n 20 "$RUN/console.log" >&2; kill -9 $QPID; exit 124; fi
  sleep 1
done
wait $QPID 2>/dev/null || true
sleep 1
RC=$(cat "$RUN/rc" 2>/dev/null || echo 125)
log "rc=$RC run dir $RUN (output.log, dmesg.log, console.log)"
exit "$RC"
