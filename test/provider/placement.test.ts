import test from "ava";
import { isPlacementError, placeReplicas, PoolCandidate, PlacementRequest, rejectReason } from "../../provider/placement";

const GiB = 1024 ** 3;
function pool(node: string, overrides: Partial<PoolCandidate> = {}): PoolCandidate {
  return {
    node,
    uuid: `uuid-${node}`,
    name: `pool-${node}`,
    labels: {},
    node_labels: { zone: `zone-${node}` },
    online: true,
    capacity_bytes: 10 * GiB,
    used_bytes: 0,
    committed_bytes: 0,
    cluster_size_bytes: 4 * 1024 * 1024,
    replica_count: 0,
    ...overrides,
  };
}
const request = (overrides: Partial<PlacementRequest> = {}): PlacementRequest => ({
  size_bytes: GiB,
  thin: true,
  replicas: 1,
  pool_labels: {},
  pool_uuids: [],
  topology_key: "zone",
  ...overrides,
});
let counter = 0;
const uuid = () => `r-${++counter}`;

test("places on the pool with the fewest replicas, then most free space, deterministically", (t) => {
  const pools = [pool("a", { replica_count: 2 }), pool("b", { used_bytes: 5 * GiB }), pool("c")];
  const placed = placeReplicas(pools, request(), [], uuid);
  t.is(placed.length, 1);
  t.is(placed[0].node, "c");
  t.deepEqual(placeReplicas([...pools].reverse(), request(), [], uuid)[0].pool_uuid, "uuid-c");
});

test("existing placement is sticky even when a better pool appears", (t) => {
  const existing = [{ replica_uuid: "r-old", node: "a", pool_uuid: "uuid-a", pool_name: "pool-a" }];
  const placed = placeReplicas([pool("a", { replica_count: 9 }), pool("b")], request(), existing, uuid);
  t.deepEqual(placed, existing);
});

test("replicas spread over nodes and zones", (t) => {
  const pools = [pool("a"), pool("b", { node_labels: { zone: "zone-a" } }), pool("c")];
  const placed = placeReplicas(pools, request({ replicas: 2 }), [], uuid);
  t.deepEqual(placed.map((p) => p.node).sort(), ["a", "c"]);
});

test("a volume larger than every pool fails and says why for each pool", (t) => {
  const err = t.throws(() => placeReplicas([pool("a"), pool("b")], request({ size_bytes: 100 * GiB }), [], uuid));
  t.true(isPlacementError(err));
  t.regex(err!.message, /a\/pool-a: capacity .* smaller than the volume/);
  t.regex(err!.message, /b\/pool-b: capacity/);
});

test("thick replicas need free clusters; thin ones respect the over-commit limit", (t) => {
  t.regex(rejectReason(pool("a", { used_bytes: 9.5 * GiB }), request({ thin: false }))!, /free/);
  t.is(rejectReason(pool("a", { used_bytes: 9.5 * GiB }), request({ thin: true })), null);
  t.regex(rejectReason(pool("a", { committed_bytes: 19.5 * GiB }), request({ thin: true }))!, /over-commit/);
});

test("label and pool filters", (t) => {
  t.regex(rejectReason(pool("a", { labels: { class: "hdd" } }), request({ pool_labels: { class: "ssd" } }))!, /class=ssd/);
  t.regex(rejectReason(pool("a"), request({ pool_uuids: ["uuid-b"] }))!, /not in the volume's pools/);
  t.regex(rejectReason(pool("a", { online: false }), request())!, /not online/);
});
