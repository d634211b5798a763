// The nexus engine API with real engines: publish rules, shutdown and destroy keeping the data,
// creation with a child down (never recorded so that healthy data is discarded), out of space
// as NVMe Capacity Exceeded, and bad requests rejected with the field named.
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { isEngineCallError } from "../../../common/client";
import { startEngine } from "../../helpers/engine";
import { VerifyingLoad } from "../../helpers/load";
import { FRONTEND_NQN, LABEL_REGION_BYTES, MiB, NexusCluster } from "../../helpers/nexus";

const OTHER_FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:0ee0ee00-0000-4000-8000-0000000000ee";

async function expectGrpc(t: { true: (v: boolean, m?: string) => void; regex: (s: string, r: RegExp) => void }, p: Promise<unknown>, code: string, message: RegExp) {
  try {
    await p;
    t.true(false, `expected ${code}`);
  } catch (err) {
    t.true(isEngineCallError(err), String(err));
    const e = err as Error & { code: number; details: string };
    t.regex(e.details, message);
    t.regex(grpc.status[e.code], new RegExp(`^${code}$`));
  }
}

test.serial("publish rules: unpublish from another frontend is refused and the target stays; shutdown and destroy keep the replicas and their data", async (t) => {
  const c = await NexusCluster.start(t);
  const load = await c.load();
  t.teardown(() => load.close());
  load.start();
  await load.progress(50);

  await expectGrpc(t, c.a.call("UnpublishNexus", { uuid: c.nexus, frontend_host_nqn: OTHER_FRONTEND }), "FAILED_PRECONDITION", /published to .*f0f0f0f0.*the target stays/);
  await expectGrpc(t, c.a.call("PublishNexus", { uuid: c.nexus, frontend_host_nqn: OTHER_FRONTEND }), "FAILED_PRECONDITION", /unpublish it from that frontend first/);
  await load.progress(20); // the frontend kept its namespace
  const { subsystems } = await c.a.call("ListSubsystems", {});
  const sub = subsystems.find((s) => s.nqn === `nqn.2026-11.io.strata:nexus:${c.nexus}`);
  t.truthy(sub);
  t.deepEqual(sub!.allowed_host_nqns, [FRONTEND_NQN]);
  t.is(sub!.connected_hosts[0]?.host_nqn, FRONTEND_NQN);
  t.is((await c.a.call("PublishNexus", { uuid: c.nexus, frontend_host_nqn: FRONTEND_NQN })).frontend_host_nqn, FRONTEND_NQN, "publishing again is idempotent");

  const counters = await load.stop();
  t.deepEqual(counters.mismatches, []);
  const shut = await c.a.call("ShutdownNexus", { uuid: c.nexus });
  t.is(shut.state, "shutdown");
  t.is(shut.nqn, "");
  await load.socketClosed();
  await c.a.call("DestroyNexus", { uuid: c.nexus });
  t.deepEqual((await c.a.call("ListNexus", {})).nexuses, []);
  for (let i = 0; i < 3; i++) {
    const { replicas } = await c.conns[i].call("ListReplicas", { pool: "" });
    t.true(replicas.some((r) => r.uuid === c.replicas[i]), `node ${i}'s replica survives DestroyNexus`);
  }
  await c.a.call("DestroyNexus", { uuid: c.nexus }); // destroying what is gone succeeds

  // The same children make the same volume again, and the clean labels need no rebuild.
  const again = await c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 }, 60_000);
  t.false(again.opened_after_unclean_shutdown);
  t.deepEqual(again.children.map((ch) => ch.state), ["online", "online", "online"]);
  await c.a.call("PublishNexus", { uuid: c.nexus, frontend_host_nqn: FRONTEND_NQN });
  const reader = await c.load(load.model);
  t.teardown(() => reader.close());
  t.deepEqual(await reader.verifyAll(), [], "every acknowledged write is still there");

  await c.a.call("UnpublishNexus", { uuid: c.nexus, frontend_host_nqn: FRONTEND_NQN });
  await reader.socketClosed();
  t.false((await c.a.call("ListSubsystems", {})).subsystems.some((s) => s.nqn.includes(":nexus:")));
});

