// A replicated volume as a user declares it: three replicas on three nodes become a nexus,
// published to the frontend named in the program. `pulumi up` with the real CLI; the frontend
// really connects over NVMe/TCP and its data is verified; a child faulted behind Pulumi's back
// shows up at refresh and the next `up` brings it back; destroy leaves every engine empty.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";
import { VerifyingLoad, VolumeModel } from "../helpers/load";
import { makeSecret } from "../native/nvmf/host";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "replicated");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000fe";
const MiB = 1024 * 1024;

interface NexusOut {
  uuid: string;
  node: string;
  health: string;
  nqn: string;
  host: string;
  port: number;
  children: { node: string; replicaUuid: string; state: string; reason: string }[];
}

let cluster: TestCluster;
let stack: Stack;

test.before(async () => {
  cluster = await startCluster({ nodes: 3, diskMib: 512 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  await stack.setAllConfig(stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), frontend: FRONTEND }), true);
});
test.after.always(async () => {
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
});

/** The frontend's DH-HMAC-CHAP secret: a secret stack output, decrypted by the Automation API. */
async function frontendSecret(): Promise<string> {
  const out = await stack.outputs();
  if (!out.frontendDhchapSecret?.secret) throw new Error("frontendDhchapSecret must be a secret output");
  return out.frontendDhchapSecret.value as string;
}

/** The Volume resource's state (refresh updates it; stack outputs only change at up). */
async function outputs(): Promise<{ health: string; nexus: NexusOut; volumeUuid: string }> {
  const state = await stack.exportStack();
  const resources = (state.deployment as { resources: { type: string; outputs: Record<string, unknown> }[] }).resources;
  const o = resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume")!.outputs;
  return { health: o.health as string, nexus: o.nexus as NexusOut, volumeUuid: o.uuid as string };
}

test.serial("up makes a three-replica volume: a nexus on the first replica's node, one replica per node, published to the frontend", async (t) => {
  const up = await stack.up();
  t.is(up.summary.result, "succeeded");
  const { health, nexus } = await outputs();
  t.is(health, "online");
  t.is(nexus.health, "online");
  t.deepEqual(nexus.children.map((c) => c.state), ["online", "online", "online"]);
  t.deepEqual(new Set(nexus.children.map((c) => c.node)).size, 3, "one replica per node");
  t.is(nexus.node, nexus.children[0].node);
  t.regex(nexus.nqn, /^nqn\.2026-11\.io\.strata:nexus:/);

  const engine = cluster.connect(nexus.node);
  try {
    const { nexuses } = await engine.call("ListNexus", {});
    t.is(nexuses.length, 1);
    t.is(nexuses[0].frontend_host_nqn, FRONTEND);
    t.is(nexuses[0].size_bytes, 64 * MiB);
  } finally {
    engine.close();
  }
  const hostNqn = (await cluster.eachNode((e) => e.call("GetInfo", {}))).find((i) => i.node === nexus.node)!.host_nqn;
  const subs = (await cluster.eachNode((e) => e.call("ListSubsystems", {}))).flatMap((r) => r.subsystems);
  t.is(subs.filter((s) => s.kind === "replica").length, 2, "the two remote replicas are shared");
  t.is(subs.filter((s) => s.kind === "nexus").length, 1, "the nexus is published");
  t.true(subs.filter((s) => s.nqn.includes(":replica:")).every((s) => s.allowed_host_nqns.length === 1 && s.allowed_host_nqns[0] === hostNqn));
  t.true(
    subs.filter((s) => s.nqn.includes(":replica:")).every((s) => s.dhchap_host_nqns.length === 1 && s.dhchap_host_nqns[0] === hostNqn),
    "the nexus node must authenticate to reach its children",
  );
  t.deepEqual(subs.find((s) => s.kind === "nexus")!.dhchap_host_nqns, [FRONTEND], "the frontend must authenticate");
  // The state on disk (the file backend) holds the frontend's secret only encrypted.
  const secret = await frontendSecret();
  const stateFiles = (function walk(dir: string): string[] {
    return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
  })(join(cluster.home, "pulumi-state"));
  t.true(stateFiles.length > 0);
  for (const file of stateFiles) t.false(readFileSync(file).includes(secret), `${file} holds the frontend's secret in plain text`);
});

test.serial("the frontend writes and reads the volume over NVMe/TCP; a second preview changes nothing", async (t) => {
  const { nexus } = await outputs();
  // Its NQN alone is not enough: without the secret, or with another one, it is refused.
  const port = nexus.port;
  await t.throwsAsync(VerifyingLoad.connect(port, nexus.nqn, FRONTEND, new VolumeModel(64 * MiB)));
  const refused = await t.throwsAsync(VerifyingLoad.connect(port, nexus.nqn, FRONTEND, new VolumeModel(64 * MiB), makeSecret()));
  t.regex(refused!.message, /DH-HMAC-CHAP failed/);
  const load = await VerifyingLoad.connect(nexus.port, nexus.nqn, FRONTEND, new VolumeModel(64 * MiB), await frontendSecret());
  t.teardown(() => load.close());
  load.start(4);
  await load.progress(200);
  const counters = await load.stop();
  t.deepEqual(counters.mismatches, []);
  t.is(counters.writesFailed, 0);
  t.deepEqual(await load.verifyAll(), []);
  const preview = await stack.preview();
  t.deepEqual(preview.changeSummary, { same: 5 }, "the stack, three pools and the volume");
});

