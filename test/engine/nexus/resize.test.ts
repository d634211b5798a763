// Growing a replicated volume in place (ResizeNexus) with real engines: a host connected to the
// published nexus keeps its connection, gets a Namespace Attribute Changed notice and sees the
// new size; the old data reads back byte for byte and the grown range works; a shrink or a child
// that was not grown is refused with nothing changed; a faulted child that was not grown cannot
// come back until its replica is, and then is rebuilt including the grown range; an engine
// restart keeps the new size.
import * as grpc from "@grpc/grpc-js";
import test, { type ExecutionContext } from "ava";
import { isEngineCallError } from "../../../common/client";
import { expectClean, type VerifyingLoad } from "../../helpers/load";
import { INSPECTOR_NQN, LABEL_REGION_BYTES, MiB, NexusCluster } from "../../helpers/nexus";
import type { NvmeTcpHost } from "../../native/nvmf/host";
import { asyncEventRequest, NS_ATTR_CHANGED, nsze, within } from "../../helpers/notices";

const OLD = 32 * MiB;
const NEW = 48 * MiB;

async function expectGrpc(t: ExecutionContext, p: Promise<unknown>, code: string, message: RegExp) {
  try {
    await p;
    t.fail(`expected ${code}`);
  } catch (err) {
    t.true(isEngineCallError(err), String(err));
    const e = err as Error & { code: number; details: string };
    t.regex(e.details, message);
    t.is(grpc.status[e.code], code, e.details);
  }
}

function escape(s: string): string {
  return s.replace(/[.?*+^$[\]\\(){}|/-]/g, "\\$&");
}

/** Get Log Page 0x04 with RAE (CDW10 bit 15) as given: the first NSID of the Changed Namespace List. */
async function changedNamespaces(admin: NvmeTcpHost, rae: boolean): Promise<number> {
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x02;
  const numd = 4096 / 4 - 1;
  sqe.writeUInt32LE((0x04 | (rae ? 1 << 15 : 0) | ((numd & 0xffff) << 16)) >>> 0, 40);
  const c = await admin.submit(sqe, { readBytes: 4096 });
  if (c.status !== 0 || !c.data) throw new Error(`Get Log Page 0x04 failed: 0x${c.status.toString(16)}`);
  return c.data.readUInt32LE(0);
}

async function resizeReplica(c: NexusCluster, i: number, bytes: number): Promise<void> {
  const r = await c.conns[i].call("ResizeReplica", { uuid: c.replicas[i], size_bytes: bytes });
  if (Number(r.size_bytes) !== bytes) throw new Error(`replica ${i} is ${r.size_bytes} bytes, not ${bytes}`);
}

async function loadWithNotices(c: NexusCluster): Promise<VerifyingLoad> {
  const load = await c.load();
  // As Linux does: enable namespace attribute notices (Set Features 0x0B, bit 8).
  const set = await load.admin.setFeatures(0x0b, 1 << 8);
  if (set.status !== 0) throw new Error(`Set Features 0x0B failed: 0x${set.status.toString(16)}`);
  return load;
}

