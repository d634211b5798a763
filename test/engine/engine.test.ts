// The engine over gRPC, as the provider sees it: a real strata-engine process, a real pool on
// a disk file, state that survives restarts.
import test from "ava";
import { status } from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectEngine, isEngineCallError } from "../../common/client";
import { startEngine, TestEngine } from "../helpers/engine";

const MiB = 1024 * 1024;
const engines: TestEngine[] = [];
test.after.always(async () => {
  await Promise.all(engines.map((e) => e.kill()));
});

async function engine(labels?: string): Promise<TestEngine> {
  const e = await startEngine({ labels });
  engines.push(e);
  return e;
}

function disk(e: TestEngine, name = "disk.img", sizeMib = 256): string {
  return `file://${join(e.dir, name)}?size_mib=${sizeMib}`;
}

async function rejects(t: import("ava").ExecutionContext, p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  if (!isEngineCallError(err)) return void t.fail(`not an engine call error: ${String(err)}`);
  t.is(err.code, code, err.message);
  t.regex(err.message, message);
}

test("every call needs the node's token", async (t) => {
  const e = await engine();
  const wrong = connectEngine({ ...e.target, token: "not-the-token-at-all" });
  await rejects(t, wrong.call("GetInfo", {}), status.UNAUTHENTICATED, /rejected the token/);
  await rejects(t, wrong.call("ListPools", {}), status.UNAUTHENTICATED, /rejected the token/);
  wrong.close();
  const empty = connectEngine({ ...e.target, token: "" });
  await rejects(t, empty.call("GetInfo", {}), status.UNAUTHENTICATED, /token/);
  empty.close();
  const good = e.connect();
  const info = await good.call("GetInfo", {});
  t.is(info.node, "node-a");
  t.true(info.capabilities.includes("pool"));
  good.close();
});

test("GetInfo reports labels; an unreachable engine is named with its endpoint", async (t) => {
  const e = await engine("zone=zone-b,rack=r7");
  const c = e.connect();
  t.deepEqual((await c.call("GetInfo", {})).labels, { zone: "zone-b", rack: "r7" });
  c.close();
  const down = connectEngine({ node: "node-x", endpoint: "127.0.0.1:1", token: "x".repeat(20) });
  const started = Date.now();
  await rejects(t, down.call("GetInfo", {}, 3000), status.UNAVAILABLE, /node "node-x" at 127\.0\.0\.1:1 is unreachable/);
  t.true(Date.now() - started < 5000);
  down.close();
});

test("pools and replicas: idempotent creates, conflicts named, destroys of missing things succeed", async (t) => {
  const e = await engine();
  const c = e.connect();
  const uuid = randomUUID();
  const req = { uuid, name: "p1", device_uri: disk(e), labels: { class: "file" }, cluster_size_bytes: MiB, force: false };
  const pool = await c.call("CreatePool", req);
  t.is(pool.state, "POOL_STATE_ONLINE");
  t.true(pool.capacity_bytes > 200 * MiB && pool.capacity_bytes <= 256 * MiB);
  t.deepEqual(await c.call("CreatePool", req), pool);
  await rejects(t, c.call("CreatePool", { ...req, device_uri: disk(e, "other.img") }), status.ALREADY_EXISTS, /device_uri is/);
  await rejects(t, c.call("CreatePool", { ...req, uuid: randomUUID() }), status.ALREADY_EXISTS, /named "p1" already exists/);

  const rid = randomUUID();
  const rreq = { uuid: rid, name: "", pool: "p1", size_bytes: 64 * MiB, thin: true };
  const replica = await c.call("CreateReplica", rreq);
  t.is(replica.size_bytes, 64 * MiB);
  t.is(replica.pool_uuid, uuid);
  t.deepEqual(await c.call("CreateReplica", rreq), replica);
  await rejects(t, c.call("CreateReplica", { ...rreq, size_bytes: 128 * MiB }), status.ALREADY_EXISTS, /size_bytes is 67108864, requested 134217728/);
  await rejects(t, c.call("DestroyPool", { uuid }), status.FAILED_PRECONDITION, /still has 1 replica/);

  const grown = await c.call("ResizeReplica", { uuid: rid, size_bytes: 96 * MiB });
  t.is(grown.size_bytes, 96 * MiB);
  await rejects(t, c.call("ResizeReplica", { uuid: rid, size_bytes: 32 * MiB }), status.INVALID_ARGUMENT, /only grow/);

  await c.call("DestroyReplica", { uuid: rid });
  await c.call("DestroyReplica", { uuid: rid });
  t.deepEqual((await c.call("ListReplicas", { pool: "" })).replicas, []);
  await c.call("DestroyPool", { uuid });
  await c.call("DestroyPool", { uuid });
  t.deepEqual((await c.call("ListPools", {})).pools, []);
  c.close();
});

