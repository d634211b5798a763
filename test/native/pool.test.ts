// Pool lifecycle and durability: what survives export, process death and growth, and how the
// on-disk format protects itself (versions, checksums, journal checkpoints).
import test from "ava";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { openSync, readSync, closeSync, writeSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { crc32c, expectCode, MiB, native, pattern, SUPERBLOCK, tempPool } from "./helpers";

function readSuperblock(path: string): Buffer {
  const fd = openSync(path, "r");
  const buf = Buffer.alloc(4096);
  readSync(fd, buf, 0, 4096, 0);
  closeSync(fd);
  return buf;
}

function writeSuperblock(path: string, buf: Buffer): void {
  const fd = openSync(path, "r+");
  writeSync(fd, buf, 0, buf.length, 0);
  closeSync(fd);
}

test("export then import keeps replicas, sizes, allocation and data", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t);
  const thin = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "thin", size_bytes: 8 * MiB, thin: true });
  const thick = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "thick", size_bytes: 3 * MiB, thin: false });
  await n.replicaWrite({ uuid: thin.uuid, offset_bytes: 5 * MiB, data: pattern(65536, 1) });
  await n.replicaWrite({ uuid: thick.uuid, offset_bytes: 4096, data: pattern(4096, 2) });
  await n.resizeReplica({ uuid: thin.uuid, size_bytes: 12 * MiB });
  await n.exportPool({ uuid: pool.uuid });
  t.false((await n.listPools()).some((p) => p.uuid === pool.uuid));
  await expectCode(t, n.replicaRead({ uuid: thin.uuid, offset_bytes: 0, length_bytes: 512 }), "NOT_FOUND");

  const again = await n.importPool({ device_uri: uri });
  t.like(again, { uuid: pool.uuid, name: pool.name, replica_count: 2, used_bytes: 4 * MiB, committed_bytes: 15 * MiB, state: "online" });
  const replicas = (await n.listReplicas()).filter((r) => r.pool_uuid === pool.uuid).sort((a, b) => a.name.localeCompare(b.name));
  t.like(replicas[0], { uuid: thick.uuid, size_bytes: 3 * MiB, thin: false, allocated_bytes: 3 * MiB });
  t.like(replicas[1], { uuid: thin.uuid, size_bytes: 12 * MiB, thin: true, allocated_bytes: MiB });
  t.true((await n.replicaRead({ uuid: thin.uuid, offset_bytes: 5 * MiB, length_bytes: 65536 })).equals(pattern(65536, 1)));
  t.true((await n.replicaRead({ uuid: thick.uuid, offset_bytes: 4096, length_bytes: 4096 })).equals(pattern(4096, 2)));
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("every acknowledged write survives SIGKILL of the process", async (t) => {
  t.timeout(60_000);
  const n = native();
  const { pool, uri } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "k", size_bytes: 8 * MiB, thin: true });
  await n.exportPool({ uuid: pool.uuid });

  const child = spawn(process.execPath, [join(__dirname, "kill-worker.js"), uri, r.uuid], { stdio: ["ignore", "pipe", "pipe"] });
  const acked = new Set<number>();
  let stderr = "";
  let pending = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdout.on("data", (d: Buffer) => {
    pending += d.toString();
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (line !== "ready") acked.add(Number(line));
      if (acked.size === 300) child.kill("SIGKILL"); // killed with writes in flight
    }
  });
  const signal = await new Promise<string | null>((resolve) => child.on("close", (_c, s) => resolve(s)));
  t.is(signal, "SIGKILL", stderr);
  t.true(acked.size >= 300);

  await n.importPool({ device_uri: uri });
  for (const block of acked) {
    const data = await n.replicaRead({ uuid: r.uuid, offset_bytes: block * 4096, length_bytes: 4096 });
    t.true(data.equals(pattern(4096, block)), `acknowledged block ${block} did not survive`);
  }
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("growPool after the backing file grows adds capacity, durably and idempotently", async (t) => {
  const n = native();
  const { pool, path, uri } = await tempPool(t, 32);
  truncateSync(path, 96 * MiB);
  const grown = await n.growPool({ uuid: pool.uuid });
  t.is(grown.capacity_bytes, pool.capacity_bytes + 64 * MiB);
  t.deepEqual(await n.growPool({ uuid: pool.uuid }), grown);
  // The new clusters are usable: a thick replica bigger than the old pool fits now.
  await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "big", size_bytes: pool.capacity_bytes + MiB, thin: false });
  await n.exportPool({ uuid: pool.uuid });
  t.is((await n.importPool({ device_uri: uri })).capacity_bytes, grown.capacity_bytes);
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("many metadata changes rotate checkpoints and the journal replays consistently", async (t) => {
  t.timeout(120_000);
  const n = native();
  const { pool, uri } = await tempPool(t, 32);
  const kept: string[] = [];
  // Each create/destroy is one 4 KiB journal batch; the 1 MiB journal holds 256, so this wraps it ~3 times.
  for (let i = 0; i < 400; i++) {
    const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: `r${i}`, size_bytes: MiB, thin: true });
    await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(4096, i) });
    if (i % 50 === 0) kept.push(r.uuid);
    else await n.destroyReplica({ uuid: r.uuid });
  }
  await n.exportPool({ uuid: pool.uuid });
  const again = await n.importPool({ device_uri: uri });
  t.is(again.replica_count, kept.length);
  t.is(again.used_bytes, kept.length * MiB);
  for (const [k, uuid] of kept.entries()) {
    t.true((await n.replicaRead({ uuid, offset_bytes: 0, length_bytes: 4096 })).equals(pattern(4096, k * 50)));
  }
  t.deepEqual(await n.checkPool({ uuid: pool.uuid }), { pool_uuid: pool.uuid, leaked_clusters: 0, doubly_owned_clusters: 0, owned_but_free_clusters: 0, problems: [] });
});

