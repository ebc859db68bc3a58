-- Managed by the lab provisioner: applied as postgres with psql -v ON_ERROR_STOP=1.
-- Idempotent: it creates what is missing and sets what may have drifted.
SELECT 'CREATE ROLE {{ user }} LOGIN'
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{{ user }}') \gexec
ALTER ROLE {{ user }} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{{ password }}';
SELECT 'CREATE DATABASE {{ database }}'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{{ database }}') \gexec
REVOKE ALL ON DATABASE {{ database }} FROM PUBLIC;
GRANT CONNECT ON DATABASE {{ database }} TO {{ user }};
\connect {{ database }}
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {{ user }};
-- One row per device and sequence number: a reading is stored once, whichever
-- backend receives it and however often it is retried.
CREATE TABLE IF NOT EXISTS readings (
  device_id   text             NOT NULL,
  seq         bigint           NOT NULL CHECK (seq > 0),
  time        timestamptz      NOT NULL,
  value       double precision NOT NULL,
  digest      text             NOT NULL,
  backend     text             NOT NULL,
  received_at timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (device_id, seq)
);
-- The backends insert and read; they never update or delete.
REVOKE ALL ON readings FROM {{ user }};
GRANT SELECT, INSERT ON readings TO {{ user }};
COMMENT ON TABLE readings IS 'lab schema {{ version }}';
