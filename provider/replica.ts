// The Replica resource's dynamic provider: one replica on a pool the operator chose, for those
// who place by hand (a Nexus over Replicas) instead of letting a Volume place for them.
//
// Contract (Pulumi's): create is transactional; growing and thin <-> thick change in place;
// shrinking or moving to another pool is a replace that makes the new replica before the old one
// goes (a nexus over it gets the new one as a child in between). `read` finds a replica by its
// uuid alone and returns an empty id when it is gone.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { checkSizeBytes, checkUuid, describe } from "../common/validate";
import type { Pool__Output } from "../engine/generated/strata/engine/v1/Pool";
import type { Replica__Output } from "../engine/generated/strata/engine/v1/Replica";
import { CALL_DEADLINE_MS, MUTATE_DEADLINE_MS, onNode, uuidV5 } from "./cluster";
import { ClusterConfig, ConfiguredProvider } from "./connection";
import { isUnknown } from "./unknown";
import type { PoolRef } from "./volume-spec";

/** Replicas are served over NVMe/TCP in 4 KiB blocks, so their size is whole blocks. */
export const REPLICA_BLOCK_BYTES = 4096;

/**
 * "online": on its pool and the pool serves I/O; "faulted": its pool's device failed or is
 * missing (the replica is known, its data unreachable).
 */
export type ReplicaResourceState = "online" | "faulted";

/** Inputs as the provider receives them from the SDK (camelCase: what users write). */
export interface ReplicaInputs {
  /** By node and name (a Pool of the program, known at the first preview) or by uuid alone. */
  readonly pool: PoolRef;
  readonly sizeBytes: number;
  readonly thin: boolean;
  /** The uuid the user asked for; "" = derived (`defaultUuid`). Check replaces it with the resolved uuid. */
  readonly uuid: string;
  /** Derived by the SDK from project, stack and resource name (or the `import` id). */
  readonly defaultUuid: string;
  /** True when the user gave `uuid` (so a replace cannot pick another one by itself). */
  readonly uuidGiven: boolean;
  /** The `import` resource option's id: adopt the existing replica instead of making one ("" = none). */
  readonly importId: string;
  /** Filled in by check: the pool's node (from the ref, or found by the pool's uuid). */
  readonly node: string;
}

export interface ReplicaOutputs extends ReplicaInputs {
  readonly poolUuid: string;
  readonly poolName: string;
  readonly allocatedBytes: number;
  readonly state: ReplicaResourceState;
}

/** Whole bytes, positive, a multiple of 4096; null when fine. */
export function checkReplicaSizeBytes(value: unknown): string | null {
  const base = checkSizeBytes(value);
  if (base !== null) return base;
  if ((value as number) % REPLICA_BLOCK_BYTES !== 0)
    return `must be a multiple of ${REPLICA_BLOCK_BYTES} bytes (replicas are served in ${REPLICA_BLOCK_BYTES}-byte blocks), got ${value}`;
  return null;
}

/** The next uuid a replacement takes when the current one is still held by the replica it replaces. */
function replacementUuid(uuid: string): string {
  return uuidV5(uuid, "strata/replica/replacement");
}

/** How many replacement generations a check looks through before giving up (each replace uses the next one). */
const MAX_GENERATIONS = 8;

/** A pool ref from inputs or state: a bare uuid string, or {uuid, node, name}. */
export function poolRefOf(raw: unknown): PoolRef {
  if (typeof raw === "string") return { uuid: raw, node: "", name: "" };
  const r = (raw ?? {}) as Record<string, unknown>;
  const str = (k: string) => (typeof r[k] === "string" ? (r[k] as string) : "");
  return { uuid: str("uuid"), node: str("node"), name: str("name") };
}

/** Whether the pool ref names the pool this replica is on (by node and name when it has them, else by uuid). */
function refNames(ref: PoolRef, node: string, poolName: string, poolUuid: string): boolean {
  return ref.node ? ref.node === node && ref.name === poolName : ref.uuid === poolUuid;
}

