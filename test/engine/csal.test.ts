// CSAL devices through the engine API (CreateCsalDevice, ListCsalDevices, GetStats,
// DestroyCsalDevice) and a pool on one serving a replica over NVMe/TCP: bytes written by a host
// read back after a clean restart and after SIGKILL (the FTL rebuilt from its log and bands).
import test, { ExecutionContext } from "ava";
import { status } from "@grpc/grpc-js";
import { randomBytes, randomUUID } from "node:crypto";
import { join } from "node:path";
import { EngineConnection, isEngineCallError } from "../../common/client";
import { startEngine, TestEngine } from "../helpers/engine";
import { adminQueue, BLOCK_BYTES, ioQueue, ok } from "../native/nvmf/host";

const MiB = 1024 * 1024;
const HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:7e570000-0000-4000-8000-0000000000c5";
const engines: TestEngine[] = [];
test.after.always(async () => {
  await Promise.all(engines.map((e) => e.kill()));
});

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  if (!isEngineCallError(err)) return void t.fail(`not an engine call error: ${String(err)}`);
  t.is(err.code, code, err.message);
  t.regex(err.message, message);
}

function spec(e: TestEngine, overrides: Record<string, unknown> = {}) {
  return {
    uuid: randomUUID(),
    name: "csal-a",
    cache_device_uri: `file://${join(e.dir, "cache.img")}?size_mib=32`,
    base_device_uri: `file://${join(e.dir, "base.img")}?size_mib=160`,
    overprovision_percent: 20,
    band_mib: 4,
    chunk_kib: 256,
    force: false,
    map_memory_limit_bytes: 0,
    ...overrides,
  };
}

async function hostIo(c: EngineConnection, replica: string) {
  const sub = await c.call("ShareReplica", { uuid: replica, allowed_host_nqns: [HOST_NQN] });
  const port = Number(sub.address.split(":").pop());
  const { cntlid } = await adminQueue(port, sub.nqn, HOST_NQN);
  return ioQueue(port, sub.nqn, HOST_NQN, cntlid);
}

async function writeAll(c: EngineConnection, replica: string, data: Buffer) {
  const io = await hostIo(c, replica);
  for (let at = 0; at < data.length; at += 128 * 1024) ok(await io.write(at / BLOCK_BYTES, data.subarray(at, at + 128 * 1024)));
  io.close();
}

async function readAll(c: EngineConnection, replica: string, size: number): Promise<Buffer> {
  const io = await hostIo(c, replica);
  const parts: Buffer[] = [];
  for (let at = 0; at < size; at += 128 * 1024) parts.push(ok(await io.read(at / BLOCK_BYTES, 128 * 1024 / BLOCK_BYTES)).data!);
  io.close();
  return Buffer.concat(parts);
}

test.serial("CreateCsalDevice validates, is idempotent by uuid, and names a differing field", async (t) => {
  const e = await startEngine();
  engines.push(e);
  const c = e.connect();
  await rejects(t, c.call("CreateCsalDevice", spec(e, { overprovision_percent: 95 })), status.INVALID_ARGUMENT, /overprovision_percent must be a whole percentage from 5 to 90/);
  await rejects(t, c.call("CreateCsalDevice", spec(e, { base_device_uri: "zoned://?base=file%3A%2F%2F%2Fx" })), status.INVALID_ARGUMENT, /base_device_uri zone_mib must be/);
  await rejects(t, c.call("CreateCsalDevice", spec(e, { chunk_kib: 102 })), status.INVALID_ARGUMENT, /chunk_kib must be a multiple of 4 KiB/);
  await rejects(t, c.call("CreateCsalDevice", spec(e, { map_memory_limit_bytes: 4096 })), status.INVALID_ARGUMENT, /map_memory_limit_bytes must be 0 \(no limit\) or a whole number of bytes from 32768/);
  const s = spec(e);
  const made = await c.call("CreateCsalDevice", s);
  t.regex(made.uri, /^ftl:\/\/\?cache=.*&op_percent=20&band_mib=4&chunk_kib=256$/);
  t.true(made.size_bytes > 80 * MiB);
  t.deepEqual(await c.call("CreateCsalDevice", s), made);
  await rejects(t, c.call("CreateCsalDevice", { ...s, overprovision_percent: 30 }), status.ALREADY_EXISTS, /overprovision_percent is 20, requested 30/);
  await rejects(t, c.call("CreateCsalDevice", { ...spec(e), name: "csal-b" }), status.FAILED_PRECONDITION, /already used by CSAL device "csal-a"/);
  // The map limit is the one field a repeated create changes, in place.
  const limited = await c.call("CreateCsalDevice", { ...s, map_memory_limit_bytes: MiB });
  t.is(Number(limited.map_memory_limit_bytes), MiB);
  t.is(limited.uri, made.uri);
  // The records survive a restart; a create after the engine forgot nothing finds it again.
  await e.stop();
  await e.restart();
  const c2 = e.connect();
  t.deepEqual((await c2.call("ListCsalDevices", {})).devices.map((d) => [d.uuid, Number(d.map_memory_limit_bytes)]), [[s.uuid, MiB]]);
  t.deepEqual(await c2.call("CreateCsalDevice", s), made);
  await c2.call("DestroyCsalDevice", { uuid: s.uuid });
  await c2.call("DestroyCsalDevice", { uuid: s.uuid });
  t.deepEqual((await c2.call("ListCsalDevices", {})).devices, []);
});

