// The placement plan of one deployment. Every volume's `check` runs in the one dynamic-provider
// process of a `pulumi preview` or `pulumi up`, in the order the program declares them. The plan
// reads the cluster's inventory once, at the first volume, and every placement after that sees
// the reservations of the ones before: ten new volumes spread out instead of stacking on the
// emptiest pool, and a preview and an `up` of the same program on the same cluster compute the
// same answer (same inventory, same order), whatever the `up` creates meanwhile.
import { csalSizeBytes, parseFtlUri } from "../common/csal-rules";
import type { ClusterConfig } from "./connection";
import { CALL_DEADLINE_MS, inventory, Inventory, onNode, REPLICA_SLOTS } from "./cluster";
import { PlacementLedger, PlacementRequest, PlacedReplica, PoolCandidate, placeVolume, VolumePlacement } from "./placement";
import type { DeclaredPool } from "./volume-spec";

interface Entry {
  readonly key: string;
  readonly req: PlacementRequest;
  readonly existing: readonly PlacedReplica[];
  readonly uuidForSlot: (slot: number) => string;
  result: VolumePlacement | Error;
}

interface Plan {
  readonly cluster: string;
  readonly inventory: Promise<Inventory>;
  readonly declared: Map<string, DeclaredPool>;
  readonly entries: Map<string, Entry>;
  ledger: PlacementLedger | null;
}

/**
 * Kept on globalThis: Pulumi serializes the provider (and this module's functions) into state
 * and each resource's copy is its own closure; the plan must be one per process. A string key:
 * the closure serializer cannot carry a registered Symbol.
 */
const PLAN_KEY = "__strataPlacementPlan";
type Holder = { [PLAN_KEY]?: Plan };

function planFor(cluster: ClusterConfig): Plan {
  const holder = globalThis as Holder;
  const id = JSON.stringify(cluster.endpoints);
  const existing = holder[PLAN_KEY];
  if (existing && existing.cluster === id) return existing;
  const plan: Plan = { cluster: id, inventory: inventory(cluster), declared: new Map(), entries: new Map(), ledger: null };
  // A failed inventory read must not stay cached for the rest of the process.
  plan.inventory.catch(() => {
    if (holder[PLAN_KEY] === plan) delete holder[PLAN_KEY];
  });
  holder[PLAN_KEY] = plan;
  return plan;
}

const MIB = 1024 * 1024;


/**
 * The size of a declared pool's disk, as its node's engine probes it (the URI's size_mib for a
 * file it would create). 0 when the node cannot tell: placement then refuses the pool, naming it.
 */
async function diskSizeBytes(cluster: ClusterConfig, pool: DeclaredPool): Promise<number> {
  // A CSAL device's size follows from its base and geometry (the URI carries both), also before it exists.
  if (pool.disk.startsWith("ftl:")) return ftlSizeBytes(cluster, pool.node, pool.disk);
  return deviceSizeBytes(cluster, pool.node, pool.disk);
}

/** The logical size of the CSAL device an ftl:// URI names, from its base's size and its geometry (0 when the base's size is unknown). */
async function ftlSizeBytes(cluster: ClusterConfig, node: string, uri: string): Promise<number> {
  const { base, geometry } = parseFtlUri(uri);
  const zoned = base.startsWith("zoned:") ? new URLSearchParams(base.slice("zoned://?".length)) : null;
  // An FDP base is the size of the device under it.
  const fdp = base.startsWith("fdp:") ? new URLSearchParams(base.slice("fdp://?".length)) : null;
  const under = zoned ?? fdp;
  const baseBytes = await deviceSizeBytes(cluster, node, under ? under.get("base") ?? "" : base);
  return csalSizeBytes({ bytes: baseBytes, zoneMib: zoned ? Number(zoned.get("zone_mib")) : undefined }, geometry);
}

/** A device's size as its node's engine probes it, or the URI's size_mib for a file it would create; 0 when neither tells. */
async function deviceSizeBytes(cluster: ClusterConfig, node: string, uri: string): Promise<number> {
  try {
    const { devices } = await onNode(cluster, node, (e) => e.call("ListDevices", { probe_uris: [uri] }, CALL_DEADLINE_MS));
    const size = Number(devices.find((d) => d.uri === uri)?.size_bytes ?? 0);
    if (size > 0) return size;
  } catch {
    // An engine that cannot probe the disk yet (a file the pool will create): use the URI's size.
  }
  return Number(/[?&]size_mib=([0-9]+)/.exec(uri)?.[1] ?? 0) * MIB;
}

