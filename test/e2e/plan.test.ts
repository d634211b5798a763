// The plan a reviewer approves is the plan `up` carries out. Pools and ten volumes declared in
// one program, on a fresh cluster: the first `pulumi preview` already shows node and pool of
// every replica (the pools do not exist yet), the volumes spread over the pools instead of
// stacking on one, and `pulumi up` places every replica exactly where the preview said.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "plan");
const VOLUMES = 10;

interface Placed {
  replicaUuid: string;
  node: string;
  pool: string;
  reason: string;
}

let cluster: TestCluster;
let stack: Stack;

test.before(async () => {
  cluster = await startCluster({ nodes: 3, diskMib: 512 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  await stack.setAllConfig(stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), volumes: String(VOLUMES) }), true);
});
test.after.always(async () => {
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
});

/** Each volume's placement as `pulumi preview --json` plans it, by resource name. */
async function previewed(): Promise<Map<string, Placed[]>> {
  const r = await cluster.pulumi("preview", "--json", "--cwd", FIXTURE);
  if (r.code !== 0) throw new Error(`preview failed: ${r.stdout}\n${r.stderr}`);
  const steps = (JSON.parse(r.stdout) as { steps: { urn: string; newState?: { type: string; inputs: { placement?: Placed[] } } }[] }).steps;
  return new Map(
    steps
      .filter((s) => s.newState?.type === "pulumi-nodejs:dynamic/strata:Volume")
      .map((s) => [s.urn.split("::").pop()!, s.newState!.inputs.placement ?? []]),
  );
}