test.serial("a pool on a CSAL device with a paged map serves a replica over NVMe/TCP; bytes read back after restart and SIGKILL; destroy is refused while the pool is on it", async (t) => {
  const e = await startEngine();
  engines.push(e);
  let c = e.connect();
  // A 64 KiB limit on a ~200 KiB map: pages go through the cache, and the scan after SIGKILL
  // rebuilds it in windows (the engine re-applies the limit from its records before the import).
  const s = spec(e, { map_memory_limit_bytes: 64 * 1024 });
  const dev = await c.call("CreateCsalDevice", s);
  const pool = await c.call("CreatePool", { uuid: randomUUID(), name: "on-csal", device_uri: dev.uri, labels: {}, cluster_size_bytes: MiB, force: false });
  const size = 32 * MiB;
  const replica = await c.call("CreateReplica", { uuid: randomUUID(), pool: pool.uuid, name: "r", size_bytes: size, thin: false });
  const data = randomBytes(size);
  await writeAll(c, replica.uuid, data);
  t.true((await readAll(c, replica.uuid, size)).equals(data));
  const listed = (await c.call("ListCsalDevices", {})).devices[0];
  t.is(listed.in_use_by, pool.uuid);
  t.true(Number(listed.stats!.host_write_bytes) >= size, JSON.stringify(listed.stats));
  const stats = await c.call("GetStats", { uuid: s.uuid });
  t.true(Number(stats.csal!.cache_write_bytes) > size);
  await rejects(t, c.call("DestroyCsalDevice", { uuid: s.uuid }), status.FAILED_PRECONDITION, new RegExp(`holds pool ${pool.uuid}; destroy the pool first`));

  await e.stop();
  await e.restart();
  c = e.connect();
  t.true((await readAll(c, replica.uuid, size)).equals(data), "after a clean restart");
  const more = randomBytes(4 * MiB);
  await writeAll(c, replica.uuid, more);
  more.copy(data, 0);
  await e.kill();
  await e.restart();
  c = e.connect();
  t.is((await c.call("ListPools", {})).pools[0].state, "POOL_STATE_ONLINE");
  t.true((await readAll(c, replica.uuid, size)).equals(data), "after SIGKILL");
  const paged = (await c.call("GetStats", { uuid: s.uuid })).csal!;
  t.is(Number(paged.map_limit_bytes), 64 * 1024);
  t.true(Number(paged.map_resident_bytes) <= 64 * 1024 && Number(paged.map_bytes) > 3 * 64 * 1024 && Number(paged.map_page_reads) > 0, JSON.stringify(paged));
  // Lifted in place: the open FTL keeps every page it reads from now on, so a second pass over
  // the data reads no map page back.
  await c.call("CreateCsalDevice", { ...s, map_memory_limit_bytes: 0 });
  t.true((await readAll(c, replica.uuid, size)).equals(data));
  const lifted = (await c.call("GetStats", { uuid: s.uuid })).csal!;
  t.is(Number(lifted.map_limit_bytes), 0);
  t.true((await readAll(c, replica.uuid, size)).equals(data));
  t.is(Number((await c.call("GetStats", { uuid: s.uuid })).csal!.map_page_reads), Number(lifted.map_page_reads));

  await c.call("UnshareReplica", { uuid: replica.uuid });
  await c.call("DestroyReplica", { uuid: replica.uuid });
  await c.call("DestroyPool", { uuid: pool.uuid });
  await c.call("DestroyCsalDevice", { uuid: s.uuid });
  t.deepEqual((await c.call("ListCsalDevices", {})).devices, []);
});
