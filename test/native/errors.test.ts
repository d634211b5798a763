// Bad input: every refusal carries the right code, a message that says what to do, and leaves
// nothing changed.
import test from "ava";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectCode, MiB, native, pattern, tempDisk, tempPool } from "./helpers";

test("unknown URI schemes are INVALID_ARGUMENT naming the scheme and the supported ones", async (t) => {
  const n = native();
  await expectCode(t, n.probeDevice({ uri: "nvme:///dev/nvme0n1" }), "INVALID_ARGUMENT", /scheme 'nvme'.*file:\/\/.*uring:\/\/.*malloc:\/\//);
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: "x", device_uri: "/tmp/no-scheme", cluster_size_bytes: MiB, force: false }), "INVALID_ARGUMENT");
});

test("devices off the allow list are PERMISSION_DENIED naming the rule", async (t) => {
  const n = native();
  const rule = /only regular files and block devices with major 7, 8, 43, 259 or 240-255 may hold a pool/;
  await expectCode(t, n.probeDevice({ uri: "uring:///dev/null" }), "PERMISSION_DENIED", rule);
  await expectCode(t, n.probeDevice({ uri: "file:///dev/zero" }), "PERMISSION_DENIED", rule);
  const dir = mkdtempSync(join(tmpdir(), "strata-dir-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: "dir", device_uri: `file://${dir}`, cluster_size_bytes: MiB, force: false }), "PERMISSION_DENIED", /directory/);
  t.false((await n.listPools()).some((p) => p.name === "dir"));
});

test("a missing file is NOT_FOUND, and probing never creates it", async (t) => {
  const n = native();
  const path = join(tmpdir(), `strata-missing-${randomUUID()}.img`);
  await expectCode(t, n.probeDevice({ uri: `file://${path}` }), "NOT_FOUND");
  await expectCode(t, n.probeDevice({ uri: `file://${path}?size_mib=8` }), "NOT_FOUND");
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: "missing", device_uri: `file://${path}`, cluster_size_bytes: MiB, force: false }), "NOT_FOUND", /size_mib/);
  await expectCode(t, n.importPool({ device_uri: `file://${path}` }), "NOT_FOUND");
  t.false(existsSync(path));
});

test("size_mib creates the backing file for createPool", async (t) => {
  const n = native();
  const dir = mkdtempSync(join(tmpdir(), "strata-create-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "new.img");
  const pool = await n.createPool({ uuid: randomUUID(), name: `p-${randomUUID().slice(0, 8)}`, device_uri: `file://${path}?size_mib=16`, cluster_size_bytes: MiB, force: false });
  t.is(statSync(path).size, 16 * MiB);
  t.is(pool.device_uri, `file://${path}`);
  await n.destroyPool({ uuid: pool.uuid });
});

test("a device too small for metadata plus one cluster is INVALID_ARGUMENT naming the minimum", async (t) => {
  const n = native();
  const disk = tempDisk(t, 2);
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: "small", device_uri: disk.uri, cluster_size_bytes: MiB, force: false }), "INVALID_ARGUMENT", /needs at least \d+ bytes/);
  await expectCode(t, n.importPool({ device_uri: disk.uri }), "NOT_FOUND");
});

test("bad cluster sizes and uuids are INVALID_ARGUMENT", async (t) => {
  const n = native();
  const disk = tempDisk(t, 16);
  for (const cluster_size_bytes of [MiB / 2, 3 * MiB, 0]) {
    await expectCode(t, n.createPool({ uuid: randomUUID(), name: "cs", device_uri: disk.uri, cluster_size_bytes, force: false }), "INVALID_ARGUMENT", /power of two/);
  }
  await expectCode(t, n.createPool({ uuid: "not-a-uuid", name: "u", device_uri: disk.uri, cluster_size_bytes: MiB, force: false }), "INVALID_ARGUMENT", /not a uuid/);
  t.false((await n.listPools()).some((p) => p.device_uri === disk.uri));
});

