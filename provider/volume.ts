// The Volume resource's dynamic provider: a block volume whose replicas are placed on pools.
//
// Placement happens in `check`, so `pulumi preview` shows where each replica lands (and
// `placement` is part of the plan a reviewer reads). It is sticky: once placed, replicas stay.
// Size grows in place; `thin` is identity (changing it replaces the volume, which preview
// shows as a replace). `read` reports replicas that vanished; the next `up` recreates them.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { checkLabels, checkSizeBytes, checkUuid, describe } from "../common/validate";
import { CALL_DEADLINE_MS, inventory, MUTATE_DEADLINE_MS, newUuid, onNode } from "./cluster";
import { ClusterConfig, clusterConfigFrom } from "./connection";
import { isPlacementError, PlacedReplica, placeReplicas } from "./placement";
import { isUnknown } from "./unknown";

/** The replica count this release supports; more needs the nexus (RAID-1 over replicas). */
export const MAX_REPLICAS = 1;

export interface VolumeInputs {
  readonly uuid: string;
  readonly sizeBytes: number;
  readonly thin: boolean;
  readonly replicas: number;
  readonly poolLabels: Record<string, string>;
  readonly pools: string[];
  readonly topologyKey: string;
  /** Filled in by `check`: where each replica lives. */
  readonly placement: PlacedReplica[];
}

/** A replica as `read` last saw it. */
export interface ReplicaStatus extends PlacedReplica {
  /** "online": present on its pool; "missing": gone from its pool (refresh found it deleted). */
  readonly state: "online" | "missing";
  readonly allocatedBytes: number;
}

export interface VolumeOutputs extends VolumeInputs {
  /** "online" when every replica is present, "degraded" otherwise. */
  readonly health: "online" | "degraded";
  readonly replicaStatus: ReplicaStatus[];
  /** Node and pool of the first replica, for people reading `pulumi stack output`. */
  readonly node: string;
  readonly pool: string;
}

export class VolumeProvider implements dynamic.ResourceProvider {
  private cluster: ClusterConfig | null = null;
  private configError: string | null = null;

  async configure(req: dynamic.ConfigureRequest): Promise<void> {
    try {
      this.cluster = clusterConfigFrom((key) => req.config.get(key));
    } catch (err) {
      this.configError = (err as Error).message;
    }
  }

  private clusterOrThrow(): ClusterConfig {
    if (this.cluster === null) throw new Error(this.configError ?? "the Strata provider was not configured");
    return this.cluster;
  }

  async check(olds: Partial<VolumeInputs>, news: Partial<VolumeInputs>): Promise<dynamic.CheckResult> {
    const failures: dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string | null) => {
      if (reason !== null) failures.push({ property, reason });
    };
    const inputs: VolumeInputs = {
      thin: true,
      replicas: 1,
      poolLabels: {},
      pools: [],
      topologyKey: "zone",
      ...news,
      uuid: olds.uuid ?? news.uuid ?? newUuid(),
      placement: olds.placement ?? [],
    } as VolumeInputs;
    if (this.cluster === null) fail("node", this.configError);
    if (!isUnknown(inputs.sizeBytes)) {
      fail("sizeBytes", checkSizeBytes(inputs.sizeBytes));
      if (typeof olds.sizeBytes === "number" && typeof inputs.sizeBytes === "number" && inputs.sizeBytes < olds.sizeBytes)
        fail("sizeBytes", `cannot shrink from ${olds.sizeBytes} to ${inputs.sizeBytes} bytes: volumes only grow (data beyond the new end would be lost)`);
    }
    if (!isUnknown(inputs.thin) && typeof inputs.thin !== "boolean") fail("thin", `must be true or false, got ${describe(inputs.thin)}`);
    if (!isUnknown(inputs.replicas) && (!Number.isInteger(inputs.replicas) || inputs.replicas < 1 || inputs.replicas > MAX_REPLICAS))
      fail("replicas", `must be a whole number from 1 to ${MAX_REPLICAS} in this release (more replicas need the nexus), got ${describe(inputs.replicas)}`);
    if (!isUnknown(inputs.poolLabels)) fail("poolLabels", checkLabels(inputs.poolLabels));
    if (!isUnknown(inputs.uuid)) fail("uuid", checkUuid(inputs.uuid));
    if (!isUnknown(inputs.pools) && (!Array.isArray(inputs.pools) || inputs.pools.some((p) => typeof p !== "string")))
      fail("pools", `must be a list of pool uuids, got ${describe(inputs.pools)}`);
    if (failures.length > 0 || isUnknown(inputs)) return { inputs, failures };

