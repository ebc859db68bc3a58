/* IMPORTANT
 * This snapshot file is auto-generated, but designed for humans.
 * It should be checked into source control and tracked carefully.
 * Re-generate by setting TAP_SNAPSHOT=1 and running tests.
 * Make sure to inspect the output below.  Do not ignore changes!
 */
'use strict'
exports[`test/unit/ingest-contract.ts > TAP > the metrics a dashboard reads: names, help, every refusal reason from zero, requests in flight back to zero > the ingest metrics' names, types and help 1`] = `
# HELP ingest_readings_accepted_total Readings stored for the first time
# TYPE ingest_readings_accepted_total counter
# HELP ingest_readings_duplicate_total Readings already stored (a retry), answered as success
# TYPE ingest_readings_duplicate_total counter
# HELP ingest_readings_rejected_total Readings refused, by reason
# TYPE ingest_readings_rejected_total counter
# HELP ingest_store_errors_total Readings not stored because the database failed (503, the client retries)
# TYPE ingest_store_errors_total counter
# HELP ingest_batch_requests_total Batches (POST /readings, application/x-ndjson) answered
# TYPE ingest_batch_requests_total counter
# HELP ingest_batch_readings_total Readings that came in batches
# TYPE ingest_batch_readings_total counter
# HELP ingest_request_duration_seconds Time to answer POST /readings
# TYPE ingest_request_duration_seconds histogram
# HELP ingest_requests_in_flight POST /readings being handled
# TYPE ingest_requests_in_flight gauge
`