test("duplicate pool uuid, pool name or device is refused", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t);
  const other = tempDisk(t, 16);
  await expectCode(t, n.createPool({ uuid: pool.uuid, name: "another", device_uri: other.uri, cluster_size_bytes: MiB, force: false }), "ALREADY_EXISTS");
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: pool.name, device_uri: other.uri, cluster_size_bytes: MiB, force: false }), "ALREADY_EXISTS");
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: "same-dev", device_uri: uri, cluster_size_bytes: MiB, force: true }), "FAILED_PRECONDITION", /in use by pool/);
  await expectCode(t, n.importPool({ device_uri: uri }), "ALREADY_EXISTS", /already imported/);
  t.is((await n.listPools()).filter((p) => p.uuid === pool.uuid).length, 1);
});

test("duplicate replica uuid (across pools) or name (within a pool) is ALREADY_EXISTS", async (t) => {
  const n = native();
  const a = await tempPool(t);
  const b = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: a.pool.uuid, uuid: randomUUID(), name: "dup", size_bytes: MiB, thin: true });
  await expectCode(t, n.createReplica({ pool_uuid: b.pool.uuid, uuid: r.uuid, name: "other", size_bytes: MiB, thin: true }), "ALREADY_EXISTS");
  await expectCode(t, n.createReplica({ pool_uuid: a.pool.uuid, uuid: randomUUID(), name: "dup", size_bytes: MiB, thin: true }), "ALREADY_EXISTS", /named 'dup'/);
  // Same name in another pool is fine.
  await n.createReplica({ pool_uuid: b.pool.uuid, uuid: randomUUID(), name: "dup", size_bytes: MiB, thin: true });
  t.is((await n.listReplicas()).filter((x) => x.pool_uuid === a.pool.uuid).length, 1);
});

test("a thick replica that does not fit is NO_SPACE and changes nothing", async (t) => {
  const n = native();
  const { pool } = await tempPool(t, 16);
  const before = (await n.listPools()).find((p) => p.uuid === pool.uuid)!;
  const uuid = randomUUID();
  await expectCode(t, n.createReplica({ pool_uuid: pool.uuid, uuid, name: "huge", size_bytes: before.capacity_bytes + MiB, thin: false }), "NO_SPACE", /free clusters/);
  t.deepEqual((await n.listPools()).find((p) => p.uuid === pool.uuid), before);
  t.false((await n.listReplicas()).some((r) => r.uuid === uuid));
  // The uuid and name are not left reserved.
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: "huge", size_bytes: MiB, thin: false });
  // Growing a thick replica past the pool is refused the same way.
  await expectCode(t, n.resizeReplica({ uuid, size_bytes: before.capacity_bytes + MiB }), "NO_SPACE");
  t.is((await n.listReplicas()).find((r) => r.uuid === uuid)!.size_bytes, MiB);
});

test("shrinking a replica is INVALID_ARGUMENT; growing works", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "rs", size_bytes: 4 * MiB, thin: true });
  await expectCode(t, n.resizeReplica({ uuid: r.uuid, size_bytes: 2 * MiB }), "INVALID_ARGUMENT", /only grow/);
  t.is((await n.resizeReplica({ uuid: r.uuid, size_bytes: 6 * MiB })).size_bytes, 6 * MiB);
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 5 * MiB, data: pattern(4096, 1) });
});

// 2^53 - 512: the largest size the engine's validation lets through (checkSizeBytes).
const MAX_SIZE_BYTES = 2 ** 53 - 512;

