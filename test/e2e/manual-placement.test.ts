// Placement by hand, driven as an operator does: a program declares two pools on two engines,
// Replicas on the pools it chooses and a Nexus over them published to a frontend host; the host
// writes a pattern over NVMe/TCP; `up` adds a third Replica as a child (rebuilt before the update
// returns, then read back from it alone), removes a child (unshared, the Replica kept), another
// stack adopts what exists with the `import` option, and `destroy` leaves the engines empty.
// Mistakes fail at preview naming the property. Real CLI, real engines on loopback.
import test, { ExecutionContext } from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";
import { VerifyingLoad, VolumeModel } from "../helpers/load";
import { resourceUuidFor } from "../../provider/cluster";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "manual-placement");
const IMPORT_FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "manual-import");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000d1";
const FRONTEND_2 = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000d2";
const MiB = 1024 * 1024;
const SIZE_MIB = 32;

interface Child {
  replicaUuid: string;
  node: string;
  state: string;
  reason: string;
  rebuildPercent: number;
}

let cluster: TestCluster;
let stack: Stack;
let load: VerifyingLoad | null = null;
const extraStacks: { dir: string; name: string }[] = [];

test.before(async () => {
  cluster = await startCluster({ nodes: 2, diskMib: 256 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  await stack.setAllConfig(
    stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), frontend: FRONTEND, sizeMib: String(SIZE_MIB), replicas: "r-a=node-a,r-b=node-b", children: "r-a,r-b" }),
    true,
  );
});
test.after.always(async () => {
  load?.close();
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
  for (const s of extraStacks) rmSync(join(s.dir, `Pulumi.${s.name}.yaml`), { force: true });
});

async function out() {
  const o = await stack.outputs();
  const v = <T>(k: string) => o[k].value as T;
  return {
    poolUuids: v<Record<string, string>>("poolUuids"),
    replicaUuids: v<Record<string, string>>("replicaUuids"),
    replicaNodes: v<Record<string, string>>("replicaNodes"),
    nexusUuid: v<string>("nexusUuid"),
    nexusState: v<string>("nexusState"),
    children: v<Child[]>("nexusChildren"),
    nqn: v<string>("nqn"),
    host: v<string>("host"),
    port: v<number>("port"),
    secret: v<string>("frontendDhchapSecret"),
    volumeUuid: v<string>("volumeUuid"),
  };
}

async function engineNexus(uuid: string) {
  const engine = cluster.connect("node-a");
  try {
    return (await engine.call("ListNexus", {})).nexuses.find((n) => n.uuid === uuid)!;
  } finally {
    engine.close();
  }
}

async function everything() {
  const replicas = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
  const subsystems = (await cluster.eachNode((e) => e.call("ListSubsystems", {}))).flatMap((r) => r.subsystems);
  const nexuses = (await cluster.eachNode((e) => e.call("ListNexus", {}))).flatMap((r) => r.nexuses);
  const pools = (await cluster.eachNode((e) => e.call("ListPools", {}))).flatMap((r) => r.pools);
  return { replicas, subsystems, nexuses, pools };
}

/** Sets config, previews (no replace, no delete unless `deletes`), runs `up`. */
async function change(t: ExecutionContext, config: Record<string, string>, deletes = 0): Promise<void> {
  for (const [k, v] of Object.entries(config)) await stack.setConfig(k, { value: v });
  const summary = (await stack.preview()).changeSummary as Record<string, number>;
  t.is(summary.replace ?? 0, 0, `no replace: ${JSON.stringify(summary)}`);
  t.is(summary.delete ?? 0, deletes, `deletes: ${JSON.stringify(summary)}`);
  t.is((await stack.up()).summary.result, "succeeded");
}

