// A change that fails halfway leaves the volume serving, and the next `up` finishes it. A
// one-replica volume goes to three replicas; while the new replicas rebuild, one new replica's
// engine is killed (SIGKILL). `up` fails naming that replica and removes nothing; the host keeps
// reading every byte it wrote; once the engine is back, refresh + `up` finish the change with all
// three replicas in sync, and every byte reads back from the new replicas alone.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";
import { VerifyingLoad, VolumeModel } from "../helpers/load";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "changes");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000d1";
const MiB = 1024 * 1024;

interface NexusOut {
  uuid: string;
  node: string;
  port: number;
  nqn: string;
  children: { node: string; replicaUuid: string; state: string }[];
}

let cluster: TestCluster;
let stack: Stack;

test.before(async () => {
  cluster = await startCluster({ nodes: 4, diskMib: 512 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  const config = stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), frontend: FRONTEND, replicas: "1", sizeMib: "64", thin: "true" });
  await stack.setAllConfig(config, true);
});
test.after.always(async () => {
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
});

async function volume(): Promise<{ nexus: NexusOut; health: string }> {
  const state = await stack.exportStack();
  const resources = (state.deployment as { resources: { type: string; outputs: Record<string, unknown> }[] }).resources;
  const o = resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume")!.outputs;
  return { nexus: o.nexus as NexusOut, health: o.health as string };
}

function enginePid(node: string): number {
  const record = JSON.parse(readFileSync(join(cluster.home, "cluster", "cluster.json"), "utf8")) as { nodes: { node: string; pid: number }[] };
  return record.nodes.find((n) => n.node === node)!.pid;
}

test.serial("an engine killed while a new replica rebuilds: up fails and removes nothing, the volume serves, the next up finishes", async (t) => {
  t.is((await stack.up()).summary.result, "succeeded");
  const { nexus } = await volume();
  const secret = (await stack.outputs()).frontendDhchapSecret.value as string;
  const load = await VerifyingLoad.connect(nexus.port, nexus.nqn, FRONTEND, new VolumeModel(64 * MiB), secret);
  t.teardown(() => load.close());
  for (let block = 0; block < load.model.blocks; block += 16) t.is(await load.writeOnce(block, 16), 0);
  t.is((await load.flush()).status, 0);

  await stack.setConfig("replicas", { value: "3" });
  const engine = cluster.connect(nexus.node);
  t.teardown(() => engine.close());
  const up = stack.up();
  up.catch(() => undefined);
  // Kill the node of the first child seen rebuilding.
  let victim = "";
  for (let i = 0; i < 3000 && !victim; i++) {
    const n = (await engine.call("ListNexus", {})).nexuses.find((x) => x.uuid === nexus.uuid);
    const rebuilding = n?.children.find((c) => c.state === "rebuilding" && c.uri.startsWith("nvmf://"));
    if (rebuilding) {
      const port = Number(/:(\d+)\//.exec(rebuilding.uri)![1]);
      // cli/cluster.ts: each engine serves NVMe/TCP on its gRPC port + 1000.
      victim = cluster.nodes.find((x) => Number(x.endpoint.split(":")[1]) + 1000 === port)!.node;
      process.kill(enginePid(victim), "SIGKILL");
    } else await new Promise((r) => setTimeout(r, 10));
  }
  t.truthy(victim, "a new replica was seen rebuilding");
  const failed = await t.throwsAsync(up);
  t.regex(failed!.message, /nothing was removed|rebuild|faulted|not a child/);
  t.deepEqual(await load.verifyAll(), [], "the volume kept serving every byte written");

  const restarted = await cluster.strata("cluster", "up", "--nodes", "4");
  t.is(restarted.code, 0, restarted.stderr);
  await stack.refresh();
  t.is((await stack.up()).summary.result, "succeeded");
  const done = await volume();
  t.deepEqual(done.nexus.children.map((c) => c.state), ["online", "online", "online"]);
  t.is(new Set(done.nexus.children.map((c) => c.node)).size, 3);

  // Every byte from the new replicas alone.
  const n = (await engine.call("ListNexus", {})).nexuses.find((x) => x.uuid === nexus.uuid)!;
  const first = done.nexus.children.find((c) => c.node === nexus.node)!;
  await engine.call("FaultChild", { uuid: nexus.uuid, child_uri: n.children.find((c) => c.uri.includes(first.replicaUuid))!.uri });
  t.deepEqual(await load.verifyAll(), [], "the replicas added by the resumed change hold every byte");
  await stack.refresh();
  t.is((await stack.up()).summary.result, "succeeded");
  t.is((await stack.destroy()).summary.result, "succeeded");
  const left = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
  t.deepEqual(left, [], "nothing leaked");
});
