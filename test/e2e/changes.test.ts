// Every routine change to a volume is an update in place that keeps the data, driven the way an
// operator does it: change one value of the program's config, `pulumi preview` (it must say
// "update", never "replace"), `pulumi up` — while a frontend host stays connected over NVMe/TCP
// and keeps writing and verifying. After each change every byte written so far is read back,
// and where a change moved data (new replicas, moves) it is read back from the new replicas
// alone. Real CLI, real engines on loopback, four nodes with 512 MiB file disks.
import test, { ExecutionContext } from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";
import { expectClean, VerifyingLoad, VolumeModel } from "../helpers/load";
import { asyncEventRequest, NS_ATTR_CHANGED, nsze, within } from "../helpers/notices";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "changes");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000c1";
const FRONTEND_2 = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000c2";
const MiB = 1024 * 1024;
const VOLUME_MIB = 64;

interface Child {
  node: string;
  replicaUuid: string;
  state: string;
  reason: string;
}
interface NexusOut {
  uuid: string;
  node: string;
  health: string;
  sizeBytes: number;
  nqn: string;
  host: string;
  port: number;
  children: Child[];
}
interface Placed {
  replicaUuid: string;
  node: string;
  pool: string;
  poolUuid: string;
  reason: string;
}

let cluster: TestCluster;
let stack: Stack;
let load: VerifyingLoad | null = null;
let frontend = FRONTEND;

test.before(async () => {
  cluster = await startCluster({ nodes: 4, diskMib: 512 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  const config = stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), frontend: FRONTEND, replicas: "1", sizeMib: String(VOLUME_MIB), thin: "true" });
  await stack.setAllConfig(config, true);
});
test.after.always(async () => {
  load?.close();
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
});

async function outputs(): Promise<{ nexus: NexusOut; placement: Placed[]; health: string; uuid: string }> {
  const state = await stack.exportStack();
  const resources = (state.deployment as { resources: { type: string; outputs: Record<string, unknown> }[] }).resources;
  const o = resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume")!.outputs;
  return { nexus: o.nexus as NexusOut, placement: o.placement as Placed[], health: o.health as string, uuid: o.uuid as string };
}

async function secret(): Promise<string> {
  return (await stack.outputs()).frontendDhchapSecret.value as string;
}

/** Sets config, previews (an update of the volume, never a replace), and runs `up` with the host writing throughout. */
async function change(t: ExecutionContext, config: Record<string, string>): Promise<void> {
  for (const [k, v] of Object.entries(config)) await stack.setConfig(k, { value: v });
  const preview = await stack.preview();
  const summary = preview.changeSummary as Record<string, number>;
  t.is(summary.replace ?? 0, 0, `the change is not a replace: ${JSON.stringify(summary)}`);
  t.is(summary.delete ?? 0, 0, `nothing is deleted: ${JSON.stringify(summary)}`);
  t.true((summary.update ?? 0) >= 1, `the volume is updated in place: ${JSON.stringify(summary)}`);
  load!.start(2, 0.3, 16, 100);
  const up = await stack.up();
  t.is(up.summary.result, "succeeded");
  const counters = await load!.stop();
  expectClean(t, counters);
  t.true(counters.writesOk > 0, "the host kept writing during the change");
  t.deepEqual(await load!.verifyAll(), [], "every byte written so far reads back");
}

/** Faults every child but `keep` and reads every block back from those alone; then `up` brings the others back. */
async function verifyFrom(t: ExecutionContext, keep: (c: Child) => boolean, why: string): Promise<void> {
  const { nexus } = await outputs();
  const engine = cluster.connect(nexus.node);
  t.teardown(() => engine.close());
  const n = (await engine.call("ListNexus", {})).nexuses.find((x) => x.uuid === nexus.uuid)!;
  const others = nexus.children.filter((c) => !keep(c));
  t.true(others.length < nexus.children.length);
  for (const c of others) await engine.call("FaultChild", { uuid: nexus.uuid, child_uri: n.children.find((x) => x.uri.includes(c.replicaUuid))!.uri });
  t.deepEqual(await load!.verifyAll(), [], why);
  // As an operator does: refresh sees the faulted children, `up` brings them back.
  await stack.refresh();
  t.is((await stack.up()).summary.result, "succeeded");
  await waitOnline(t);
}

