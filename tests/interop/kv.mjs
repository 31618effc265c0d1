// SPDX-License-Identifier: MIT
// The official NATS JavaScript client's side of the KV interop test.
//   node kv.mjs read URL BUCKET KEY...   print what nats.js sees of each key
//   node kv.mjs write URL BUCKET         write, update, delete and purge
// Output: one JSON object on stdout. Exit status non-zero on any error.
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

const [mode, url, bucket, ...keys] = process.argv.slice(2);
const nc = await connect({ servers: url, timeout: 5000 });
const kv = await new Kvm(nc).open(bucket);
const out = {};

if (mode === "read") {
  for (const k of keys) {
    const e = await kv.get(k);
    const hist = [];
    for await (const h of await kv.history({ key: k })) {
      hist.push({ revision: h.revision, operation: h.operation,
                  value: h.string() });
    }
    out[k] = e === null ? null : {
      value: e.string(), revision: e.revision, operation: e.operation,
      history: hist,
    };
  }
  const all = [];
  for await (const k of await kv.keys()) all.push(k);
  out["$keys"] = all.sort();
} else if (mode === "write") {
  out.put = await kv.put("js.x", "from-js");
  out.update = await kv.update("js.x", "from-js-2", out.put);
  try {
    await kv.update("js.x", "stale", out.put);
    out.stale_update = "accepted";
  } catch (err) {
    out.stale_update = "refused";
  }
  out.create = await kv.create("js.y", "y");
  await kv.delete("js.y");
  out.put_z = await kv.put("js.z", "z");
  await kv.purge("js.z");
  out.last = await kv.put("js.done", "done");
} else {
  console.error("usage: kv.mjs read|write URL BUCKET [KEY...]");
  process.exit(2);
}
console.log(JSON.stringify(out));
await nc.close();
