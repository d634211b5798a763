// Replica placement: which pool on which node holds each replica of a volume. Pure and
// deterministic (same pools, same request, same answer), so `pulumi preview` shows exactly what
// `pulumi up` will do, and sticky: replicas already placed stay where they are.

/** What placement needs to know of a pool. */
export interface PoolCandidate {
  readonly node: string;
  readonly uuid: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly node_labels: Readonly<Record<string, string>>;
  readonly online: boolean;
  readonly capacity_bytes: number;
  readonly used_bytes: number;
  readonly committed_bytes: number;
  readonly cluster_size_bytes: number;
  readonly replica_count: number;
}

export interface PlacementRequest {
  readonly size_bytes: number;
  readonly thin: boolean;
  readonly replicas: number;
  /** Only pools with all these labels. */
  readonly pool_labels: Readonly<Record<string, string>>;
  /** Only these pools (uuids) when non-empty. */
  readonly pool_uuids: readonly string[];
  /** Spread replicas over distinct values of this node label (e.g. "zone") when it is set. */
  readonly topology_key: string;
}

export interface PlacedReplica {
  readonly replica_uuid: string;
  readonly node: string;
  readonly pool_uuid: string;
  readonly pool_name: string;
}

/**
 * Thin replicas may over-commit a pool up to this factor of its capacity: thin volumes rarely
 * fill, but unbounded over-commit turns one busy volume into everyone's out-of-space error.
 */
export const THIN_OVERCOMMIT_FACTOR = 2;

/** Placement failed; a plain Error named "PlacementError" (serialized providers lose Error subclasses). */
export function placementError(message: string): Error {
  return Object.assign(new Error(message), { name: "PlacementError" });
}

export function isPlacementError(err: unknown): boolean {
  return err instanceof Error && err.name === "PlacementError";
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/** Why a pool cannot take a replica of this request, or null when it can. */
export function rejectReason(pool: PoolCandidate, req: PlacementRequest): string | null {
  if (!pool.online) return "pool is not online";
  if (req.pool_uuids.length > 0 && !req.pool_uuids.includes(pool.uuid)) return "not in the volume's pools";
  for (const [k, v] of Object.entries(req.pool_labels)) {
    if (pool.labels[k] !== v) return `label ${k}=${v} does not match (${k}=${pool.labels[k] ?? "unset"})`;
  }
  const free = pool.capacity_bytes - pool.used_bytes;
  if (req.thin) {
    if (req.size_bytes > pool.capacity_bytes) return `capacity ${pool.capacity_bytes} B is smaller than the volume`;
    const limit = pool.capacity_bytes * THIN_OVERCOMMIT_FACTOR;
    if (pool.committed_bytes + req.size_bytes > limit)
      return `thin over-commit limit reached (${pool.committed_bytes} B committed of ${limit} B)`;
  } else {
    const needed = roundUp(req.size_bytes, pool.cluster_size_bytes || 1);
    if (needed > free) return `only ${free} B free, a thick replica needs ${needed} B`;
  }
  return null;
}

/**
 * Places `req.replicas` replicas. `existing` replicas are kept when their pool still exists;
 * new ones go to the best remaining pools: one replica per node, distinct topology values when
 * possible, then fewest replicas, then most free space, then name. A new replica is named
 * `uuidForSlot(slot)` for the lowest slot (0, 1, ...) whose uuid no replica in `existing` (kept
 * or dropped) or already placed has, so a fresh volume's replicas are slots 0..n-1 and a
 * replacement never takes the name of a replica that may still exist.
 */
export function placeReplicas(
  pools: readonly PoolCandidate[],
  req: PlacementRequest,
  existing: readonly PlacedReplica[],
  uuidForSlot: (slot: number) => string,
): PlacedReplica[] {
  const byUuid = new Map(pools.map((p) => [p.uuid, p]));
  const kept = existing.filter((r) => byUuid.has(r.pool_uuid)).slice(0, req.replicas);
  const usedNodes = new Set(kept.map((r) => r.node));
  const topologyOf = (p: PoolCandidate) => (req.topology_key ? p.node_labels[req.topology_key] ?? "" : "");
  const usedTopology = new Set(kept.map((r) => topologyOf(byUuid.get(r.pool_uuid)!)));

  const rejected: string[] = [];
  const eligible = pools.filter((p) => {
    const reason = usedNodes.has(p.node) ? "node already holds a replica of this volume" : rejectReason(p, req);
    if (reason) rejected.push(`${p.node}/${p.name}: ${reason}`);
    return reason === null;
  });
  const free = (p: PoolCandidate) => p.capacity_bytes - p.used_bytes;
  eligible.sort(
    (a, b) =>
      a.replica_count - b.replica_count ||
      free(b) - free(a) ||
      a.node.localeCompare(b.node) ||
      a.name.localeCompare(b.name),
  );

  const placed = [...kept];
  const taken = new Set(existing.map((r) => r.replica_uuid));
  let slot = 0;
  const nextUuid = (): string => {
    for (;;) {
      const uuid = uuidForSlot(slot++);
      if (!taken.has(uuid)) {
        taken.add(uuid);
        return uuid;
      }
    }
  };
  while (placed.length < req.replicas) {
    const next =
      eligible.find((p) => !usedNodes.has(p.node) && !usedTopology.has(topologyOf(p))) ??
      eligible.find((p) => !usedNodes.has(p.node));
    if (!next) {
      const detail = rejected.length > 0 ? rejected.join("; ") : "no pools exist on the configured nodes";
      throw placementError(
        `cannot place replica ${placed.length + 1} of ${req.replicas} (${req.size_bytes} B, ${req.thin ? "thin" : "thick"}): ${detail}`,
      );
    }
    placed.push({ replica_uuid: nextUuid(), node: next.node, pool_uuid: next.uuid, pool_name: next.name });
    usedNodes.add(next.node);
    usedTopology.add(topologyOf(next));
  }
  return placed;
}