test.serial("two pools, two Replicas and a Nexus over them, published: the host writes a pattern", async (t) => {
  t.is((await stack.up()).summary.result, "succeeded");
  const o = await out();
  t.deepEqual(o.replicaNodes, { "r-a": "node-a", "r-b": "node-b" }, "each replica is on the node of the pool the program chose");
  t.is(o.nexusState, "online");
  t.deepEqual(o.children.map((c) => [c.replicaUuid, c.state]), [[o.replicaUuids["r-a"], "online"], [o.replicaUuids["r-b"], "online"]]);
  t.true(o.host !== "" && o.port > 0 && o.nqn.includes(o.nexusUuid), "host and port are separate outputs");
  const n = await engineNexus(o.nexusUuid);
  t.true(n.children.some((c) => c.uri === `replica:///${o.replicaUuids["r-a"]}`), "the replica on the nexus node is a local child");
  t.true(n.children.some((c) => c.uri.startsWith("nvmf://") && c.uri.endsWith(o.replicaUuids["r-b"])), "the other is shared to the nexus node");
  load = await VerifyingLoad.connect(o.port, o.nqn, FRONTEND, new VolumeModel(SIZE_MIB * MiB), o.secret);
  for (let block = 0; block < load.model.blocks; block += 32) t.is(await load.writeOnce(block, 8), 0);
  t.is((await load.flush()).status, 0);
  t.deepEqual(await load.verifyAll(), []);
  // A second preview of the deployed program changes nothing.
  const summary = (await stack.preview()).changeSummary as Record<string, number>;
  t.deepEqual(Object.keys(summary).filter((k) => k !== "same"), [], JSON.stringify(summary));
});

test.serial("a third Replica added as a child is rebuilt before up returns; it alone holds every byte", async (t) => {
  // As if an earlier `up` was cut short after the engine made r-c: the replica already exists
  // under its derived uuid, and this `up` adopts it instead of making a second one.
  const derived = resourceUuidFor("Replica", "strata-manual-placement", cluster.stack, "r-c");
  const nodeB = cluster.connect("node-b");
  t.teardown(() => nodeB.close());
  await nodeB.call("CreateReplica", { uuid: derived, name: "", pool: "pool-node-b", size_bytes: SIZE_MIB * MiB + MiB, thin: true });
  await change(t, { replicas: "r-a=node-a,r-b=node-b,r-c=node-b", children: "r-a,r-b,r-c" });
  const o = await out();
  const rc = o.replicaUuids["r-c"];
  t.is(rc, derived, "the replica the cut-short run left is the one adopted");
  t.is((await nodeB.call("ListReplicas", { pool: "" })).replicas.length, 2, "node-b holds r-b and r-c, nothing more");
  t.deepEqual(o.children.map((c) => c.state), ["online", "online", "online"], "every child is online when up returns");
  t.is(o.children.find((c) => c.replicaUuid === rc)!.rebuildPercent, 100);
  const n = await engineNexus(o.nexusUuid);
  const engine = cluster.connect("node-a");
  t.teardown(() => engine.close());
  for (const name of ["r-a", "r-b"]) {
    const uri = n.children.find((c) => c.uri.endsWith(o.replicaUuids[name]))!.uri;
    await engine.call("FaultChild", { uuid: o.nexusUuid, child_uri: uri });
  }
  const faulted = (await engineNexus(o.nexusUuid)).children.filter((c) => c.state === "faulted").length;
  t.is(faulted, 2, "only the new child serves");
  t.deepEqual(await load!.verifyAll(), [], "the new replica alone reads back every byte");
});

test.serial("a child removed: the faulted ones come back first, then it leaves, is unshared, and its Replica stays", async (t) => {
  const before = await out();
  const rb = before.replicaUuids["r-b"];
  await change(t, { children: "r-a,r-c" });
  const o = await out();
  t.deepEqual(o.children.map((c) => [c.replicaUuid, c.state]), [[o.replicaUuids["r-a"], "online"], [o.replicaUuids["r-c"], "online"]]);
  const n = await engineNexus(o.nexusUuid);
  t.is(n.children.length, 2);
  t.false(n.children.some((c) => c.uri.endsWith(rb)), "r-b left the nexus");
  const { replicas, subsystems } = await everything();
  t.true(replicas.some((r) => r.uuid === rb), "the Replica r-b still exists");
  t.false(subsystems.some((s) => s.replica_uuid === rb), "r-b is no longer shared");
  t.true(subsystems.some((s) => s.replica_uuid === o.replicaUuids["r-c"]), "r-c (remote child) is shared");
  t.deepEqual(await load!.verifyAll(), [], "every byte still reads back");
});

