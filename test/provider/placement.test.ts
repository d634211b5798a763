import test from "ava";
import {
  capacityReason,
  isPlacementError,
  PlacementLedger,
  PlacementRequest,
  placeVolume,
  PlacedReplica,
  PoolCandidate,
} from "../../provider/placement";

const GiB = 1024 ** 3;
function pool(node: string, overrides: Partial<PoolCandidate> = {}): PoolCandidate {
  return {
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
    ...overrides,
  };
}
const request = (overrides: Partial<PlacementRequest> = {}): PlacementRequest => ({
  volume: "v1",
  size_bytes: GiB,
  thin: true,
  replicas: 1,
  pool_labels: {},
  pools: [],
  node_selector: {},
  spread: null,
  group: "",
  ...overrides,
});
const slots = (volume: string) => (slot: number) => `${volume}-r${slot}`;
const place = (pools: readonly PoolCandidate[], req: PlacementRequest, existing: readonly PlacedReplica[] = []) =>
  placeVolume(new PlacementLedger(pools), req, existing, slots(req.volume));
const nodes = (rs: readonly PlacedReplica[]) => rs.map((r) => r.node);

/** Three zones, two nodes each: a1 a2 b1 b2 c1 c2. */
const zoned = (overrides: (node: string) => Partial<PoolCandidate> = () => ({})) =>
  ["a1", "a2", "b1", "b2", "c1", "c2"].map((n) => pool(n, { node_labels: { zone: n[0] }, ...overrides(n) }));

test("deterministic: the same inventory (in any order) and requests give the same answers", (t) => {
  const pools = zoned((n) => ({ used_bytes: n.charCodeAt(1) * GiB * 0.1 }));
  const run = (inventory: readonly PoolCandidate[]) => {
    const ledger = new PlacementLedger(inventory);
    return ["v1", "v2", "v3", "v4"].map((v, i) =>
      placeVolume(ledger, request({ volume: v, replicas: 3, thin: i % 2 === 0, spread: { key: "zone", mode: "required" }, group: i < 2 ? "g" : "" }), [], slots(v)),
    );
  };
  const first = run(pools);
  t.deepEqual(run(pools), first);
  t.deepEqual(run([...pools].reverse()), first);
  t.deepEqual(first[0].placement.map((r) => r.replicaUuid), ["v1-r0", "v1-r1", "v1-r2"]);
});

test("a new replica goes to the pool with the fewest replicas, then most free space, then node name", (t) => {
  const { placement } = place([pool("a", { replica_count: 2 }), pool("b", { used_bytes: 5 * GiB }), pool("c"), pool("d")], request());
  t.deepEqual(nodes(placement), ["c"]);
  t.regex(placement[0].reason, /^pool has 0 replicas, 10\.0 GiB free$/);
});

test("sticky: existing replicas stay, in order, even when better pools appear; keeping reserves nothing", (t) => {
  const pools = [pool("a", { replica_count: 9 }), pool("b", { replica_count: 5 }), pool("c"), pool("d")];
  const existing: PlacedReplica[] = [
    { replicaUuid: "x1", node: "b", pool: "pool-b", poolUuid: "uuid-b", reason: "" },
    { replicaUuid: "x0", node: "a", pool: "pool-a", poolUuid: "uuid-a", reason: "" },
  ];
  const ledger = new PlacementLedger(pools);
  const { placement, leaving } = placeVolume(ledger, request({ replicas: 2 }), existing, slots("v1"));
  t.deepEqual(placement.map((r) => [r.replicaUuid, r.node, r.reason]), [["x1", "b", "kept: already placed"], ["x0", "a", "kept: already placed"]]);
  t.deepEqual(leaving, []);
  t.deepEqual(ledger.pools(), new PlacementLedger(pools).pools(), "nothing reserved");
});

