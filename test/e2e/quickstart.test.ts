// The quickstart as a user runs it: a local cluster, `strata up` (the real Pulumi CLI with a
// local backend), then the changes a user makes over a volume's life. Every step is checked
// through the engines' gRPC API, not only through exit codes.
import test from "ava";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { NEXUS_LABEL_REGION_BYTES } from "../../common/nexus-rules";
import { startCluster, TestCluster } from "../helpers/cluster";

const GiB = 1024 ** 3;
/** Every volume is a nexus: its replicas also hold the 1 MiB label region. */
const LABEL = NEXUS_LABEL_REGION_BYTES;
let cluster: TestCluster;

test.before(async () => {
  cluster = await startCluster({ nodes: 3, diskMib: 4096 });
});
test.after.always(async () => {
  await cluster?.down();
});

function allFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? allFiles(path) : [path];
  });
}

async function allReplicas() {
  return (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
}

async function volumeOutputs(name = "quickstart"): Promise<Record<string, unknown>> {
  const exported = await cluster.pulumi("stack", "export", "--show-secrets");
  const state = JSON.parse(exported.stdout) as { deployment: { resources: { type: string; urn: string; outputs: Record<string, unknown> }[] } };
  return state.deployment.resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume" && r.urn.endsWith(`::${name}`))!.outputs;
}

let replicatedUuids: string[] = [];
/** The replicas of the single-replica "quickstart" volume (the replicated and tiered volumes' are set apart). */
async function replicas() {
  return (await allReplicas()).filter((r) => !replicatedUuids.includes(r.uuid) && r.pool_name !== "pool-tier");
}

test.serial("cluster status shows three running nodes", async (t) => {
  const status = await cluster.strata("cluster", "status");
  t.is(status.code, 0, status.stderr);
  const rows = status.stdout.trim().split("\n");
  t.regex(rows[0], /NODE\s+ENDPOINT\s+NVMF\s+RDMA\s+ZONE\s+LABELS\s+STATE\s+POOLS\s+USED\/CAPACITY\s+REPLICAS/);
  t.is(rows.filter((r) => /running/.test(r)).length, 3);
  for (const [i, node] of cluster.nodes.entries()) {
    // Each node serves NVMe/TCP on its gRPC port + 1000 (cli/cluster.ts).
    const grpcPort = Number(node.endpoint.split(":")[1]);
    // No --rdma-interface: RDMA "-" (not asked for); then the node's zone and its other labels.
    t.regex(rows[i + 1], new RegExp(`^${node.node}\\s+${node.endpoint}\\s+127\\.0\\.0\\.1:${grpcPort + 1000}\\s+-\\s+\\S+\\s+\\S+\\s+running`));
  }
});

test.serial("preview prints every replica it will place, as markdown for a pull request and as JSON", async (t) => {
  const bad = await cluster.strata("preview", "--format", "yaml");
  t.is(bad.code, 2);
  t.regex(bad.stderr, /unknown format "yaml"/);
  const badFlag = await cluster.strata("preview", "--colour");
  t.is(badFlag.code, 2);
  t.regex(badFlag.stderr, /unknown flag "--colour"/);

  const json = await cluster.strata("preview", "--json");
  t.is(json.code, 0, json.stderr);
  // Nothing but the object on stdout (Pulumi's own preview went to stderr).
  const plan = JSON.parse(json.stdout) as {
    volumes: { name: string; uuid: string; replicas: { replicaUuid: string; before: null; after: { node: string; pool: string }; reason: string; copyBytes: number; change: string }[] }[];
    summary: { placed: number; moving: number; leaving: number; copyBytes: number };
  };
  t.deepEqual(plan.volumes.map((v) => [v.name, v.replicas.length]), [["quickstart", 1], ["replicated", 3], ["tiered", 1]]);
  for (const v of plan.volumes)
    for (const r of v.replicas) {
      t.like(r, { change: "new", before: null, copyBytes: v.name === "quickstart" ? GiB : 256 * 1024 * 1024 });
      // The tiered volume lands on the pool on the CSAL device, known before either exists.
      t.regex(`${r.after.node}/${r.after.pool}`, v.name === "tiered" ? /^node-a\/pool-tier$/ : /^node-[abc]\/pool-node-[abc]$/);
      t.true(r.reason.length > 0);
    }
  t.like(plan.summary, { placed: 5, moving: 0, leaving: 0, copyBytes: GiB + 4 * 256 * 1024 * 1024 });

  const md = await cluster.strata("preview", "--format", "markdown");
  t.is(md.code, 0, md.stderr);
  t.regex(md.stderr, /Previewing update/, "Pulumi's own preview is still shown");
  t.regex(md.stdout, /^#+ .+\n\n\| VOLUME \| REPLICA \| BEFORE \| AFTER \| REASON \| COPY \|\n\| --- \| --- \| --- \| --- \| --- \| --- \|\n/);
  // The same plan both times (placement is deterministic): every replica's row, with node/pool and reason.
  for (const v of plan.volumes)
    for (const r of v.replicas) {
      const row = md.stdout.split("\n").find((l) => l.includes(r.replicaUuid.slice(0, 8)));
      t.truthy(row, `${v.name} ${r.replicaUuid} has a row`);
      const cells = row!.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
      t.deepEqual(cells.slice(0, 4), [v.name, `\`${r.replicaUuid.slice(0, 8)}\``, "-", `${r.after.node}/${r.after.pool}`]);
      t.is(cells[4], r.reason.replace(/\|/g, "\\|"));
      t.is(cells[5], v.name === "quickstart" ? "1 GiB" : "256 MiB");
    }
  t.regex(md.stdout, /5 replicas placed, 0 moving, 0 leaving, 2(\.0)? GiB to copy/);

  const table = await cluster.strata("preview");
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, /Previewing update[\s\S]*VOLUME\s+REPLICA\s+BEFORE\s+AFTER\s+REASON\s+COPY\n(.*\n){5}\n5 replicas placed/);
  t.regex(table.stdout, /\+ pulumi-nodejs:dynamic\/strata:CsalDevice: \(create\)\s+\[urn=[^\]]*::tier\]/, "the preview shows the CSAL device");
});

