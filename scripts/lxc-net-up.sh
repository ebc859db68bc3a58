#!/bin/sh
# LXC network up-hook for a container's management NIC (lxc.net.0.script.up).
# Isolated bridge ports reach the bridge itself (the provisioning machine) but never
# each other, so the management network joins no two hosts: no bypass of the tunnel.
# LXC 5 passes: container, "net", "up", "veth", the bridge, the host-side veth (last).
set -eu
for peer; do :; done
case "$peer" in
  ""|net|up|veth) echo "lxc-net-up: no host-side interface in: $*" >&2; exit 1 ;;
esac
exec /usr/sbin/bridge link set dev "$peer" isolated on