test("replicas 2 -> 3: the existing two stay, the third takes the lowest free slot", (t) => {
  const existing: PlacedReplica[] = [
    { replicaUuid: "v1-r0", node: "a", pool: "pool-a", poolUuid: "uuid-a", reason: "" },
    { replicaUuid: "v1-r2", node: "b", pool: "pool-b", poolUuid: "uuid-b", reason: "" },
  ];
  const { placement } = place([pool("a"), pool("b"), pool("c")], request({ replicas: 3 }), existing);
  t.deepEqual(placement.map((r) => r.replicaUuid), ["v1-r0", "v1-r2", "v1-r1"]);
  t.is(placement[2].node, "c");
});

test("reservations: 10 new volumes spread over the pools instead of stacking on the emptiest", (t) => {
  const pools = [pool("a"), pool("b", { used_bytes: GiB }), pool("c", { used_bytes: 2 * GiB }), pool("d", { replica_count: 1 })];
  const ledger = new PlacementLedger(pools);
  const perPool = new Map<string, number>();
  for (let i = 0; i < 10; i++) {
    const { placement } = placeVolume(ledger, request({ volume: `v${i}`, thin: i % 2 === 0 }), [], slots(`v${i}`));
    perPool.set(placement[0].node, (perPool.get(placement[0].node) ?? 0) + 1);
  }
  t.is(perPool.size, 4, "all four pools used");
  t.true(Math.max(...perPool.values()) <= 3, JSON.stringify([...perPool]));
  // The ledger counts what it reserved: 10 replicas on top of the one d already had.
  const after = ledger.pools();
  t.is(after.reduce((n, p) => n + p.replica_count, 0), 11);
  t.is(after.reduce((n, p) => n + p.committed_bytes, 0), 10 * GiB);
  t.is(after.reduce((n, p) => n + p.used_bytes, 0), 3 * GiB + 5 * GiB, "thick replicas reserve their clusters");
});

test("reservations: 6 three-replica volumes over 5 pools fill them evenly", (t) => {
  const pools = ["a", "b", "c", "d", "e"].map((n) => pool(n));
  const ledger = new PlacementLedger(pools);
  for (let i = 0; i < 5; i++) placeVolume(ledger, request({ volume: `v${i}`, replicas: 3 }), [], slots(`v${i}`));
  t.deepEqual(ledger.pools().map((p) => p.replica_count), [3, 3, 3, 3, 3]);
});

test("declared but not created pools (uuid \"\") are placeable, by node and name", (t) => {
  const pools = [pool("a", { uuid: "" }), pool("b", { uuid: "", replica_count: 0 }), pool("c", { replica_count: 4 })];
  const ledger = new PlacementLedger(pools);
  const first = placeVolume(ledger, request({ replicas: 2, pools: [{ node: "a", name: "pool-a" }, { node: "b", name: "pool-b" }] }), [], slots("v1"));
  t.deepEqual(first.placement.map((r) => [r.node, r.pool, r.poolUuid]), [["a", "pool-a", ""], ["b", "pool-b", ""]]);
  // Placed again before the pools exist, the replicas cannot exist either: keeping them reserves them.
  const again = placeVolume(new PlacementLedger(pools), request({ replicas: 2 }), first.placement, slots("v1"));
  t.deepEqual(again.placement.map((r) => r.replicaUuid), ["v1-r0", "v1-r1"]);
  // Once created, the kept replicas pick up the pools' uuids.
  const created = pools.map((p) => (p.uuid === "" ? { ...p, uuid: `uuid-${p.node}`, replica_count: 1 } : p));
  const later = placeVolume(new PlacementLedger(created), request({ replicas: 2 }), first.placement, slots("v1"));
  t.deepEqual(later.placement.map((r) => r.poolUuid), ["uuid-a", "uuid-b"]);
  t.deepEqual(later.leaving, []);
});

test("a draining pool takes no new replicas and its replicas move, with the reason", (t) => {
  const pools = [pool("a"), pool("b", { draining: true }), pool("c", { replica_count: 3 })];
  t.deepEqual(nodes(place(pools, request({ replicas: 2 })).placement), ["a", "c"]);
  const existing: PlacedReplica[] = [
    { replicaUuid: "v1-r0", node: "b", pool: "pool-b", poolUuid: "uuid-b", reason: "" },
    { replicaUuid: "v1-r1", node: "a", pool: "pool-a", poolUuid: "uuid-a", reason: "" },
  ];
  const { placement, leaving } = place(pools, request({ replicas: 2 }), existing);
  t.deepEqual(placement.map((r) => [r.replicaUuid, r.node]), [["v1-r1", "a"], ["v1-r2", "c"]], "the kept one becomes first");
  t.regex(placement[1].reason, /^replaces v1-r0 \(pool b\/pool-b is draining\); pool has 3 replicas/);
  t.deepEqual(leaving.map((r) => [r.replicaUuid, r.reason]), [["v1-r0", "pool b/pool-b is draining"]]);
});