interface Found {
  readonly node: string;
  readonly replica: Replica__Output;
  readonly pool: Pool__Output | undefined;
}

/** Looks for a replica by uuid on the given nodes (every node when none is given). */
async function findReplica(cluster: ClusterConfig, uuid: string, nodes: readonly string[]): Promise<Found | null> {
  for (const node of nodes) {
    const found = await onNode(cluster, node, async (engine) => {
      const replica = (await engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS)).replicas.find((r) => r.uuid === uuid);
      if (!replica) return null;
      const pool = (await engine.call("ListPools", {}, CALL_DEADLINE_MS)).pools.find((p) => p.uuid === replica.pool_uuid);
      return { node, replica, pool };
    });
    if (found) return found;
  }
  return null;
}

function outputsOf(inputs: ReplicaInputs, found: Found): ReplicaOutputs {
  return {
    ...inputs,
    uuid: found.replica.uuid,
    node: found.node,
    poolUuid: found.replica.pool_uuid,
    poolName: found.replica.pool_name,
    sizeBytes: Number(found.replica.size_bytes),
    thin: found.replica.thin,
    allocatedBytes: Number(found.replica.allocated_bytes),
    state: found.pool?.state === "POOL_STATE_ONLINE" ? "online" : "faulted",
  };
}

export class ReplicaProvider extends ConfiguredProvider implements dynamic.ResourceProvider {

  private nodes(): string[] {
    return Object.keys(this.clusterOrThrow().endpoints).sort();
  }

  async check(rawOlds: Partial<ReplicaOutputs>, rawNews: Partial<ReplicaInputs>): Promise<dynamic.CheckResult> {
    const failures: dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string | null) => {
      if (reason !== null) failures.push({ property, reason });
    };
    const olds = typeof rawOlds.uuid === "string" && rawOlds.uuid !== "" ? rawOlds : null;
    const given = typeof rawNews.uuid === "string" ? rawNews.uuid : "";
    const importId = typeof rawNews.importId === "string" ? rawNews.importId : "";
    const pool = isUnknown(rawNews.pool) ? (rawNews.pool as PoolRef) : poolRefOf(rawNews.pool);
    let inputs: ReplicaInputs = {
      pool,
      sizeBytes: rawNews.sizeBytes as number,
      thin: rawNews.thin ?? true,
      // Kept once made: the derived uuid may have been passed over for a replacement's.
      uuid: given || olds?.uuid || importId || (rawNews.defaultUuid ?? ""),
      defaultUuid: rawNews.defaultUuid ?? "",
      uuidGiven: given !== "",
      importId,
      node: "",
    };
    if (this.cluster === null) fail("pool", this.configError);
    if (!isUnknown(inputs.sizeBytes)) fail("sizeBytes", checkReplicaSizeBytes(inputs.sizeBytes));
    if (!isUnknown(inputs.thin) && typeof inputs.thin !== "boolean") fail("thin", `must be true or false, got ${describe(inputs.thin)}`);
    if (given !== "") fail("uuid", checkUuid(given));
    if (this.cluster === null || failures.length > 0 || isUnknown(pool)) return { inputs, failures };

    const cluster = this.clusterOrThrow();
    const known = this.nodes();
    if (pool.node) {
      if (!(pool.node in cluster.endpoints))
        fail("pool", `pool "${pool.name}" is on node "${pool.node}", which is not a configured node (strata:endpoints has: ${known.join(", ")})`);
      else inputs = { ...inputs, node: pool.node };
    } else if (pool.uuid) {
      fail("pool", checkUuid(pool.uuid));
      if (failures.length > 0) return { inputs, failures };
      // By uuid alone: the pool's node is found on the engines (a node that is down is named now, at preview).
      let node = "";
      for (const n of known) {
        const pools = await onNode(cluster, n, (e) => e.call("ListPools", {}, CALL_DEADLINE_MS));
        if (pools.pools.some((p) => p.uuid === pool.uuid)) node = n;
        if (node) break;
      }
      if (!node) fail("pool", `no pool with uuid ${pool.uuid} on any configured node (${known.join(", ")})`);
      inputs = { ...inputs, node };
    } else {
      fail("pool", "must be a Pool resource, a pool uuid, or {node, name} of a pool");
    }
    if (failures.length > 0) return { inputs, failures };

