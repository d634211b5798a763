// The Volume resource's dynamic provider: a block volume whose replicas are placed on pools.
//
// Placement happens in `check`, so `pulumi preview` shows where each replica lands (and
// `placement` is part of the plan a reviewer reads). It is sticky: once placed, replicas stay.
// Size grows in place; `thin` is identity (changing it replaces the volume, which preview
// shows as a replace). `read` reports replicas that vanished; the next `up` recreates them.
// With replicas > 1 the volume is a nexus (provider/nexus.ts) on the first replica's node,
// optionally published to one frontend host NQN; `up` also brings faulted children back.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { checkNexusSizeBytes } from "../common/nexus-rules";
import { frontendDhchapSecret } from "../common/dhchap";
import { checkLabels, checkNqn, checkSizeBytes, checkUuid, describe } from "../common/validate";
import { CALL_DEADLINE_MS, inventory, MUTATE_DEADLINE_MS, newUuid, nexusUuidFor, onNode, replicaUuidFor } from "./cluster";
import { ClusterConfig, clusterConfigFrom } from "./connection";
import { destroyNexus, ensureNexus, NEXUS_LABEL_BYTES, NexusStatus, observeNexus } from "./nexus";
import { isPlacementError, PlacedReplica, placeReplicas } from "./placement";
import { isUnknown } from "./unknown";

/** The most replicas a volume may have: a product limit (a nexus could take NEXUS_MAX_CHILDREN children; 5 is plenty). */
export const MAX_REPLICAS = 5;

export interface VolumeInputs {
  readonly uuid: string;
  readonly sizeBytes: number;
  readonly thin: boolean;
  readonly replicas: number;
  readonly poolLabels: Record<string, string>;
  readonly pools: string[];
  readonly topologyKey: string;
  /** Replicated volumes only: the host NQN of the frontend node the nexus is published to ("" = unpublished). */
  readonly frontendHostNqn: string;
  /** Filled in by `check`: where each replica lives. */
  readonly placement: PlacedReplica[];
  /** Filled in by `check` when replicas > 1: the nexus's uuid ("" for one replica). */
  readonly nexusUuid: string;
}

/** A replica as `read` last saw it. */
export interface ReplicaStatus extends PlacedReplica {
  /** "online": present on its pool; "missing": gone from its pool (refresh found it deleted). */
  readonly state: "online" | "missing";
  readonly allocatedBytes: number;
}

export interface VolumeOutputs extends VolumeInputs {
  /** "online" when every replica is present (and in sync); "degraded" when some are not; "faulted" when the nexus has no healthy child. */
  readonly health: "online" | "degraded" | "faulted";
  /** Replicated volumes: the nexus as its node reports it; null for one replica. */
  readonly nexus: NexusStatus | null;
  readonly replicaStatus: ReplicaStatus[];
  /**
   * Replicated volumes published to a frontend: the DH-HMAC-CHAP secret the frontend host
   * connects with (`nvme connect --dhchap-secret`); "" otherwise. A secret output (the SDK marks it).
   */
  readonly frontendDhchapSecret: string;
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
    let inputs: VolumeInputs = {
      thin: true,
      replicas: 1,
      poolLabels: {},
      pools: [],
      topologyKey: "zone",
      frontendHostNqn: "",
      ...news,
      uuid: olds.uuid ?? news.uuid ?? newUuid(),
      placement: olds.placement ?? [],
      nexusUuid: olds.nexusUuid ?? "",
    } as VolumeInputs;
    if (this.cluster === null) fail("node", this.configError);
    const replicated = typeof inputs.replicas === "number" && inputs.replicas > 1;
    if (!isUnknown(inputs.sizeBytes)) {
      // A replicated volume is a nexus: CreateNexus refuses what is not a multiple of 4096, so preview does too.
      fail("sizeBytes", checkSizeBytes(inputs.sizeBytes) ?? (replicated ? checkNexusSizeBytes(inputs.sizeBytes) : null));
      if (typeof olds.sizeBytes === "number" && typeof inputs.sizeBytes === "number" && inputs.sizeBytes < olds.sizeBytes)
        fail("sizeBytes", `cannot shrink from ${olds.sizeBytes} to ${inputs.sizeBytes} bytes: volumes only grow (data beyond the new end would be lost)`);
    }
    if (!isUnknown(inputs.thin) && typeof inputs.thin !== "boolean") fail("thin", `must be true or false, got ${describe(inputs.thin)}`);
    if (!isUnknown(inputs.replicas) && (!Number.isInteger(inputs.replicas) || inputs.replicas < 1 || inputs.replicas > MAX_REPLICAS))
      fail("replicas", `must be a whole number from 1 to ${MAX_REPLICAS}, got ${describe(inputs.replicas)}`);
    if (!isUnknown(inputs.frontendHostNqn) && inputs.frontendHostNqn !== "") {
      fail("frontendHostNqn", checkNqn(inputs.frontendHostNqn));
      if (!replicated && !isUnknown(inputs.replicas)) fail("frontendHostNqn", "is for replicated volumes (replicas >= 2): a one-replica volume has no nexus to publish");
    }
    if (replicated && typeof olds.sizeBytes === "number" && typeof inputs.sizeBytes === "number" && inputs.sizeBytes !== olds.sizeBytes)
      fail("sizeBytes", `cannot change from ${olds.sizeBytes} to ${inputs.sizeBytes} bytes: a replicated volume cannot be resized in this release (its nexus has a fixed size)`);
    if (!isUnknown(inputs.poolLabels)) fail("poolLabels", checkLabels(inputs.poolLabels));
    if (!isUnknown(inputs.uuid)) fail("uuid", checkUuid(inputs.uuid));
    if (!isUnknown(inputs.pools) && (!Array.isArray(inputs.pools) || inputs.pools.some((p) => typeof p !== "string")))
      fail("pools", `must be a list of pool uuids, got ${describe(inputs.pools)}`);
    if (failures.length > 0 || isUnknown(inputs)) return { inputs, failures };