test.serial("up creates a pool on each node, one volume and one replicated volume, and prints where they are", async (t) => {
  const up = await cluster.strata("up");
  t.is(up.code, 0, up.stdout + up.stderr);
  t.regex(up.stdout, /volumeUuid: "[0-9a-f-]{36}"/);
  const node = /volumeNode: "(node-[a-c])"/.exec(up.stdout)?.[1];
  t.truthy(node);
  const all_pools = (await cluster.eachNode((e) => e.call("ListPools", {}))).map((r) => r.pools);
  t.deepEqual(all_pools.map((p) => p.length), [2, 1, 1], "a file pool on each node, and the tier pool on node-a");
  const pools = all_pools.map((p) => p.filter((x) => x.name !== "pool-tier"));
  for (const [i, p] of pools.entries()) {
    t.is(p[0].name, `pool-node-${"abc".charAt(i)}`);
    t.is(p[0].state, "POOL_STATE_ONLINE");
    t.deepEqual(p[0].labels, { class: "file" });
  }
  const replicated = await volumeOutputs("replicated");
  replicatedUuids = (replicated.placement as { replicaUuid: string }[]).map((p) => p.replicaUuid);
  const all = await replicas();
  t.is(all.length, 1);
  t.is(all[0].size_bytes, GiB + LABEL);
  t.is(all[0].node, node ?? "");
  t.true(all[0].thin);

  // The replicated volume: three replicas on three nodes, a nexus online and published.
  t.is(replicated.health, "online");
  t.deepEqual(new Set((replicated.placement as { node: string }[]).map((p) => p.node)).size, 3);
  t.is((await allReplicas()).length, 5);
  // The CSAL device on node-a, formatted once, with the tier pool on it holding the tiered volume's replica.
  const tierPool = all_pools[0].find((x) => x.name === "pool-tier")!;
  t.is(tierPool.state, "POOL_STATE_ONLINE");
  const [csal] = (await cluster.connect("node-a").call("ListCsalDevices", {})).devices;
  t.like(csal, { name: "tier", in_use_by: tierPool.uuid, uri: tierPool.device_uri, overprovision_percent: 20, band_mib: 16, map_memory_limit_bytes: 1024 * 1024 });
  t.is(Number(csal.stats!.map_limit_bytes), 1024 * 1024, "the open FTL pages its map below the declared limit");
  t.regex(up.stdout, /tierUri: "ftl:\/\/\?cache=/);
  t.is((await allReplicas()).filter((r) => r.pool_name === "pool-tier").length, 1);
  const status = await cluster.strata("cluster", "status");
  t.regex(status.stdout, /CSAL DEVICE\s+NODE\s+SIZE\s+POOL\s+HOST WRITTEN\s+WAF\s+CACHE FILL\s+FREE BANDS\s+GC MOVED\s+THROTTLED\s+MAP RESIDENT\n(tier)\s+node-a\s+\S+ \S+\s+pool-tier\s/);
  t.regex(status.stdout, /\(limit 1(\.0)? MiB\)/, "the map column shows the declared limit");
  t.regex(
    up.stdout,
    /replicatedConnect: "nvme connect -t tcp -a 127\.0\.0\.1 -s \d+ -n nqn\.2026-11\.io\.strata:nexus:[0-9a-f-]{36} --hostnqn nqn\.2026-11\.io\.strata:frontend:quickstart --dhchap-secret \\"\$\(npx strata output replicatedDhchapSecret\)\\""/,
  );
  t.regex(up.stdout, /replicatedDhchapSecret: \[secret\]/, "the frontend's secret is not printed by up");
  const secret = await cluster.strata("output", "replicatedDhchapSecret");
  t.is(secret.code, 0, secret.stderr);
  t.regex(secret.stdout.trim(), /^DHHC-1:00:[A-Za-z0-9+/]{48}:$/, "strata output shows the secret, ready for nvme connect");
  const nexuses = (await cluster.eachNode((e) => e.call("ListNexus", {}))).flatMap((r) => r.nexuses);
  t.is(nexuses.length, 3, "every volume is a nexus");
  const three = nexuses.find((n) => n.children.length === 3)!;
  t.deepEqual(three.children.map((c) => c.state), ["online", "online", "online"]);
});

test.serial("the token is never stored in plain text in the state", (t) => {
  const token = readFileSync(join(cluster.home, "cluster", "token"), "utf8").trim();
  const files = allFiles(join(cluster.home, "pulumi-state"));
  t.true(files.length > 0);
  for (const file of files) t.false(readFileSync(file).includes(token), `${file} holds the token`);
});

test.serial("preview and a second up report no changes", async (t) => {
  const preview = await cluster.strata("preview");
  t.is(preview.code, 0, preview.stdout + preview.stderr);
  t.regex(preview.stdout, /No changes/);
  const again = await cluster.strata("up");
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /No changes: the cluster already matches the program/);
  t.is((await replicas()).length, 1);
});