/** What placement can know of a declared pool before it exists: node, name, labels, and its disk's size. */
function candidateOf(pool: DeclaredPool, nodeLabels: Readonly<Record<string, string>>, sizeBytes: number): PoolCandidate {
  return {
    node: pool.node,
    uuid: "",
    name: pool.name,
    labels: pool.labels,
    node_labels: nodeLabels,
    online: true,
    draining: pool.drain,
    capacity_bytes: sizeBytes,
    used_bytes: 0,
    committed_bytes: 0,
    cluster_size_bytes: pool.clusterSizeBytes || 4 * MIB,
    replica_count: 0,
  };
}

function sameEntry(a: Entry, b: Omit<Entry, "result" | "uuidForSlot">): boolean {
  return JSON.stringify([a.req, a.existing]) === JSON.stringify([b.req, b.existing]);
}

/**
 * Places one volume within the deployment's plan. `key` is the volume's uuid; `draining` names
 * pools (by uuid) whose Pool resource asks for a drain.
 */
export async function planPlacement(
  cluster: ClusterConfig,
  key: string,
  declared: readonly DeclaredPool[],
  req: PlacementRequest,
  existing: readonly PlacedReplica[],
  uuidForSlot: (slot: number) => string,
): Promise<VolumePlacement> {
  const plan = planFor(cluster);
  const { pools, nodeLabels, replicas } = await plan.inventory;
  existing = [...existing, ...adoptInterrupted(replicas, uuidForSlot).filter((r) => !existing.some((e) => e.replicaUuid === r.replicaUuid))];
  let rebuild = false;
  for (const d of declared) {
    const id = `${d.node}/${d.name}`;
    const known = plan.declared.get(id);
    if (known && JSON.stringify(known) === JSON.stringify(d)) continue;
    plan.declared.set(id, d);
    rebuild = true;
  }
  // A pool named by uuid only (`pools: ["<uuid>"]`, older state) is known by node and name from here on.
  req = {
    ...req,
    pools: req.pools.map((ref) => {
      const uuid = (ref as { uuid?: string }).uuid;
      const p = !ref.node && uuid ? pools.find((x) => x.uuid === uuid) : undefined;
      return p ? { node: p.node, name: p.name } : { node: ref.node || "?", name: ref.name || `uuid ${uuid ?? "?"}` };
    }),
  };
  const prior = plan.entries.get(key);
  if (prior && !sameEntry(prior, { key, req, existing })) rebuild = true;
  if (prior && !rebuild) return unwrap(prior.result);

  const entry: Entry = { key, req, existing, uuidForSlot, result: new Error("not placed") };
  plan.entries.set(key, entry);
  if (rebuild || plan.ledger === null) {
    // Start over from the inventory and every pool declared so far, and replay the plan in order.
    const drained = (p: PoolCandidate) => plan.declared.get(`${p.node}/${p.name}`)?.drain === true;
    const candidates = pools.map((p) => (drained(p) ? { ...p, draining: true } : p));
    for (const d of plan.declared.values()) {
      if (!candidates.some((p) => p.node === d.node && p.name === d.name))
        candidates.push(candidateOf(d, nodeLabels.get(d.node) ?? {}, await diskSizeBytes(cluster, d)));
    }
    plan.ledger = new PlacementLedger(candidates);
    for (const e of plan.entries.values()) e.result = tryPlace(plan.ledger, e);
  } else {
    entry.result = tryPlace(plan.ledger, entry);
  }
  return unwrap(entry.result);
}

/**
 * The volume's replicas that exist but that its state does not name: an `up` the Pulumi CLI was
 * killed in made them under the volume's derived uuids, and Pulumi then dropped its pending
 * create, or kept the state from before its update. They join the placement where they are
 * (CreateReplica is idempotent by uuid; a surplus one leaves like any other, after the rest are
 * in sync), so a re-run never creates a second replica of one uuid on another pool and strands
 * the first: the inventory counts a stray's space, so placing afresh would avoid its pool.
 */
function adoptInterrupted(replicas: Inventory["replicas"], uuidForSlot: (slot: number) => string): PlacedReplica[] {
  const found: PlacedReplica[] = [];
  for (let slot = 0; slot < REPLICA_SLOTS; slot++) {
    const replicaUuid = uuidForSlot(slot);
    const r = replicas.get(replicaUuid);
    if (r) found.push({ replicaUuid, node: r.node, pool: r.poolName, poolUuid: r.poolUuid, reason: "kept: made by an interrupted up of this volume" });
  }
  return found;
}

function tryPlace(ledger: PlacementLedger, e: Entry): VolumePlacement | Error {
  try {
    return placeVolume(ledger, e.req, e.existing, e.uuidForSlot);
  } catch (err) {
    return err as Error;
  }
}

function unwrap(result: VolumePlacement | Error): VolumePlacement {
  if (result instanceof Error) throw result;
  return result;
}

/** Forgets the plan (tests, and a provider process that serves more than one deployment). */
export function resetPlan(): void {
  delete (globalThis as Holder)[PLAN_KEY];
}