test.serial("grow in place under load: refusals change nothing; the connected host gets the notice and the new size without reconnecting; old data intact, grown range usable, size kept across a restart", async (t) => {
  const c = await NexusCluster.start(t, { sizeBytes: OLD });
  const load = await loadWithNotices(c);
  t.teardown(() => load.close());
  const aer = asyncEventRequest(load.admin);
  load.start();
  await load.progress(100);
  t.is(await nsze(load.admin), OLD / 4096);

  // Refusals: a shrink, and children that were not grown. Nothing changes.
  await expectGrpc(t, c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: 16 * MiB }), "INVALID_ARGUMENT", new RegExp(`${OLD}.*${16 * MiB}|${16 * MiB}.*${OLD}`));
  await expectGrpc(t, c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: NEW + 512 }), "INVALID_ARGUMENT", /multiple of 4096/);
  await expectGrpc(
    t,
    c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: NEW }),
    "FAILED_PRECONDITION",
    new RegExp(`child ${escape(c.children[0])} has ${OLD + LABEL_REGION_BYTES} bytes.*needs ${NEW + LABEL_REGION_BYTES}.*Nothing was changed`),
  );
  // The local child and node-b's grow; node-c's does not: the remote child that grew passes (the
  // nexus identified its namespace again), the one that did not is named with its size.
  await resizeReplica(c, 0, NEW + LABEL_REGION_BYTES);
  await resizeReplica(c, 1, NEW + LABEL_REGION_BYTES);
  await expectGrpc(
    t,
    c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: NEW }),
    "FAILED_PRECONDITION",
    new RegExp(`child ${escape(c.children[2])} has ${OLD + LABEL_REGION_BYTES} bytes`),
  );
  let n = await c.info();
  t.is(Number(n.size_bytes), OLD, "a refused resize leaves the size");
  t.true(n.children.every((ch) => ch.state === "online"), "a refused resize faults nobody");
  t.is(await nsze(load.admin), OLD / 4096, "the host still sees the old size");
  t.is(aer.done(), null, "and got no notice");
  await load.progress(50);

  // node-c's replica grows too (its own namespace notice goes to node-a's initiator, which sends
  // no AER: harmless); now the nexus grows, under load.
  await resizeReplica(c, 2, NEW + LABEL_REGION_BYTES);
  const grown = await c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: NEW });
  t.is(Number(grown.size_bytes), NEW);
  t.true(grown.children.every((ch) => ch.state === "online"));
  const again = await c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: NEW });
  t.is(Number(again.size_bytes), NEW, "the same size again succeeds");

  // The connected host is told on the same connection, and Identify reports the new size there.
  const event = await within(aer.completion, 5000, "the AER completed");
  t.is(event.status, 0);
  t.is(event.dw0, NS_ATTR_CHANGED, `AEN dword 0 0x${event.dw0.toString(16)}`);
  t.is(await nsze(load.admin), NEW / 4096, "Identify Namespace on the same connection reports the new size");
  t.is(await changedNamespaces(load.admin, true), 1, "log page 0x04 lists NSID 1 (RAE set: retained)");
  t.is(await changedNamespaces(load.admin, false), 1, "still listed after a read with RAE set");
  t.is(await changedNamespaces(load.admin, false), 0, "a read with RAE clear consumed the list");
  await load.progress(50);
  const during = await load.stop();
  expectClean(t, during);
  t.deepEqual(await load.verifyAll(), [], "every block written before and during the resize reads back");

  // The grown range on the same connection: writes and verifying reads over the whole volume.
  load.grow(NEW);
  const first = OLD / 4096;
  t.is(await load.writeOnce(NEW / 4096 - 32, 32), 0, "a write at the very end of the grown volume");
  t.is(await load.writeOnce(first, 32), 0, "a write at the start of the grown range");
  load.start();
  await load.progress(200);
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.is((await load.readOnce(NEW / 4096 - 32, 32)).status, 0);
  t.is((await load.flush()).status, 0);
  t.deepEqual(await c.differingSegments(NEW), [[], []], "every child holds the same bytes, the grown range included");

  // A second change while the first notice was read is announced again (not masked).
  const aer2 = asyncEventRequest(load.admin);
  for (let i = 0; i < 3; i++) await resizeReplica(c, i, 56 * MiB + LABEL_REGION_BYTES);
  await c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: 56 * MiB });
  t.is((await within(aer2.completion, 5000, "the second AER completed")).dw0, NS_ATTR_CHANGED);
  t.is(await nsze(load.admin), (56 * MiB) / 4096);
  load.grow(56 * MiB);
  load.close();

  // The size survives a restart of the nexus node.
  await c.engines[0].stop();
  await c.engines[0].restart();
  c.conns[0] = c.engines[0].connect();
  n = await c.waitFor("the nexus back online", (x) => x.children.every((ch) => ch.state === "online"));
  t.is(Number(n.size_bytes), 56 * MiB, "the restarted engine keeps the new size");
  const after = await c.load(load.model);
  t.teardown(() => after.close());
  t.is(await nsze(after.admin), (56 * MiB) / 4096);
  t.deepEqual(await after.verifyAll(), [], "after the restart every block reads back");
});

test.serial("a faulted child that was not grown is refused by OnlineChild until its replica is grown, then rebuilt including the grown range", async (t) => {
  const c = await NexusCluster.start(t, { sizeBytes: OLD });
  const load = await loadWithNotices(c);
  t.teardown(() => load.close());
  load.start();
  await load.progress(50);
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[2] });
  await load.progress(50); // node-c misses these

  // Only the children that receive writes must hold the new size.
  await resizeReplica(c, 0, NEW + LABEL_REGION_BYTES);
  await resizeReplica(c, 1, NEW + LABEL_REGION_BYTES);
  t.is(Number((await c.a.call("ResizeNexus", { uuid: c.nexus, size_bytes: NEW })).size_bytes), NEW);
  expectClean(t, await load.stop());
  load.grow(NEW);
  load.start();
  await load.progress(100); // writes into the grown range that node-c misses too

  await expectGrpc(
    t,
    c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }),
    "FAILED_PRECONDITION",
    new RegExp(`${escape(c.children[2])}.*has ${OLD + LABEL_REGION_BYTES} bytes.*needs ${NEW + LABEL_REGION_BYTES}`),
  );
  t.not((await c.child(2)).state, "online");
  await load.progress(30);

  // A host of node-c's shared replica (the inspector) is told when the replica grows.
  const sub = await c.conns[2].call("ShareReplica", { uuid: c.replicas[2], allowed_host_nqns: [(await c.a.call("GetInfo", {})).host_nqn, INSPECTOR_NQN] });
  const { adminQueue } = await import("../../native/nvmf/host");
  const { host: inspector } = await adminQueue(Number(sub.address.split(":").pop()), sub.nqn, INSPECTOR_NQN);
  t.teardown(() => inspector.socket.destroy());
  t.is((await inspector.setFeatures(0x0b, 1 << 8)).status, 0);
  const replicaAer = asyncEventRequest(inspector);
  t.is(await nsze(inspector), (OLD + LABEL_REGION_BYTES) / 4096);

  await resizeReplica(c, 2, NEW + LABEL_REGION_BYTES);
  t.is((await within(replicaAer.completion, 5000, "the replica host's AER completed")).dw0, NS_ATTR_CHANGED, "ResizeReplica notifies the shared replica's hosts");
  t.is(await nsze(inspector), (NEW + LABEL_REGION_BYTES) / 4096);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] });
  await c.waitFor("node-c rebuilt", (x) => x.children.every((ch) => ch.state === "online"), 60_000);
  await load.progress(30);
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.is((await load.flush()).status, 0);
  t.deepEqual(await c.differingSegments(NEW), [[], []], "the rebuilt child holds the grown range too");
});
