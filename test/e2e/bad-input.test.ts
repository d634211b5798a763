// Bad input, named and harmless: each mistake a user can make in a program or in the stack
// config fails at `pulumi preview` (the real CLI, a local backend) with a message that says
// what to fix, and nothing is created on the engines.
import test, { ExecutionContext } from "ava";
import type { ConfigMap } from "@pulumi/pulumi/automation";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { freePort, REPO_ROOT } from "../helpers/engine";
import { startCluster, TestCluster } from "../helpers/cluster";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "bad-input");
let cluster: TestCluster;
const stacks: string[] = [];

test.before(async () => {
  cluster = await startCluster({ nodes: 2, diskMib: 512 });
});
test.after.always(async () => {
  await cluster?.down();
  for (const stack of stacks) rmSync(join(FIXTURE, `Pulumi.${stack}.yaml`), { force: true });
});

function goodConfig(): ConfigMap {
  const config: ConfigMap = { "strata:token": { value: cluster.nodes[0].token, secret: true } };
  for (const n of cluster.nodes) config[`strata:endpoints.${n.node}`] = { value: n.endpoint };
  return config;
}

/** A stack of the fixture project running one case, with the given cluster config. */
async function stackFor(caseName: string, config: ConfigMap) {
  const stackName = `${cluster.stack}-${stacks.length}`;
  stacks.push(stackName);
  const stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName });
  await stack.setAllConfig(
    { ...config, case: { value: caseName }, diskDir: { value: join(cluster.home, "cluster") } },
    true,
  );
  return stack;
}

async function previewFails(t: ExecutionContext, caseName: string, config: ConfigMap, expected: RegExp): Promise<number> {
  const stack = await stackFor(caseName, config);
  const started = Date.now();
  const err = await t.throwsAsync(stack.preview());
  const elapsed = Date.now() - started;
  t.regex(err!.message, expected);
  return elapsed;
}

async function assertEnginesEmpty(t: ExecutionContext): Promise<void> {
  const pools = await cluster.eachNode((e) => e.call("ListPools", {}));
  const replicas = await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }));
  t.deepEqual(pools.map((p) => p.pools.length), cluster.nodes.map(() => 0), "no pool was created");
  t.deepEqual(replicas.map((r) => r.replicas.length), cluster.nodes.map(() => 0), "no replica was created");
}

test.serial("no endpoints in config", async (t) => {
  await previewFails(t, "pool", {}, /strata:endpoints is not set: run `npx strata cluster up`/);
  await assertEnginesEmpty(t);
});

test.serial("an engine that is down is named with its endpoint, within seconds", async (t) => {
  const closedPort = await freePort();
  const config = { ...goodConfig(), "strata:endpoints.node-a": { value: `127.0.0.1:${closedPort}` } };
  const ms = await previewFails(t, "pool", config, new RegExp(`node "node-a" at 127\\.0\\.0\\.1:${closedPort} is unreachable`));
  t.true(ms < 20_000, `took ${ms} ms`);
  await assertEnginesEmpty(t);
});

test.serial("a wrong token", async (t) => {
  const config = { ...goodConfig(), "strata:token": { value: "wrong-token-wrong-token", secret: true } };
  await previewFails(t, "pool", config, /rejected the token/);
  await assertEnginesEmpty(t);
});

test.serial("a negative or non-integer volume size", async (t) => {
  await previewFails(t, "negative-size", goodConfig(), /sizeBytes.*must be positive/);
  await previewFails(t, "fractional-size", goodConfig(), /sizeBytes.*whole number of bytes/);
  await assertEnginesEmpty(t);
});

test.serial("an unknown node", async (t) => {
  await previewFails(t, "unknown-node", goodConfig(), /node.*"node-z" is not a configured node \(strata:endpoints has: node-a, node-b\)/);
  await assertEnginesEmpty(t);
});

test.serial("an unknown disk URI scheme", async (t) => {
  await previewFails(t, "unknown-scheme", goodConfig(), /disk.*unknown scheme "nbd:"/);
  await assertEnginesEmpty(t);
});

test.serial("a volume larger than any pool", async (t) => {
  // The pools exist (an earlier up made them); the oversized volume is refused at preview.
  const stack = await stackFor("pools", goodConfig());
  await stack.up();
  await stack.setConfig("case", { value: "huge-volume" });
  const err = await t.throwsAsync(stack.preview());
  t.regex(err!.message, /sizeBytes.*cannot place replica 1 of 1.*node-a\/pa: capacity [\d.]+ MiB is smaller than the volume.*node-b\/pb/s);
  const replicas = await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }));
  t.deepEqual(replicas.map((r) => r.replicas.length), [0, 0]);
  await stack.setConfig("case", { value: "pools" });
  await stack.destroy();
  await assertEnginesEmpty(t);
});

test.serial("CSAL device mistakes fail at preview, naming the input, and nothing is created", async (t) => {
  await previewFails(t, "csal-overprovision", goodConfig(), /property overprovisionPercent value \{95\} has a problem: must be a whole percentage from 5 to 90/);
  await previewFails(t, "csal-zoned-band", goodConfig(), /property bandMib value \{16\} has a problem: must be left out on a zoned base: a band is one zone/);
  await previewFails(t, "csal-map-limit", goodConfig(), /property mapMemoryLimitMib value \{0\.5\} has a problem: must be a whole number of MiB/);
  const devices = await cluster.eachNode((e) => e.call("ListCsalDevices", {}));
  t.deepEqual(devices.map((d) => d.devices.length), cluster.nodes.map(() => 0), "no CSAL device was created");
  await assertEnginesEmpty(t);
});
