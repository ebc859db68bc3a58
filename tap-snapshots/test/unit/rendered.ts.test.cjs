/* IMPORTANT
 * This snapshot file is auto-generated, but designed for humans.
 * It should be checked into source control and tracked carefully.
 * Re-generate by setting TAP_SNAPSHOT=1 and running tests.
 * Make sure to inspect the output below.  Do not ignore changes!
 */
'use strict'
exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > database-1: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (database-1): edits are overwritten.
# keepalived: this host is a member of group database (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.4 s at one advert a second).
global_defs {
  router_id database-1
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: a member whose patroni fails
# this check 2 times in a row gives the addresses up.
vrrp_script patroni {
  script "/usr/bin/curl -fsS -o /dev/null --max-time 1 http://10.20.0.31:8008/primary"
  interval 1
  timeout 1
  fall 2
  rise 2
}

vrrp_instance database {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 3
  priority 150
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.31
  unicast_peer {
    10.20.0.32
    10.20.0.33
  }
  virtual_ipaddress {
    10.20.0.30/24 dev cloud
  }
  track_script {
    patroni
  }
}

`

exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > database-2: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (database-2): edits are overwritten.
# keepalived: this host is a member of group database (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.5 s at one advert a second).
global_defs {
  router_id database-2
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: a member whose patroni fails
# this check 2 times in a row gives the addresses up.
vrrp_script patroni {
  script "/usr/bin/curl -fsS -o /dev/null --max-time 1 http://10.20.0.32:8008/primary"
  interval 1
  timeout 1
  fall 2
  rise 2
}

vrrp_instance database {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 3
  priority 140
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.32
  unicast_peer {
    10.20.0.31
    10.20.0.33
  }
  virtual_ipaddress {
    10.20.0.30/24 dev cloud
  }
  track_script {
    patroni
  }
}

`

exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > database-3: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (database-3): edits are overwritten.
# keepalived: this host is a member of group database (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.5 s at one advert a second).
global_defs {
  router_id database-3
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: a member whose patroni fails
# this check 2 times in a row gives the addresses up.
vrrp_script patroni {
  script "/usr/bin/curl -fsS -o /dev/null --max-time 1 http://10.20.0.33:8008/primary"
  interval 1
  timeout 1
  fall 2
  rise 2
}

vrrp_instance database {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 3
  priority 130
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.33
  unicast_peer {
    10.20.0.31
    10.20.0.32
  }
  virtual_ipaddress {
    10.20.0.30/24 dev cloud
  }
  track_script {
    patroni
  }
}

`

exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > gw-cloud-2: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (gw-cloud-2): edits are overwritten.
# keepalived: this host is a member of group hub (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.5 s at one advert a second).
global_defs {
  router_id gw-cloud-2
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: the member's own watch writes 0
# to this file while charon answers, and anything else gives the addresses up
# (weight 0). keepalived reads it when it changes and runs nothing for it.
track_file charon {
  file "/run/lab-hub-health"
  weight 0
  # Absent (the watch not started yet): not healthy.
  init_file 1
}

vrrp_instance hub {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 2
  priority 140
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.3
  unicast_peer {
    10.20.0.2
  }
  virtual_ipaddress {
    10.20.0.1/24 dev cloud
    198.51.100.12/24 dev inet
  }
  track_file {
    charon
  }
}

`

exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > gw-cloud: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (gw-cloud): edits are overwritten.
# keepalived: this host is a member of group hub (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.4 s at one advert a second).
global_defs {
  router_id gw-cloud
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: the member's own watch writes 0
# to this file while charon answers, and anything else gives the addresses up
# (weight 0). keepalived reads it when it changes and runs nothing for it.
track_file charon {
  file "/run/lab-hub-health"
  weight 0
  # Absent (the watch not started yet): not healthy.
  init_file 1
}

vrrp_instance hub {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 2
  priority 150
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.2
  unicast_peer {
    10.20.0.3
  }
  virtual_ipaddress {
    10.20.0.1/24 dev cloud
    198.51.100.12/24 dev inet
  }
  track_file {
    charon
  }
}

`

exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > proxy-1: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (proxy-1): edits are overwritten.
# keepalived: this host is a member of group proxy (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.4 s at one advert a second).
global_defs {
  router_id proxy-1
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: a member whose nginx fails
# this check 2 times in a row gives the addresses up.
vrrp_script nginx {
  script "/usr/bin/curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:8081/nginx_status"
  interval 1
  timeout 1
  fall 2
  rise 2
}

vrrp_instance proxy {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 1
  priority 150
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.11
  unicast_peer {
    10.20.0.12
  }
  virtual_ipaddress {
    10.20.0.10/24 dev cloud
  }
  track_script {
    nginx
  }
}

`

exports[`test/unit/rendered.ts > TAP > keepalived.conf of each pair's member (hub and proxy), as keepalived -t reads it > proxy-2: /etc/keepalived/keepalived.conf 1`] = `
# Managed by the lab provisioner (proxy-2): edits are overwritten.
# keepalived: this host is a member of group proxy (topology.yaml, groups). The
# active member holds the group's virtual addresses; the others watch its adverts and
# take them over when they stop (VRRP, RFC 5798: after 3 adverts missed plus a skew,
# about 3.5 s at one advert a second).
global_defs {
  router_id proxy-2
  # Scripts run as root, and only scripts root alone can change are run.
  script_user root
  enable_script_security
  # A new master announces its addresses at once, then again after 2 s, so that
  # neighbours whose ARP caches still name the old member learn the new one.
  vrrp_garp_master_delay 2
  vrrp_garp_master_repeat 3
  # State changes are handled one after the other, in order: keepalived writes each to
  # this FIFO and one reader it starts hands them to the notify script in turn.
  vrrp_notify_fifo /run/keepalived-lab-notify.fifo
  vrrp_notify_fifo_script "/usr/local/lib/lab/vrrp-notify-fifo"
}

# The service itself must answer, not only the host: a member whose nginx fails
# this check 2 times in a row gives the addresses up.
vrrp_script nginx {
  script "/usr/bin/curl -fsS -o /dev/null --max-time 1 http://127.0.0.1:8081/nginx_status"
  interval 1
  timeout 1
  fall 2
  rise 2
}

vrrp_instance proxy {
  # Every member starts as a backup and none preempts: the first election goes by
  # priority, and after a failover the addresses stay where they are (a fail-back is a
  # choice, not a second outage).
  state BACKUP
  nopreempt
  interface cloud
  virtual_router_id 1
  priority 140
  advert_int 1
  # Unicast between the members: no multicast on the lab's bridges.
  unicast_src_ip 10.20.0.12
  unicast_peer {
    10.20.0.11
  }
  virtual_ipaddress {
    10.20.0.10/24 dev cloud
  }
  track_script {
    nginx
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > backend-1: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (backend-1, role backend): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9102 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr { 10.20.0.11, 10.20.0.12 } tcp dport 8080 accept comment "ingest: from the proxy only"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > backend-2: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (backend-2, role backend): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9102 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr { 10.20.0.11, 10.20.0.12 } tcp dport 8080 accept comment "ingest: from the proxy only"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > database-1: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (database-1, role db): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9187, 8008 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr { 10.20.0.21, 10.20.0.22 } tcp dport 5432 accept comment "PostgreSQL: from the backends only"
    ip saddr { 10.20.0.32, 10.20.0.33 } tcp dport { 5432, 8008, 2379, 2380 } accept comment "the database cluster's members: replication, Patroni, etcd"
    ip saddr { 10.20.0.32, 10.20.0.33 } ip protocol vrrp accept comment "VRRP adverts from group database"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > database-2: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (database-2, role db): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9187, 8008 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr { 10.20.0.21, 10.20.0.22 } tcp dport 5432 accept comment "PostgreSQL: from the backends only"
    ip saddr { 10.20.0.31, 10.20.0.33 } tcp dport { 5432, 8008, 2379, 2380 } accept comment "the database cluster's members: replication, Patroni, etcd"
    ip saddr { 10.20.0.31, 10.20.0.33 } ip protocol vrrp accept comment "VRRP adverts from group database"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > database-3: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (database-3, role db): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9187, 8008 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr { 10.20.0.21, 10.20.0.22 } tcp dport 5432 accept comment "PostgreSQL: from the backends only"
    ip saddr { 10.20.0.31, 10.20.0.32 } tcp dport { 5432, 8008, 2379, 2380 } accept comment "the database cluster's members: replication, Patroni, etcd"
    ip saddr { 10.20.0.31, 10.20.0.32 } ip protocol vrrp accept comment "VRRP adverts from group database"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > gw-cloud (kernel ESP): /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (gw-cloud, role gateway): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100 } accept comment "Prometheus on monitor: what it scrapes here"
    iifname "inet" ip saddr { 198.51.100.11 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"
    iifname "inet" ip saddr { 198.51.100.11 } meta l4proto esp accept comment "ESP"
    iifname "inet" counter drop comment "internet side: nothing else"
    ip saddr { 10.20.0.3 } ip protocol vrrp accept comment "VRRP adverts from group hub"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    meta secpath exists ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: decrypted from the tunnel"
    rt ipsec exists ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: into the tunnel"
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > gw-cloud-2 (kernel ESP): /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (gw-cloud-2, role gateway): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100 } accept comment "Prometheus on monitor: what it scrapes here"
    iifname "inet" ip saddr { 198.51.100.11 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"
    iifname "inet" ip saddr { 198.51.100.11 } meta l4proto esp accept comment "ESP"
    iifname "inet" counter drop comment "internet side: nothing else"
    ip saddr { 10.20.0.2 } ip protocol vrrp accept comment "VRRP adverts from group hub"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    meta secpath exists ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: decrypted from the tunnel"
    rt ipsec exists ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: into the tunnel"
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > gw-cloud-2: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (gw-cloud-2, role gateway): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100 } accept comment "Prometheus on monitor: what it scrapes here"
    iifname "inet" ip saddr { 198.51.100.11 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"
    iifname "inet" ip saddr { 198.51.100.11 } meta l4proto esp accept comment "ESP"
    iifname "inet" counter drop comment "internet side: nothing else"
    ip saddr { 10.20.0.2 } ip protocol vrrp accept comment "VRRP adverts from group hub"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "ipsec0" ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: from the tunnel"
    oifname "ipsec0" ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: into the tunnel"
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > gw-cloud: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (gw-cloud, role gateway): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100 } accept comment "Prometheus on monitor: what it scrapes here"
    iifname "inet" ip saddr { 198.51.100.11 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"
    iifname "inet" ip saddr { 198.51.100.11 } meta l4proto esp accept comment "ESP"
    iifname "inet" counter drop comment "internet side: nothing else"
    ip saddr { 10.20.0.3 } ip protocol vrrp accept comment "VRRP adverts from group hub"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "ipsec0" ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: from the tunnel"
    oifname "ipsec0" ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: into the tunnel"
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > gw-iot (kernel ESP): /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (gw-iot, role gateway): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100 } accept comment "Prometheus on monitor: what it scrapes here"
    iifname "inet" ip saddr { 198.51.100.12 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"
    iifname "inet" ip saddr { 198.51.100.12 } meta l4proto esp accept comment "ESP"
    iifname "inet" counter drop comment "internet side: nothing else"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    meta secpath exists ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: decrypted from the tunnel"
    rt ipsec exists ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: into the tunnel"
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "iot" ip daddr 10.10.1.100 tcp dport { 80 } dnat ip to 10.20.0.10 comment "old server: now proxy, through the tunnel"
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > gw-iot: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (gw-iot, role gateway): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100 } accept comment "Prometheus on monitor: what it scrapes here"
    iifname "inet" ip saddr { 198.51.100.12 } udp dport { 500, 4500 } accept comment "IKE, and ESP in UDP"
    iifname "inet" ip saddr { 198.51.100.12 } meta l4proto esp accept comment "ESP"
    iifname "inet" counter drop comment "internet side: nothing else"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "ipsec0" ip saddr { 10.20.0.0/24 } ip daddr { 10.10.1.0/24 } accept comment "gw-iot: from the tunnel"
    oifname "ipsec0" ip saddr { 10.10.1.0/24 } ip daddr { 10.20.0.0/24 } accept comment "gw-iot: into the tunnel"
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "iot" ip daddr 10.10.1.100 tcp dport { 80 } dnat ip to 10.20.0.10 comment "old server: now proxy, through the tunnel"
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > iot-client: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (iot-client, role iot-client): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9101 } accept comment "Prometheus on monitor: what it scrapes here"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > monitor: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (monitor, role monitor): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    iifname "mgmt" ip saddr 172.31.250.1 tcp dport 9090 accept comment "Prometheus and its console, for the provisioning machine"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > proxy-1: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (proxy-1, role proxy): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9113 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr 10.10.1.0/24 tcp dport { 80 } accept comment "IoT devices, through the tunnel"
    ip saddr 10.20.0.0/24 tcp dport 8081 accept comment "nginx status, from the cloud LAN"
    ip saddr { 10.20.0.12 } ip protocol vrrp accept comment "VRRP adverts from group proxy"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nftables.conf of every host (and of a gateway with kernel ESP), as nft reads it > proxy-2: /etc/nftables.conf 1`] = `
#!/usr/sbin/nft -f
# Managed by the lab provisioner (proxy-2, role proxy): edits are overwritten.
# Replaces only the lab's own table, atomically: tables of others (strongSwan's, say)
# are left alone. Policy: drop what the role does not admit, and count it.
table inet lab
delete table inet lab
table inet lab {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    ct state invalid counter drop
    iifname "lo" accept
    iifname "mgmt" tcp dport 22 accept comment "SSH from the provisioning machine only"
    ip saddr 10.20.0.40 tcp dport { 9100, 9113 } accept comment "Prometheus on monitor: what it scrapes here"
    ip saddr 10.10.1.0/24 tcp dport { 80 } accept comment "IoT devices, through the tunnel"
    ip saddr 10.20.0.0/24 tcp dport 8081 accept comment "nginx status, from the cloud LAN"
    ip saddr { 10.20.0.11 } ip protocol vrrp accept comment "VRRP adverts from group proxy"
    icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept
    counter comment "input dropped"
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    counter comment "forward dropped"
  }
  chain output {
    type filter hook output priority filter; policy accept;
  }
}

`

exports[`test/unit/rendered.ts > TAP > nginx.conf of the proxy, as nginx -t reads it > proxy-1: /etc/nginx/nginx.conf 1`] = `
# Managed by the lab provisioner (proxy-1): edits are overwritten.
# nginx in front of the ingest servers: devices reach it through the tunnel (their
# old server address, DNATed by their site's gateway), and it balances the readings
# over the topology's backends.
user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log warn;

events {
  worker_connections 1024;
}

http {
  server_tokens off;
  default_type application/json;
  # Which backend answered, how, and how long it took: the access log records it.
  log_format upstream '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                      'device=$http_x_device_id upstream=$upstream_addr upstream_status=$upstream_status '
                      'request_time=$request_time upstream_time=$upstream_response_time';
  access_log /var/log/nginx/access.log upstream;
  keepalive_timeout 65s;

  upstream ingest {
    least_conn;
    # Passive failure detection: one failure takes a backend out for fail_timeout,
    # then nginx tries it again.
    server 10.20.0.21:8080 max_fails=1 fail_timeout=3s;
    server 10.20.0.22:8080 max_fails=1 fail_timeout=3s;
    # Connections to the backends are kept open and reused.
    keepalive 64;
    keepalive_timeout 60s;
  }

  server {
    # The old server's ports, which the IoT sites' gateways forward here, on the
    # service's address (10.20.0.10: a pair's virtual address, which this member
    # may not hold yet; the kernel lets it bind there, net.ipv4.ip_nonlocal_bind).
    listen 10.20.0.10:80;
    listen 127.0.0.1:80;
    # A reading is a few dozen bytes: the backends refuse more than 1024, and so does
    # nginx. A batch (a backlog draining, application/x-ndjson) may hold up to
    # 1000 readings in 524288 bytes: it goes to its own location, the
    # only one with that limit, so a single reading keeps its own.
    client_max_body_size 1024;
    client_body_buffer_size 1024;

    # Every answer says which backend gave it.
    add_header X-Upstream $upstream_addr always;

    # How readings (one, or a batch) are passed to the ingest servers; the locations
    # below inherit it.
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_connect_timeout 1s;
    proxy_send_timeout 3s;
    proxy_read_timeout 5s;
    # Retrying a POST on the next backend is safe here, and only here, because ingest is
    # idempotent: a device's sequence number is stored once, however many backends see
    # it (a batch too: each reading in it is). Hence non_idempotent.
    proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
    proxy_next_upstream_tries 2;
    proxy_next_upstream_timeout 10s;

    # Zero trust inside the cloud: mutual TLS to the backends. nginx proves itself with its
    # own certificate from the services CA (the backends admit no other client) and
    # verifies theirs: that CA only, not revoked (the CRL), the name every backend carries.
    # A backend that fails the check is an upstream error: the next one is tried. TLS
    # sessions are reused over the kept-alive connections (proxy_ssl_session_reuse).
    proxy_ssl_certificate /etc/lab-tls/proxy-1.pem;
    proxy_ssl_certificate_key /etc/lab-tls/proxy-1.key;
    proxy_ssl_trusted_certificate /etc/lab-tls/services-ca.pem;
    proxy_ssl_crl /etc/lab-tls/services.crl;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 1;
    proxy_ssl_name ingest.iotlab;
    proxy_ssl_server_name on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_session_reuse on;

    # Chosen here, at the server level, because nginx checks the body size against the
    # location it finds first: a rewrite inside /readings would be too late for a batch.
    if ($content_type ~* "^application/x-ndjson") {
      rewrite ^/readings$ /readings-batch last;
    }

    location = /readings {
      proxy_pass https://ingest;
    }

    location = /readings-batch {
      internal;
      client_max_body_size 524288;
      client_body_buffer_size 524288;
      proxy_pass https://ingest/readings;
    }

    location = /healthz {
      proxy_pass https://ingest;
      proxy_read_timeout 3s;
    }

    # Answers nginx gives itself are JSON, like the backends'.
    error_page 413 = @too_large;
    error_page 502 503 504 = @unavailable;
    location @too_large {
      return 413 '{"error":"a reading is at most 1024 bytes"}\\n';
    }
    location @unavailable {
      add_header Retry-After 1 always;
      add_header X-Upstream $upstream_addr always;
      return 503 '{"error":"no backend could store the reading; retry later"}\\n';
    }
    location / {
      return 404 '{"error":"no such resource: devices POST /readings"}\\n';
    }
  }

  # Counters for monitoring, from the cloud LAN only (nftables admits it there too).
  server {
    listen 10.20.0.11:8081;
    listen 127.0.0.1:8081;
    location = /nginx_status {
      stub_status;
      allow 10.20.0.0/24;
      allow 127.0.0.1;
      deny all;
    }
  }
}

`

exports[`test/unit/rendered.ts > TAP > nginx.conf of the proxy, as nginx -t reads it > proxy-2: /etc/nginx/nginx.conf 1`] = `
# Managed by the lab provisioner (proxy-2): edits are overwritten.
# nginx in front of the ingest servers: devices reach it through the tunnel (their
# old server address, DNATed by their site's gateway), and it balances the readings
# over the topology's backends.
user www-data;
worker_processes auto;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log warn;

events {
  worker_connections 1024;
}

http {
  server_tokens off;
  default_type application/json;
  # Which backend answered, how, and how long it took: the access log records it.
  log_format upstream '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                      'device=$http_x_device_id upstream=$upstream_addr upstream_status=$upstream_status '
                      'request_time=$request_time upstream_time=$upstream_response_time';
  access_log /var/log/nginx/access.log upstream;
  keepalive_timeout 65s;

  upstream ingest {
    least_conn;
    # Passive failure detection: one failure takes a backend out for fail_timeout,
    # then nginx tries it again.
    server 10.20.0.21:8080 max_fails=1 fail_timeout=3s;
    server 10.20.0.22:8080 max_fails=1 fail_timeout=3s;
    # Connections to the backends are kept open and reused.
    keepalive 64;
    keepalive_timeout 60s;
  }

  server {
    # The old server's ports, which the IoT sites' gateways forward here, on the
    # service's address (10.20.0.10: a pair's virtual address, which this member
    # may not hold yet; the kernel lets it bind there, net.ipv4.ip_nonlocal_bind).
    listen 10.20.0.10:80;
    listen 127.0.0.1:80;
    # A reading is a few dozen bytes: the backends refuse more than 1024, and so does
    # nginx. A batch (a backlog draining, application/x-ndjson) may hold up to
    # 1000 readings in 524288 bytes: it goes to its own location, the
    # only one with that limit, so a single reading keeps its own.
    client_max_body_size 1024;
    client_body_buffer_size 1024;

    # Every answer says which backend gave it.
    add_header X-Upstream $upstream_addr always;

    # How readings (one, or a batch) are passed to the ingest servers; the locations
    # below inherit it.
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_connect_timeout 1s;
    proxy_send_timeout 3s;
    proxy_read_timeout 5s;
    # Retrying a POST on the next backend is safe here, and only here, because ingest is
    # idempotent: a device's sequence number is stored once, however many backends see
    # it (a batch too: each reading in it is). Hence non_idempotent.
    proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
    proxy_next_upstream_tries 2;
    proxy_next_upstream_timeout 10s;

    # Zero trust inside the cloud: mutual TLS to the backends. nginx proves itself with its
    # own certificate from the services CA (the backends admit no other client) and
    # verifies theirs: that CA only, not revoked (the CRL), the name every backend carries.
    # A backend that fails the check is an upstream error: the next one is tried. TLS
    # sessions are reused over the kept-alive connections (proxy_ssl_session_reuse).
    proxy_ssl_certificate /etc/lab-tls/proxy-2.pem;
    proxy_ssl_certificate_key /etc/lab-tls/proxy-2.key;
    proxy_ssl_trusted_certificate /etc/lab-tls/services-ca.pem;
    proxy_ssl_crl /etc/lab-tls/services.crl;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 1;
    proxy_ssl_name ingest.iotlab;
    proxy_ssl_server_name on;
    proxy_ssl_protocols TLSv1.3;
    proxy_ssl_session_reuse on;

    # Chosen here, at the server level, because nginx checks the body size against the
    # location it finds first: a rewrite inside /readings would be too late for a batch.
    if ($content_type ~* "^application/x-ndjson") {
      rewrite ^/readings$ /readings-batch last;
    }

    location = /readings {
      proxy_pass https://ingest;
    }

    location = /readings-batch {
      internal;
      client_max_body_size 524288;
      client_body_buffer_size 524288;
      proxy_pass https://ingest/readings;
    }

    location = /healthz {
      proxy_pass https://ingest;
      proxy_read_timeout 3s;
    }

    # Answers nginx gives itself are JSON, like the backends'.
    error_page 413 = @too_large;
    error_page 502 503 504 = @unavailable;
    location @too_large {
      return 413 '{"error":"a reading is at most 1024 bytes"}\\n';
    }
    location @unavailable {
      add_header Retry-After 1 always;
      add_header X-Upstream $upstream_addr always;
      return 503 '{"error":"no backend could store the reading; retry later"}\\n';
    }
    location / {
      return 404 '{"error":"no such resource: devices POST /readings"}\\n';
    }
  }

  # Counters for monitoring, from the cloud LAN only (nftables admits it there too).
  server {
    listen 10.20.0.12:8081;
    listen 127.0.0.1:8081;
    location = /nginx_status {
      stub_status;
      allow 10.20.0.0/24;
      allow 127.0.0.1;
      deny all;
    }
  }
}

`

exports[`test/unit/rendered.ts > TAP > pg_hba.conf of the database > database-1: pg_hba.conf 1`] = `
# Managed by the lab provisioner (database-1): edits are overwritten.
# TYPE  DATABASE   USER      ADDRESS          METHOD
local   all        postgres                   peer
# The monitor's exporter, on this host, as the system user prometheus (statistics only).
local   postgres   prometheus                 peer
# The provisioner checks the ingest role's login locally.
host    telemetry  ingest    127.0.0.1/32     scram-sha-256
# The backends, and nobody else: over TLS only (a plain connection matches no line), with
# a certificate from the services CA, not revoked, whose CN is the user (verify-full),
# and the password too.
hostssl telemetry  ingest    10.20.0.21/32   scram-sha-256 clientcert=verify-full
hostssl telemetry  ingest    10.20.0.22/32   scram-sha-256 clientcert=verify-full
# The cluster's other members, and nobody else: streaming replication and pg_rewind
# (as postgres), over TLS with their certificate from the services CA (not revoked)
# and the password.
# Patroni on a replica asks its own server for the timeline over a replication login
# on loopback (without it, its /metrics says "None" and Prometheus refuses the scrape).
hostssl replication  replicator  127.0.0.1/32  scram-sha-256 clientcert=verify-ca
hostssl replication  replicator  10.20.0.32/32   scram-sha-256 clientcert=verify-ca
hostssl all        postgres  10.20.0.32/32   scram-sha-256 clientcert=verify-ca
hostssl replication  replicator  10.20.0.33/32   scram-sha-256 clientcert=verify-ca
hostssl all        postgres  10.20.0.33/32   scram-sha-256 clientcert=verify-ca

`

exports[`test/unit/rendered.ts > TAP > pg_hba.conf of the database > database-2: pg_hba.conf 1`] = `
# Managed by the lab provisioner (database-2): edits are overwritten.
# TYPE  DATABASE   USER      ADDRESS          METHOD
local   all        postgres                   peer
# The monitor's exporter, on this host, as the system user prometheus (statistics only).
local   postgres   prometheus                 peer
# The provisioner checks the ingest role's login locally.
host    telemetry  ingest    127.0.0.1/32     scram-sha-256
# The backends, and nobody else: over TLS only (a plain connection matches no line), with
# a certificate from the services CA, not revoked, whose CN is the user (verify-full),
# and the password too.
hostssl telemetry  ingest    10.20.0.21/32   scram-sha-256 clientcert=verify-full
hostssl telemetry  ingest    10.20.0.22/32   scram-sha-256 clientcert=verify-full
# The cluster's other members, and nobody else: streaming replication and pg_rewind
# (as postgres), over TLS with their certificate from the services CA (not revoked)
# and the password.
# Patroni on a replica asks its own server for the timeline over a replication login
# on loopback (without it, its /metrics says "None" and Prometheus refuses the scrape).
hostssl replication  replicator  127.0.0.1/32  scram-sha-256 clientcert=verify-ca
hostssl replication  replicator  10.20.0.31/32   scram-sha-256 clientcert=verify-ca
hostssl all        postgres  10.20.0.31/32   scram-sha-256 clientcert=verify-ca
hostssl replication  replicator  10.20.0.33/32   scram-sha-256 clientcert=verify-ca
hostssl all        postgres  10.20.0.33/32   scram-sha-256 clientcert=verify-ca

`

exports[`test/unit/rendered.ts > TAP > pg_hba.conf of the database > database-3: pg_hba.conf 1`] = `
# Managed by the lab provisioner (database-3): edits are overwritten.
# TYPE  DATABASE   USER      ADDRESS          METHOD
local   all        postgres                   peer
# The monitor's exporter, on this host, as the system user prometheus (statistics only).
local   postgres   prometheus                 peer
# The provisioner checks the ingest role's login locally.
host    telemetry  ingest    127.0.0.1/32     scram-sha-256
# The backends, and nobody else: over TLS only (a plain connection matches no line), with
# a certificate from the services CA, not revoked, whose CN is the user (verify-full),
# and the password too.
hostssl telemetry  ingest    10.20.0.21/32   scram-sha-256 clientcert=verify-full
hostssl telemetry  ingest    10.20.0.22/32   scram-sha-256 clientcert=verify-full
# The cluster's other members, and nobody else: streaming replication and pg_rewind
# (as postgres), over TLS with their certificate from the services CA (not revoked)
# and the password.
# Patroni on a replica asks its own server for the timeline over a replication login
# on loopback (without it, its /metrics says "None" and Prometheus refuses the scrape).
hostssl replication  replicator  127.0.0.1/32  scram-sha-256 clientcert=verify-ca
hostssl replication  replicator  10.20.0.31/32   scram-sha-256 clientcert=verify-ca
hostssl all        postgres  10.20.0.31/32   scram-sha-256 clientcert=verify-ca
hostssl replication  replicator  10.20.0.32/32   scram-sha-256 clientcert=verify-ca
hostssl all        postgres  10.20.0.32/32   scram-sha-256 clientcert=verify-ca

`

exports[`test/unit/rendered.ts > TAP > prometheus.yml of the monitor, as promtool reads it > monitor: /etc/prometheus/prometheus.yml 1`] = `
# Managed by the lab provisioner (monitor): edits are overwritten.
# Generated from topology.yaml: every host's node exporter, each role's exporter or
# /metrics, on the host's LAN address (the IoT site's through the tunnel). Add a host
# to the topology and one provision later it is scraped.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
  scrape_timeout: 4s
  external_labels:
    lab: iotlab

rule_files:
  - /etc/prometheus/lab-alerts.yml

scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['10.10.1.10:9100']
        labels: { host: iot-client, role: iot-client }
      - targets: ['10.10.1.1:9100']
        labels: { host: gw-iot, role: gateway }
      - targets: ['10.20.0.2:9100']
        labels: { host: gw-cloud, role: gateway }
      - targets: ['10.20.0.3:9100']
        labels: { host: gw-cloud-2, role: gateway }
      - targets: ['10.20.0.11:9100']
        labels: { host: proxy-1, role: proxy }
      - targets: ['10.20.0.12:9100']
        labels: { host: proxy-2, role: proxy }
      - targets: ['10.20.0.21:9100']
        labels: { host: backend-1, role: backend }
      - targets: ['10.20.0.22:9100']
        labels: { host: backend-2, role: backend }
      - targets: ['10.20.0.31:9100']
        labels: { host: database-1, role: db }
      - targets: ['10.20.0.32:9100']
        labels: { host: database-2, role: db }
      - targets: ['10.20.0.33:9100']
        labels: { host: database-3, role: db }
      - targets: ['10.20.0.40:9100']
        labels: { host: monitor, role: monitor }
  - job_name: client
    static_configs:
      - targets: ['10.10.1.10:9101']
        labels: { host: iot-client, role: iot-client }
  - job_name: nginx
    static_configs:
      - targets: ['10.20.0.11:9113']
        labels: { host: proxy-1, role: proxy }
      - targets: ['10.20.0.12:9113']
        labels: { host: proxy-2, role: proxy }
  - job_name: ingest
    static_configs:
      - targets: ['10.20.0.21:9102']
        labels: { host: backend-1, role: backend }
      - targets: ['10.20.0.22:9102']
        labels: { host: backend-2, role: backend }
  - job_name: postgres
    static_configs:
      - targets: ['10.20.0.31:9187']
        labels: { host: database-1, role: db }
      - targets: ['10.20.0.32:9187']
        labels: { host: database-2, role: db }
      - targets: ['10.20.0.33:9187']
        labels: { host: database-3, role: db }
  - job_name: patroni
    static_configs:
      - targets: ['10.20.0.31:8008']
        labels: { host: database-1, role: db }
      - targets: ['10.20.0.32:8008']
        labels: { host: database-2, role: db }
      - targets: ['10.20.0.33:8008']
        labels: { host: database-3, role: db }
  - job_name: prometheus
    static_configs:
      - targets: ['127.0.0.1:9090']
        labels: { host: monitor, role: monitor }

`

exports[`test/unit/rendered.ts > TAP > sshd's drop-in, as sshd -t reads it > /etc/ssh/sshd_config.d/lab.conf 1`] = `
# Managed by the lab provisioner: keys only, no root, no forwarding through lab hosts.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowTcpForwarding no
X11Forwarding no

`

exports[`test/unit/rendered.ts > TAP > swanctl.conf of each gateway > every gateway: /etc/strongswan.d/lab-timers.conf 1`] = `
# Managed by the lab provisioner. How soon a gateway gives a silent peer up. A hub whose
# charon crashed and restarted knows no SA any more and answers nothing the site sends
# on the old one; with strongSwan's defaults (timeout 4 s, base 1.8, 5 tries) the site
# retransmits its DPD for about 165 s before it initiates again, and nothing crosses
# the tunnel meanwhile (171 s measured). These give it up after
# 6.2 s (timeout x base^0..tries), which with DPD after 2 s of
# silence (swanctl.conf) restores the tunnel within about 10 s. Jitter: a fleet of
# sites that lost one hub does not retransmit in lockstep.
charon {
    retransmit_timeout = 1
    retransmit_base = 1.3
    retransmit_tries = 3
    retransmit_jitter = 20
}

`

exports[`test/unit/rendered.ts > TAP > swanctl.conf of each gateway > gw-cloud-2: /etc/swanctl/conf.d/lab.conf 1`] = `
# Managed by the lab provisioner (gw-cloud-2, from topology.yaml): edits are overwritten.
# Proposals are strict: exactly these and nothing else is accepted, so a peer that
# offers anything weaker gets NO_PROPOSAL_CHOSEN (DESIGN.md, decision 5).
connections {
  gw-iot {
    version = 2
    local_addrs = 198.51.100.12
    remote_addrs = 198.51.100.11
    proposals = chacha20poly1305-prfsha512-curve25519
    # Dead peer detection after this much silence (then lab-timers.conf's retransmissions),
    # and a new IKE_SA (with new keys) every 4 hours.
    dpd_delay = 2s
    rekey_time = 4h
    keyingtries = 0
    unique = replace
    mobike = no
    local {
      auth = pubkey
      id = hub.iotlab
      certs = gw-cloud-2.pem
    }
    remote {
      auth = pubkey
      id = gw-iot.iotlab
      # Only the lab CA, and a certificate on its CRL is refused.
      cacerts = lab-ca.pem
      revocation = strict
    }
    children {
      gw-iot {
        local_ts = 10.20.0.0/24
        remote_ts = 10.10.1.0/24
        # PFS: every rekey of the child SA runs a fresh curve25519 exchange.
        esp_proposals = chacha20poly1305-curve25519
        rekey_time = 1h
        dpd_action = clear
        start_action = none
        close_action = none
      }
    }
  }
}

`

exports[`test/unit/rendered.ts > TAP > swanctl.conf of each gateway > gw-cloud: /etc/swanctl/conf.d/lab.conf 1`] = `
# Managed by the lab provisioner (gw-cloud, from topology.yaml): edits are overwritten.
# Proposals are strict: exactly these and nothing else is accepted, so a peer that
# offers anything weaker gets NO_PROPOSAL_CHOSEN (DESIGN.md, decision 5).
connections {
  gw-iot {
    version = 2
    local_addrs = 198.51.100.12
    remote_addrs = 198.51.100.11
    proposals = chacha20poly1305-prfsha512-curve25519
    # Dead peer detection after this much silence (then lab-timers.conf's retransmissions),
    # and a new IKE_SA (with new keys) every 4 hours.
    dpd_delay = 2s
    rekey_time = 4h
    keyingtries = 0
    unique = replace
    mobike = no
    local {
      auth = pubkey
      id = hub.iotlab
      certs = gw-cloud.pem
    }
    remote {
      auth = pubkey
      id = gw-iot.iotlab
      # Only the lab CA, and a certificate on its CRL is refused.
      cacerts = lab-ca.pem
      revocation = strict
    }
    children {
      gw-iot {
        local_ts = 10.20.0.0/24
        remote_ts = 10.10.1.0/24
        # PFS: every rekey of the child SA runs a fresh curve25519 exchange.
        esp_proposals = chacha20poly1305-curve25519
        rekey_time = 1h
        dpd_action = clear
        start_action = none
        close_action = none
      }
    }
  }
}

`

exports[`test/unit/rendered.ts > TAP > swanctl.conf of each gateway > gw-iot: /etc/swanctl/conf.d/lab.conf 1`] = `
# Managed by the lab provisioner (gw-iot, from topology.yaml): edits are overwritten.
# Proposals are strict: exactly these and nothing else is accepted, so a peer that
# offers anything weaker gets NO_PROPOSAL_CHOSEN (DESIGN.md, decision 5).
connections {
  gw-iot {
    version = 2
    local_addrs = 198.51.100.11
    remote_addrs = 198.51.100.12
    proposals = chacha20poly1305-prfsha512-curve25519
    # Dead peer detection after this much silence (then lab-timers.conf's retransmissions),
    # and a new IKE_SA (with new keys) every 4 hours.
    dpd_delay = 2s
    rekey_time = 4h
    keyingtries = 0
    unique = replace
    mobike = no
    local {
      auth = pubkey
      id = gw-iot.iotlab
      certs = gw-iot.pem
    }
    remote {
      auth = pubkey
      id = hub.iotlab
      # Only the lab CA, and a certificate on its CRL is refused.
      cacerts = lab-ca.pem
      revocation = strict
    }
    children {
      gw-iot {
        local_ts = 10.10.1.0/24
        remote_ts = 10.20.0.0/24
        # PFS: every rekey of the child SA runs a fresh curve25519 exchange.
        esp_proposals = chacha20poly1305-curve25519
        rekey_time = 1h
        dpd_action = restart
        start_action = start
        close_action = start
      }
    }
  }
}

`