test.serial("another stack adopts the pools, replicas, nexus and volume with the import option, changing nothing", async (t) => {
  const o = await out();
  const name = `${cluster.stack}-import`;
  extraStacks.push({ dir: IMPORT_FIXTURE, name });
  const adopt = await openStack({ workDir: IMPORT_FIXTURE, home: cluster.home, stackName: name });
  const ids = { pools: o.poolUuids, replicas: o.replicaUuids, nexus: o.nexusUuid, volume: o.volumeUuid };
  await adopt.setAllConfig(
    stackConfig(cluster, {
      diskDir: join(cluster.home, "cluster"),
      frontend: FRONTEND,
      sizeMib: String(SIZE_MIB),
      ids: JSON.stringify(ids),
      children: JSON.stringify({ "r-a": "node-a", "r-c": "node-b" }),
    }),
    true,
  );
  const before = await everything();

  // A declaration that differs from what exists is refused at preview, naming the property.
  await adopt.setConfig("thin", { value: "false" });
  const err = await t.throwsAsync(adopt.preview());
  t.regex(err!.message, /thin.*replica [0-9a-f-]+ is thin, the program declares thick/);
  await adopt.removeConfig("thin");

  // What exists, declared as it is: the preview only adopts (no update, replace or delete).
  const summary = (await adopt.preview()).changeSummary as Record<string, number>;
  t.deepEqual({ update: summary.update ?? 0, replace: summary.replace ?? 0, delete: summary.delete ?? 0 }, { update: 0, replace: 0, delete: 0 }, JSON.stringify(summary));
  t.is((await adopt.up()).summary.result, "succeeded");
  const adopted = await adopt.outputs();
  t.is(adopted.nexusState.value, "online");
  t.deepEqual(adopted.replicaUuids.value, [o.replicaUuids["r-a"], o.replicaUuids["r-c"]]);
  t.is(adopted.volumeUuid.value, o.volumeUuid);
  // Replica.get and Nexus.get read by uuid alone: the node and the children are found on the engines.
  t.is(adopted.seenReplicaNode.value, "node-b");
  t.is(adopted.seenReplicaSizeBytes.value, SIZE_MIB * MiB + MiB);
  t.deepEqual(adopted.seenNexusChildren.value, [o.replicaUuids["r-a"], o.replicaUuids["r-c"]]);
  t.is(adopted.seenNexusNode.value, "node-a");
  const after = await everything();
  const ids_ = (xs: { uuid?: string; nqn?: string }[]) => xs.map((x) => x.uuid ?? x.nqn).sort();
  t.deepEqual(ids_(after.replicas), ids_(before.replicas), "no replica was made or removed");
  t.deepEqual(ids_(after.nexuses), ids_(before.nexuses), "no nexus was made or removed");
  t.deepEqual(ids_(after.subsystems), ids_(before.subsystems), "no share was made or removed");
  // Adopted: the next preview of the importing stack has nothing to do.
  const again = (await adopt.preview()).changeSummary as Record<string, number>;
  t.deepEqual(Object.keys(again).filter((k) => k !== "same" && k !== "read"), [], JSON.stringify(again));
  // Forget the adopted resources without deleting them: the first stack still owns them.
  await adopt.workspace.removeStack(name, { force: true });
  t.deepEqual(ids_((await everything()).replicas), ids_(before.replicas));
});

test.serial("grow: the Replicas grow, then the Nexus; the host keeps its data and reads the new size", async (t) => {
  await change(t, { sizeMib: String(SIZE_MIB + 16) });
  const o = await out();
  t.is(Number((await engineNexus(o.nexusUuid)).size_bytes), (SIZE_MIB + 16) * MiB);
  for (const r of (await everything()).replicas.filter((x) => Object.values(o.replicaUuids).includes(x.uuid)))
    t.is(Number(r.size_bytes), (SIZE_MIB + 16) * MiB + MiB, `replica ${r.uuid} grew first`);
  load!.grow((SIZE_MIB + 16) * MiB);
  t.deepEqual(await load!.verifyAll(), [], "the old data stays and the grown part reads as zeros");
  // A refresh reads every Replica and the Nexus back by uuid; the program then has nothing to do.
  await stack.refresh();
  const summary = (await stack.preview()).changeSummary as Record<string, number>;
  t.deepEqual(Object.keys(summary).filter((k) => k !== "same"), [], JSON.stringify(summary));
});

test.serial("thin -> thick converts every Replica in place", async (t) => {
  await change(t, { thin: "false" });
  const o = await out();
  for (const r of (await everything()).replicas.filter((x) => Object.values(o.replicaUuids).includes(x.uuid))) {
    t.false(r.thin);
    t.true(Number(r.allocated_bytes) >= Number(r.size_bytes), `replica ${r.uuid} is fully allocated`);
  }
  t.deepEqual(await load!.verifyAll(), []);
});

