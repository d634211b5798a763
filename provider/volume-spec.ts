// What a Volume is in Pulumi state: its inputs as `check` completes them, its outputs as
// `read` reports them, and the one function that brings state written by an older provider up
// to today's shape (snake_case placement entries, a pool list of bare uuids, no nexus node).
import { NEXUS_LABEL_REGION_BYTES } from "../common/nexus-rules";
import type { PlacedReplica } from "./placement";
import type { Transport, TransportMode } from "./transport";

/** The most replicas a volume may have: a product limit (a nexus could take NEXUS_MAX_CHILDREN children; 5 is plenty). */
export const MAX_REPLICAS = 5;

/** A pool a volume is restricted to: by uuid once it exists, by node and name before (a pool declared in the same program). */
export interface PoolRef {
  readonly uuid: string;
  readonly node: string;
  readonly name: string;
}

/**
 * A pool the program declares, as the SDK passes it to every volume declared after it, so the
 * first preview can place replicas on pools that do not exist yet.
 */
export interface DeclaredPool {
  readonly node: string;
  readonly name: string;
  readonly disk: string;
  readonly labels: Record<string, string>;
  readonly clusterSizeBytes: number;
  /** The Pool's `drain` input: its replicas move elsewhere and it takes no new ones. */
  readonly drain: boolean;
}

/** How replicas spread over the values of a node label. */
export type SpreadMode = "preferred" | "required";

export type VolumeHealth = "online" | "degraded" | "faulted";
export type ReplicaState = "online" | "missing";
export type NexusHealth = "online" | "degraded" | "faulted" | "missing";
export type ChildState = "online" | "rebuilding" | "faulted" | "offline" | "missing";

export interface VolumeInputs {
  readonly uuid: string;
  readonly sizeBytes: number;
  readonly thin: boolean;
  readonly replicas: number;
  readonly poolLabels: Record<string, string>;
  readonly pools: PoolRef[];
  /** Only nodes whose labels include all of these. */
  readonly nodeSelector: Record<string, string>;
  readonly topologyKey: string;
  readonly topologySpread: SpreadMode;
  /** Anti-affinity: no two replicas of volumes with the same group on one node ("" = none). */
  readonly group: string;
  /** The host NQN of the frontend node the nexus is published to ("" = unpublished). */
  readonly frontendHostNqn: string;
  /** The frontend leg's transport: "tcp" (default), "rdma" or "auto" (provider/transport.ts). */
  readonly transport: TransportMode;
  /** The nexus-to-replica leg's transport for remote replicas: "tcp" (default), "rdma" or "auto". */
  readonly replicaTransport: TransportMode;
  /** The URN of the volume declared before this one: orders placement (never a change by itself). */
  readonly planAfter: string;
  /** Pools declared earlier in the program (placement input only: never a change by itself). */
  readonly declaredPools: DeclaredPool[];
  /** Filled in by `check`: where each replica lives, once the change is done. */
  readonly placement: PlacedReplica[];
  /** Filled in by `check`: replicas that leave once the placement's replicas are in sync (a move, a scale-down). */
  readonly leaving: PlacedReplica[];
  /** The nexus's uuid; "" only for a one-replica volume made before every volume had a nexus. */
  readonly nexusUuid: string;
  /** The node the nexus runs on: the first replica's node when it was made; it stays there when that replica moves. */
  readonly nexusNode: string;
  /** The `import` resource option's id (the SDK passes it here): adopt that volume instead of making one; "" = none. */
  readonly importId?: string;
}

/** A replica as `read` last saw it. */
export interface ReplicaStatus extends PlacedReplica {
  /** "online": present on its pool; "missing": gone from its pool (refresh found it deleted). */
  readonly state: ReplicaState;
  readonly allocatedBytes: number;
}

export interface NexusChildStatus {
  readonly node: string;
  readonly replicaUuid: string;
  /** As the nexus sees the child; "missing": not in the nexus. */
  readonly state: ChildState;
  /** Why it is not online ("none" when it is). */
  readonly reason: string;
  /** Percent of the rebuild done while rebuilding; 100 otherwise. */
  readonly rebuildPercent: number;
  /** How the nexus reaches it: "local" (same node), "tcp" or "rdma"; "" when it is not a child. */
  readonly transport?: "local" | Transport | "";
}

