// The lab's fixed ports and names: what the plan, the roles and the tests all agree on.

// ingest: the ingest server's own plain listener for /metrics and /healthz; its readings
// port speaks mutual TLS with the proxy alone, and counters carry no reading.
export const MONITOR_PORTS = {
  prometheus: 9090,
  node: 9100,
  client: 9101,
  ingest: 9102,
  nginx: 9113,
  postgres: 9187,
} as const

export const DB = { name: 'telemetry', user: 'ingest', port: 5432 }
/**
 * The database cluster's own ports, between its members (and the monitor): Patroni's
 * REST API (its /primary says who leads; /metrics for Prometheus), etcd's clients and
 * peers.
 */
export const DB_CLUSTER = { patroni: 8008, etcdClient: 2379, etcdPeer: 2380 } as const
export const PROXY_STATUS_PORT = 8081
// Not 9100: that is node exporter's port, on every host.
export const CLIENT_CONTROL_PORT = 9180
