// SPDX-License-Identifier: MIT
// The official NATS JavaScript client's side of the Services interop test
// (@nats-io/services, the NATS micro protocol):
//   node svc.mjs discover URL NAME ID   ping, info and stats on all nine
//                                       $SRV subjects, each reply checked
//                                       against the micro v1 JSON schemas
//   node svc.mjs call URL SUBJECT DATA  a request, its reply and the error
//                                       as ServiceError reads it
//   node svc.mjs serve URL NAME VERSION host a service (endpoints echo on
//                                       NAME.echo, fail on NAME.fail, hello
//                                       in group NAME.grp) until SIGTERM
// Output: JSON on stdout (serve: one line once added). Exit status
// non-zero on any error.
import { connect } from "@nats-io/transport-node";
import { ServiceError, Svcm } from "@nats-io/services";

const [mode, url, a1, a2] = process.argv.slice(2);
const nc = await connect({ servers: url, timeout: 5000 });
const svcm = new Svcm(nc);

// The jsm.go schemas io.nats.micro.v1.{ping,info,stats}_response
// (schema_source/micro/v1), by hand: every required field, its type and
// pattern. shipd is held to more than the schema where nats-notes §C says
// so: service metadata is an object ({} when none), last_error is always
// there (a string, "" when none), endpoints is always an array.
const NAME = /^[A-Za-z0-9_-]+$/;
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
// RFC 3339 date-time (JSON Schema "format: date-time").
const DATE_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/i;
const TYPES = {
  PING: "io.nats.micro.v1.ping_response",
  INFO: "io.nats.micro.v1.info_response",
  STATS: "io.nats.micro.v1.stats_response",
};

function check(verb, r) {
  const bad = [];
  const need = (obj, key, what, ok, where) => {
    if (!(key in obj)) bad.push(`${where}: ${key} missing`);
    else if (!ok(obj[key])) {
      bad.push(`${where}: ${key} is not ${what}: ${JSON.stringify(obj[key])}`);
    }
  };
  const str = (v) => typeof v === "string";
  const int64 = (v) => Number.isInteger(v) && v >= 0;
  const strmap = (v) =>
    v !== null && typeof v === "object" && !Array.isArray(v) &&
    Object.values(v).every(str);
  const where = `${verb} ${r?.name}/${r?.id}`;
  if (r === null || typeof r !== "object" || Array.isArray(r)) {
    return [`${verb}: not an object: ${JSON.stringify(r)}`];
  }
  need(r, "type", TYPES[verb], (v) => v === TYPES[verb], where);
  need(r, "name", "a name", (v) => str(v) && NAME.test(v), where);
  need(r, "id", "a non-empty string", (v) => str(v) && v.length > 0, where);
  need(r, "version", "a semver", (v) =>
    str(v) && v.length >= 5 && SEMVER.test(v), where);
  need(r, "metadata", "a string map", strmap, where);
  if (verb === "INFO") {
    need(r, "description", "a string", str, where);
    need(r, "endpoints", "an array", Array.isArray, where);
    for (const [i, e] of (Array.isArray(r.endpoints) ? r.endpoints : [])
      .entries()) {
      const w = `${where} endpoints[${i}]`;
      need(e, "name", "a name", (v) => str(v) && NAME.test(v), w);
      need(e, "subject", "a non-empty string", (v) => str(v) && v.length, w);
      if ("metadata" in e && e.metadata !== null && !strmap(e.metadata)) {
        bad.push(`${w}: metadata is not a string map or null`);
      }
      if ("queue_group" in e && !str(e.queue_group)) {
        bad.push(`${w}: queue_group is not a string`);
      }
    }
  }
  if (verb === "STATS") {
    need(r, "started", "an RFC 3339 date-time", (v) =>
      str(v) && DATE_TIME.test(v) && !Number.isNaN(Date.parse(v)), where);
    need(r, "endpoints", "an array", Array.isArray, where);
    for (const [i, e] of (Array.isArray(r.endpoints) ? r.endpoints : [])
      .entries()) {
      const w = `${where} endpoints[${i}]`;
      need(e, "name", "a name", (v) => str(v) && NAME.test(v), w);
      need(e, "subject", "a non-empty string", (v) => str(v) && v.length, w);
      for (const k of ["num_requests", "num_errors", "processing_time",
        "average_processing_time"]) {
        need(e, k, "an integer >= 0", int64, w);
      }
      need(e, "last_error", "a string", str, w);
      if ("queue_group" in e && !str(e.queue_group)) {
        bad.push(`${w}: queue_group is not a string`);
      }
    }
  }
  return bad;
}

async function collect(verb, name, id) {
  const client = svcm.client({ strategy: "stall", maxWait: 2000 });
  const it = await client[verb.toLowerCase()](name, id);
  const out = [];
  for await (const r of it) out.push(r);
  return out;
}

function headersOf(m) {
  const h = {};
  if (!m.headers) return h;
  for (const [k, v] of m.headers) h[k] = v;
  return h;
}

let out = {};
if (mode === "discover") {
  // Every verb on $SRV.<VERB>, $SRV.<VERB>.<name>, $SRV.<VERB>.<name>.<id>.
  out = { replies: {}, problems: [] };
  for (const verb of ["PING", "INFO", "STATS"]) {
    for (const [key, n, i] of [[verb, "", ""], [`${verb}.${a1}`, a1, ""],
      [`${verb}.${a1}.${a2}`, a1, a2]]) {
      const rs = await collect(verb, n, i);
      out.replies[key] = rs;
      for (const r of rs) out.problems.push(...check(verb, r));
    }
  }
} else if (mode === "call") {
  const m = await nc.request(a1, a2 ?? "", { timeout: 5000 });
  const se = ServiceError.toServiceError(m);
  out = {
    data: m.string(),
    headers: headersOf(m),
    service_error: ServiceError.isServiceError(m),
    code: se ? se.code : null,
    message: se ? se.message : null,
  };
} else if (mode === "serve") {
  const srv = await svcm.add({
    name: a1,
    version: a2,
    description: "hosted by nats.js",
    metadata: { host: "nats.js" },
  });
  srv.addEndpoint("echo", {
    subject: `${a1}.echo`,
    handler: (_err, m) => m.respond(m.data),
  });
  srv.addEndpoint("fail", {
    subject: `${a1}.fail`,
    handler: (_err, m) => m.respondError(409, "js says no"),
  });
  srv.addGroup(`${a1}.grp`).addEndpoint("hello", {
    metadata: { lang: "js" },
    handler: (_err, m) => m.respond(`hello ${m.string()}`),
  });
  await nc.flush();
  console.log(JSON.stringify({ ready: true, name: srv.info().name, id: srv.info().id }));
  const stopped = new Promise((resolve) => {
    process.on("SIGTERM", resolve);
    process.on("SIGINT", resolve);
  });
  await stopped;
  await srv.stop();
  await nc.drain();
  process.exit(0);
} else {
  console.error("usage: svc.mjs discover|call|serve URL ...");
  process.exit(2);
}
console.log(JSON.stringify(out));
await nc.close();
