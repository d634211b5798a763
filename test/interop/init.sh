#!/bin/sh
# /init of Strata's interop VM (busybox). Loads the modules that reach the host's root over
# 9p, builds an overlay (host / read-only + tmpfs) and chroots into it to run the guest
# script; the exit code and dmesg go back through the read-write 9p share, then power-off.
export PATH=/bin:/sbin
/bin/busybox --install -s /bin 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
KVER=$(cat /etc/kver)
off() { sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }
for m in $(cat /etc/boot-modules); do insmod /lib/modules/$KVER/$m 2>/dev/null; done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap share /share || { echo "no share" > /dev/console; off; }
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=262144,cache=loose hostroot /host || { echo 97 > /share/rc; off; }
mount -t tmpfs -o mode=0755 tmpfs /ovl
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work /newroot || { echo 96 > /share/rc; off; }
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t configfs configfs $R/sys/kernel/config 2>/dev/null
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
ln -sf /proc/self/fd $R/dev/fd
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/run
# A checkout under /tmp (a CI clone) must stay visible under the guest's fresh /tmp.
SRC=$(sed -n 's/.*strata.root=\([^ ]*\).*/\1/p' /proc/cmdline)
case "$SRC" in /tmp/*) mkdir -p /keep && mount --bind "$R$SRC" /keep ;; esac
mount -t tmpfs tmpfs $R/tmp
case "$SRC" in /tmp/*) mkdir -p "$R$SRC" && mount --bind /keep "$R$SRC" ;; esac
mkdir -p $R/share && mount --bind /share $R/share
mkdir -p $R/lib/modules/$KVER
# The complete module tree lives in the cache on the host; the initramfs copy is the fallback.
KMODS=$(sed -n 's/.*strata.kmods=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$KMODS" ] && [ -f "$R$KMODS/modules.dep" ]; then mount --bind "$R$KMODS" $R/lib/modules/$KVER
else mount --bind /lib/modules/$KVER $R/lib/modules/$KVER; fi
# request_module() runs this path from the initramfs root: send it into the chroot.
printf '#!/bin/sh\nexec /bin/chroot /newroot /sbin/modprobe "$@"\n' > /bin/modprobe-chroot
chmod 755 /bin/modprobe-chroot
echo /bin/modprobe-chroot > /proc/sys/kernel/modprobe
ip link set lo up
chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  /bin/bash /share/cmd > /share/output.log 2>&1 < /dev/null
echo $? > /share/rc
dmesg > /share/dmesg.log 2>/dev/null
off
