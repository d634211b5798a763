// SetReplicaThin against a real engine: the replica is shared over NVMe/TCP and this process
// reads and writes it as a host would, before, during and after the conversion, and across
// engine restarts (clean and SIGKILL).
import test, { ExecutionContext } from "ava";
import { status } from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { EngineConnection, isEngineCallError } from "../../common/client";
import { startEngine, TestEngine } from "../helpers/engine";
import { expectClean, VerifyingLoad, VolumeModel } from "../helpers/load";
import { adminQueue, BLOCK_BYTES, ioQueue, NvmeTcpHost, ok } from "../native/nvmf/host";

const MiB = 1024 * 1024;
const HOST_NQN = "nqn.2014-08.org.nvmexpress:uuid:7e570000-0000-4000-8000-0000000000a1";
const engines: TestEngine[] = [];
test.after.always(async () => {
  await Promise.all(engines.map((e) => e.kill()));
});

async function engine(): Promise<TestEngine> {
  const e = await startEngine();
  engines.push(e);
  return e;
}

async function createPool(c: EngineConnection, e: TestEngine, sizeMib: number): Promise<string> {
  const uuid = randomUUID();
  await c.call("CreatePool", { uuid, name: "p", device_uri: `file://${join(e.dir, "disk.img")}?size_mib=${sizeMib}`, labels: {}, cluster_size_bytes: MiB, force: false });
  return uuid;
}

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  if (!isEngineCallError(err)) return void t.fail(`not an engine call error: ${String(err)}`);
  t.is(err.code, code, err.message);
  t.regex(err.message, message);
}

/** An NVMe/TCP connection to the replica (shared to HOST_NQN; ShareReplica is idempotent). */
class Host {
  private constructor(
    private readonly admin: NvmeTcpHost,
    readonly io: NvmeTcpHost,
  ) {}

  static async attach(c: EngineConnection, uuid: string): Promise<Host> {
    const sub = await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST_NQN] });
    const port = Number(sub.address.split(":").pop());
    const { host, cntlid } = await adminQueue(port, sub.nqn, HOST_NQN);
    return new Host(host, await ioQueue(port, sub.nqn, HOST_NQN, cntlid));
  }

  async write(offset: number, data: Buffer): Promise<void> {
    for (let at = 0; at < data.length; at += 128 * 1024) ok(await this.io.write((offset + at) / BLOCK_BYTES, data.subarray(at, Math.min(data.length, at + 128 * 1024))));
  }

  async readAll(size: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let at = 0; at < size; at += 128 * 1024) parts.push(ok(await this.io.read(at / BLOCK_BYTES, Math.min(128 * 1024, size - at) / BLOCK_BYTES)).data!);
    return Buffer.concat(parts);
  }

  close(): void {
    this.io.socket.destroy();
    this.admin.socket.destroy();
  }
}

function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) out.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return out;
}

async function replicaOf(c: EngineConnection, uuid: string) {
  return (await c.call("ListReplicas", { pool: "" })).replicas.find((r) => r.uuid === uuid)!;
}

async function poolOf(c: EngineConnection) {
  return (await c.call("ListPools", {})).pools[0];
}