test("a superblock with an unknown format version is refused with UNIMPLEMENTED", async (t) => {
  const n = native();
  const { pool, path, uri } = await tempPool(t);
  await n.exportPool({ uuid: pool.uuid });
  const sb = readSuperblock(path);
  sb.writeUInt32LE(7, SUPERBLOCK.versionOffset);
  sb.writeUInt32LE(crc32c(sb.subarray(0, SUPERBLOCK.crcOffset)), SUPERBLOCK.crcOffset);
  writeSuperblock(path, sb);
  await expectCode(t, n.importPool({ device_uri: uri }), "UNIMPLEMENTED", /format version 7; this engine reads version 1 — upgrade the engine/);
});

test("a superblock with a bad checksum is refused with DATA_LOSS", async (t) => {
  const n = native();
  const { pool, path, uri } = await tempPool(t);
  await n.exportPool({ uuid: pool.uuid });
  const sb = readSuperblock(path);
  sb[40] ^= 0xff; // inside the name
  writeSuperblock(path, sb);
  await expectCode(t, n.importPool({ device_uri: uri }), "DATA_LOSS", /CRC32C/);
});

test("export marks a clean shutdown in the superblock; import clears it", async (t) => {
  const n = native();
  const { pool, path, uri } = await tempPool(t);
  t.is(readSuperblock(path).readUInt32LE(180), 0);
  await n.exportPool({ uuid: pool.uuid });
  t.is(readSuperblock(path).readUInt32LE(180), 1);
  await n.importPool({ device_uri: uri });
  t.is(readSuperblock(path).readUInt32LE(180), 0);
});

test("destroyPool removes the pool and its replicas and wipes the superblock", async (t) => {
  const n = native();
  const { pool, path, uri } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "gone", size_bytes: MiB, thin: true });
  await n.destroyPool({ uuid: pool.uuid });
  t.false((await n.listReplicas()).some((x) => x.uuid === r.uuid));
  t.true(readSuperblock(path).every((b) => b === 0));
  await expectCode(t, n.importPool({ device_uri: uri }), "NOT_FOUND", /no Strata pool/);
  // The device is free for a new pool, without force.
  const again = await n.createPool({ uuid: randomUUID(), name: `p-${randomUUID().slice(0, 8)}`, device_uri: uri, cluster_size_bytes: MiB, force: false });
  await n.destroyPool({ uuid: again.uuid });
});

test("createPool on a device holding a pool needs force; force overwrites it", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t);
  await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "old", size_bytes: MiB, thin: true });
  await n.exportPool({ uuid: pool.uuid });
  const fresh = { uuid: randomUUID(), name: `p-${randomUUID().slice(0, 8)}`, device_uri: uri, cluster_size_bytes: MiB };
  await expectCode(t, n.createPool({ ...fresh, force: false }), "FAILED_PRECONDITION",
    new RegExp(`already holds pool ${pool.name} \\(uuid ${pool.uuid}\\); import it instead, or pass force to overwrite`));
  const created = await n.createPool({ ...fresh, force: true });
  t.is(created.replica_count, 0);
  await n.exportPool({ uuid: created.uuid });
  t.is((await n.importPool({ device_uri: uri })).uuid, fresh.uuid);
  await n.exportPool({ uuid: fresh.uuid });
});

test("pools on malloc devices work and keep their bytes across export/import", async (t) => {
  const n = native();
  const name = `m${randomUUID().slice(0, 8)}`;
  const pool = await n.createPool({ uuid: randomUUID(), name, device_uri: `malloc:///${name}?size_mib=32`, cluster_size_bytes: MiB, force: false });
  t.is(pool.device_uri, `malloc:///${name}`);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "m", size_bytes: 4 * MiB, thin: true });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: MiB, data: pattern(8192, 3) });
  const dev = (await n.listDevices()).find((d) => d.uri === pool.device_uri)!;
  t.like(dev, { kind: "malloc", path: null, major_minor: null, in_use_by: pool.uuid, size_bytes: 32 * MiB });
  await n.exportPool({ uuid: pool.uuid });
  await n.importPool({ device_uri: `malloc:///${name}` });
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: MiB, length_bytes: 8192 })).equals(pattern(8192, 3)));
  await n.destroyPool({ uuid: pool.uuid });
});