test.serial("growing the volume updates it in place, keeping the replica", async (t) => {
  const [before] = await replicas();
  const set = await cluster.pulumi("config", "set", "volumeSizeBytes", String(2 * GiB));
  t.is(set.code, 0, set.stderr);
  const preview = await cluster.strata("preview");
  t.regex(preview.stdout, /~ pulumi-nodejs:dynamic\/strata:Volume: \(update\)/);
  t.regex(preview.stdout, /~ sizeBytes\s*: 1073741824 => 2147483648/);
  t.regex(preview.stdout, /~ 1 to update/);
  t.notRegex(preview.stdout, /replace/);
  const up = await cluster.strata("up");
  t.is(up.code, 0, up.stdout + up.stderr);
  const [after] = await replicas();
  t.is(after.uuid, before.uuid);
  t.is(after.size_bytes, 2 * GiB + LABEL);
});

test.serial("the only replica of a volume cannot be deleted behind Pulumi's back while its nexus serves it; refresh still finds it online", async (t) => {
  const [victim] = await replicas();
  const engine = cluster.connect(victim.node);
  t.teardown(() => engine.close());
  const refused = await t.throwsAsync(engine.call("DestroyReplica", { uuid: victim.uuid }));
  t.regex(refused!.message, /is a child of nexus .*remove the child or destroy the nexus first/);
  t.is((await replicas()).length, 1);

  const refresh = await cluster.strata("refresh");
  t.is(refresh.code, 0, refresh.stdout + refresh.stderr);
  const outputs = await volumeOutputs();
  t.is(outputs.health, "online");
  t.is((outputs.replicaStatus as { state: string }[])[0].state, "online");
});

test.serial("destroy leaves the engines empty", async (t) => {
  const destroy = await cluster.strata("destroy");
  t.is(destroy.code, 0, destroy.stdout + destroy.stderr);
  const pools = await cluster.eachNode((e) => e.call("ListPools", {}));
  t.deepEqual(pools.map((p) => p.pools.length), [0, 0, 0]);
  t.is((await allReplicas()).length, 0);
  t.deepEqual((await cluster.eachNode((e) => e.call("ListNexus", {}))).flatMap((r) => r.nexuses), []);
  t.deepEqual((await cluster.eachNode((e) => e.call("ListSubsystems", {}))).flatMap((r) => r.subsystems), []);
  t.deepEqual((await cluster.eachNode((e) => e.call("ListCsalDevices", {}))).flatMap((r) => r.devices), []);
});