test.serial("creation with a child down: it is left out as cannot_open, and nothing recorded makes a later create discard healthy data", async (t) => {
  const c = await NexusCluster.start(t);
  await c.a.call("DestroyNexus", { uuid: c.nexus });
  await c.engines[2].stop();

  const created = await c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 }, 60_000);
  t.deepEqual(created.children.map((ch) => [ch.state, ch.reason]), [["online", "none"], ["online", "none"], ["offline", "cannot_open"]]);
  t.regex(created.children[2].last_error, /connect|refused/i);
  // No write happened: destroy and re-create with the child back; nothing marked it stale.
  await c.a.call("DestroyNexus", { uuid: c.nexus });
  await c.engines[2].restart();
  const whole = await c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 }, 60_000);
  t.deepEqual(whole.children.map((ch) => ch.state), ["online", "online", "online"]);
  t.deepEqual((await c.a.call("GetRebuildHistory", { uuid: c.nexus })).records, [], "no rebuild was needed");
  await c.a.call("DestroyNexus", { uuid: c.nexus });

  // With writes while it is away, it comes back by a partial rebuild (it was in sync when it left).
  await c.engines[2].stop();
  await c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 }, 60_000);
  await c.a.call("PublishNexus", { uuid: c.nexus, frontend_host_nqn: FRONTEND_NQN });
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(100);
  await c.engines[2].restart();
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (n) => n.children.every((ch) => ch.state === "online"));
  const counters = await load.stop();
  t.deepEqual(counters.mismatches, []);
  t.is(counters.writesFailed, 0);
  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  t.true(records[records.length - 1].partial);
  t.deepEqual(await c.differingSegments(), [[], []]);

  // No child the newest label calls in sync can be opened: refused, and nothing is written.
  await c.a.call("UnpublishNexus", { uuid: c.nexus, frontend_host_nqn: FRONTEND_NQN });
  load.close();
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[0] });
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[1] });
  await c.a.call("DestroyNexus", { uuid: c.nexus });
  await c.engines[2].stop();
  await expectGrpc(
    t,
    c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 }, 60_000),
    "FAILED_PRECONDITION",
    /none of the children that label generation \d+ lists as in sync could be opened.*Nothing was written/,
  );
  await c.engines[2].restart();
  const back = await c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 }, 60_000);
  t.is(back.children[2].state, "online", "the only in-sync child is the one that was away");
  t.not(back.children[0].state, "online");
});

test.serial("a full thin pool: the host sees NVMe Capacity Exceeded, the last child stays online with its data, and growing the pools recovers by itself", async (t) => {
  const c = await NexusCluster.start(t, { sizeBytes: 48 * MiB, poolMiB: 24 });
  const io = await c.frontendQueue(t);
  const block = (mib: number) => (mib * MiB) / 4096;
  const data = (mib: number) => Buffer.alloc(128 * 1024, mib + 1);
  let status = 0;
  let written = 0;
  for (; written < 48 && status === 0; written++) status = (await io.write(block(written), data(written))).status;
  written--; // the last one failed
  t.is(status, 0x81, `expected Capacity Exceeded (0x81), got 0x${status.toString(16)}`);
  let n = await c.info();
  t.not(n.health, "faulted", "the last in-sync child is not faulted by a full pool");
  t.is(n.children.filter((ch) => ch.state === "online").length, 1, JSON.stringify(n.children.map((ch) => [ch.state, ch.reason])));
  t.true(n.children.filter((ch) => ch.state !== "online").every((ch) => ch.reason === "no_space"));
  for (let mib = 0; mib < written; mib++) {
    const r = await io.read(block(mib), 32);
    t.is(r.status, 0);
    t.true(r.data!.equals(data(mib)), `MiB ${mib} reads back`);
  }

  // Space comes back (the pools' disks grow): writes succeed again without any other action.
  for (const [i, e] of c.engines.entries()) {
    await import("node:fs").then((fs) => fs.truncateSync(join(e.dir, "disk.img"), 128 * MiB));
    const pool = (await c.conns[i].call("ListPools", {})).pools.find((p) => p.name === `pool-${e.target.node}`)!;
    await c.conns[i].call("GrowPool", { uuid: pool.uuid });
  }
  t.is((await io.write(block(written), data(written))).status, 0, "the write that failed now succeeds");
  // And the children it faulted come back the way `pulumi up` brings them back.
  for (const [i, ch] of (await c.info()).children.entries()) {
    if (ch.state !== "online") await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[i] }, 30_000);
  }
  n = await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"), 60_000);
  t.is(n.health, "online");
  for (let mib = 0; mib <= written; mib++) t.true((await io.read(block(mib), 32)).data!.equals(data(mib)));
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("a 64 GiB discard through the nexus (mkfs, blkdiscard) frees the children's thin space, reads zeros, and times no child out", async (t) => {
  const GiB = 1024 * MiB;
  const c = await NexusCluster.start(t, { sizeBytes: 64 * GiB, poolMiB: 68 * 1024, clusterBytes: 4 * MiB });
  const io = await c.frontendQueue(t);
  // Data in 16 places across the volume, 4 MiB each.
  const places = Array.from({ length: 16 }, (_, i) => Math.floor((i * 64 * GiB) / 16 / 4096) + 7);
  for (const block of places) for (let k = 0; k < 32; k++) t.is((await io.write(block + k * 32, Buffer.alloc(128 * 1024, 0xa5))).status, 0);
  const allocated = async () => Promise.all(c.conns.map(async (conn, i) => (await conn.call("ListReplicas", { pool: "" })).replicas.find((r) => r.uuid === c.replicas[i])!.allocated_bytes));
  const before = await allocated();
  t.true(before.every((b) => b >= 16 * 4 * MiB), `allocated before: ${before}`);

  // One Dataset Management deallocate of the whole volume, as blkdiscard sends it.
  const blocks = (64 * GiB) / 4096;
  const done = await io.deallocate([{ slba: 0, blocks }]);
  t.is(done.status, 0);
  const n = await c.info();
  t.deepEqual(n.children.map((ch) => ch.state), ["online", "online", "online"], JSON.stringify(n.children.map((ch) => [ch.state, ch.reason, ch.last_error])));
  const after = await allocated();
  t.true(after.every((a) => a <= 2 * 4 * MiB), `allocated after: ${after} (before: ${before}): whole clusters were freed`);
  for (const block of places) {
    const r = await io.read(block, 32);
    t.is(r.status, 0);
    t.true(r.data!.equals(Buffer.alloc(128 * 1024)), "a discarded range reads zeros");
  }
});

