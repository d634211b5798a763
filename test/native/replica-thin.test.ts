// Thin <-> thick conversion in place (setReplicaThin), in this process: data kept byte for byte,
// all or nothing when the pool is short of clusters, durable across export/import, and safe
// while writes and deallocates run against the replica.
import test from "ava";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { expectCode, MiB, native, pattern, tempPool } from "./helpers";

async function readAll(n: ReturnType<typeof native>, uuid: string, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < size; at += 32 * MiB) parts.push(await n.replicaRead({ uuid, offset_bytes: at, length_bytes: Math.min(32 * MiB, size - at) }));
  return Buffer.concat(parts);
}

async function poolOf(n: ReturnType<typeof native>, uuid: string) {
  return (await n.listPools()).find((p) => p.uuid === uuid)!;
}

async function replicaOf(n: ReturnType<typeof native>, uuid: string) {
  return (await n.listReplicas()).find((r) => r.uuid === uuid)!;
}

test("thin -> thick allocates every cluster, keeps the bytes (zeros included), survives export/import; thick -> thin frees nothing", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t, 64);
  const size = 16 * MiB;
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "conv", size_bytes: size, thin: true });
  // Partial clusters, a whole cluster, and one cluster written then deallocated (zeros again).
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 4096, data: pattern(8192, 1) });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 5 * MiB, data: pattern(MiB, 2) });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 9 * MiB - 4096, data: pattern(8192, 3) });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 12 * MiB, data: pattern(MiB, 4) });
  await n.replicaDeallocate({ uuid: r.uuid, offset_bytes: 12 * MiB, length_bytes: MiB });
  const before = await readAll(n, r.uuid, size);
  const thinInfo = await replicaOf(n, r.uuid);
  t.is(thinInfo.allocated_bytes, 4 * MiB);
  const poolBefore = await poolOf(n, pool.uuid);

  const thick = await n.setReplicaThin({ uuid: r.uuid, thin: false });
  t.like(thick, { uuid: r.uuid, thin: false, size_bytes: size, allocated_bytes: size });
  t.like(await replicaOf(n, r.uuid), { thin: false, allocated_bytes: size });
  const poolAfter = await poolOf(n, pool.uuid);
  t.is(poolAfter.used_bytes, poolBefore.used_bytes + size - thinInfo.allocated_bytes);
  t.is(poolAfter.committed_bytes, poolBefore.committed_bytes, "committed counts a replica's size, thin or thick");
  t.true((await readAll(n, r.uuid, size)).equals(before), "content unchanged, zero ranges included");
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);

  // Same value: no change.
  t.deepEqual(await n.setReplicaThin({ uuid: r.uuid, thin: false }), thick);

  await n.exportPool({ uuid: pool.uuid });
  await n.importPool({ device_uri: uri });
  t.like(await replicaOf(n, r.uuid), { thin: false, allocated_bytes: size });
  t.is((await poolOf(n, pool.uuid)).used_bytes, poolAfter.used_bytes);
  t.true((await readAll(n, r.uuid, size)).equals(before));
  // Thick semantics now: a whole-cluster deallocate zeroes in place and frees nothing.
  await n.replicaDeallocate({ uuid: r.uuid, offset_bytes: 5 * MiB, length_bytes: MiB });
  t.is((await replicaOf(n, r.uuid)).allocated_bytes, size);
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 5 * MiB, data: pattern(MiB, 2) });

  // Thick -> thin: flag only, every cluster stays allocated, bytes kept.
  const thin = await n.setReplicaThin({ uuid: r.uuid, thin: true });
  t.like(thin, { thin: true, allocated_bytes: size });
  t.is((await poolOf(n, pool.uuid)).used_bytes, poolAfter.used_bytes);
  t.true((await readAll(n, r.uuid, size)).equals(before));
  await n.exportPool({ uuid: pool.uuid });
  await n.importPool({ device_uri: uri });
  t.like(await replicaOf(n, r.uuid), { thin: true, allocated_bytes: size });
  t.true((await readAll(n, r.uuid, size)).equals(before));
  // ... and thin semantics again: a whole-cluster deallocate frees the cluster.
  await n.replicaDeallocate({ uuid: r.uuid, offset_bytes: 0, length_bytes: 2 * MiB });
  t.is((await replicaOf(n, r.uuid)).allocated_bytes, size - 2 * MiB);
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("thin -> thick without enough free clusters fails with NO_SPACE naming needed and free bytes, and changes nothing", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t, 16);
  const clusters = pool.capacity_bytes / MiB;
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "big", size_bytes: (clusters + 2) * MiB, thin: true });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 3 * MiB, data: pattern(MiB + 4096, 5) });
  const data = await readAll(n, r.uuid, (clusters + 2) * MiB);
  const poolBefore = await poolOf(n, pool.uuid);
  const replicaBefore = await replicaOf(n, r.uuid);
  const need = (clusters + 2 - 2) * MiB;
  const free = poolBefore.capacity_bytes - poolBefore.used_bytes;
  await expectCode(t, n.setReplicaThin({ uuid: r.uuid, thin: false }), "NO_SPACE", new RegExp(`needs ${need} bytes .* has ${free} bytes free`));
  t.deepEqual(await replicaOf(n, r.uuid), replicaBefore);
  t.deepEqual(await poolOf(n, pool.uuid), poolBefore);
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, [], "no cluster leaked");
  // Writes still allocate as for any thin replica.
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(4096, 6) });
  pattern(4096, 6).copy(data, 0);
  await n.exportPool({ uuid: pool.uuid });
  await n.importPool({ device_uri: uri });
  t.like(await replicaOf(n, r.uuid), { thin: true, allocated_bytes: replicaBefore.allocated_bytes + MiB });
  t.is((await poolOf(n, pool.uuid)).used_bytes, poolBefore.used_bytes + MiB);
  t.true((await readAll(n, r.uuid, (clusters + 2) * MiB)).equals(data));
  await expectCode(t, n.setReplicaThin({ uuid: randomUUID(), thin: false }), "NOT_FOUND");
});