    // Made already (olds): its uuid stays. Otherwise (a create, or a replace's second check,
    // which Pulumi runs without olds) see what the engines hold under the uuid.
    if (olds === null) inputs = await this.resolveUuid(inputs, fail);
    return { inputs, failures };
  }

  /**
   * A new replica's uuid, from what the engines hold: a replica that already has it with this
   * spec is adopted (a re-run after an interrupted create); one with another spec is the replica
   * this one replaces (shrink, another pool), so a derived uuid moves on to its replacement uuid
   * and a given one is refused. With `import`, the replica must exist and match the program.
   */
  private async resolveUuid(inputs: ReplicaInputs, fail: (property: string, reason: string | null) => void): Promise<ReplicaInputs> {
    const cluster = this.clusterOrThrow();
    const matches = (f: Found) =>
      f.node === inputs.node && refNames(inputs.pool, f.node, f.replica.pool_name, f.replica.pool_uuid) && Number(f.replica.size_bytes) === inputs.sizeBytes;
    if (inputs.importId) {
      const f = await findReplica(cluster, inputs.importId, this.nodes());
      if (!f) {
        fail("uuid", `no replica ${inputs.importId} on any configured node: nothing to import (remove the import option to make one)`);
      } else if (!(f.node === inputs.node && refNames(inputs.pool, f.node, f.replica.pool_name, f.replica.pool_uuid))) {
        fail("pool", `replica ${inputs.importId} is on pool ${f.replica.pool_name} (${f.replica.pool_uuid}) of node ${f.node}: declare that pool to import it`);
      } else {
        if (Number(f.replica.size_bytes) !== inputs.sizeBytes)
          fail("sizeBytes", `replica ${inputs.importId} holds ${f.replica.size_bytes} bytes, the program declares ${inputs.sizeBytes}: declare what exists to import it, then change it`);
        if (f.replica.thin !== inputs.thin)
          fail("thin", `replica ${inputs.importId} is ${f.replica.thin ? "thin" : "thick"}, the program declares ${inputs.thin ? "thin" : "thick"}: declare what exists to import it, then change it`);
      }
      return inputs;
    }
    let uuid = inputs.uuid;
    for (let generation = 0; generation < MAX_GENERATIONS; generation++) {
      const f = await findReplica(cluster, uuid, this.nodes());
      if (!f || matches(f)) return { ...inputs, uuid };
      if (inputs.uuidGiven) {
        fail(
          "uuid",
          `replica ${uuid} already exists on pool ${f.replica.pool_name} of node ${f.node} with ${f.replica.size_bytes} bytes; ` +
            "a replace (another pool, a smaller size) needs a new uuid: give another `uuid` or leave it out to derive one",
        );
        return inputs;
      }
      uuid = replacementUuid(uuid);
    }
    fail("uuid", `every replacement uuid derived from ${inputs.defaultUuid} is taken; give \`uuid\` explicitly`);
    return inputs;
  }

  async diff(_id: string, olds: ReplicaOutputs, news: ReplicaInputs): Promise<dynamic.DiffResult> {
    const replaces: string[] = [];
    if (!refNames(poolRefOf(news.pool), olds.node, olds.poolName, olds.poolUuid)) replaces.push("pool");
    if (news.sizeBytes < olds.sizeBytes) replaces.push("sizeBytes");
    if (news.uuidGiven && news.uuid !== olds.uuid) replaces.push("uuid");
    const changes = replaces.length > 0 || news.sizeBytes !== olds.sizeBytes || news.thin !== olds.thin || olds.state !== "online";
    // The new replica is made before the old one goes: a nexus over it gets the new child in between.
    return { changes, replaces, deleteBeforeReplace: false };
  }

  async create(inputs: ReplicaInputs): Promise<dynamic.CreateResult> {
    const cluster = this.clusterOrThrow();
    if (inputs.importId) {
      // Adopted as it is: nothing changes on the engine (check verified it matches the program).
      const f = await findReplica(cluster, inputs.importId, [inputs.node]);
      if (!f) throw new Error(`uuid: replica ${inputs.importId} is no longer on node ${inputs.node}: nothing to import`);
      return { id: f.replica.uuid, outs: outputsOf(inputs, f) };
    }
    const made = await onNode(cluster, inputs.node, (engine) =>
      engine.call(
        "CreateReplica",
        { uuid: inputs.uuid, name: "", pool: inputs.pool.uuid || inputs.pool.name, size_bytes: inputs.sizeBytes, thin: inputs.thin },
        MUTATE_DEADLINE_MS,
      ),
    );
    const pool = await onNode(cluster, inputs.node, async (e) => (await e.call("ListPools", {}, CALL_DEADLINE_MS)).pools.find((p) => p.uuid === made.pool_uuid));
    return { id: made.uuid, outs: outputsOf(inputs, { node: inputs.node, replica: made, pool }) };
  }

  async read(id: string, props: Partial<ReplicaOutputs>): Promise<dynamic.ReadResult> {
    // `Replica.get` knows only the uuid: look on every node.
    const f = await findReplica(this.clusterOrThrow(), id, props.node ? [props.node] : this.nodes());
    if (!f) return { id: "", props: {} };
    const inputs: ReplicaInputs = {
      pool: props.pool && (props.pool.node || props.pool.uuid) ? poolRefOf(props.pool) : { uuid: f.replica.pool_uuid, node: "", name: "" },
      sizeBytes: Number(f.replica.size_bytes),
      thin: f.replica.thin,
      uuid: id,
      defaultUuid: props.defaultUuid || id,
      uuidGiven: props.uuidGiven ?? false,
      importId: props.importId ?? "",
      node: f.node,
    };
    return { id, props: outputsOf(inputs, f) };
  }

  async update(id: string, olds: ReplicaOutputs, news: ReplicaInputs): Promise<dynamic.UpdateResult> {
    const cluster = this.clusterOrThrow();
    const current = await findReplica(cluster, id, [olds.node]);
    await onNode(cluster, olds.node, async (engine) => {
      if (!current) {
        // Gone behind our back (its pool was re-made): made again, empty; a nexus over it rebuilds it.
        await engine.call("CreateReplica", { uuid: id, name: "", pool: olds.poolUuid, size_bytes: news.sizeBytes, thin: news.thin }, MUTATE_DEADLINE_MS);
        return;
      }
      if (Number(current.replica.size_bytes) < news.sizeBytes) await engine.call("ResizeReplica", { uuid: id, size_bytes: news.sizeBytes }, MUTATE_DEADLINE_MS);
      if (current.replica.thin !== news.thin) await engine.call("SetReplicaThin", { uuid: id, thin: news.thin }, MUTATE_DEADLINE_MS);
    });
    const after = await findReplica(cluster, id, [olds.node]);
    if (!after) throw new Error(`replica ${id} vanished from node ${olds.node} during the update`);
    return { outs: outputsOf({ ...news, uuid: id, node: olds.node }, after) };
  }

  async delete(id: string, props: ReplicaOutputs): Promise<void> {
    // A shared replica cannot be destroyed; unsharing one that is not shared succeeds, and both
    // calls succeed for a replica that is already gone.
    await onNode(this.clusterOrThrow(), props.node, async (engine) => {
      await engine.call("UnshareReplica", { uuid: id }, MUTATE_DEADLINE_MS);
      await engine.call("DestroyReplica", { uuid: id }, MUTATE_DEADLINE_MS);
    });
  }
}