test("bad input is refused with a reason and changes nothing", async (t) => {
  const e = await engine();
  const c = e.connect();
  const base = { uuid: randomUUID(), name: "p", labels: {}, cluster_size_bytes: MiB, force: false };
  await rejects(t, c.call("CreatePool", { ...base, device_uri: "nbd:///dev/nbd0" }), status.INVALID_ARGUMENT, /unknown scheme "nbd:"/);
  await rejects(t, c.call("CreatePool", { ...base, device_uri: `file://${join(e.dir, "missing.img")}` }), status.NOT_FOUND, /missing\.img/);
  await rejects(t, c.call("CreatePool", { ...base, device_uri: "uring:///dev/null" }), status.PERMISSION_DENIED, /not allowed/);
  await rejects(t, c.call("CreatePool", { ...base, device_uri: disk(e, "tiny.img", 1) }), status.INVALID_ARGUMENT, /too small|at least/);
  await rejects(t, c.call("CreatePool", { ...base, uuid: "nope", device_uri: disk(e) }), status.INVALID_ARGUMENT, /uuid must be a lower-case uuid/);
  await rejects(t, c.call("CreatePool", { ...base, cluster_size_bytes: 3 * MiB, device_uri: disk(e) }), status.INVALID_ARGUMENT, /cluster_size_bytes must be a power of two/);
  t.deepEqual((await c.call("ListPools", {})).pools, []);

  await c.call("CreatePool", { ...base, device_uri: disk(e) });
  await rejects(t, c.call("CreateReplica", { uuid: randomUUID(), name: "", pool: "p", size_bytes: 1000, thin: true }), status.INVALID_ARGUMENT, /multiple of 512/);
  await rejects(t, c.call("CreateReplica", { uuid: randomUUID(), name: "", pool: "nope", size_bytes: MiB, thin: true }), status.NOT_FOUND, /pool "nope" does not exist/);
  await rejects(t, c.call("CreateReplica", { uuid: randomUUID(), name: "", pool: "p", size_bytes: 1024 * MiB, thin: false }), status.RESOURCE_EXHAUSTED, /space|free/i);
  t.deepEqual((await c.call("ListReplicas", { pool: "" })).replicas, []);
  c.close();
});

test("state survives a restart and a SIGKILL: pools re-imported, replicas listed", async (t) => {
  const e = await engine();
  let c = e.connect();
  const poolUuid = randomUUID();
  await c.call("CreatePool", { uuid: poolUuid, name: "persist", device_uri: disk(e), labels: { tier: "a" }, cluster_size_bytes: MiB, force: false });
  const rids = [randomUUID(), randomUUID()];
  for (const [i, rid] of rids.entries())
    await c.call("CreateReplica", { uuid: rid, name: `r${i}`, pool: "persist", size_bytes: (i + 1) * 16 * MiB, thin: i === 0 });
  c.close();

  t.is(await e.stop(), 0, "SIGTERM ends the engine cleanly");
  t.regex(e.logs, /"msg":"engine stopped"/);
  await e.restart();
  c = e.connect();
  let pools = (await c.call("ListPools", {})).pools;
  t.is(pools.length, 1);
  t.is(pools[0].uuid, poolUuid);
  t.deepEqual(pools[0].labels, { tier: "a" });
  t.deepEqual((await c.call("ListReplicas", { pool: "" })).replicas.map((r) => [r.uuid, r.size_bytes, r.thin]), [
    [rids[0], 16 * MiB, true],
    [rids[1], 32 * MiB, false],
  ]);
  c.close();

  await e.kill();
  await e.restart();
  c = e.connect();
  pools = (await c.call("ListPools", {})).pools;
  t.is(pools[0]?.state, "POOL_STATE_ONLINE");
  t.is((await c.call("ListReplicas", { pool: "persist" })).replicas.length, 2);
  c.close();
});

test("structured JSON logs, one object per line, never the token", async (t) => {
  const e = await engine();
  const c = e.connect();
  await c.call("GetInfo", {});
  c.close();
  const lines = e.logs.trim().split("\n");
  for (const line of lines) {
    const entry = JSON.parse(line) as { level: string; msg: string; ts: string };
    t.truthy(entry.level && entry.msg && entry.ts);
  }
  t.false(e.logs.includes(e.target.token));
  t.true(existsSync(e.dataDir) && statSync(e.dataDir).isDirectory());
  void mkdtempSync;
  void tmpdir;
});