test.serial("a child faulted behind Pulumi's back: refresh reports the volume degraded, up brings the child back", async (t) => {
  const { nexus } = await outputs();
  const engine = cluster.connect(nexus.node);
  try {
    const n = (await engine.call("ListNexus", {})).nexuses[0];
    await engine.call("FaultChild", { uuid: n.uuid, child_uri: n.children[2].uri });
  } finally {
    engine.close();
  }
  await stack.refresh();
  let out = await outputs();
  t.is(out.health, "degraded");
  t.is(out.nexus.children[2].state, "faulted");
  t.is(out.nexus.children[2].reason, "by_client");

  const up = await stack.up();
  t.is(up.summary.result, "succeeded");
  for (let i = 0; i < 100; i++) {
    await stack.refresh();
    out = await outputs();
    if (out.health === "online") break;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.is(out.health, "online");
  t.deepEqual(out.nexus.children.map((c) => c.state), ["online", "online", "online"]);
});

async function waitOnline(): Promise<{ health: string; nexus: NexusOut }> {
  let out = await outputs();
  for (let i = 0; i < 150 && out.health !== "online"; i++) {
    await new Promise((r) => setTimeout(r, 200));
    await stack.refresh();
    out = await outputs();
  }
  return out;
}

test.serial("a replica destroyed behind Pulumi's back: refresh reports it, up rebuilds it in full, and it alone then serves every byte written before", async (t) => {
  const { nexus } = await outputs();
  const load = await VerifyingLoad.connect(nexus.port, nexus.nqn, FRONTEND, new VolumeModel(64 * MiB), await frontendSecret());
  t.teardown(() => load.close());
  for (let block = 0; block < load.model.blocks; block += 32) t.is(await load.writeOnce(block, 32), 0);
  t.is((await load.flush()).status, 0);

  // A lost disk or an operator slip on a remote replica's node.
  const victim = nexus.children.find((c) => c.node !== nexus.node)!;
  const node = cluster.connect(victim.node);
  try {
    await node.call("UnshareReplica", { uuid: victim.replicaUuid });
    await node.call("DestroyReplica", { uuid: victim.replicaUuid });
  } finally {
    node.close();
  }
  await new Promise((r) => setTimeout(r, 1500)); // the nexus notices the lost association within a second
  await stack.refresh();
  const degraded = await outputs();
  t.is(degraded.health, "degraded");
  t.is(degraded.nexus.children.find((c) => c.replicaUuid === victim.replicaUuid)!.state, "faulted");

  t.is((await stack.up()).summary.result, "succeeded");
  const healed = await waitOnline();
  t.is(healed.health, "online");
  const engine = cluster.connect(nexus.node);
  t.teardown(() => engine.close());
  const n = (await engine.call("ListNexus", {})).nexuses.find((x) => x.uuid === nexus.uuid)!;
  const uriOf = (replicaUuid: string) => n.children.find((c) => c.uri.endsWith(replicaUuid))!.uri;
  const { records } = await engine.call("GetRebuildHistory", { uuid: nexus.uuid });
  const rebuild = records.filter((r) => r.child_uri === uriOf(victim.replicaUuid) && !r.resync).pop();
  t.is(rebuild?.state, "completed");
  t.false(rebuild?.partial, "an empty, recreated replica is rebuilt in full");

  // Read everything back from the healed replica alone.
  for (const c of nexus.children) {
    if (c.replicaUuid !== victim.replicaUuid) await engine.call("FaultChild", { uuid: nexus.uuid, child_uri: uriOf(c.replicaUuid) });
  }
  t.deepEqual(await load.verifyAll(), [], "every byte written before reads back from the healed replica");
  // And `up` brings the other two back.
  t.is((await stack.up()).summary.result, "succeeded");
  t.is((await waitOnline()).health, "online");
  t.deepEqual(await load.verifyAll(), []);
});

test.serial("destroy removes the nexus, the shares and the replicas on every node", async (t) => {
  const destroyed = await stack.destroy();
  t.is(destroyed.summary.result, "succeeded");
  const nexuses = (await cluster.eachNode((e) => e.call("ListNexus", {}))).flatMap((r) => r.nexuses);
  const subs = (await cluster.eachNode((e) => e.call("ListSubsystems", {}))).flatMap((r) => r.subsystems);
  const replicas = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
  t.deepEqual(nexuses, []);
  t.deepEqual(subs, []);
  t.deepEqual(replicas, []);
});
