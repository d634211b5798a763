// Replica and nexus uuids are derived from the volume uuid, so a retried create names the same
// objects (engines dedupe by uuid) instead of leaking new ones beside the old.
import test from "ava";
import { checkUuid } from "../../common/validate";
import { everyStep, nexusUuidFor, replicaUuidFor, resourceUuidFor, uuidV5 } from "../../provider/cluster";
import { PlacedReplica, PlacementLedger, PlacementRequest, placeVolume, PoolCandidate } from "../../provider/placement";

const V = "4f0c1d2e-0000-4000-8000-000000000002";
const W = "4f0c1d2e-0000-4000-8000-000000000003";

test("uuidV5 is RFC 9562 version 5 (the RFC's DNS-namespace example)", (t) => {
  t.is(uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "www.example.com"), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
});

test("replica uuids: the same volume and slot always give the same uuid; slots and volumes differ", (t) => {
  t.is(replicaUuidFor(V, 0), replicaUuidFor(V, 0));
  const all = [0, 1, 2, 3, 4].flatMap((slot) => [replicaUuidFor(V, slot), replicaUuidFor(W, slot)]);
  all.push(nexusUuidFor(V), nexusUuidFor(W));
  t.is(new Set(all).size, all.length);
  for (const u of all) t.is(checkUuid(u), null, u);
  t.not(replicaUuidFor(V, 0), V);
});

test("resource uuids derive from project, stack and name, per kind; the namespaces never change (state names these uuids)", (t) => {
  const kinds = ["Pool", "Volume", "Replica", "Nexus", "CsalDevice"] as const;
  const all = kinds.flatMap((k) => [resourceUuidFor(k, "proj", "dev", "a"), resourceUuidFor(k, "proj", "prod", "a"), resourceUuidFor(k, "proj", "dev", "b")]);
  t.is(new Set(all).size, all.length);
  t.is(resourceUuidFor("Volume", "proj", "dev", "a"), resourceUuidFor("Volume", "proj", "dev", "a"));
  // Pinned: a changed namespace would give every existing program's volumes new uuids (a replace).
  t.is(resourceUuidFor("Volume", "proj", "dev", "a"), uuidV5("6f1d3a52-8c1e-4b0e-9d55-0c2f5e3b7a41", "proj/dev/a"));
  t.is(resourceUuidFor("Pool", "proj", "dev", "a"), uuidV5("3c0b9e27-5d4f-4a8e-b1c6-7e2d9f4a0b53", "proj/dev/a"));
  t.is(resourceUuidFor("Replica", "proj", "dev", "a"), uuidV5("2b8e6f0c-5d47-4a51-8f3e-9c1a7d2e4b60", "proj/dev/a"));
  t.is(resourceUuidFor("Nexus", "proj", "dev", "a"), uuidV5("c7a94e13-0f2b-4d86-b5e1-3a6d8f9c0e27", "proj/dev/a"));
  t.is(resourceUuidFor("CsalDevice", "proj", "dev", "a"), uuidV5("9e4b2d71-3c85-4f06-a1d9-5b7e0c3f8a26", "proj/dev/a"));
});

const GiB = 1024 ** 3;
const pool = (node: string): PoolCandidate => ({
  node,
  uuid: `uuid-${node}`,
  name: `pool-${node}`,
  labels: {},
  node_labels: { zone: `zone-${node}` },
  online: true,
  draining: false,
  capacity_bytes: 10 * GiB,
  used_bytes: 0,
  committed_bytes: 0,
  cluster_size_bytes: 4 * 1024 * 1024,
  replica_count: 0,
});
const req: PlacementRequest = {
  volume: V,
  size_bytes: GiB,
  thin: true,
  replicas: 3,
  pool_labels: {},
  pools: [],
  node_selector: {},
  spread: { key: "zone", mode: "preferred" },
  group: "",
};
const placeReplicas = (pools: PoolCandidate[], r: PlacementRequest, existing: PlacedReplica[], slot: (s: number) => string) =>
  placeVolume(new PlacementLedger(pools), r, existing, slot).placement;
const slotUuid = (slot: number) => replicaUuidFor(V, slot);

test("a fresh volume's replicas are slots 0..n-1: placing it again (a retried create) gives the same uuids", (t) => {
  const pools = [pool("a"), pool("b"), pool("c")];
  const first = placeReplicas(pools, req, [], slotUuid);
  t.deepEqual(first.map((r) => r.replicaUuid), [0, 1, 2].map(slotUuid));
  t.deepEqual(placeReplicas(pools, req, [], slotUuid).map((r) => r.replicaUuid), first.map((r) => r.replicaUuid));
});

test("sticky: placed replicas keep node, pool and uuid; a replacement never reuses a uuid in state", (t) => {
  const pools = [pool("a"), pool("b"), pool("c"), pool("d")];
  const placed = placeReplicas(pools, req, [], slotUuid);
  // Node b's pool is gone: its replica is placed anew, under a slot nobody in state has.
  const withoutB = pools.filter((p) => p.node !== "b");
  const again = placeReplicas(withoutB, req, placed, slotUuid);
  t.deepEqual(again.slice(0, 2).map((r) => r.replicaUuid), placed.filter((r) => r.node !== "b").map((r) => r.replicaUuid));
  t.is(again[2].node, "d");
  t.is(again[2].replicaUuid, slotUuid(3));
  t.is(new Set([...placed, ...again].map((r) => r.replicaUuid)).size, 4);
});

test("everyStep runs every step and then throws the first error, naming the others", async (t) => {
  const ran: number[] = [];
  const err = await t.throwsAsync(
    everyStep([
      async () => ran.push(1),
      async () => {
        ran.push(2);
        throw new Error("nexus node down");
      },
      async () => ran.push(3),
      async () => {
        ran.push(4);
        throw new Error("share gone");
      },
    ]),
  );
  t.deepEqual(ran, [1, 2, 3, 4]);
  t.is(err!.message, "nexus node down (and 1 more step failed: share gone)");
  await t.notThrowsAsync(everyStep([async () => undefined]));
});
