#!/bin/sh
# mmdebstrap --customize-hook for the libvirt (VM) box, run after box/customize.sh
# (user vagrant, per-host SSH keys and machine-id, role services off). $1 is the new
# root, $2 the filesystem UUID the image will have. Nothing here needs a loop mount:
# the root becomes an ext4 image with `mkfs.ext4 -d`, and GRUB goes in from inside the
# guest on its first (sealing) boot, box/vm/seal.sh.
set -eu
root="$1"
uuid="$2"

printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid" > "$root/etc/fstab"

# Classic NIC names in the order of the PCI slots libvirt gives them: eth0 is the
# management NIC (the first, always), the lab's NICs follow in the topology's order.
# A serial console, so a boot can be watched with `virsh console`.
cat > "$root/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200 net.ifnames=0 biosdevname=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUB_DISABLE_OS_PROBER=true
GRUB

# The management NIC takes its address from DHCP: the lab's management network hands
# each VM the address the topology gives it (a host entry per MAC). Vagrant writes the
# lab NICs' static addresses beside this (50-vagrant-ethN.network).
cat > "$root/etc/systemd/network/10-mgmt.network" <<'NET'
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
# The management network is no way out: never a default route or DNS from it.
UseRoutes=no
UseDNS=no
NET
systemctl --root="$root" enable systemd-networkd.service
# The lab NICs may come up after boot; a host must not wait for them.
systemctl --root="$root" mask systemd-networkd-wait-online.service
# The guest agent lets libvirt ask the guest for its addresses.
systemctl --root="$root" enable qemu-guest-agent.service 2>/dev/null || true

# The sealing boot's init (see seal.sh); it deletes itself when done.
install -m 0755 "$(dirname "$0")/seal.sh" "$root/usr/local/sbin/iotlab-seal"