test("writes and deallocates racing a thin -> thick conversion: nothing lost, nothing allocated twice", async (t) => {
  t.timeout(60_000);
  const n = native();
  const { pool, uri } = await tempPool(t, 128);
  const size = 48 * MiB;
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "busy", size_bytes: size, thin: true });
  // Some clusters allocated and written before, to be deallocated during the conversion.
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 40 * MiB, data: pattern(4 * MiB, 7) });
  const expected = Buffer.alloc(size);
  pattern(4 * MiB, 7).copy(expected, 40 * MiB);

  const ios: Promise<unknown>[] = [];
  // Writes to unallocated clusters: those issued before the conversion (clusters 0-19) are
  // allocating when it starts, so it waits for them; those issued after (clusters 20-39) find
  // their cluster claimed by the conversion and wait for it.
  const block = 64 * 1024;
  const write = (i: number) => {
    const offset = ((i < 40 ? 0 : 20) + ((i * 7) % 20)) * MiB + ((i * 13) % 15) * block;
    const data = pattern(block, 100 + i);
    data.copy(expected, offset);
    return n.replicaWrite({ uuid: r.uuid, offset_bytes: offset, data });
  };
  let i = 0;
  for (; i < 40; i++) ios.push(write(i));
  const converted = n.setReplicaThin({ uuid: r.uuid, thin: false });
  for (; i < 120; i++) ios.push(write(i));
  // Whole-cluster deallocates while converting (zeros either way).
  ios.push(n.replicaDeallocate({ uuid: r.uuid, offset_bytes: 44 * MiB - MiB, length_bytes: MiB }));
  expected.fill(0, 43 * MiB, 44 * MiB);
  await Promise.all(ios);
  const info = await converted;
  t.like(info, { thin: false, allocated_bytes: size });
  t.true((await readAll(n, r.uuid, size)).equals(expected), "every acknowledged write reads back");
  const report = await n.checkPool({ uuid: pool.uuid });
  t.deepEqual(report.problems, []);
  t.like(report, { leaked_clusters: 0, doubly_owned_clusters: 0, owned_but_free_clusters: 0 });
  t.is((await poolOf(n, pool.uuid)).used_bytes, size);

  await n.exportPool({ uuid: pool.uuid });
  await n.importPool({ device_uri: uri });
  t.like(await replicaOf(n, r.uuid), { thin: false, allocated_bytes: size });
  t.true((await readAll(n, r.uuid, size)).equals(expected));
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("SIGKILL during thin -> thick: after import the replica is thin as before or thick and fully backed, bytes unchanged, nothing leaked", async (t) => {
  t.timeout(120_000);
  const n = native();
  const { pool, uri } = await tempPool(t, 256);
  const size = 96 * MiB;
  const outcomes: string[] = [];
  for (const delayMs of [0, 1, 3, 6, 10, 20]) {
    const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: `k${delayMs}`, size_bytes: size, thin: true });
    for (let c = 0; c < 96; c += 9) await n.replicaWrite({ uuid: r.uuid, offset_bytes: c * MiB + 8192, data: pattern(12288, c + delayMs) });
    const content = await readAll(n, r.uuid, size);
    const before = await replicaOf(n, r.uuid);
    await n.exportPool({ uuid: pool.uuid });

    const child = spawn(process.execPath, [join(__dirname, "thin-kill-worker.js"), uri, r.uuid], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    let out = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdout.on("data", (d: Buffer) => {
      const first = out === "";
      out += d.toString();
      if (first && out.startsWith("ready")) setTimeout(() => child.kill("SIGKILL"), delayMs);
    });
    const signal = await new Promise<string | null>((resolve) => child.on("close", (_c, s) => resolve(s)));
    t.is(signal, "SIGKILL", stderr);

    await n.importPool({ device_uri: uri });
    const after = await replicaOf(n, r.uuid);
    if (after.thin) t.deepEqual(after, before, "not converted: exactly as before");
    else t.like(after, { thin: false, allocated_bytes: size });
    outcomes.push(`${delayMs} ms: ${after.thin ? "thin" : "thick"}${out.includes("done") ? " (acknowledged)" : ""}`);
    if (out.includes("done")) t.false(after.thin, "an acknowledged conversion is durable");
    t.true((await readAll(n, r.uuid, size)).equals(content), "bytes unchanged either way");
    t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, [], "no cluster leaked or owned twice");
    const replicas = (await n.listReplicas()).filter((x) => x.pool_uuid === pool.uuid);
    t.is((await poolOf(n, pool.uuid)).used_bytes, replicas.reduce((s, x) => s + x.allocated_bytes, 0));
    await n.destroyReplica({ uuid: r.uuid });
  }
  t.log(outcomes.join("; "));
});
