#!/usr/bin/env node
// Our NVMe/TCP initiator (the native addon, as an engine uses it for remote replicas) against
// the Linux kernel's own nvmet-tcp target, inside the interop VM. argv: nvmf:// URI of the
// kernel's subsystem. Prints PASS/FAIL per step; exits non-zero if any step failed.
// With STRATA_DHCHAP_SECRET (and optionally STRATA_DHCHAP_CTRL_SECRET) in the environment, the
// initiator's keyring holds them for the URI's hostnqn: the kernel target requires DH-HMAC-CHAP.
const { loadNative } = require("../../dist/native");

const uri = process.argv[2];
const MiB = 1024 * 1024;
let failed = 0;

function pattern(bytes, seed) {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, i);
  return b;
}

async function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    console.log(`PASS ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${detail ? `: ${detail}` : ""}`);
  } catch (err) {
    failed = 1;
    console.log(`FAIL ${name}\n    ${String(err && err.stack ? err.stack : err).split("\n").join("\n    ")}`);
  }
}

(async () => {
  const n = loadNative();
  n.start({ cores: 2 });
  if (process.env.STRATA_DHCHAP_SECRET) {
    const hostnqn = new URL(uri.replace(/^nvmf:/, "http:")).searchParams.get("hostnqn");
    await n.setHostSecret({ host_nqn: hostnqn, dhchap_secret: process.env.STRATA_DHCHAP_SECRET, dhchap_ctrl_secret: process.env.STRATA_DHCHAP_CTRL_SECRET || "" });
  }
  let size = 0;
  await step("our initiator probes the kernel target", async () => {
    const d = await n.probeDevice({ uri });
    size = d.size_bytes;
    if (size < 32 * MiB) throw new Error(`namespace is ${size} bytes`);
    return `${size} bytes, ${d.block_size_bytes}-byte blocks`;
  });
  const io = (kind, offset_bytes, length_bytes, data = null) => n.deviceIo({ uri, kind, offset_bytes, length_bytes, data });
  const cases = [
    [0, 4096, 1],
    [MiB + 4096, 128 * 1024, 2],
    [8 * MiB, MiB, 3],
    [size - 4096 || 16 * MiB, 4096, 4],
  ];
  await step("write 4K, 128K and 1M, read back byte for byte", async () => {
    for (const [off, len, seed] of cases) await io("write", off, len, pattern(len, seed));
    for (const [off, len, seed] of cases) {
      const got = await io("read", off, len);
      if (!got.equals(pattern(len, seed))) throw new Error(`data at ${off}+${len} differs`);
    }
  });
  await step("flush", () => io("flush", 0, 0));
  await step("deallocate reads back zeros", async () => {
    await io("deallocate", 8 * MiB, MiB);
    if (!(await io("read", 8 * MiB, MiB)).equals(Buffer.alloc(MiB))) throw new Error("deallocated range is not zero");
  });
  await step("write zeroes reads back zeros", async () => {
    await io("write_zeroes", MiB + 4096, 128 * 1024);
    if (!(await io("read", MiB + 4096, 128 * 1024)).equals(Buffer.alloc(128 * 1024))) throw new Error("range is not zero");
  });
  await step("write zeroes of the whole namespace zeroes all of it (512-byte blocks: NLB is 16 bits, split by the initiator)", async () => {
    const marks = [40 * MiB, size - MiB];
    for (const off of marks) await io("write", off, MiB, pattern(MiB, 9));
    await io("write_zeroes", 0, size);
    for (const off of marks) {
      if (!(await io("read", off, MiB)).equals(Buffer.alloc(MiB))) throw new Error(`data at ${off} survived a write zeroes of the whole namespace`);
    }
  });
  await step("4K random writes at queue depth 16 over several I/O queues, then earlier data still intact", async () => {
    const r = await n.benchDevice({ uri, pattern: "randwrite", block_size_bytes: 4096, queue_depth: 16, duration_ms: 2000, span_bytes: 4 * MiB });
    if (r.ops === 0) throw new Error("no I/O completed");
    if (!(await io("read", 8 * MiB, 4096)).equals(Buffer.alloc(4096))) throw new Error("data outside the written span changed");
    return `${r.ops} writes, ${r.iops.toFixed(0)} IOPS under TCG`;
  });
  await n.shutdown();
  process.exit(failed);
})().catch((e) => {
  console.log(`FAIL initiator script: ${e.stack || e}`);
  process.exit(1);
});