async function deployed(): Promise<Map<string, Placed[]>> {
  const state = await stack.exportStack();
  const resources = (state.deployment as { resources: { type: string; urn: string; outputs: { placement: Placed[] } }[] }).resources;
  return new Map(resources.filter((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume").map((r) => [r.urn.split("::").pop()!, r.outputs.placement]));
}

const where = (p: Placed[]) => p.map((r) => `${r.node}/${r.pool}/${r.replicaUuid}`);

test.serial("the first preview places every volume on pools that do not exist yet, spread out, and up places exactly that", async (t) => {
  const plan = await previewed();
  t.is(plan.size, VOLUMES);
  const perPool = new Map<string, number>();
  for (const [name, placement] of plan) {
    t.is(placement.length, 1, `${name} is placed at the first preview`);
    t.truthy(placement[0].node && placement[0].pool, `${name} names node and pool`);
    t.true(placement[0].reason.length > 0, `${name} says why`);
    perPool.set(placement[0].pool, (perPool.get(placement[0].pool) ?? 0) + 1);
  }
  t.is(perPool.size, 3, `ten volumes use all three pools: ${JSON.stringify([...perPool])}`);
  t.true(Math.max(...perPool.values()) <= 4, `no pool takes more than its share: ${JSON.stringify([...perPool])}`);

  t.is((await stack.up()).summary.result, "succeeded");
  const done = await deployed();
  for (const [name, placement] of plan) t.deepEqual(where(done.get(name)!), where(placement), `${name} landed where the preview said`);
  const onEngines = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas.map((x) => `${x.node}/${x.pool_name}/${x.uuid}`));
  t.deepEqual(onEngines.sort(), [...plan.values()].flatMap(where).sort(), "the engines hold exactly the previewed replicas");
});

test.serial("another program reads a volume and a pool by uuid (Volume.get, Pool.get: the ids import takes)", async (t) => {
  const state = await stack.exportStack();
  const resources = (state.deployment as { resources: { type: string; urn: string; id: string; outputs: Record<string, unknown> }[] }).resources;
  const v0 = resources.find((r) => r.urn.endsWith("::v0"))!;
  const pool = resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Pool")!;
  const lookup = await openStack({ workDir: join(REPO_ROOT, "test", "e2e", "fixtures", "lookup"), home: cluster.home, stackName: cluster.stack });
  t.teardown(() => rmSync(join(REPO_ROOT, "test", "e2e", "fixtures", "lookup", `Pulumi.${cluster.stack}.yaml`), { force: true }));
  await lookup.setAllConfig(stackConfig(cluster, { volumeId: v0.id, poolId: pool.id }), true);
  t.is((await lookup.up()).summary.result, "succeeded");
  const out = await lookup.outputs();
  t.deepEqual(where(out.volumePlacement.value as Placed[]), where(v0.outputs.placement as Placed[]), "the placement is read from the engines");
  t.is(out.volumeSizeBytes.value, v0.outputs.sizeBytes);
  t.is(out.volumeReplicas.value, 1);
  t.is(out.volumeHealth.value, "online");
  t.is(out.volumeNexusNode.value, (v0.outputs.placement as Placed[])[0].node);
  t.is(out.poolNode.value, pool.outputs.node);
  t.is(out.poolName.value, pool.outputs.name);
  t.is(out.poolCapacityBytes.value, pool.outputs.capacityBytes);
  // Destroying the reading stack leaves what it only read.
  t.is((await lookup.destroy()).summary.result, "succeeded");
  const onEngines = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
  t.is(onEngines.length, VOLUMES);
});

test.serial("a saved plan: once the cluster changed since the review, up --plan fails naming the volume's placement and makes nothing; on the reviewed cluster it carries the plan out", async (t) => {
  const planFile = join(cluster.home, "reviewed-plan.json");
  await stack.setConfig("volumes", { value: String(VOLUMES + 1) });
  const saved = await cluster.pulumi("preview", "--cwd", FIXTURE, "--save-plan", planFile);
  t.is(saved.code, 0, saved.stderr);
  const reviewed = (await previewed()).get(`v${VOLUMES}`)!;
  t.is(reviewed.length, 1);

  // After the review, someone else puts a replica on the pool the plan chose.
  const engine = cluster.connect(reviewed[0].node);
  t.teardown(() => engine.close());
  const pool = (await engine.call("ListPools", {})).pools.find((p) => p.name === reviewed[0].pool)!;
  const filler = "f1e1e1e1-0000-4000-8000-000000000001";
  await engine.call("CreateReplica", { uuid: filler, name: "", pool: pool.uuid, size_bytes: 8 * 1024 * 1024, thin: false });
  const refused = await cluster.pulumi("up", "--cwd", FIXTURE, "--yes", "--plan", planFile);
  t.not(refused.code, 0, "up --plan refuses a plan the cluster no longer matches");
  t.regex(refused.stdout + refused.stderr, new RegExp(`::v${VOLUMES} violates plan: properties changed: .*placement`));
  const made = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas.map((x) => x.uuid));
  t.is(made.length, VOLUMES + 1, "nothing of the refused plan was made (the ten volumes and the other replica only)");

  // The cluster is as reviewed again: up --plan carries out exactly the reviewed plan.
  await engine.call("DestroyReplica", { uuid: filler });
  const done = await cluster.pulumi("up", "--cwd", FIXTURE, "--yes", "--plan", planFile);
  t.is(done.code, 0, `${done.stdout}\n${done.stderr}`);
  t.deepEqual(where((await deployed()).get(`v${VOLUMES}`)!), where(reviewed));
});

test.serial("a second preview of the deployed program is empty, and adding a volume places only that one", async (t) => {
  const again = await previewed();
  t.is(again.size, 0, "no volume changes");
  await stack.setConfig("volumes", { value: String(VOLUMES + 2) });
  const plan = await previewed();
  const added = `v${VOLUMES + 1}`;
  t.deepEqual([...plan.keys()], [added]);
  t.is((await stack.up()).summary.result, "succeeded");
  t.deepEqual(where((await deployed()).get(added)!), where(plan.get(added)!));
  t.is((await stack.destroy()).summary.result, "succeeded");
});
