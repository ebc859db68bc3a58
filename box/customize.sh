#!/bin/sh
# mmdebstrap --customize-hook for the lxc box: runs on the build machine once the
# packages are installed, with the new root as $1 and Vagrant's public insecure key
# as $2. Everything here makes one image serve many containers (Vagrant replaces the
# insecure key with a per-machine one on first `vagrant up`).
set -eu
root="$1"
insecure_key="$2"

# Vagrant's convention: user vagrant, passwordless sudo, the well-known key.
chroot "$root" useradd --create-home --shell /bin/bash --user-group vagrant
printf 'vagrant ALL=(ALL) NOPASSWD:ALL\nDefaults:vagrant !requiretty\n' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$insecure_key" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh

# No /etc/hostname: with one, Vagrant's Debian hostname step runs ifup@eth0, which
# fails without udev (PLATFORM.md). libnss-myhostname resolves the name instead.
rm -f "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n' > "$root/etc/hosts"

# Per-container identity: machine-id and SSH host keys are made on first boot,
# never shared between hosts built from the same image.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this host's own SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
# Ed25519 and ECDSA only (the HostKey drop-in below): each takes 0.2 s on an emulated
# VM, where RSA's 3072 bits took 16 s idle and 50 s in a boot (3 Dec 2026).
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=multi-user.target
UNIT
systemctl --root="$root" enable ssh-hostkeys.service ssh.service
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n' \
  > "$root/etc/ssh/sshd_config.d/10-lab-hostkeys.conf"

# No LVM to scrub and no network to fetch updates from: these only take CPU from a
# boot (e2scrub_reap took 77 s of an emulated VM's first boot) or a test.
for unit in e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer; do
  systemctl --root="$root" mask "$unit"
done

# Role services stay off until a role enables them: the box is neutral.
for unit in nginx.service postgresql.service strongswan.service strongswan-starter.service iperf3.service \
    prometheus.service prometheus-node-exporter.service prometheus-nginx-exporter.service \
    prometheus-postgres-exporter.service etcd.service patroni.service; do
  systemctl --root="$root" disable "$unit" 2>/dev/null || true
done

# The image carries no package lists (they would be stale): smaller box.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
