// The provider's view of the cluster, fetched over gRPC with short deadlines.
import { createHash, randomUUID } from "node:crypto";
import { connectEngine, EngineConnection, withEngine } from "../common/client";
import type { Pool__Output } from "../engine/generated/strata/engine/v1/Pool";
import { ClusterConfig, targetFor } from "./connection";
import type { PoolCandidate } from "./placement";

/** Deadline for provider calls; short enough that a dead engine is reported within seconds. */
export const CALL_DEADLINE_MS = 5_000;
/** Creating a thick replica writes its allocation; give it longer. */
export const MUTATE_DEADLINE_MS = 60_000;

export function onNode<T>(cluster: ClusterConfig, node: string, fn: (engine: EngineConnection) => Promise<T>): Promise<T> {
  return withEngine(targetFor(cluster, node), fn);
}

export interface Inventory {
  readonly pools: PoolCandidate[];
  /** Every configured node's labels, also of nodes without pools. */
  readonly nodeLabels: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /**
   * Every replica on every node, by uuid: a volume whose create was interrupted (the Pulumi CLI
   * killed, its pending create dropped from state) finds the replicas it made under its derived
   * uuids and keeps them instead of placing copies elsewhere.
   */
  readonly replicas: ReadonlyMap<string, { readonly node: string; readonly poolUuid: string; readonly poolName: string }>;
}

/** Every pool of every configured node, with the node's labels. Fails if any node is down. */
export async function inventory(cluster: ClusterConfig): Promise<Inventory> {
  const perNode = await Promise.all(
    Object.keys(cluster.endpoints)
      .sort()
      .map(async (node) => {
        const engine = connectEngine(targetFor(cluster, node));
        try {
          const [info, pools, replicas] = await Promise.all([
            engine.call("GetInfo", {}, CALL_DEADLINE_MS),
            engine.call("ListPools", {}, CALL_DEADLINE_MS),
            engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS),
          ]);
          const candidates = pools.pools.map((p: Pool__Output): PoolCandidate => ({
            node,
            uuid: p.uuid,
            name: p.name,
            labels: p.labels,
            node_labels: info.labels,
            online: p.state === "POOL_STATE_ONLINE",
            draining: false,
            capacity_bytes: p.capacity_bytes,
            used_bytes: p.used_bytes,
            committed_bytes: p.committed_bytes,
            cluster_size_bytes: p.cluster_size_bytes,
            replica_count: p.replica_count,
          }));
          return { node, labels: info.labels, candidates, replicas: replicas.replicas };
        } finally {
          engine.close();
        }
      }),
  );
  return {
    pools: perNode.flatMap((n) => n.candidates),
    nodeLabels: new Map(perNode.map((n) => [n.node, n.labels])),
    replicas: new Map(perNode.flatMap((n) => n.replicas.map((r) => [r.uuid, { node: n.node, poolUuid: r.pool_uuid, poolName: r.pool_name }] as const))),
  };
}

export const newUuid = (): string => randomUUID();

/**
 * A name-based uuid (RFC 9562 version 5: SHA-1 of the namespace uuid's bytes and the name):
 * the same namespace and name always give the same uuid, and different names practically never
 * the same one.
 */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ""), "hex");
  if (ns.length !== 16) throw new Error(`uuidV5: namespace must be a uuid, got "${namespace}"`);
  const bytes = createHash("sha1").update(ns).update(name, "utf8").digest().subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The uuid of the replica in `slot` (0, 1, ...) of a volume. Derived, not random, so an `up`
 * that retries a failed create of the same volume names the same replicas: the engines dedupe
 * by uuid, and what the failed attempt left on a node is reused instead of leaking.
 */
/** One namespace per kind of resource whose uuid derives from project, stack and resource name. */
const RESOURCE_UUID_NAMESPACES = {
  Pool: "3c0b9e27-5d4f-4a8e-b1c6-7e2d9f4a0b53",
  Volume: "6f1d3a52-8c1e-4b0e-9d55-0c2f5e3b7a41",
  Replica: "2b8e6f0c-5d47-4a51-8f3e-9c1a7d2e4b60",
  Nexus: "c7a94e13-0f2b-4d86-b5e1-3a6d8f9c0e27",
  CsalDevice: "9e4b2d71-3c85-4f06-a1d9-5b7e0c3f8a26",
} as const;

/**
 * A new resource's uuid, derived from project, stack and resource name: `pulumi preview` and
 * the `up` after it name the same objects (a random uuid would differ), and an `up` the CLI was
 * killed in (Pulumi drops its pending creates) makes the same objects again, which the engines
 * answer with what they already made instead of leaking it.
 */
export function resourceUuidFor(kind: keyof typeof RESOURCE_UUID_NAMESPACES, project: string, stack: string, name: string): string {
  return uuidV5(RESOURCE_UUID_NAMESPACES[kind], `${project}/${stack}/${name}`);
}

/**
 * How many replica uuids one volume derives (slots 0..15): at most 5 replicas plus as many
 * leaving during a move. Sweeps of strays and the adoption of an interrupted create look at all.
 */
export const REPLICA_SLOTS = 16;

export function replicaUuidFor(volumeUuid: string, slot: number): string {
  return uuidV5(volumeUuid, `strata/replica/${slot}`);
}

/** The uuid of a replicated volume's nexus, derived like the replicas' (see replicaUuidFor). */
export function nexusUuidFor(volumeUuid: string): string {
  return uuidV5(volumeUuid, "strata/nexus");
}

/**
 * Runs every step, even after one fails (a rollback or destroy must not stop at the first
 * unreachable node and strand the rest), then throws the first error, naming how many others
 * failed too. Steps run in order.
 */
export async function everyStep(steps: readonly (() => Promise<unknown>)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 0) return;
  const first = errors[0];
  if (errors.length > 1 && first instanceof Error) {
    const others = errors.slice(1).map((e) => (e instanceof Error ? e.message : String(e)));
    first.message += ` (and ${others.length} more step${others.length === 1 ? "" : "s"} failed: ${others.join("; ")})`;
  }
  throw first;
}