async function waitOnline(t: ExecutionContext): Promise<void> {
  for (let i = 0; i < 60; i++) {
    await stack.refresh();
    const o = await outputs();
    if (o.health === "online") return;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.fail(`the volume did not come back online: ${JSON.stringify((await outputs()).nexus)}`);
}

async function replicasOnEngines(): Promise<{ uuid: string; node: string; thin: boolean; size_bytes: number; allocated_bytes: number }[]> {
  return (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
}

test.serial("one replica: up makes a nexus published to the frontend; the host writes a pattern", async (t) => {
  t.is((await stack.up()).summary.result, "succeeded");
  const { nexus, placement } = await outputs();
  t.is(placement.length, 1);
  t.true(placement[0].reason.length > 0, "the placement says why");
  t.is(nexus.children.length, 1);
  t.is(nexus.port > 0 && nexus.host !== "", true, "host and port are separate outputs");
  load = await VerifyingLoad.connect(nexus.port, nexus.nqn, frontend, new VolumeModel(VOLUME_MIB * MiB), await secret());
  for (let block = 0; block < load.model.blocks; block += 64) t.is(await load.writeOnce(block, 16), 0);
  t.is((await load.flush()).status, 0);
});

test.serial("replicas 1 → 3: two replicas are added and rebuilt in full; the new ones alone hold every byte", async (t) => {
  const before = (await outputs()).placement;
  await change(t, { replicas: "3" });
  const { placement, nexus } = await outputs();
  t.is(placement.length, 3);
  t.is(placement[0].replicaUuid, before[0].replicaUuid, "the first replica stays");
  t.is(new Set(placement.map((p) => p.node)).size, 3, "one replica per node");
  t.deepEqual(nexus.children.map((c) => c.state), ["online", "online", "online"]);
  await verifyFrom(t, (c) => c.replicaUuid !== before[0].replicaUuid, "the added replicas hold every byte");
});

test.serial("size 64 → 96 MiB: replicas then the nexus grow; the connected host learns the size and the old data stays", async (t) => {
  // As Linux does: enable namespace attribute notices and keep an event request waiting.
  t.is((await load!.admin.setFeatures(0x0b, 1 << 8)).status, 0);
  const aer = asyncEventRequest(load!.admin);
  await change(t, { sizeMib: "96" });
  t.is((await within(aer.completion, 10_000, "the notice")).dw0, NS_ATTR_CHANGED, "the host got a Namespace Attribute Changed notice");
  t.is(await nsze(load!.admin), (96 * MiB) / 4096, "and Identify on the same connection reports the new size");
  const { nexus } = await outputs();
  t.is(nexus.sizeBytes, 96 * MiB);
  const replicas = await replicasOnEngines();
  t.is(replicas.length, 3);
  for (const r of replicas) t.true(r.size_bytes >= 96 * MiB, `replica ${r.uuid} grew`);
});

test.serial("thin → thick: every replica is fully allocated in place, the data unchanged", async (t) => {
  await change(t, { thin: "false" });
  for (const r of await replicasOnEngines()) {
    t.false(r.thin);
    t.true(r.allocated_bytes >= r.size_bytes, `replica ${r.uuid} is fully allocated (${r.allocated_bytes} of ${r.size_bytes} B)`);
  }
});

test.serial("a pool is drained: its replica moves to the free node, rebuilt before the old one goes", async (t) => {
  const { placement, nexus } = await outputs();
  const victim = placement.find((p) => p.node !== nexus.node)!;
  const free = ["node-a", "node-b", "node-c", "node-d"].find((n) => !placement.some((p) => p.node === n))!;
  await change(t, { drain: victim.node });
  const after = await outputs();
  t.false(after.placement.some((p) => p.replicaUuid === victim.replicaUuid), "the drained replica left the placement");
  const moved = after.placement.find((p) => !placement.some((q) => q.replicaUuid === p.replicaUuid))!;
  t.is(moved.node, free);
  t.false((await replicasOnEngines()).some((r) => r.uuid === victim.replicaUuid), "the old replica is destroyed");
  await verifyFrom(t, (c) => c.replicaUuid === moved.replicaUuid, "the moved replica alone holds every byte");
});

test.serial("replicas 3 → 2 → 1: the least preferred replicas go; the nexus node's replica stays", async (t) => {
  const { nexus } = await outputs();
  await change(t, { replicas: "2" });
  t.is((await outputs()).placement.length, 2);
  t.is((await replicasOnEngines()).length, 2);
  await change(t, { replicas: "1" });
  const one = await outputs();
  t.is(one.placement.length, 1);
  t.is(one.placement[0].node, nexus.node, "the replica local to the nexus stays");
  t.is((await replicasOnEngines()).length, 1);
});

test.serial("a selector change (tier=slow) with 2 replicas: both land on slow pools, the fast one leaves after they are in sync; the nexus stays on its node", async (t) => {
  const before = await outputs();
  await change(t, { drain: "", tier: "slow", replicas: "2" });
  const after = await outputs();
  t.deepEqual(after.placement.map((p) => p.node).sort(), ["node-c", "node-d"], "only slow pools hold replicas");
  t.false(after.placement.some((p) => p.replicaUuid === before.placement[0].replicaUuid), "the fast replica left");
  t.is(after.nexus.node, before.nexus.node, "the nexus did not move (the host kept its connection)");
  t.deepEqual(after.nexus.children.map((c) => c.state), ["online", "online"]);
  t.is((await replicasOnEngines()).length, 2, "the old replica is destroyed");
});

test.serial("frontend change: the old host is cut off, the new one reads every byte", async (t) => {
  for (const [k, v] of Object.entries({ frontend: FRONTEND_2 })) await stack.setConfig(k, { value: v });
  const summary = (await stack.preview()).changeSummary as Record<string, number>;
  t.is(summary.replace ?? 0, 0);
  t.is((await stack.up()).summary.result, "succeeded");
  await load!.socketClosed();
  const model = load!.model;
  load!.close();
  const { nexus } = await outputs();
  frontend = FRONTEND_2;
  load = await VerifyingLoad.connect(nexus.port, nexus.nqn, FRONTEND_2, model, await secret());
  t.deepEqual(await load.verifyAll(), [], "the new frontend reads every byte written before");
});

test.serial("destroy leaves every engine empty", async (t) => {
  load?.close();
  load = null;
  t.is((await stack.destroy()).summary.result, "succeeded");
  t.deepEqual(await replicasOnEngines(), []);
  const nexuses = (await cluster.eachNode((e) => e.call("ListNexus", {}))).flatMap((r) => r.nexuses);
  const subs = (await cluster.eachNode((e) => e.call("ListSubsystems", {}))).flatMap((r) => r.subsystems);
  t.deepEqual(nexuses, []);
  t.deepEqual(subs, []);
});
