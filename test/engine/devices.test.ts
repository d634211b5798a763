// Which devices an engine takes, what it refuses to allocate, and a missing pool coming back:
// real strata-engine processes over gRPC.
import test from "ava";
import { status } from "@grpc/grpc-js";
import { randomBytes, randomUUID } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, renameSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { isEngineCallError } from "../../common/client";
import { loadNative } from "../../native";
import { startEngine, TestEngine } from "../helpers/engine";

const MiB = 1024 * 1024;
// The largest size_bytes the engine's validation accepts (common/validate.ts checkSizeBytes).
const MAX_SIZE_BYTES = 2 ** 53 - 512;

const engines: TestEngine[] = [];
test.after.always(async () => {
  await Promise.all(engines.map((e) => e.kill()));
});

async function engine(opts: Parameters<typeof startEngine>[0] = {}): Promise<TestEngine> {
  const e = await startEngine(opts);
  engines.push(e);
  return e;
}

async function rejects(t: import("ava").ExecutionContext, p: Promise<unknown>, codes: status[], message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  if (!isEngineCallError(err)) return void t.fail(`not an engine call error: ${String(err)}`);
  t.true(codes.includes(err.code), `code ${err.code}: ${err.message}`);
  t.regex(err.message, message);
}

const pool = (device_uri: string, force = false) => ({ uuid: randomUUID(), name: `p-${randomUUID().slice(0, 8)}`, device_uri, labels: {}, cluster_size_bytes: MiB, force });

