// The provider's view of the cluster, fetched over gRPC with short deadlines.
import { randomUUID } from "node:crypto";
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

/** Every pool of every configured node, with the node's labels. Fails if any node is down. */
export async function inventory(cluster: ClusterConfig): Promise<PoolCandidate[]> {
  const perNode = await Promise.all(
    Object.keys(cluster.endpoints)
      .sort()
      .map(async (node) => {
        const engine = connectEngine(targetFor(cluster, node));
        try {
          const [info, pools] = await Promise.all([
            engine.call("GetInfo", {}, CALL_DEADLINE_MS),
            engine.call("ListPools", {}, CALL_DEADLINE_MS),
          ]);
          return pools.pools.map((p: Pool__Output) => ({
            node,
            uuid: p.uuid,
            name: p.name,
            labels: p.labels,
            node_labels: info.labels,
            online: p.state === "POOL_STATE_ONLINE",
            capacity_bytes: p.capacity_bytes,
            used_bytes: p.used_bytes,
            committed_bytes: p.committed_bytes,
            cluster_size_bytes: p.cluster_size_bytes,
            replica_count: p.replica_count,
          }));
        } finally {
          engine.close();
        }
      }),
  );
  return perNode.flat();
}

export const newUuid = (): string => randomUUID();