test.serial("a child Replica moved to another pool: a replace that names pool, new replica first; the nexus swaps children", async (t) => {
  const before = await out();
  const oldRc = before.replicaUuids["r-c"];
  await stack.setConfig("replicas", { value: "r-a=node-a,r-b=node-b,r-c=node-a" });
  const preview = await stack.preview({ diff: true });
  const summary = preview.changeSummary as Record<string, number>;
  t.is(summary.replace, 1, JSON.stringify(summary));
  t.regex(preview.stdout, /\+-.*Replica.*r-c/s, "r-c is replaced");
  t.regex(preview.stdout, /pool/, "the diff names pool");
  t.is((await stack.up()).summary.result, "succeeded");
  const o = await out();
  const newRc = o.replicaUuids["r-c"];
  t.not(newRc, oldRc, "the new replica has its own uuid (the old one still held the derived one)");
  t.is(o.replicaNodes["r-c"], "node-a");
  t.deepEqual(o.children.map((c) => [c.replicaUuid, c.state]), [[o.replicaUuids["r-a"], "online"], [newRc, "online"]]);
  const { replicas, subsystems } = await everything();
  t.false(replicas.some((r) => r.uuid === oldRc), "the old r-c is destroyed");
  t.false(subsystems.some((s) => s.replica_uuid === oldRc), "and unshared");
  // The moved replica alone holds every byte.
  const n = await engineNexus(o.nexusUuid);
  const engine = cluster.connect("node-a");
  t.teardown(() => engine.close());
  await engine.call("FaultChild", { uuid: o.nexusUuid, child_uri: n.children.find((c) => c.uri.endsWith(o.replicaUuids["r-a"]))!.uri });
  t.deepEqual(await load!.verifyAll(), [], "the moved replica alone reads back every byte");
  // The next up, after a refresh saw the faulted child, brings it back.
  await stack.refresh();
  // Stack outputs change only at `up`; the refreshed resource state is in the deployment.
  const deployment = (await stack.exportStack()).deployment as { resources: { type: string; outputs: Record<string, unknown> }[] };
  t.is(deployment.resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Nexus")!.outputs.state, "degraded", "refresh saw the faulted child");
  t.is((await stack.up()).summary.result, "succeeded");
  t.deepEqual((await out()).children.map((c) => c.state), ["online", "online"]);
});

test.serial("frontend change: unpublished from the old host, published to the new one, which reads every byte", async (t) => {
  await change(t, { frontend: FRONTEND_2 });
  await load!.socketClosed();
  const model = load!.model;
  load!.close();
  const o = await out();
  t.is((await engineNexus(o.nexusUuid)).frontend_host_nqn, FRONTEND_2);
  load = await VerifyingLoad.connect(o.port, o.nqn, FRONTEND_2, model, o.secret);
  t.deepEqual(await load.verifyAll(), [], "the new frontend reads every byte written before");
});

test.serial("mistakes fail at preview naming the property, and nothing is made", async (t) => {
  const before = await everything();
  const cases: [string, RegExp][] = [
    ["replica-size", /sizeBytes.*must be a multiple of 4096 bytes/],
    ["replica-node", /pool.*pool "pool-z" is on node "node-z", which is not a configured node \(strata:endpoints has: node-a, node-b\)/],
    ["nexus-size", /sizeBytes.*must be a positive multiple of 4096 bytes/],
    ["nexus-node", /node.*"node-z" is not a configured node/],
  ];
  for (const [mistake, expected] of cases) {
    const name = `${cluster.stack}-${mistake}`;
    extraStacks.push({ dir: FIXTURE, name });
    const bad = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: name });
    await bad.setAllConfig(stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), sizeMib: String(SIZE_MIB), case: mistake }), true);
    const err = await t.throwsAsync(bad.preview(), undefined, mistake);
    t.regex(err!.message, expected, mistake);
    await bad.workspace.removeStack(name, { force: true });
  }
  const after = await everything();
  t.is(after.replicas.length, before.replicas.length, "no replica was made");
  t.is(after.nexuses.length, before.nexuses.length, "no nexus was made");
});

test.serial("destroy leaves every engine empty: no replica, share, nexus or pool", async (t) => {
  load?.close();
  load = null;
  t.is((await stack.destroy()).summary.result, "succeeded");
  const { replicas, subsystems, nexuses, pools } = await everything();
  t.deepEqual(replicas, []);
  t.deepEqual(subsystems, []);
  t.deepEqual(nexuses, []);
  t.deepEqual(pools, []);
});
