// What a Pulumi program imports: `import * as strata from "strata/sdk"` (or a relative path).
//
//   const pool = new strata.Pool("pool-a", { node: "node-a", disk: "file:///var/lib/strata/a.img?size_mib=1024" });
//   const vol = new strata.Volume("db", { sizeBytes: 1 * strata.GIB, pools: [pool] });
//
// Engines are found through stack config: `strata:endpoints` (node -> host:port) and the
// secret `strata:token`; `npx strata cluster up` writes both for a local cluster.
import * as pulumi from "@pulumi/pulumi";
import { PoolProvider } from "../provider/pool";
import { VolumeProvider } from "../provider/volume";
import { clusterConfigFrom, ENDPOINTS_KEY, TOKEN_KEY } from "../provider/connection";
import type { ReplicaStatus } from "../provider/volume";
import type { PlacedReplica } from "../provider/placement";
import type { NexusStatus } from "../provider/nexus";

export { MIB, GIB } from "../common/validate";
export type { NexusStatus, PlacedReplica, ReplicaStatus };

/** The module part of every Strata resource type: `pulumi-nodejs:dynamic/strata:<Type>`. */
const MODULE = "strata";

/**
 * Fails the program (and so `pulumi preview`) early when the stack has no cluster config,
 * with the command that fixes it.
 */
function requireClusterConfig(): void {
  clusterConfigFrom((key) => {
    const [namespace, name] = key.split(":");
    return new pulumi.Config(namespace).get(name);
  });
}

export interface PoolArgs {
  /** The node (a key of `strata:endpoints`) whose engine owns the device. */
  readonly node: pulumi.Input<string>;
  /** Device URI: `file:///path?size_mib=N`, `uring:///dev/NAME` or `malloc:///name?size_mib=N`. */
  readonly disk: pulumi.Input<string>;
  /** Pool name on its node; defaults to the resource name. */
  readonly name?: pulumi.Input<string>;
  /** Labels volumes select pools by (`poolLabels`). Changing them updates in place. */
  readonly labels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Allocation unit; a power of two from 1 MiB to 64 MiB. Default 4 MiB. */
  readonly clusterSizeBytes?: pulumi.Input<number>;
}

/** A storage pool: one device on one node, carved into replicas. */
export class Pool extends pulumi.dynamic.Resource {
  public readonly uuid!: pulumi.Output<string>;
  public readonly node!: pulumi.Output<string>;
  public readonly disk!: pulumi.Output<string>;
  public readonly name!: pulumi.Output<string>;
  public readonly labels!: pulumi.Output<Record<string, string>>;
  public readonly clusterSizeBytes!: pulumi.Output<number>;
  /** "online", "faulted" or "missing". */
  public readonly state!: pulumi.Output<string>;
  public readonly capacityBytes!: pulumi.Output<number>;
  public readonly usedBytes!: pulumi.Output<number>;
  public readonly committedBytes!: pulumi.Output<number>;
  public readonly replicaCount!: pulumi.Output<number>;

  constructor(name: string, args: PoolArgs, opts?: pulumi.CustomResourceOptions) {
    if (!opts?.id) requireClusterConfig();
    super(
      new PoolProvider(),
      name,
      {
        node: args.node,
        disk: args.disk,
        name: args.name ?? name,
        labels: args.labels ?? {},
        clusterSizeBytes: args.clusterSizeBytes ?? 0,
        uuid: undefined,
        state: undefined,
        capacityBytes: undefined,
        usedBytes: undefined,
        committedBytes: undefined,
        replicaCount: undefined,
      },
      opts,
      MODULE,
      "Pool",
    );
  }
}

export interface VolumeArgs {
  /** Size in bytes: a multiple of 512, or of 4096 when replicas >= 2 (a nexus serves 4 KiB blocks). Growing it resizes in place; shrinking is refused. */
  readonly sizeBytes: pulumi.Input<number>;
  /** Thin volumes allocate on first write. Default true. Changing it replaces the volume. */
  readonly thin?: pulumi.Input<boolean>;
  /**
   * Number of replicas, 1 to 5. With 2 or more the volume is a nexus (RAID-1) on the first
   * replica's node, which keeps serving through a replica's failure and rebuilds it. Changing
   * it replaces the volume. A replicated volume cannot be resized in this release.
   */
  readonly replicas?: pulumi.Input<number>;
  /**
   * Replicated volumes: the host NQN of the node that mounts the volume; the nexus is published
   * over NVMe/TCP to that host only (outputs `nexus.nqn` and `nexus.address`). Changing it
   * moves the volume to the new frontend in place.
   */
  readonly frontendHostNqn?: pulumi.Input<string>;
  /** Place only on these pools (and wait for them to exist). Default: any pool that fits. */
  readonly pools?: Pool[];
  /** Place only on pools carrying all these labels. */
  readonly poolLabels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Spread replicas across distinct values of this node label. Default "zone". */
  readonly topologyKey?: pulumi.Input<string>;
}

/** A block volume: replicas on pools, placed by the provider and shown in the plan. */
export class Volume extends pulumi.dynamic.Resource {
  public readonly uuid!: pulumi.Output<string>;
  public readonly sizeBytes!: pulumi.Output<number>;
  public readonly thin!: pulumi.Output<boolean>;
  public readonly replicas!: pulumi.Output<number>;
  /** Where each replica lives (node, pool, replica uuid). */
  public readonly placement!: pulumi.Output<PlacedReplica[]>;
  /** What the last create/update/refresh saw of each replica. */
  public readonly replicaStatus!: pulumi.Output<ReplicaStatus[]>;
  /** "online", "degraded" (a replica missing or out of sync) or "faulted" (no healthy replica). */
  public readonly health!: pulumi.Output<string>;
  /** Replicated volumes: the nexus (node, health, NVMe/TCP nqn and address, each child's state); null for one replica. */
  public readonly nexus!: pulumi.Output<NexusStatus | null>;
  /** Node of the first replica. */
  public readonly node!: pulumi.Output<string>;
  /** Pool name of the first replica. */
  public readonly pool!: pulumi.Output<string>;
  /**
   * Replicated volumes with a frontend: the DH-HMAC-CHAP secret the frontend host must present
   * (`nvme connect … --hostnqn <frontendHostNqn> --dhchap-secret <this>`); a Pulumi secret.
   */
  public readonly frontendDhchapSecret!: pulumi.Output<string>;

  constructor(name: string, args: VolumeArgs, opts?: pulumi.CustomResourceOptions) {
    if (!opts?.id) requireClusterConfig();
    super(
      new VolumeProvider(),
      name,
      {
        sizeBytes: args.sizeBytes,
        thin: args.thin ?? true,
        replicas: args.replicas ?? 1,
        pools: (args.pools ?? []).map((p) => p.uuid),
        poolLabels: args.poolLabels ?? {},
        topologyKey: args.topologyKey ?? "zone",
        frontendHostNqn: args.frontendHostNqn ?? "",
        uuid: undefined,
        nexusUuid: undefined,
        nexus: undefined,
        placement: undefined,
        replicaStatus: undefined,
        health: undefined,
        node: undefined,
        pool: undefined,
        frontendDhchapSecret: undefined,
      },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["frontendDhchapSecret"] }),
      MODULE,
      "Volume",
    );
  }
}

export const CONFIG_KEYS = { endpoints: ENDPOINTS_KEY, token: TOKEN_KEY } as const;
