// SPDX-License-Identifier: MIT
// The official NATS JavaScript client's side of the JobQueue interop test:
// a job is plain KV JSON in the bucket JOBS_<queue>, key job.<id>.
//   node jobs.mjs read URL QUEUE ID          print the job as nats.js reads it
//   node jobs.mjs submit URL QUEUE ID JSON   write a queued job by hand
// Output: one JSON object on stdout. Exit status non-zero on any error.
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

const [mode, url, queue, id, payload] = process.argv.slice(2);
const nc = await connect({ servers: url, timeout: 5000 });
const kv = await new Kvm(nc).open(`JOBS_${queue}`);
let out = {};

if (mode === "read") {
  const e = await kv.get(`job.${id}`);
  out = e === null ? null : { revision: e.revision, job: e.json() };
} else if (mode === "submit") {
  const now = Date.now();
  const job = {
    id, queue, payload: JSON.parse(payload), status: "queued", worker: "",
    queued_by: "nats.js", queued_at: now, started_at: null,
    completed_at: null, result: null, error: null, attempts: 0,
    max_attempts: 3, priority: 0, not_before: now, lease_until: null,
    claimed_by: null, holder: null, dead_letter: false, cancelled: false,
    idempotency_key: null,
  };
  out.revision = await kv.create(`job.${id}`, JSON.stringify(job));
} else {
  console.error("usage: jobs.mjs read|submit URL QUEUE ID [JSON]");
  process.exit(2);
}
console.log(JSON.stringify(out));
await nc.close();