test("thin -> thick keeps every byte (zeros too), backs the whole replica, and persists; thick -> thin keeps the bytes", async (t) => {
  t.timeout(90_000);
  const e = await engine();
  let c = e.connect();
  await createPool(c, e, 128);
  const uuid = randomUUID();
  const size = 16 * MiB;
  await c.call("CreateReplica", { uuid, name: "conv", pool: "p", size_bytes: size, thin: true });
  let host = await Host.attach(c, uuid);
  await host.write(8192, pattern(16384, 1));
  await host.write(3 * MiB, pattern(MiB, 2));
  await host.write(7 * MiB - 4096, pattern(8192, 3)); // straddles two clusters
  await host.write(11 * MiB, pattern(MiB, 4));
  ok(await host.io.deallocate([{ slba: (11 * MiB) / BLOCK_BYTES, blocks: MiB / BLOCK_BYTES }])); // reads zeros again
  const content = await host.readAll(size);
  const before = await replicaOf(c, uuid);
  t.like(before, { thin: true, allocated_bytes: 4 * MiB });
  const poolBefore = await poolOf(c);

  const thick = await c.call("SetReplicaThin", { uuid, thin: false });
  t.like(thick, { uuid, thin: false, size_bytes: size, allocated_bytes: size, node: "node-a", pool_name: "p" });
  t.deepEqual(await replicaOf(c, uuid), thick);
  const poolAfter = await poolOf(c);
  t.is(poolAfter.used_bytes, poolBefore.used_bytes + size - before.allocated_bytes, "pool used bytes grew by what was allocated");
  t.is(poolAfter.committed_bytes, poolBefore.committed_bytes, "committed bytes count the size, thin or thick");
  t.true((await host.readAll(size)).equals(content), "the shared replica reads the same bytes, zero ranges included");
  t.deepEqual(await c.call("SetReplicaThin", { uuid, thin: false }), thick, "the same value changes nothing");
  host.close();
  c.close();

  t.is(await e.stop(), 0);
  await e.restart();
  c = e.connect();
  t.like(await replicaOf(c, uuid), { thin: false, allocated_bytes: size });
  t.is((await poolOf(c)).used_bytes, poolAfter.used_bytes);
  host = await Host.attach(c, uuid);
  t.true((await host.readAll(size)).equals(content), "bytes persist across a restart");

  const thin = await c.call("SetReplicaThin", { uuid, thin: true });
  t.like(thin, { thin: true, allocated_bytes: size }, "thick -> thin frees nothing");
  t.is((await poolOf(c)).used_bytes, poolAfter.used_bytes);
  t.true((await host.readAll(size)).equals(content));
  host.close();
  c.close();

  await e.kill();
  await e.restart();
  c = e.connect();
  t.like(await replicaOf(c, uuid), { thin: true, allocated_bytes: size });
  host = await Host.attach(c, uuid);
  t.true((await host.readAll(size)).equals(content));
  // Thin again: whole-cluster deallocates free clusters.
  ok(await host.io.deallocate([{ slba: 0, blocks: (2 * MiB) / BLOCK_BYTES }]));
  t.is((await replicaOf(c, uuid)).allocated_bytes, size - 2 * MiB);
  host.close();

  await rejects(t, c.call("SetReplicaThin", { uuid: randomUUID(), thin: false }), status.NOT_FOUND, /does not exist/);
  await rejects(t, c.call("SetReplicaThin", { uuid: "nope", thin: false }), status.INVALID_ARGUMENT, /uuid/);
  c.close();
});

test("thin -> thick without enough free space is RESOURCE_EXHAUSTED naming needed and free bytes, and changes nothing, also after restarts", async (t) => {
  t.timeout(90_000);
  const e = await engine();
  let c = e.connect();
  await createPool(c, e, 64);
  const capacity = (await poolOf(c)).capacity_bytes;
  // A thick replica takes all but 8 clusters; the thin one is larger than what is left.
  await c.call("CreateReplica", { uuid: randomUUID(), name: "filler", pool: "p", size_bytes: capacity - 8 * MiB, thin: false });
  const uuid = randomUUID();
  const size = 24 * MiB;
  await c.call("CreateReplica", { uuid, name: "big", pool: "p", size_bytes: size, thin: true });
  let host = await Host.attach(c, uuid);
  await host.write(5 * MiB + 4096, pattern(2 * MiB, 5));
  const content = await host.readAll(size);
  const replicaBefore = await replicaOf(c, uuid);
  const poolBefore = await poolOf(c);
  const need = size - replicaBefore.allocated_bytes;
  const free = poolBefore.capacity_bytes - poolBefore.used_bytes;
  t.true(need > free);

  const refused = new RegExp(`needs ${need} bytes .*has ${free} bytes free`);
  await rejects(t, c.call("SetReplicaThin", { uuid, thin: false }), status.RESOURCE_EXHAUSTED, refused);
  t.deepEqual(await replicaOf(c, uuid), replicaBefore);
  t.deepEqual(await poolOf(c), poolBefore, "no cluster taken");
  t.true((await host.readAll(size)).equals(content));
  host.close();
  c.close();

  for (const restart of ["stop", "kill"] as const) {
    if (restart === "stop") t.is(await e.stop(), 0);
    else await e.kill();
    await e.restart();
    c = e.connect();
    t.deepEqual(await replicaOf(c, uuid), replicaBefore, `flag and allocation unchanged after ${restart}`);
    t.deepEqual(await poolOf(c), poolBefore, `pool free space unchanged after ${restart}`);
    host = await Host.attach(c, uuid);
    t.true((await host.readAll(size)).equals(content));
    host.close();
    c.close();
  }
  c = e.connect();
  await rejects(t, c.call("SetReplicaThin", { uuid, thin: false }), status.RESOURCE_EXHAUSTED, refused);
  c.close();
});