test("a thin replica whose cluster map cannot be held in memory is refused before anything is durable", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t);
  const uuid = randomUUID();
  const mapRule = /needs a \d+-byte cluster map in memory .*at most 1073741824 bytes, so replicas in this pool may be at most 140737488355328 bytes/;
  await expectCode(t, n.createReplica({ pool_uuid: pool.uuid, uuid, name: "huge", size_bytes: MAX_SIZE_BYTES, thin: true }), "INVALID_ARGUMENT", mapRule);
  t.false((await n.listReplicas()).some((r) => r.uuid === uuid));

  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid, name: "grows", size_bytes: 4 * MiB, thin: true });
  await n.replicaWrite({ uuid, offset_bytes: MiB, data: pattern(4096, 9) });
  await expectCode(t, n.resizeReplica({ uuid, size_bytes: MAX_SIZE_BYTES }), "INVALID_ARGUMENT", mapRule);
  t.is((await n.listReplicas()).find((x) => x.uuid === uuid)!.size_bytes, r.size_bytes);
  // Nothing reached the disk: the pool imports with the old size and the data.
  await n.exportPool({ uuid: pool.uuid });
  await n.importPool({ device_uri: uri });
  t.is((await n.listReplicas()).find((x) => x.uuid === uuid)!.size_bytes, 4 * MiB);
  t.true((await n.replicaRead({ uuid, offset_bytes: MiB, length_bytes: 4096 })).equals(pattern(4096, 9)));
  // The limit is about memory, not a ban on growth.
  t.is((await n.resizeReplica({ uuid, size_bytes: 64 * 1024 * MiB })).size_bytes, 64 * 1024 * MiB);
});

test("misaligned I/O is INVALID_ARGUMENT and I/O past the end is OUT_OF_RANGE", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "io", size_bytes: MiB, thin: true });
  await expectCode(t, n.replicaWrite({ uuid: r.uuid, offset_bytes: 100, data: pattern(512, 1) }), "INVALID_ARGUMENT", /multiples of 512/);
  await expectCode(t, n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(100, 1) }), "INVALID_ARGUMENT");
  await expectCode(t, n.replicaRead({ uuid: r.uuid, offset_bytes: 512, length_bytes: 1000 }), "INVALID_ARGUMENT");
  await expectCode(t, n.replicaRead({ uuid: r.uuid, offset_bytes: MiB - 512, length_bytes: 1024 }), "OUT_OF_RANGE", /beyond the end/);
  await expectCode(t, n.replicaDeallocate({ uuid: r.uuid, offset_bytes: MiB, length_bytes: 512 }), "OUT_OF_RANGE");
  await expectCode(t, n.replicaRead({ uuid: r.uuid, offset_bytes: -512, length_bytes: 512 }), "INVALID_ARGUMENT");
  t.is((await n.listReplicas()).find((x) => x.uuid === r.uuid)!.allocated_bytes, 0);
});

test("unknown pools and replicas are NOT_FOUND", async (t) => {
  const n = native();
  const missing = randomUUID();
  await expectCode(t, n.exportPool({ uuid: missing }), "NOT_FOUND");
  await expectCode(t, n.destroyPool({ uuid: missing }), "NOT_FOUND");
  await expectCode(t, n.growPool({ uuid: missing }), "NOT_FOUND");
  await expectCode(t, n.checkPool({ uuid: missing }), "NOT_FOUND");
  await expectCode(t, n.createReplica({ pool_uuid: missing, uuid: randomUUID(), name: "x", size_bytes: MiB, thin: true }), "NOT_FOUND");
  await expectCode(t, n.destroyReplica({ uuid: missing }), "NOT_FOUND");
  await expectCode(t, n.resizeReplica({ uuid: missing, size_bytes: MiB }), "NOT_FOUND");
  await expectCode(t, n.replicaRead({ uuid: missing, offset_bytes: 0, length_bytes: 512 }), "NOT_FOUND");
});

test("wrongly typed options reject with INVALID_ARGUMENT instead of crashing", async (t) => {
  const n = native();
  await expectCode(t, n.createPool({ uuid: 1, name: "x" } as never), "INVALID_ARGUMENT", /uuid/);
  await expectCode(t, n.replicaWrite({ uuid: randomUUID(), offset_bytes: 0, data: "nope" } as never), "INVALID_ARGUMENT", /Buffer/);
  await expectCode(t, n.replicaRead({ uuid: randomUUID(), offset_bytes: 2 ** 60, length_bytes: 512 }), "INVALID_ARGUMENT", /2\^53/);
});
