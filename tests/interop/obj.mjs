// SPDX-License-Identifier: MIT
// The official NATS JavaScript client's side of the Object Store interop test.
//   node obj.mjs read URL BUCKET NAME...  print what nats.js sees of each object
//   node obj.mjs write URL BUCKET         store objects of pattern(i, seed) bytes
// Object data written here is byte i = (i*i + 7*i + seed) % 251, so the C side
// can check it byte by byte. Output: one JSON object on stdout. Exit status
// non-zero on any error.
import { createHash } from "node:crypto";
import { connect, headers } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";

const [mode, url, bucket, ...names] = process.argv.slice(2);
const nc = await connect({ servers: url, timeout: 5000 });
const objm = new Objm(nc);
const out = {};

// The digest as ADR-20 writes it: padded base64url of the SHA-256.
function digest(data) {
  const b64 = createHash("sha256").update(data).digest("base64");
  return "SHA-256=" + b64.replace(/\+/g, "-").replace(/\//g, "_");
}

function pattern(n, seed) {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * i + 7 * i + seed) % 251;
  return a;
}

if (mode === "read") {
  const os = await objm.open(bucket);
  for (const name of names) {
    const raw = await os.rawInfo(name);
    if (raw === null) {
      out[name] = null;
      continue;
    }
    const o = { raw };
    try {
      const data = await os.getBlob(name);
      if (data === null) {
        o.data = null;
      } else {
        o.data_len = data.length;
        o.data_digest = digest(data);
      }
    } catch (err) {
      o.error = String(err.message || err);
    }
    out[name] = o;
  }
  out["$list"] = (await os.list()).map((i) => i.name).sort();
  const st = await os.status();
  out["$status"] = { bucket: st.bucket, description: st.description,
                     size: st.size, sealed: st.sealed };
} else if (mode === "write") {
  const os = await objm.create(bucket, { description: "from nats.js" });
  const sizes = { "js-empty": 0, "js-one": 1, "js-chunk": 131072,
                  "js-over": 131073, "js-multi": 3 * 131072 + 5 };
  let seed = 1;
  for (const [name, n] of Object.entries(sizes)) {
    const h = headers();
    h.set("X-From", "nats.js");
    const info = await os.putBlob({
      name, description: `${n} bytes`, headers: h,
      metadata: { size: String(n), seed: String(seed) },
    }, pattern(n, seed));
    out[name] = { seed, size: info.size, chunks: info.chunks,
                  digest: info.digest };
    seed++;
  }
  const small = await os.putBlob(
    { name: "js-small-chunks", options: { max_chunk_size: 1000 } },
    pattern(10000, 99));
  out["js-small-chunks"] = { seed: 99, size: small.size, chunks: small.chunks,
                             digest: small.digest };
  await os.putBlob({ name: "js-gone" }, pattern(10, 5));
  await os.delete("js-gone");
} else {
  console.error("usage: obj.mjs read|write URL BUCKET [NAME...]");
  process.exit(2);
}
console.log(JSON.stringify(out));
await nc.close();
