// Bad input, named and harmless: each mistake a user can make in a program or in the stack
// config fails at `pulumi preview` (the real CLI, a local backend) with a message that says
// what to fix, and nothing is created on the engines.
import test, { ExecutionContext } from "ava";
import type { ConfigMap } from "@pulumi/pulumi/automation";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import * as strata from "../../sdk";
import { freePort } from "../helpers/engine";
import { startCluster, TestCluster } from "../helpers/cluster";

let cluster: TestCluster;
let workDir: string;
let stackCount = 0;

test.before(async () => {
  cluster = await startCluster({ nodes: 2, diskMib: 512 });
  // Inline programs need only a project file; keep their stack configs out of the checkout.
  workDir = mkdtempSync(join(tmpdir(), "strata-bad-input-"));
  writeFileSync(join(workDir, "Pulumi.yaml"), "name: strata-bad-input\nruntime: nodejs\n");
});
test.after.always(async () => {
  await cluster?.down();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

function goodConfig(): ConfigMap {
  const config: ConfigMap = { "strata:token": { value: cluster.nodes[0].token, secret: true } };
  for (const n of cluster.nodes) config[`strata:endpoints.${n.node}`] = { value: n.endpoint };
  return config;
}

function diskOf(node: string, name = "disk.img"): string {
  return `file://${join(cluster.home, "cluster", node, name)}`;
}

async function stackWith(program: () => Promise<void>, config: ConfigMap) {
  const stack = await openStack({ workDir, home: cluster.home, stackName: `bad-${++stackCount}`, program: async () => program() });
  await stack.setAllConfig(config, true);
  return stack;
}

async function previewFails(t: ExecutionContext, program: () => Promise<void>, config: ConfigMap, expected: RegExp): Promise<number> {
  const stack = await stackWith(program, config);
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

const onePool = (args: Partial<strata.PoolArgs> = {}) => async () => {
  new strata.Pool("p", { node: "node-a", disk: diskOf("node-a"), ...args });
};

test.serial("no endpoints in config", async (t) => {
  await previewFails(t, onePool(), {}, /strata:endpoints is not set: run `npx strata cluster up`/);
  await assertEnginesEmpty(t);
});

test.serial("an engine that is down is named with its endpoint, within seconds", async (t) => {
  const closedPort = await freePort();
  const config = { ...goodConfig(), "strata:endpoints.node-a": { value: `127.0.0.1:${closedPort}` } };
  const ms = await previewFails(t, onePool(), config, new RegExp(`node "node-a" at 127\\.0\\.0\\.1:${closedPort} is unreachable`));
  t.true(ms < 20_000, `took ${ms} ms`);
  await assertEnginesEmpty(t);
});

test.serial("a wrong token", async (t) => {
  const config = { ...goodConfig(), "strata:token": { value: "wrong-token-wrong-token", secret: true } };
  await previewFails(t, onePool(), config, /rejected the token/);
  await assertEnginesEmpty(t);
});

test.serial("a negative or non-integer volume size", async (t) => {
  const volume = (sizeBytes: number) => async () => {
    new strata.Volume("v", { sizeBytes });
  };
  await previewFails(t, volume(-4096), goodConfig(), /sizeBytes.*must be positive/);
  await previewFails(t, volume(1.5), goodConfig(), /sizeBytes.*whole number of bytes/);
  await assertEnginesEmpty(t);
});

test.serial("an unknown node", async (t) => {
  await previewFails(t, onePool({ node: "node-z" }), goodConfig(), /node.*"node-z" is not a configured node \(strata:endpoints has: node-a, node-b\)/);
  await assertEnginesEmpty(t);
});

test.serial("an unknown disk URI scheme", async (t) => {
  await previewFails(t, onePool({ disk: "nbd:///dev/nbd0" }), goodConfig(), /disk.*unknown scheme "nbd:"/);
  await assertEnginesEmpty(t);
});

test.serial("a volume larger than any pool", async (t) => {
  // The pools exist (an earlier up made them); the oversized volume is refused at preview.
  const poolsOnly = await stackWith(async () => {
    new strata.Pool("pa", { node: "node-a", disk: diskOf("node-a") });
    new strata.Pool("pb", { node: "node-b", disk: diskOf("node-b") });
  }, goodConfig());
  await poolsOnly.up();
  const stackName = poolsOnly.name;
  const withVolume = await openStack({
    workDir,
    home: cluster.home,
    stackName,
    program: async () => {
      new strata.Pool("pa", { node: "node-a", disk: diskOf("node-a") });
      new strata.Pool("pb", { node: "node-b", disk: diskOf("node-b") });
      new strata.Volume("huge", { sizeBytes: 1024 * strata.GIB });
    },
  });
  const err = await t.throwsAsync(withVolume.preview());
  t.regex(err!.message, /sizeBytes.*cannot place replica 1 of 1.*node-a\/pa: capacity \d+ B is smaller than the volume.*node-b\/pb/s);
  const replicas = await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }));
  t.deepEqual(replicas.map((r) => r.replicas.length), [0, 0]);
  await poolsOnly.destroy();
  await assertEnginesEmpty(t);
});