    // Place now, so the plan shows where replicas land. Sticky: existing placement is kept.
    // (When the pools are still unknown at preview, placement happens in create.)
    if (inputs.placement.length < inputs.replicas) {
      try {
        return { inputs: { ...inputs, placement: await this.place(inputs) }, failures };
      } catch (err) {
        if (isPlacementError(err)) return { inputs, failures: [{ property: "sizeBytes", reason: (err as Error).message }] };
        throw err;
      }
    }
    return { inputs, failures };
  }

  private async place(inputs: VolumeInputs): Promise<PlacedReplica[]> {
    const pools = await inventory(this.clusterOrThrow());
    return placeReplicas(
      pools,
      {
        size_bytes: inputs.sizeBytes,
        thin: inputs.thin,
        replicas: inputs.replicas,
        pool_labels: inputs.poolLabels,
        pool_uuids: inputs.pools,
        topology_key: inputs.topologyKey,
      },
      inputs.placement,
      newUuid,
    );
  }

  async diff(_id: string, olds: VolumeOutputs, news: VolumeInputs): Promise<dynamic.DiffResult> {
    const replaces: string[] = [];
    if (olds.thin !== news.thin) replaces.push("thin");
    if (olds.uuid !== news.uuid) replaces.push("uuid");
    const grown = news.sizeBytes !== olds.sizeBytes;
    const degraded = olds.health !== "online";
    const selectorChanged =
      JSON.stringify(olds.poolLabels) !== JSON.stringify(news.poolLabels) ||
      JSON.stringify(olds.pools) !== JSON.stringify(news.pools) ||
      olds.topologyKey !== news.topologyKey;
    return { changes: replaces.length > 0 || grown || degraded || selectorChanged, replaces, deleteBeforeReplace: false };
  }

  async create(news: VolumeInputs): Promise<dynamic.CreateResult> {
    const cluster = this.clusterOrThrow();
    const inputs = news.placement.length < news.replicas ? { ...news, placement: await this.place(news) } : news;
    const created: PlacedReplica[] = [];
    try {
      for (const replica of inputs.placement) {
        await onNode(cluster, replica.node, (engine) =>
          engine.call(
            "CreateReplica",
            { uuid: replica.replica_uuid, name: "", pool: replica.pool_uuid, size_bytes: inputs.sizeBytes, thin: inputs.thin },
            MUTATE_DEADLINE_MS,
          ),
        );
        created.push(replica);
      }
    } catch (err) {
      // Transactional: a volume that failed to create leaves no replicas behind.
      await Promise.allSettled(
        created.map((r) => onNode(cluster, r.node, (engine) => engine.call("DestroyReplica", { uuid: r.replica_uuid }, MUTATE_DEADLINE_MS))),
      );
      throw err;
    }
    return { id: inputs.uuid, outs: await this.observe(inputs) };
  }

  async read(id: string, props: VolumeOutputs): Promise<dynamic.ReadResult> {
    const outs = await this.observe(props);
    return { id, props: outs };
  }

  async update(_id: string, olds: VolumeOutputs, news: VolumeInputs): Promise<dynamic.UpdateResult> {
    const cluster = this.clusterOrThrow();
    for (const replica of news.placement) {
      await onNode(cluster, replica.node, async (engine) => {
        const { replicas } = await engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS);
        const current = replicas.find((r) => r.uuid === replica.replica_uuid);
        if (!current) {
          // Gone behind our back (or never made): make it again on its pool.
          await engine.call(
            "CreateReplica",
            { uuid: replica.replica_uuid, name: "", pool: replica.pool_uuid, size_bytes: news.sizeBytes, thin: news.thin },
            MUTATE_DEADLINE_MS,
          );
        } else if (current.size_bytes < news.sizeBytes) {
          await engine.call("ResizeReplica", { uuid: replica.replica_uuid, size_bytes: news.sizeBytes }, MUTATE_DEADLINE_MS);
        }
      });
    }
    void olds;
    return { outs: await this.observe(news) };
  }

  async delete(_id: string, props: VolumeOutputs): Promise<void> {
    const cluster = this.clusterOrThrow();
    for (const replica of props.placement ?? []) {
      await onNode(cluster, replica.node, (engine) => engine.call("DestroyReplica", { uuid: replica.replica_uuid }, MUTATE_DEADLINE_MS));
    }
  }

  /** Looks at every replica of the volume on its node and reports what is there. */
  private async observe(inputs: VolumeInputs): Promise<VolumeOutputs> {
    const cluster = this.clusterOrThrow();
    const replicaStatus: ReplicaStatus[] = [];
    for (const placed of inputs.placement) {
      const { replicas } = await onNode(cluster, placed.node, (engine) => engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS));
      const found = replicas.find((r) => r.uuid === placed.replica_uuid);
      replicaStatus.push({ ...placed, state: found ? "online" : "missing", allocatedBytes: found?.allocated_bytes ?? 0 });
    }
    return {
      ...inputs,
      health: replicaStatus.every((r) => r.state === "online") ? "online" : "degraded",
      replicaStatus,
      node: inputs.placement[0]?.node ?? "",
      pool: inputs.placement[0]?.pool_name ?? "",
    };
  }
}
