// A create that fails halfway leaves nothing behind that the next `up` does not account for
// (reliability review 2026-11-27, #14). The nexus node's engine dies while `pulumi up` creates a
// replicated volume, after its replica is made: the up fails, and the rollback cannot reach
// that node. Once the engine is back, the next `up` succeeds, and every node holds exactly the
// placement's replicas (the one the failed up left is reused, not leaked beside a new one) and
// only the shares the nexus needs.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import type { EngineConnection } from "../../common/client";
import { nexusNqn, replicaNqn } from "../../common/nexus-rules";
import { nexusUuidFor, replicaUuidFor } from "../../provider/cluster";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "replicated");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000fb";

interface Placed {
  replicaUuid: string;
  node: string;
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

function enginePid(node: string): number {
  const record = JSON.parse(readFileSync(join(cluster.home, "cluster", "cluster.json"), "utf8")) as { nodes: { node: string; pid: number }[] };
  return record.nodes.find((n) => n.node === node)!.pid;
}

/**
 * Watches every node for the first replica to appear and kills (SIGKILL) that node's engine at
 * once. The provider creates the replicas in placement order, so the first node to hold one is
 * the nexus node. Resolves with the node and the replica it held.
 */
function killFirstNodeWithAReplica(): { stop: () => void; killed: Promise<{ node: string; replica: string }> } {
  const engines: [string, EngineConnection][] = cluster.nodes.map((n) => [n.node, cluster.connect(n.node)]);
  let stopped = false;
  const stop = () => {
    stopped = true;
    for (const [, e] of engines) e.close();
  };
  const killed = (async () => {
    while (!stopped) {
      for (const [node, engine] of engines) {
        const { replicas } = await engine.call("ListReplicas", { pool: "" }).catch(() => ({ replicas: [] }));
        if (replicas.length > 0) {
          process.kill(enginePid(node), "SIGKILL");
          stop();
          return { node, replica: replicas[0].uuid };
        }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error("no replica appeared before the up ended");
  })();
  return { stop, killed };
}

async function resourceOutputs(): Promise<{ uuid: string; nexusUuid: string; placement: Placed[] } | null> {
  const state = await stack.exportStack();
  const resources = (state.deployment as { resources?: { type: string; outputs?: Record<string, unknown> }[] }).resources ?? [];
  const o = resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume")?.outputs;
  return o ? { uuid: o.uuid as string, nexusUuid: o.nexusUuid as string, placement: o.placement as Placed[] } : null;
}

test.serial("the nexus node dies during create: up fails, and after a restart the next up converges with no leaked replica or share", async (t) => {
  const watcher = killFirstNodeWithAReplica();
  const failed = await t.throwsAsync(stack.up());
  watcher.stop();
  const { node: nexusNode, replica: leftover } = await watcher.killed;
  t.regex(failed!.message, /the volume stays in the stack/, "the rollback could not reach the nexus node, so the volume is kept to be finished");
  const kept = await resourceOutputs();
  t.truthy(kept, "the volume is in the stack");
  t.is(kept!.placement[0].node, nexusNode);
  t.is(kept!.placement[0].replicaUuid, leftover);

  // What the rollback could reach is gone: no replica or share on the other nodes.
  for (const n of cluster.nodes.filter((x) => x.node !== nexusNode)) {
    const e = cluster.connect(n.node);
    try {
      t.deepEqual((await e.call("ListReplicas", { pool: "" })).replicas, [], `${n.node} replicas after the rollback`);
      t.deepEqual((await e.call("ListSubsystems", {})).subsystems, [], `${n.node} shares after the rollback`);
    } finally {
      e.close();
    }
  }

  // The operator brings the node back (same ports, same disk) and runs up again.
  const restarted = await cluster.strata("cluster", "up", "--nodes", "3");
  t.is(restarted.code, 0, restarted.stderr);
  const up = await stack.up();
  t.is(up.summary.result, "succeeded");

  const out = (await resourceOutputs())!;
  t.is(out.uuid, kept!.uuid, "the same volume");
  t.deepEqual(out.placement, kept!.placement, "the same placement and replica uuids");
  t.deepEqual(
    out.placement.map((r) => r.replicaUuid),
    out.placement.map((_, slot) => replicaUuidFor(out.uuid, slot)),
    "replica uuids are derived from the volume uuid and slot",
  );
  t.is(out.nexusUuid, nexusUuidFor(out.uuid));

  const hostNqn = (await cluster.eachNode((e) => e.call("GetInfo", {}))).find((i) => i.node === nexusNode)!.host_nqn;
  for (const n of cluster.nodes) {
    const e = cluster.connect(n.node);
    try {
      const mine = out.placement.filter((r) => r.node === n.node);
      const replicas = (await e.call("ListReplicas", { pool: "" })).replicas.map((r) => r.uuid).sort();
      t.deepEqual(replicas, mine.map((r) => r.replicaUuid).sort(), `${n.node} holds exactly its placed replicas`);
      const subs = (await e.call("ListSubsystems", {})).subsystems.map((s) => ({ nqn: s.nqn, hosts: [...s.allowed_host_nqns] })).sort((a, b) => a.nqn.localeCompare(b.nqn));
      const expected =
        n.node === nexusNode
          ? [{ nqn: nexusNqn(out.nexusUuid), hosts: [FRONTEND] }]
          : mine.map((r) => ({ nqn: replicaNqn(r.replicaUuid), hosts: [hostNqn] }));
      t.deepEqual(subs, expected, `${n.node} shares only what the nexus needs`);
      const nexuses = (await e.call("ListNexus", {})).nexuses;
      t.deepEqual(nexuses.map((x) => [x.uuid, x.health]), n.node === nexusNode ? [[out.nexusUuid, "online"]] : [], `${n.node} nexuses`);
    } finally {
      e.close();
    }
  }
});

test.serial("destroy then leaves every engine empty", async (t) => {
  t.is((await stack.destroy()).summary.result, "succeeded");
  const replicas = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
  const subs = (await cluster.eachNode((e) => e.call("ListSubsystems", {}))).flatMap((r) => r.subsystems);
  const nexuses = (await cluster.eachNode((e) => e.call("ListNexus", {}))).flatMap((r) => r.nexuses);
  t.deepEqual([replicas, subs, nexuses], [[], [], []]);
});
