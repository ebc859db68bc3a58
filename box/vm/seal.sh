#!/bin/sh
# The VM box's sealing boot: QEMU starts the image once with the kernel given directly
# and this script as init (PID 1). It installs GRUB on the disk it booted from, writes
# GRUB's config, removes itself and powers off. Later boots, Vagrant's, go through the
# BIOS and GRUB like any VM. Anything failing stops with a message on the console.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs has moved /proc, /sys and /dev into the root already; without one, mount them.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mount -o remount,rw /
echo "iotlab-seal: installing GRUB on /dev/vda"
if grub-install --target=i386-pc /dev/vda && update-grub; then
  rm -f /usr/local/sbin/iotlab-seal
  echo "iotlab-seal: SEALED"
else
  echo "iotlab-seal: FAILED"
fi
sync
mount -o remount,ro /
echo o > /proc/sysrq-trigger
sleep 60