test.serial("bad requests name what is wrong; fault injection exists only on a test engine", async (t) => {
  const c = await NexusCluster.start(t);
  const uuid = randomUUID();
  await expectGrpc(t, c.a.call("CreateNexus", { uuid, size_bytes: MiB, children: ["file:///tmp/x"] }), "INVALID_ARGUMENT", /children\[0\].*replica:\/\/\/<uuid>/);
  await expectGrpc(t, c.a.call("CreateNexus", { uuid, size_bytes: 1000, children: [c.children[0]] }), "INVALID_ARGUMENT", /size_bytes must be a positive multiple of 4096/);
  await expectGrpc(t, c.a.call("CreateNexus", { uuid, size_bytes: MiB, children: [] }), "INVALID_ARGUMENT", /children must list 1 to 32/);
  await expectGrpc(t, c.a.call("CreateNexus", { uuid, size_bytes: c.sizeBytes * 2, children: [c.children[1]] }), "INVALID_ARGUMENT", /needs .* bytes for its label/);
  await expectGrpc(t, c.a.call("CreateNexus", { uuid, size_bytes: c.sizeBytes, children: [c.children[0]] }), "FAILED_PRECONDITION", /already a child of nexus/);
  await expectGrpc(t, c.a.call("CreateNexus", { uuid, size_bytes: c.sizeBytes, children: [c.children[1]] }), "FAILED_PRECONDITION", /carries the label of nexus/);
  t.deepEqual((await c.a.call("ListNexus", {})).nexuses.map((n) => n.uuid), [c.nexus], "nothing half-created");
  await expectGrpc(t, c.a.call("DestroyReplica", { uuid: c.replicas[0] }), "FAILED_PRECONDITION", /child of nexus/);
  const same = await c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes, children: c.children, child_io_timeout_ms: 2000 });
  t.is(same.uuid, c.nexus, "creating the same nexus again returns it");
  await expectGrpc(t, c.a.call("CreateNexus", { uuid: c.nexus, size_bytes: c.sizeBytes - MiB, children: c.children }), "ALREADY_EXISTS", /size_bytes/);
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[1] });
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[2] });
  await expectGrpc(t, c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[0] }), "FAILED_PRECONDITION", /last healthy child/);
  await expectGrpc(t, c.a.call("RemoveChild", { uuid: c.nexus, child_uri: c.children[0] }), "FAILED_PRECONDITION", /last healthy child/);

  // An engine without --enable-fault-injection does not serve the FaultInjection API at all.
  const plain = await startEngine({ node: "node-plain" });
  t.teardown(() => plain.kill());
  const probe = Object.create(NexusCluster.prototype) as NexusCluster;
  Object.assign(probe, { engines: [plain], nexus: c.nexus, children: c.children });
  const err = await t.throwsAsync(probe.fault(0, { op: "write" }));
  t.regex(err!.message, /does not implement the method \/strata.engine.v1.FaultInjection/);
  void LABEL_REGION_BYTES;
  void VerifyingLoad;
});