test("a replica that must move but has nowhere to go stays, saying why", (t) => {
  const pools = [pool("a"), pool("b", { draining: true })];
  const existing: PlacedReplica[] = [
    { replicaUuid: "v1-r0", node: "a", pool: "pool-a", poolUuid: "uuid-a", reason: "" },
    { replicaUuid: "v1-r1", node: "b", pool: "pool-b", poolUuid: "uuid-b", reason: "" },
  ];
  const { placement, leaving } = place(pools, request({ replicas: 2 }), existing);
  t.deepEqual(placement.map((r) => r.replicaUuid), ["v1-r0", "v1-r1"]);
  t.regex(placement[1].reason, /^kept although pool b\/pool-b is draining: no replacement could be placed \(cannot place replica 2 of 2 .*a\/pool-a: node already holds a replica of this volume; b\/pool-b: pool is draining/);
  t.deepEqual(leaving, []);
});

test("a selector change moves replicas that no longer match (pool labels, pools, node selector)", (t) => {
  const pools = [pool("a", { labels: { tier: "fast" } }), pool("b", { labels: { tier: "slow" } }), pool("c", { labels: { tier: "fast" }, node_labels: { zone: "x", rack: "r2" } })];
  const existing: PlacedReplica[] = [{ replicaUuid: "v1-r0", node: "b", pool: "pool-b", poolUuid: "uuid-b", reason: "" }];
  const byLabel = place(pools, request({ pool_labels: { tier: "fast" } }), existing);
  t.deepEqual(nodes(byLabel.placement), ["a"]);
  t.is(byLabel.placement[0].replicaUuid, "v1-r1");
  t.deepEqual(byLabel.leaving.map((r) => r.reason), ["label tier=fast no longer matches (tier=slow) on pool b/pool-b"]);

  const byPools = place(pools, request({ pools: [{ node: "c", name: "pool-c" }] }), existing);
  t.deepEqual(nodes(byPools.placement), ["c"]);
  t.deepEqual(byPools.leaving.map((r) => r.reason), ["pool b/pool-b is no longer in the volume's pools"]);

  const bySelector = place(pools, request({ node_selector: { rack: "r2" } }), existing);
  t.deepEqual(nodes(bySelector.placement), ["c"]);
  t.deepEqual(bySelector.leaving.map((r) => r.reason), ["node label rack=r2 no longer matches (rack=unset) on pool b/pool-b"]);
});

test("a replica whose pool is gone is replaced under a new slot", (t) => {
  const existing: PlacedReplica[] = [
    { replicaUuid: "v1-r0", node: "a", pool: "pool-a", poolUuid: "uuid-a", reason: "" },
    { replicaUuid: "v1-r1", node: "b", pool: "pool-b", poolUuid: "uuid-b-old", reason: "" },
  ];
  const { placement, leaving } = place([pool("a"), pool("b"), pool("c", { replica_count: 1 })], request({ replicas: 2 }), existing);
  t.deepEqual(placement.map((r) => [r.replicaUuid, r.node]), [["v1-r0", "a"], ["v1-r2", "b"]]);
  t.deepEqual(leaving.map((r) => r.reason), ["pool b/pool-b no longer exists"]);
});

test("shrink: mismatching replicas leave first, then the ones placed last; the first stays", (t) => {
  const pools = ["a", "b", "c", "d"].map((n) => pool(n, n === "c" ? { draining: true } : {}));
  const existing: PlacedReplica[] = ["a", "b", "c", "d"].map((n, i) => ({ replicaUuid: `v1-r${i}`, node: n, pool: `pool-${n}`, poolUuid: `uuid-${n}`, reason: "" }));
  const three = place(pools, request({ replicas: 3 }), existing);
  t.deepEqual(nodes(three.placement), ["a", "b", "d"]);
  t.deepEqual(three.leaving.map((r) => [r.node, r.reason]), [["c", "pool c/pool-c is draining"]]);
  const one = place(pools, request({ replicas: 1 }), existing);
  t.deepEqual(nodes(one.placement), ["a"]);
  t.deepEqual(one.leaving.map((r) => [r.node, r.reason]), [
    ["b", "replicas decreased to 1: this one was placed last"],
    ["d", "replicas decreased to 1: this one was placed last"],
    ["c", "pool c/pool-c is draining"],
  ]);
});

test("spread required: distinct zones or a failure naming why; preferred: best effort", (t) => {
  const pools = zoned();
  const placed = place(pools, request({ replicas: 3, spread: { key: "zone", mode: "required" } })).placement;
  t.deepEqual(placed.map((r) => r.node), ["a1", "b1", "c1"]);
  t.regex(placed[1].reason, /^zone=b holds no replica of this volume; pool has 0 replicas, 10\.0 GiB free$/);

  const err = t.throws(() => place(pools, request({ replicas: 4, spread: { key: "zone", mode: "required" } })));
  t.true(isPlacementError(err));
  t.regex(err!.message, /cannot place replica 4 of 4 of volume v1/);
  t.regex(err!.message, /a2\/pool-a2: zone=a already holds a replica of this volume \(spread required\)/);
  t.regex(err!.message, /a1\/pool-a1: node already holds a replica of this volume/);

  const preferred = place(pools, request({ replicas: 4, spread: { key: "zone", mode: "preferred" } })).placement;
  t.deepEqual(nodes(preferred), ["a1", "b1", "c1", "a2"]);
  t.regex(preferred[3].reason, /^zone=a holds fewest replicas of this volume \(1\)/);

  // Required: a node without the label cannot prove it is in another zone.
  const unlabeled = [...pools.slice(0, 2), pool("z", { node_labels: {} })];
  t.throws(() => place(unlabeled, request({ replicas: 2, spread: { key: "zone", mode: "required" } })), { message: /z\/pool-z: node has no label zone/ });
  t.deepEqual(nodes(place(unlabeled, request({ replicas: 2, spread: { key: "zone", mode: "preferred" } })).placement), ["a1", "z"]);
});

test("group anti-affinity: volumes of one group never share a node; other volumes may", (t) => {
  const pools = ["a", "b", "c", "d"].map((n) => pool(n));
  const ledger = new PlacementLedger(pools);
  const v1 = placeVolume(ledger, request({ volume: "v1", replicas: 2, group: "db" }), [], slots("v1"));
  const v2 = placeVolume(ledger, request({ volume: "v2", replicas: 2, group: "db" }), [], slots("v2"));
  t.deepEqual([...nodes(v1.placement), ...nodes(v2.placement)].sort(), ["a", "b", "c", "d"]);
  t.regex(v2.placement[0].reason, /no other volume of group db on node/);
  const err = t.throws(() => placeVolume(ledger, request({ volume: "v3", replicas: 1, group: "db" }), [], slots("v3")));
  t.regex(err!.message, /a\/pool-a: node holds a replica of volume v1 of group db/);
  t.regex(err!.message, /c\/pool-c: node holds a replica of volume v2 of group db/);
  t.is(placeVolume(ledger, request({ volume: "v4", replicas: 2, group: "other" }), [], slots("v4")).placement.length, 2);
  // Placing a volume again (its own replicas) is no conflict.
  t.deepEqual(placeVolume(ledger, request({ volume: "v1", replicas: 2, group: "db" }), v1.placement, slots("v1")).placement.map((r) => r.node), nodes(v1.placement));

  // Volumes already placed can be announced first, so earlier volumes in the plan avoid them.
  const announced = new PlacementLedger(pools);
  announced.noteGroupMembers("db", "old", ["a", "b"]);
  t.deepEqual(nodes(placeVolume(announced, request({ volume: "new", replicas: 2, group: "db" }), [], slots("new")).placement), ["c", "d"]);
});

test("node selector: only nodes whose labels include all of it", (t) => {
  const pools = [pool("a", { node_labels: { zone: "a", disk: "nvme" } }), pool("b", { node_labels: { zone: "b", disk: "sata" } }), pool("c", { node_labels: { zone: "c", disk: "nvme" } })];
  t.deepEqual(nodes(place(pools, request({ replicas: 2, node_selector: { disk: "nvme" } })).placement), ["a", "c"]);
  const err = t.throws(() => place(pools, request({ replicas: 3, node_selector: { disk: "nvme" } })));
  t.regex(err!.message, /b\/pool-b: node label disk=nvme does not match \(disk=sata\)/);
});

test("errors name each pool's reason, and summarize by kind when there are many", (t) => {
  const err = t.throws(() => place([pool("a"), pool("b", { online: false }), pool("c", { labels: { class: "hdd" } })], request({ size_bytes: 100 * GiB, pool_labels: {} })));
  t.true(isPlacementError(err));
  t.regex(err!.message, /a\/pool-a: capacity 10\.0 GiB is smaller than the volume/);
  t.regex(err!.message, /b\/pool-b: pool is not online/);
  t.regex(place([pool("a")], request()).placement[0].reason, /pool has 0 replicas/);
  t.throws(() => place([], request()), { message: /no pools exist on the configured nodes/ });

  const many = Array.from({ length: 500 }, (_, i) => pool(`n${String(i).padStart(3, "0")}`, i % 5 === 0 ? { online: false } : { used_bytes: 10 * GiB }));
  const big = t.throws(() => place(many, request({ thin: false })));
  t.regex(big!.message, /400 pools: not enough space \(e\.g\. n001\/pool-n001: only 0 B free, a thick replica needs 1\.0 GiB; .*; \.\.\.\)/);
  t.true(big!.message.length < 1000, `${big!.message.length} characters`);
  const labeled = t.throws(() => place(many, request({ pool_labels: { class: "ssd" } })));
  t.regex(labeled!.message, /^cannot place replica 1 of 1 of volume v1 \(1\.0 GiB, thin\): 400 pools: label class=ssd does not match \(e\.g\. n001\/pool-n001: label class=ssd does not match \(class=unset\); .*\) \| 100 pools: not online \(e\.g\. n000\/pool-n000: pool is not online; n005/);
});

test("thin over-commit limit and thick free space, counting reservations", (t) => {
  t.is(capacityReason(pool("a", { used_bytes: 9.5 * GiB }), GiB, true), null);
  t.regex(capacityReason(pool("a", { used_bytes: 9.5 * GiB }), GiB, false)!, /only 512\.0 MiB free, a thick replica needs 1\.0 GiB/);
  t.regex(capacityReason(pool("a", { committed_bytes: 19.5 * GiB }), GiB, true)!, /thin over-commit limit reached \(19\.5 GiB committed of 20\.0 GiB allowed\)/);

  // A 10 GiB pool takes 20 GiB of thin replicas (factor 2), then refuses.
  const ledger = new PlacementLedger([pool("a")]);
  for (let i = 0; i < 4; i++) placeVolume(ledger, request({ volume: `t${i}`, size_bytes: 5 * GiB }), [], slots(`t${i}`));
  t.throws(() => placeVolume(ledger, request({ volume: "t4", size_bytes: GiB }), [], slots("t4")), { message: /thin over-commit limit reached/ });
  // Thick: two 4 GiB replicas fit in 10 GiB, a third does not.
  const thick = new PlacementLedger([pool("a")]);
  placeVolume(thick, request({ volume: "k0", size_bytes: 4 * GiB, thin: false }), [], slots("k0"));
  placeVolume(thick, request({ volume: "k1", size_bytes: 4 * GiB, thin: false }), [], slots("k1"));
  t.throws(() => placeVolume(thick, request({ volume: "k2", size_bytes: 4 * GiB, thin: false }), [], slots("k2")), { message: /only 2\.0 GiB free/ });
});