test("writes racing both conversions over NVMe/TCP: every acknowledged write reads back, the replica ends fully backed", async (t) => {
  t.timeout(120_000);
  const e = await engine();
  let c = e.connect();
  await createPool(c, e, 128);
  const uuid = randomUUID();
  const size = 32 * MiB;
  await c.call("CreateReplica", { uuid, name: "busy", pool: "p", size_bytes: size, thin: true });
  const sub = await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST_NQN] });
  const model = new VolumeModel(size);
  let load = await VerifyingLoad.connect(Number(sub.address.split(":").pop()), sub.nqn, HOST_NQN, model);
  load.start(6, 0.3, 32, 100);
  await load.progress(30);
  const partly = await replicaOf(c, uuid);
  t.true(partly.allocated_bytes < size, "some clusters still unallocated when the conversion starts");

  const thick = await c.call("SetReplicaThin", { uuid, thin: false });
  t.like(thick, { thin: false, allocated_bytes: size });
  await load.progress(30);
  const thin = await c.call("SetReplicaThin", { uuid, thin: true });
  t.like(thin, { thin: true, allocated_bytes: size });
  await load.progress(30);
  await c.call("SetReplicaThin", { uuid, thin: false });
  await load.progress(30);
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.is((await poolOf(c)).used_bytes, size);
  load.close();
  c.close();

  await e.kill();
  await e.restart();
  c = e.connect();
  t.like(await replicaOf(c, uuid), { thin: false, allocated_bytes: size });
  const again = await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST_NQN] });
  load = await VerifyingLoad.connect(Number(again.address.split(":").pop()), again.nqn, HOST_NQN, model);
  t.deepEqual(await load.verifyAll(), [], "every acknowledged write survived SIGKILL");
  load.close();
  c.close();
});

test("a nexus child converted under a verifying load through the published nexus: no write lost, the children stay identical", async (t) => {
  t.timeout(120_000);
  const e = await engine();
  const c = e.connect();
  await createPool(c, e, 128);
  const size = 24 * MiB;
  const replicas = [randomUUID(), randomUUID()];
  for (const [i, uuid] of replicas.entries()) await c.call("CreateReplica", { uuid, name: `child${i}`, pool: "p", size_bytes: size + MiB, thin: true });
  const nexus = randomUUID();
  await c.call("CreateNexus", { uuid: nexus, size_bytes: size, children: replicas.map((r) => `replica:///${r}`), child_io_timeout_ms: 5000 }, 60_000);
  const published = await c.call("PublishNexus", { uuid: nexus, frontend_host_nqn: HOST_NQN });
  const model = new VolumeModel(size);
  const load = await VerifyingLoad.connect(Number(published.address.split(":").pop()), published.nqn, HOST_NQN, model);
  load.start(6, 0.3, 32, 100);
  await load.progress(30);

  t.like(await c.call("SetReplicaThin", { uuid: replicas[0], thin: false }), { thin: false, allocated_bytes: size + MiB });
  await load.progress(30);
  t.like(await c.call("SetReplicaThin", { uuid: replicas[0], thin: true }), { thin: true, allocated_bytes: size + MiB });
  await load.progress(30);
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  const n = (await c.call("ListNexus", {})).nexuses.find((x) => x.uuid === nexus)!;
  t.deepEqual(n.children.map((ch) => ch.state), ["online", "online"], "no child faulted");
  load.close();

  // Both children hold the same bytes (read over NVMe/TCP from the replicas themselves).
  await c.call("ShutdownNexus", { uuid: nexus });
  const digests: Buffer[] = [];
  for (const uuid of replicas) {
    const host = await Host.attach(c, uuid);
    digests.push(await host.readAll(size + MiB));
    host.close();
    await c.call("UnshareReplica", { uuid });
  }
  t.true(digests[0].subarray(MiB).equals(digests[1].subarray(MiB)), "children identical past the label region");
  c.close();
});
