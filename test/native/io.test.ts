// Replica data path: what a volume user relies on — reads return what was written, unwritten
// space reads as zeros, thin replicas allocate on first write, deallocate gives space back.
import test from "ava";
import { randomUUID } from "node:crypto";
import { expectCode, MiB, native, pattern, tempPool } from "./helpers";

test("a write reads back byte for byte, across cluster boundaries", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "r", size_bytes: 8 * MiB, thin: true });
  const data = pattern(MiB + 8192, 1);
  const offset = MiB - 4096; // spans three clusters
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: offset, data });
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: offset, length_bytes: data.length })).equals(data));
  await n.replicaFlush({ uuid: r.uuid });
});

test("never-written space reads as zeros, on thin and thick replicas", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  for (const thin of [true, false]) {
    const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: `r-${thin}`, size_bytes: 4 * MiB, thin });
    await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(4096, 2) });
    const rest = await n.replicaRead({ uuid: r.uuid, offset_bytes: 4096, length_bytes: 4 * MiB - 4096 });
    t.true(rest.every((b) => b === 0), `thin=${thin}`);
  }
});

test("thin replicas allocate a cluster on first write and grow allocated_bytes", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "thin", size_bytes: 16 * MiB, thin: true });
  t.is(r.allocated_bytes, 0);
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(512, 3) });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 512, data: pattern(512, 4) }); // same cluster
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 5 * MiB, data: pattern(4096, 5) });
  const after = (await n.listReplicas()).find((x) => x.uuid === r.uuid)!;
  t.is(after.allocated_bytes, 2 * MiB);
  const info = (await n.listPools()).find((p) => p.uuid === pool.uuid)!;
  t.is(info.used_bytes, 2 * MiB);
  t.is(info.committed_bytes, 16 * MiB);
});

test("concurrent first writes to one cluster allocate it once and all land", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "c", size_bytes: 4 * MiB, thin: true });
  await Promise.all(Array.from({ length: 64 }, (_, i) => n.replicaWrite({ uuid: r.uuid, offset_bytes: i * 4096, data: pattern(4096, i) })));
  for (let i = 0; i < 64; i++) t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: i * 4096, length_bytes: 4096 })).equals(pattern(4096, i)));
  t.is((await n.listReplicas()).find((x) => x.uuid === r.uuid)!.allocated_bytes, MiB);
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("deallocate frees whole clusters and the range reads as zeros", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "d", size_bytes: 4 * MiB, thin: true });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(3 * MiB, 6) });
  t.is((await n.listReplicas()).find((x) => x.uuid === r.uuid)!.allocated_bytes, 3 * MiB);
  // Cluster 1 whole, plus the first half of cluster 2 (partial: zeroed in place).
  await n.replicaDeallocate({ uuid: r.uuid, offset_bytes: MiB, length_bytes: MiB + MiB / 2 });
  t.is((await n.listReplicas()).find((x) => x.uuid === r.uuid)!.allocated_bytes, 2 * MiB);
  const zeros = await n.replicaRead({ uuid: r.uuid, offset_bytes: MiB, length_bytes: MiB + MiB / 2 });
  t.true(zeros.every((b) => b === 0));
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: 0, length_bytes: MiB })).equals(pattern(3 * MiB, 6).subarray(0, MiB)));
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: 2 * MiB + MiB / 2, length_bytes: MiB / 2 })).equals(pattern(3 * MiB, 6).subarray(2 * MiB + MiB / 2)));
  t.is((await n.listPools()).find((p) => p.uuid === pool.uuid)!.used_bytes, 2 * MiB);
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test("write-zeroes of whole clusters frees them; partial ranges are zeroed", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "z", size_bytes: 2 * MiB, thin: true });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(2 * MiB, 7) });
  await n.replicaWriteZeroes({ uuid: r.uuid, offset_bytes: 0, length_bytes: MiB + 4096 });
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: 0, length_bytes: MiB + 4096 })).every((b) => b === 0));
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: MiB + 4096, length_bytes: 4096 })).equals(pattern(2 * MiB, 7).subarray(MiB + 4096, MiB + 8192)));
  t.is((await n.listReplicas()).find((x) => x.uuid === r.uuid)!.allocated_bytes, MiB);
});

test("a freed cluster given to another replica reads as zeros there", async (t) => {
  const n = native();
  const { pool } = await tempPool(t, 8); // few clusters, so reuse is certain
  const clusters = pool.capacity_bytes / MiB;
  const a = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "a", size_bytes: clusters * MiB, thin: true });
  await n.replicaWrite({ uuid: a.uuid, offset_bytes: 0, data: pattern(clusters * MiB, 8) });
  await n.destroyReplica({ uuid: a.uuid });
  const b = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "b", size_bytes: clusters * MiB, thin: true });
  await n.replicaWrite({ uuid: b.uuid, offset_bytes: 0, data: pattern(512, 9) });
  const rest = await n.replicaRead({ uuid: b.uuid, offset_bytes: 512, length_bytes: MiB - 512 });
  t.true(rest.every((x) => x === 0));
});

test("a thin replica out of clusters fails writes with NO_SPACE, not an I/O error", async (t) => {
  const n = native();
  const { pool } = await tempPool(t, 8);
  const clusters = pool.capacity_bytes / MiB;
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "over", size_bytes: (clusters + 4) * MiB, thin: true });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(clusters * MiB, 10) });
  await expectCode(t, n.replicaWrite({ uuid: r.uuid, offset_bytes: clusters * MiB, data: pattern(4096, 11) }), "NO_SPACE", /no free cluster/);
  t.true((await n.replicaRead({ uuid: r.uuid, offset_bytes: 0, length_bytes: 4096 })).equals(pattern(clusters * MiB, 10).subarray(0, 4096)));
});

test("I/O stats count operations, bytes and latency per replica and per pool", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "s", size_bytes: MiB, thin: true });
  await n.replicaWrite({ uuid: r.uuid, offset_bytes: 0, data: pattern(8192, 12) });
  await n.replicaRead({ uuid: r.uuid, offset_bytes: 0, length_bytes: 4096 });
  await n.replicaFlush({ uuid: r.uuid });
  await n.replicaDeallocate({ uuid: r.uuid, offset_bytes: 0, length_bytes: 4096 });
  await t.throwsAsync(n.replicaRead({ uuid: r.uuid, offset_bytes: 2 * MiB, length_bytes: 512 }));
  for (const uuid of [r.uuid, pool.uuid]) {
    const s = await n.getStats({ uuid });
    t.like(s, { read_ops: 1, write_ops: 1, read_bytes: 4096, write_bytes: 8192, flush_ops: 1, unmap_ops: 1, errors: 1 });
    t.is(s.latency_bucket_upper_us.length, s.latency_bucket_counts.length);
    t.is(s.latency_bucket_counts.reduce((a, b) => a + b, 0), 4);
  }
  await expectCode(t, n.getStats({ uuid: randomUUID() }), "NOT_FOUND");
});