test("by default only files in the data dir may hold pools; others are refused untouched", async (t) => {
  const e = await engine({ deviceDirs: [] });
  const c = e.connect();
  const outside = join(e.dir, "outside.img");
  await rejects(t, c.call("CreatePool", pool(`file://${outside}?size_mib=64`)), [status.INVALID_ARGUMENT], /outside the engine's device directories .*--device-dir/);
  t.false(existsSync(outside), "not created");
  // An existing file elsewhere (the review's example was /etc/shadow; a test must not bet a
  // system file on the rule holding, so a stand-in beside the data dir).
  const system = join(e.dir, "shadow");
  writeFileSync(system, "root:*:19000:0:99999:7:::\n");
  await rejects(t, c.call("CreatePool", pool(`file://${system}?size_mib=64`, true)), [status.INVALID_ARGUMENT], /shadow is outside the engine's device directories/);
  t.is(readFileSync(system, "utf8"), "root:*:19000:0:99999:7:::\n");
  const created = await c.call("CreatePool", pool(`file://${join(e.dataDir, "disk.img")}?size_mib=64`));
  t.is(created.state, "POOL_STATE_ONLINE");
  c.close();
});

test("an existing file that is not a pool is neither extended nor formatted", async (t) => {
  const e = await engine();
  const c = e.connect();
  const path = join(e.dir, "notes.img");
  const data = randomBytes(3 * MiB);
  writeFileSync(path, data);
  await rejects(t, c.call("CreatePool", pool(`file://${path}?size_mib=64`)), [status.FAILED_PRECONDITION], /not a Strata pool; size_mib=64 would extend it/);
  await rejects(t, c.call("CreatePool", pool(`file://${path}?size_mib=64`, true)), [status.FAILED_PRECONDITION], /left unchanged/);
  t.true(readFileSync(path).equals(data), "byte for byte unchanged");
  t.deepEqual((await c.call("ListPools", {})).pools, []);
  c.close();
});

test("a file with an ext4 signature is refused without force", async (t) => {
  const e = await engine();
  const c = e.connect();
  const path = join(e.dir, "ext4.img");
  closeSync(openSync(path, "w"));
  truncateSync(path, 64 * MiB);
  const fd = openSync(path, "r+");
  writeSync(fd, Buffer.from([0x53, 0xef]), 0, 2, 1024 + 56);
  closeSync(fd);
  const before = readFileSync(path);
  await rejects(t, c.call("CreatePool", pool(`file://${path}`)), [status.FAILED_PRECONDITION], /holds an ext2\/3\/4 filesystem .*pass force/);
  t.true(readFileSync(path).equals(before));
  t.is((await c.call("CreatePool", pool(`file://${path}`, true))).state, "POOL_STATE_ONLINE");
  c.close();
});

test("malloc size_mib=999999999 fails cleanly and the engine carries on", async (t) => {
  const e = await engine();
  const c = e.connect();
  await rejects(t, c.call("CreatePool", pool("malloc:///huge?size_mib=999999999")), [status.RESOURCE_EXHAUSTED], /does not fit in memory/);
  t.is((await c.call("GetInfo", {})).node, "node-a");
  c.close();
});

test("ResizeReplica to a size whose map cannot be held fails, and the pool still imports after a restart", async (t) => {
  const e = await engine();
  let c = e.connect();
  const p = pool(`file://${join(e.dir, "disk.img")}?size_mib=64`);
  await c.call("CreatePool", p);
  const uuid = randomUUID();
  await c.call("CreateReplica", { uuid, name: "thin", pool: p.name, size_bytes: 8 * MiB, thin: true });
  await rejects(t, c.call("ResizeReplica", { uuid, size_bytes: MAX_SIZE_BYTES }), [status.INVALID_ARGUMENT, status.RESOURCE_EXHAUSTED], /cluster map/);
  await rejects(t, c.call("CreateReplica", { uuid: randomUUID(), name: "huge", pool: p.name, size_bytes: MAX_SIZE_BYTES, thin: true }), [status.INVALID_ARGUMENT, status.RESOURCE_EXHAUSTED], /cluster map/);
  c.close();
  await e.kill();
  await e.restart();
  c = e.connect();
  const pools = (await c.call("ListPools", {})).pools;
  t.is(pools[0]?.state, "POOL_STATE_ONLINE", pools[0]?.reason ?? "");
  t.deepEqual((await c.call("ListReplicas", { pool: "" })).replicas.map((r) => [r.uuid, r.size_bytes]), [[uuid, 8 * MiB]]);
  c.close();
});

test("a pool missing at start is re-imported by CreatePool with the same spec once its device is back", async (t) => {
  const e = await engine();
  let c = e.connect();
  const path = join(e.dir, "disk.img");
  const p = pool(`file://${path}?size_mib=64`);
  await c.call("CreatePool", p);
  const replica = randomUUID();
  await c.call("CreateReplica", { uuid: replica, name: "kept", pool: p.name, size_bytes: 8 * MiB, thin: true });
  c.close();
  t.is(await e.stop(), 0);

  // Replica data, written through the addon in this process while no engine holds the pool.
  const native = loadNative();
  native.start({ cores: 1 });
  const data = randomBytes(3 * MiB);
  await native.importPool({ device_uri: `file://${path}` });
  await native.replicaWrite({ uuid: replica, offset_bytes: 2 * MiB, data });
  await native.exportPool({ uuid: p.uuid });

  // The disk is absent when the engine starts: the pool is missing, and creates cannot use it.
  renameSync(path, `${path}.away`);
  await e.restart();
  c = e.connect();
  let listed = (await c.call("ListPools", {})).pools;
  t.is(listed[0]?.state, "POOL_STATE_MISSING");
  await rejects(t, c.call("CreatePool", p), [status.FAILED_PRECONDITION], /is missing and its device cannot be imported yet/);
  t.false(existsSync(path), "a missing pool's device is never created by the retry");

  // The disk is back: the same create brings the pool online with its replica.
  renameSync(`${path}.away`, path);
  const back = await c.call("CreatePool", p);
  t.is(back.state, "POOL_STATE_ONLINE");
  t.is(back.uuid, p.uuid);
  listed = (await c.call("ListPools", {})).pools;
  t.is(listed[0]?.state, "POOL_STATE_ONLINE");
  t.deepEqual((await c.call("ListReplicas", { pool: p.name })).replicas.map((r) => r.uuid), [replica]);
  c.close();

  // ... and its data, byte for byte (read after the engine let go of the pool again).
  t.is(await e.stop(), 0);
  await native.importPool({ device_uri: `file://${path}` });
  t.true((await native.replicaRead({ uuid: replica, offset_bytes: 2 * MiB, length_bytes: data.length })).equals(data));
  await native.exportPool({ uuid: p.uuid });
});