    // Place now, so the plan shows where replicas land. Sticky: existing placement is kept.
    // (When the pools are still unknown at preview, placement happens in create.)
    inputs = { ...inputs, nexusUuid: replicated ? inputs.nexusUuid || nexusUuidFor(inputs.uuid) : "" };
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
        size_bytes: replicaSizeBytes(inputs),
        thin: inputs.thin,
        replicas: inputs.replicas,
        pool_labels: inputs.poolLabels,
        pool_uuids: inputs.pools,
        topology_key: inputs.topologyKey,
      },
      inputs.placement,
      (slot) => replicaUuidFor(inputs.uuid, slot),
    );
  }

  async diff(_id: string, olds: VolumeOutputs, news: VolumeInputs): Promise<dynamic.DiffResult> {
    const replaces: string[] = [];
    if (olds.thin !== news.thin) replaces.push("thin");
    if (olds.uuid !== news.uuid) replaces.push("uuid");
    // One replica to several (or back) changes what the volume is: a plain replica or a nexus.
    if ((olds.replicas ?? 1) !== news.replicas) replaces.push("replicas");
    const republished = (olds.frontendHostNqn ?? "") !== (news.frontendHostNqn ?? "");
    const grown = news.sizeBytes !== olds.sizeBytes;
    const degraded = olds.health !== "online";
    const selectorChanged =
      JSON.stringify(olds.poolLabels) !== JSON.stringify(news.poolLabels) ||
      JSON.stringify(olds.pools) !== JSON.stringify(news.pools) ||
      olds.topologyKey !== news.topologyKey;
    return { changes: replaces.length > 0 || grown || degraded || selectorChanged || republished, replaces, deleteBeforeReplace: false };
  }

  async create(news: VolumeInputs): Promise<dynamic.CreateResult> {
    const cluster = this.clusterOrThrow();
    const inputs = news.placement.length < news.replicas ? { ...news, placement: await this.place(news) } : news;
    // Every replica whose CreateReplica was sent, not only those that returned: a call that hit
    // its deadline (a thick replica zeroing a large disk) may still have been done by the engine.
    const attempted: PlacedReplica[] = [];
    try {
      for (const replica of inputs.placement) {
        attempted.push(replica);
        await onNode(cluster, replica.node, (engine) =>
          engine.call(
            "CreateReplica",
            { uuid: replica.replica_uuid, name: "", pool: replica.pool_uuid, size_bytes: replicaSizeBytes(inputs), thin: inputs.thin },
            MUTATE_DEADLINE_MS,
          ),
        );
      }
      if (inputs.replicas > 1) await ensureNexus(cluster, inputs);
    } catch (err) {
      // Transactional: a volume that failed to create leaves no nexus, share or replica behind.
      const left = await this.rollBack(cluster, inputs, attempted);
      if (left.length === 0) throw err;
      throw keptInState(err as Error, inputs, left, `could not undo ${left.join(", ")}`);
    }
    try {
      return { id: inputs.uuid, outs: await this.observe(inputs) };
    } catch (err) {
      // Everything was made; only looking at it failed. Keep it (the next refresh or up reads it).
      throw keptInState(err as Error, inputs, [], "the volume was created but reading it back failed");
    }
  }

  /**
   * Undoes a failed create, best-effort per step (an unreachable node does not stop the others):
   * the nexus and the shares, then every replica create that was attempted. Returns what could
   * not be undone, as "replica <uuid> on <node>" or "nexus <uuid> on <node>"; empty when nothing is left.
   */
  private async rollBack(cluster: ClusterConfig, inputs: VolumeInputs, attempted: readonly PlacedReplica[]): Promise<string[]> {
    const left: string[] = [];
    if (inputs.replicas > 1 && inputs.placement.length > 0) {
      await destroyNexus(cluster, inputs).catch(() => left.push(`nexus ${inputs.nexusUuid} on ${inputs.placement[0].node} (or its shares)`));
    }
    for (const r of attempted) {
      await onNode(cluster, r.node, (engine) => engine.call("DestroyReplica", { uuid: r.replica_uuid }, MUTATE_DEADLINE_MS)).catch(() =>
        left.push(`replica ${r.replica_uuid} on ${r.node}`),
      );
    }
    return left;
  }

  async read(id: string, props: VolumeOutputs): Promise<dynamic.ReadResult> {
    const outs = await this.observe(props);
    return { id, props: outs };
  }

  async update(_id: string, olds: VolumeOutputs, news: VolumeInputs): Promise<dynamic.UpdateResult> {
    const cluster = this.clusterOrThrow();
    const recreated = new Set<string>();
    for (const replica of news.placement) {
      await onNode(cluster, replica.node, async (engine) => {
        const { replicas } = await engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS);
        const current = replicas.find((r) => r.uuid === replica.replica_uuid);
        if (!current) {
          // Gone behind our back (or never made): make it again on its pool. It is empty: the
          // nexus must rebuild it in full (it carries no label), never trust it as it was.
          recreated.add(replica.replica_uuid);
          await engine.call(
            "CreateReplica",
            { uuid: replica.replica_uuid, name: "", pool: replica.pool_uuid, size_bytes: replicaSizeBytes(news), thin: news.thin },
            MUTATE_DEADLINE_MS,
          );
        } else if (news.replicas === 1 && current.size_bytes < news.sizeBytes) {
          await engine.call("ResizeReplica", { uuid: replica.replica_uuid, size_bytes: news.sizeBytes }, MUTATE_DEADLINE_MS);
        }
      });
    }
    // A replicated volume: the nexus exists, is published as asked, and faulted children rebuild.
    if (news.replicas > 1) await ensureNexus(cluster, news, olds.frontendHostNqn ?? "", recreated);
    return { outs: await this.observe(news) };
  }

  async delete(_id: string, props: VolumeOutputs): Promise<void> {
    const cluster = this.clusterOrThrow();
    if ((props.replicas ?? 1) > 1 && props.nexusUuid) await destroyNexus(cluster, props);
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
    const present = replicaStatus.every((r) => r.state === "online");
    if (inputs.replicas > 1 && inputs.nexusUuid) {
      const nexus = await observeNexus(cluster, inputs);
      const health = nexus.health === "faulted" ? "faulted" : present && nexus.health === "online" ? "online" : "degraded";
      const frontendSecret = inputs.frontendHostNqn ? frontendDhchapSecret(cluster.token, inputs.nexusUuid) : "";
      return {
        ...inputs,
        health,
        nexus,
        replicaStatus,
        frontendDhchapSecret: frontendSecret,
        node: inputs.placement[0]?.node ?? "",
        pool: inputs.placement[0]?.pool_name ?? "",
      };
    }
    return {
      ...inputs,
      health: present ? "online" : "degraded",
      nexus: null,
      replicaStatus,
      frontendDhchapSecret: "",
      node: inputs.placement[0]?.node ?? "",
      pool: inputs.placement[0]?.pool_name ?? "",
    };
  }
}