export interface NexusStatus {
  readonly uuid: string;
  readonly node: string;
  readonly health: NexusHealth;
  readonly sizeBytes: number;
  /** The NVMe/TCP subsystem the frontend connects to ("" while unpublished). */
  readonly nqn: string;
  /** The frontend leg's transport ("tcp" or "rdma"), as `transport` resolved on the nexus node. */
  readonly transport: Transport;
  /** HOST:PORT the frontend connects to over that transport ("" while unpublished), and the same split in two. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** The `nvme connect -t … -a … -s … -n … --hostnqn …` command of the frontend host ("" while unpublished). */
  readonly connectCommand: string;
  readonly children: NexusChildStatus[];
}

export interface VolumeOutputs extends VolumeInputs {
  /** "online" when every replica is present and in sync; "degraded" when some are not; "faulted" when no replica can serve. */
  readonly health: VolumeHealth;
  /** The nexus as its node reports it; null only for a one-replica volume made before every volume had a nexus. */
  readonly nexus: NexusStatus | null;
  readonly replicaStatus: ReplicaStatus[];
  /** The DH-HMAC-CHAP secret the frontend host connects with; "" while unpublished. A secret output. */
  readonly frontendDhchapSecret: string;
  /** Node and pool of the first replica, for people reading `pulumi stack output`. */
  readonly node: string;
  readonly pool: string;
}

/** Bytes each replica holds: the volume plus the nexus label region (a legacy plain replica has none). */
export function replicaSizeBytes(v: Pick<VolumeInputs, "sizeBytes" | "nexusUuid">): number {
  return v.nexusUuid ? v.sizeBytes + NEXUS_LABEL_REGION_BYTES : v.sizeBytes;
}

type Loose = Record<string, unknown>;

/** A placement entry from state of any provider version. */
export function placedFromState(raw: unknown): PlacedReplica {
  const r = (raw ?? {}) as Loose;
  const str = (...keys: string[]) => {
    for (const k of keys) if (typeof r[k] === "string") return r[k] as string;
    return "";
  };
  return {
    replicaUuid: str("replicaUuid", "replica_uuid"),
    node: str("node"),
    pool: str("pool", "pool_name"),
    poolUuid: str("poolUuid", "pool_uuid"),
    reason: str("reason"),
  };
}

/** A pool restriction from inputs or state: a uuid string (older programs, or `pools: ["<uuid>"]`) or a ref. */
export function poolRefFrom(raw: unknown): PoolRef {
  if (typeof raw === "string") return { uuid: raw, node: "", name: "" };
  const r = (raw ?? {}) as Loose;
  return {
    uuid: typeof r.uuid === "string" ? r.uuid : "",
    node: typeof r.node === "string" ? r.node : "",
    name: typeof r.name === "string" ? r.name : "",
  };
}

/**
 * Volume state from any provider version in today's shape. Older state has snake_case
 * placement, `pools` as uuids, no `leaving` and no `nexusNode` (the nexus was always on the
 * first replica's node), and one-replica volumes without a nexus.
 */
export function normalizeState<T extends Partial<VolumeOutputs>>(raw: T): T {
  const placement = Array.isArray(raw.placement) ? raw.placement.map(placedFromState) : [];
  const nexusUuid = typeof raw.nexusUuid === "string" ? raw.nexusUuid : "";
  return {
    ...raw,
    placement,
    leaving: Array.isArray(raw.leaving) ? raw.leaving.map(placedFromState) : [],
    pools: Array.isArray(raw.pools) ? raw.pools.map(poolRefFrom) : [],
    nodeSelector: raw.nodeSelector ?? {},
    topologySpread: raw.topologySpread ?? "preferred",
    group: raw.group ?? "",
    declaredPools: raw.declaredPools ?? [],
    planAfter: raw.planAfter ?? "",
    transport: raw.transport ?? "tcp",
    replicaTransport: raw.replicaTransport ?? "tcp",
    nexusUuid,
    nexusNode: typeof raw.nexusNode === "string" && raw.nexusNode ? raw.nexusNode : nexusUuid ? placement[0]?.node ?? "" : "",
  };
}
