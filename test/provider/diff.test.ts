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
  topologyKey: "zone",
  frontendHostNqn: "",
  placement: [{ replica_uuid: "r", node: "node-a", pool_uuid: pool.uuid, pool_name: "p" }],
  nexusUuid: "",
  nexus: null,
  health: "online",
  replicaStatus: [],
  frontendDhchapSecret: "",
  node: "node-a",
  pool: "p",
};

test("volume: growth updates in place, thin replaces, a missing replica is an update", async (t) => {
  const v = new VolumeProvider();
  t.false((await v.diff(volume.uuid, volume, { ...volume })).changes);
  const grown = await v.diff(volume.uuid, volume, { ...volume, sizeBytes: 2 << 30 });
  t.true(grown.changes);
  t.deepEqual(grown.replaces, []);
  t.deepEqual((await v.diff(volume.uuid, volume, { ...volume, thin: false })).replaces, ["thin"]);
  const degraded = await v.diff(volume.uuid, { ...volume, health: "degraded" }, { ...volume });
  t.true(degraded.changes);
  t.deepEqual(degraded.replaces, []);
});

test("volume: check refuses shrinking and bad values, naming the property", async (t) => {
  const v = new VolumeProvider();
  const shrink = await v.check({ ...volume }, { ...volume, sizeBytes: 1 << 20 });
  t.true(shrink.failures!.some((f) => f.property === "sizeBytes" && /cannot shrink/.test(f.reason)));
  const bad = await v.check({}, { sizeBytes: 4096, replicas: 6, thin: "yes" as unknown as boolean });
  const props = bad.failures!.map((f) => f.property);
  t.true(props.includes("replicas"));
  t.true(props.includes("thin"));
  const unpublishable = await v.check({}, { sizeBytes: 4096, replicas: 1, frontendHostNqn: "nqn.2014-08.org.nvmexpress:uuid:0000" });
  t.true(unpublishable.failures!.some((f) => f.property === "frontendHostNqn" && /replicated volumes/.test(f.reason)));
  const badNqn = await v.check({}, { sizeBytes: 4096, replicas: 3, frontendHostNqn: "host-a" });
  t.true(badNqn.failures!.some((f) => f.property === "frontendHostNqn" && /must start with "nqn\."/.test(f.reason)));
  const replicated: VolumeOutputs = { ...volume, replicas: 3, nexusUuid: "4f0c1d2e-0000-4000-8000-0000000000aa" };
  const grow = await v.check({ ...replicated }, { ...replicated, sizeBytes: 2 << 30 });
  t.true(grow.failures!.some((f) => f.property === "sizeBytes" && /cannot be resized/.test(f.reason)));
});

test("volume: the replica count replaces; a new frontend updates in place", async (t) => {
  const v = new VolumeProvider();
  t.deepEqual((await v.diff(volume.uuid, volume, { ...volume, replicas: 3 })).replaces, ["replicas"]);
  const three: VolumeOutputs = { ...volume, replicas: 3, nexusUuid: "4f0c1d2e-0000-4000-8000-0000000000aa" };
  const republished = await v.diff(volume.uuid, three, { ...three, frontendHostNqn: "nqn.2014-08.org.nvmexpress:uuid:0000" });
  t.true(republished.changes);
  t.deepEqual(republished.replaces, []);
});
