// What `pulumi preview` will say for each kind of change: in place or replace.
import test from "ava";
import { PoolOutputs, PoolProvider } from "../../provider/pool";
import { VolumeOutputs, VolumeProvider } from "../../provider/volume";

const pool: PoolOutputs = {
  node: "node-a",
  disk: "file:///d.img",
  name: "p",
  labels: { class: "ssd" },
  clusterSizeBytes: 4 << 20,
  uuid: "4f0c1d2e-0000-4000-8000-000000000001",
  state: "online",
  capacityBytes: 1 << 30,
  usedBytes: 0,
  committedBytes: 0,
  replicaCount: 0,
  drain: false,
};

test("pool: labels update in place; node, disk and name replace (old pool first)", async (t) => {
  const p = new PoolProvider();
  t.deepEqual(await p.diff(pool.uuid, pool, { ...pool }), { changes: false, replaces: [], deleteBeforeReplace: false });
  t.deepEqual(await p.diff(pool.uuid, pool, { ...pool, labels: { class: "hdd" } }), { changes: true, replaces: [], deleteBeforeReplace: false });
  const moved = await p.diff(pool.uuid, pool, { ...pool, disk: "file:///e.img", node: "node-b" });
  t.deepEqual(moved.replaces, ["node", "disk"]);
  t.true(moved.deleteBeforeReplace);
  t.is((await p.diff(pool.uuid, pool, { ...pool, clusterSizeBytes: 0 })).changes, false, "0 means the default, not a change");
});

const volume: VolumeOutputs = {
  uuid: "4f0c1d2e-0000-4000-8000-000000000002",
  sizeBytes: 1 << 30,
  thin: true,
  replicas: 1,
  poolLabels: {},
  pools: [],
  nodeSelector: {},
  topologyKey: "zone",
  topologySpread: "preferred",
  group: "",
  frontendHostNqn: "",
  transport: "tcp",
  replicaTransport: "tcp",
  declaredPools: [],
  planAfter: "",
  placement: [{ replicaUuid: "r", node: "node-a", poolUuid: pool.uuid, pool: "p", reason: "" }],
  leaving: [],
  nexusUuid: "4f0c1d2e-0000-4000-8000-0000000000aa",
  nexusNode: "node-a",
  nexus: null,
  health: "online",
  replicaStatus: [],
  frontendDhchapSecret: "",
  node: "node-a",
  pool: "p",
};

test("volume: every routine change is an update in place, never a replace", async (t) => {
  const v = new VolumeProvider();
  t.false((await v.diff(volume.uuid, volume, { ...volume })).changes);
  const changes: Partial<VolumeOutputs>[] = [
    { sizeBytes: 2 << 30 },
    { thin: false },
    { replicas: 3 },
    { frontendHostNqn: "nqn.2014-08.org.nvmexpress:uuid:0000" },
    { poolLabels: { tier: "fast" } },
    { nodeSelector: { rack: "r1" } },
    { topologySpread: "required" },
    { group: "db" },
    { placement: [{ replicaUuid: "r2", node: "node-b", poolUuid: "", pool: "q", reason: "" }] },
  ];
  for (const change of changes) {
    const d = await v.diff(volume.uuid, volume, { ...volume, ...change });
    t.true(d.changes, JSON.stringify(change));
    t.deepEqual(d.replaces, [], JSON.stringify(change));
  }
  const degraded = await v.diff(volume.uuid, { ...volume, health: "degraded" }, { ...volume });
  t.true(degraded.changes, "a degraded volume is healed by the next up");
  t.deepEqual(degraded.replaces, []);
  t.false((await v.diff(volume.uuid, volume, { ...volume, declaredPools: [{ node: "n", name: "x", disk: "file:///x", labels: {}, clusterSizeBytes: 0, drain: false }] })).changes,
    "declaring another pool in the program is not a change of the volume");
});

test("volume: state written by an older provider (snake_case placement, uuid pools) reads as the same volume", async (t) => {
  const v = new VolumeProvider();
  const old = {
    ...volume,
    pools: [pool.uuid],
    placement: [{ replica_uuid: "r", node: "node-a", pool_uuid: pool.uuid, pool_name: "p" }],
    nodeSelector: undefined,
    topologySpread: undefined,
    group: undefined,
    leaving: undefined,
    nexusNode: undefined,
  } as unknown as VolumeOutputs;
  const news = { ...volume, pools: [{ uuid: pool.uuid, node: "", name: "" }] };
  t.false((await v.diff(volume.uuid, old, news)).changes);
});