/**
 * A create that failed but left something on the engines: Pulumi's "created, but failed to
 * initialize" (an error with `id` and `properties`), so the volume is kept in the stack with its
 * uuid, placement and replica uuids. The next `up` then converges it through `update` (engines
 * dedupe by uuid, so nothing is made twice), and `destroy` removes it; a plain error would make
 * Pulumi forget it and the next `up` place a new volume beside the leftovers.
 */
function keptInState(err: Error, inputs: VolumeInputs, left: readonly string[], what: string): Error {
  const remains = (r: PlacedReplica) => left.some((what) => what.includes(r.replica_uuid));
  const outs: VolumeOutputs = {
    ...inputs,
    health: "degraded",
    nexus: null,
    replicaStatus: inputs.placement.map((r) => ({ ...r, state: remains(r) ? "online" : "missing", allocatedBytes: 0 })),
    frontendDhchapSecret: "",
    node: inputs.placement[0]?.node ?? "",
    pool: inputs.placement[0]?.pool_name ?? "",
  };
  const message = `${err.message} (${what}; the volume stays in the stack: the next \`pulumi up\` finishes it, \`pulumi destroy\` removes it)`;
  return Object.assign(new Error(message), { id: inputs.uuid, properties: outs, reasons: [message] });
}

/** Bytes each replica holds: a replicated volume's replicas also carry the nexus label region. */
export function replicaSizeBytes(inputs: Pick<VolumeInputs, "sizeBytes" | "replicas">): number {
  return inputs.replicas > 1 ? inputs.sizeBytes + NEXUS_LABEL_BYTES : inputs.sizeBytes;
}
