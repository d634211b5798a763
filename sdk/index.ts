// What a Pulumi program imports: `import * as strata from "@strata/sdk"` (sdk/ as a package).
//
//   const pool = new strata.Pool("pool-a", { node: "node-a", disk: "file:///var/lib/strata/a.img?size_mib=1024" });
//   const vol = new strata.Volume("db", { sizeBytes: 1 * strata.GIB, pools: [pool] });
//
// Engines are found through stack config: `strata:endpoints` (node -> host:port) and the
// secret `strata:token`; `npx strata cluster up` writes both for a local cluster.
//
// Output properties are `declare`d, never initialized: under TypeScript's ES2022+ class-field
// semantics an initialized (or `!`) field would overwrite the Output Pulumi sets in the
// constructor, and every output would read undefined.
import * as pulumi from "@pulumi/pulumi";
import { PoolProvider, PoolState } from "../provider/pool";
import { VolumeProvider } from "../provider/volume";
import { ReplicaProvider, ReplicaResourceState } from "../provider/replica";
import { NexusResourceProvider } from "../provider/nexus-resource";
import { CsalDeviceProvider, CsalDeviceStats } from "../provider/csal-device";
import { clusterConfigFrom, ENDPOINTS_KEY, TOKEN_KEY } from "../provider/connection";
import { resourceUuidFor } from "../provider/cluster";
import type { PlacedReplica } from "../provider/placement";
import type {
  ChildState,
  DeclaredPool,
  NexusChildStatus,
  NexusHealth,
  NexusStatus,
  PoolRef,
  ReplicaState,
  ReplicaStatus,
  SpreadMode,
  VolumeHealth,
} from "../provider/volume-spec";
import type { Transport, TransportMode } from "../provider/transport";

export { MIB, GIB } from "../common/validate";
export { NEXUS_LABEL_REGION_BYTES } from "../common/nexus-rules";
export type {
  ChildState,
  CsalDeviceStats,
  NexusChildStatus,
  NexusHealth,
  NexusStatus,
  PlacedReplica,
  PoolState,
  ReplicaResourceState,
  ReplicaState,
  ReplicaStatus,
  SpreadMode,
  Transport,
  TransportMode,
  VolumeHealth,
};

/**
 * One provider instance per resource type: Pulumi serializes a dynamic provider once per
 * instance (and caches it), and serializing ours takes a good part of a second; a new instance
 * per resource made a 200-volume preview pay that 200 times.
 */
const POOL_PROVIDER = new PoolProvider();
const VOLUME_PROVIDER = new VolumeProvider();
const REPLICA_PROVIDER = new ReplicaProvider();
const NEXUS_PROVIDER = new NexusResourceProvider();
const CSAL_DEVICE_PROVIDER = new CsalDeviceProvider();

/** The module part of every Strata resource type: `pulumi-nodejs:dynamic/strata:<Type>`. */
const MODULE = "strata";
const POOL_TYPE = `pulumi-nodejs:dynamic/${MODULE}:Pool`;
const VOLUME_TYPE = `pulumi-nodejs:dynamic/${MODULE}:Volume`;
const REPLICA_TYPE = `pulumi-nodejs:dynamic/${MODULE}:Replica`;
const NEXUS_TYPE = `pulumi-nodejs:dynamic/${MODULE}:Nexus`;

/**
 * The `import` resource option, taken over by the SDK. Pulumi's engine reads an imported
 * resource without its inputs, and the dynamic-provider host needs them to find the provider
 * (pulumi/pulumi#3550, #16175: the import fails with "Cannot read properties of undefined"), so the
 * option is not passed on: its id goes to the provider as `importId`, whose check verifies that
 * the object exists and matches what the program declares (naming the property that differs) and
 * whose create adopts it without changing anything on the engines. See docs/IMPORT.md.
 */
function takeImport(opts: pulumi.CustomResourceOptions | undefined): { importId: string; opts: pulumi.CustomResourceOptions | undefined } {
  if (!opts?.import) return { importId: "", opts };
  const { import: importId, ...rest } = opts;
  return { importId, opts: rest };
}
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
  /**
   * Drain the pool: every volume declared after it moves its replicas elsewhere (the new replica
   * is rebuilt before the old one goes) and no new replica lands here. The preview shows each move.
   */
  readonly drain?: pulumi.Input<boolean>;
}

/** A new resource's uuid in this program's project and stack (see resourceUuidFor). */
function derivedUuid(kind: Parameters<typeof resourceUuidFor>[0], name: string): string {
  return resourceUuidFor(kind, pulumi.getProject(), pulumi.getStack(), name);
}

/** Every Pool the program declared so far, in order: volumes declared after them can be placed on them at the first preview. */
const declaredPools: Pool[] = [];

/** A storage pool: one device on one node, carved into replicas. Its id is the pool's uuid. */
export class Pool extends pulumi.dynamic.Resource {
  declare readonly uuid: pulumi.Output<string>;
  declare readonly node: pulumi.Output<string>;
  declare readonly disk: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  declare readonly labels: pulumi.Output<Record<string, string>>;
  declare readonly clusterSizeBytes: pulumi.Output<number>;
  declare readonly drain: pulumi.Output<boolean>;
  declare readonly state: pulumi.Output<PoolState>;
  declare readonly capacityBytes: pulumi.Output<number>;
  declare readonly usedBytes: pulumi.Output<number>;
  declare readonly committedBytes: pulumi.Output<number>;
  declare readonly replicaCount: pulumi.Output<number>;

  constructor(name: string, args: PoolArgs, options?: pulumi.CustomResourceOptions) {
    const { importId, opts } = takeImport(options);
    if (!opts?.id) requireClusterConfig();
    super(
      POOL_PROVIDER,
      name,
      {
        importId,
        node: args.node,
        disk: args.disk,
        name: args.name ?? name,
        labels: args.labels ?? {},
        clusterSizeBytes: args.clusterSizeBytes ?? 0,
        drain: args.drain ?? false,
        uuid: opts?.id ? undefined : importId || derivedUuid("Pool", name),
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
    if (!opts?.id) declaredPools.push(this);
  }

  /** Reads an existing pool's state (`id`: the pool's uuid, the id the `import` option takes; docs/IMPORT.md). */
  static get(name: string, id: pulumi.Input<pulumi.ID>, opts?: pulumi.CustomResourceOptions): Pool {
    return new Pool(name, { node: "", disk: "" }, { ...opts, id });
  }

  static override isInstance(obj: unknown): obj is Pool {
    return obj instanceof pulumi.Resource && (obj as unknown as { __pulumiType?: string }).__pulumiType === POOL_TYPE;
  }
}

export interface CsalDeviceArgs {
  /** The node (a key of `strata:endpoints`) whose engine owns both devices. */
  readonly node: pulumi.Input<string>;
  /** The fast device that takes every write (Optane/SLC class): `file://`, `uring://` or `malloc://`. */
  readonly cacheDevice: pulumi.Input<string>;
  /** The large device that receives only whole sequential bands (QLC, ZNS): a plain URI or `zoned://?base=…&zone_mib=N`. */
  readonly baseDevice: pulumi.Input<string>;
  /** Name on its node; defaults to the resource name. */
  readonly name?: pulumi.Input<string>;
  /** Base band space kept spare for garbage collection, 5 to 90 percent. Default 20. */
  readonly overprovisionPercent?: pulumi.Input<number>;
  /** Band size in MiB on a conventional base (default 64); leave out on a zoned base, where a band is a zone. */
  readonly bandMib?: pulumi.Input<number>;
  /** Cache chunk size in KiB, a multiple of 4 from 64 to 65536. Default 1024. */
  readonly chunkKib?: pulumi.Input<number>;
  /**
   * The most memory the FTL's map may take, MiB. The map takes 8 bytes a 4 KiB block; beyond the
   * limit its least recently used pages live on the cache device (a miss costs one 4 KiB cache
   * read). Changes in place, applied at once. Default 0: no limit, all of it resident.
   */
  readonly mapMemoryLimitMib?: pulumi.Input<number>;
}

/**
 * A CSAL tiered device: a flash translation layer that appends every write to `cacheDevice` and
 * moves data to `baseDevice` only in whole sequential bands. Formatted once at create; engine
 * restarts load it. A Pool takes its `uri` as `disk`. Changing a device or the geometry replaces
 * it (formats it anew); destroying it while a pool is on it is refused. Its id is its uuid.
 *
 *   const csal = new strata.CsalDevice("tier", { node: "node-a", cacheDevice: "file:///fast.img?size_mib=1024", baseDevice: "file:///big.img?size_mib=16384" });
 *   const pool = new strata.Pool("pool-a", { node: "node-a", disk: csal.uri });
 */
export class CsalDevice extends pulumi.dynamic.Resource {
  declare readonly uuid: pulumi.Output<string>;
  declare readonly node: pulumi.Output<string>;
  declare readonly cacheDevice: pulumi.Output<string>;
  declare readonly baseDevice: pulumi.Output<string>;
  declare readonly name: pulumi.Output<string>;
  declare readonly overprovisionPercent: pulumi.Output<number>;
  declare readonly bandMib: pulumi.Output<number>;
  declare readonly chunkKib: pulumi.Output<number>;
  declare readonly mapMemoryLimitMib: pulumi.Output<number>;
  /** `ftl://?cache=…&base=…`: a Pool's `disk`. Known at the first preview. */
  declare readonly uri: pulumi.Output<string>;
  /** What the host sees: the base's band space less over-provisioning and GC's reserve. */
  declare readonly sizeBytes: pulumi.Output<number>;
  /** The pool on it, "" when none. */
  declare readonly inUseBy: pulumi.Output<string>;
  /** Write amplification and background work, as of the last create or `pulumi refresh`. */
  declare readonly stats: pulumi.Output<CsalDeviceStats>;

  constructor(name: string, args: CsalDeviceArgs, opts?: pulumi.CustomResourceOptions) {
    requireClusterConfig();
    super(
      CSAL_DEVICE_PROVIDER,
      name,
      {
        node: args.node,
        cacheDevice: args.cacheDevice,
        baseDevice: args.baseDevice,
        name: args.name ?? name,
        overprovisionPercent: args.overprovisionPercent ?? 0,
        bandMib: args.bandMib ?? 0,
        chunkKib: args.chunkKib ?? 0,
        mapMemoryLimitMib: args.mapMemoryLimitMib ?? 0,
        uuid: derivedUuid("CsalDevice", name),
        uri: undefined,
        sizeBytes: undefined,
        inUseBy: undefined,
        stats: undefined,
      },
      opts,
      MODULE,
      "CsalDevice",
    );
  }
}

export interface VolumeArgs {
  /** Size in bytes, a multiple of 4096 (a nexus serves 4 KiB blocks). Growing it resizes in place (hosts see the new size without reconnecting); shrinking is refused. */
  readonly sizeBytes: pulumi.Input<number>;
  /** Thin volumes allocate on first write. Default true. Changing it converts the replicas in place. */
  readonly thin?: pulumi.Input<boolean>;
  /**
   * Number of replicas, 1 to 5. The volume is a nexus (RAID-1) on the first replica's node, which
   * keeps serving through a replica's failure and rebuilds it. Changing it adds replicas (rebuilt
   * in full before they serve) or removes the least preferred ones, in place.
   */
  readonly replicas?: pulumi.Input<number>;
  /**
   * The host NQN of the node that mounts the volume: the nexus is published over NVMe/TCP to
   * that host only (outputs `nexus.nqn`, `nexus.host`, `nexus.port`). Changing it moves the
   * volume to the new frontend in place.
   */
  readonly frontendHostNqn?: pulumi.Input<string>;
  /**
   * The frontend leg's NVMe-oF transport: "tcp" (default), "rdma" (the nexus node must serve
   * NVMe over RDMA: its engine runs with --rdma-interface on an interface with an RDMA device;
   * otherwise preview fails naming the node) or "auto" (RDMA when the nexus node serves it). The
   * outputs `nexus.transport`, `nexus.address` and `nexus.connectCommand` say what to connect
   * with; the nexus stays reachable over TCP too.
   */
  readonly transport?: pulumi.Input<TransportMode>;
  /**
   * The nexus-to-replica leg for replicas on other nodes: "tcp" (default), "rdma" (the nexus node
   * and every remote replica's node must serve RDMA, or preview fails naming the node) or "auto"
   * (RDMA where both ends serve it). `nexus.children[].transport` says what each child uses. Set
   * when the volume is made: existing children keep theirs, so a change is refused at preview.
   */
  readonly replicaTransport?: pulumi.Input<TransportMode>;
  /** Place only on these pools (Pool resources or pool uuids). Default: any pool that fits. */
  readonly pools?: (Pool | pulumi.Input<string>)[];
  /** Place only on pools carrying all these labels. */
  readonly poolLabels?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Place only on nodes whose engine labels include all of these. */
  readonly nodeSelector?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Spread replicas across distinct values of this node label. Default "zone"; "" for none. */
  readonly topologyKey?: pulumi.Input<string>;
  /** "preferred" (default): spread when possible; "required": fail placement rather than share a value. */
  readonly topologySpread?: pulumi.Input<SpreadMode>;
  /** Anti-affinity: no two replicas of volumes with the same group on one node. */
  readonly group?: pulumi.Input<string>;
}

function poolRefOf(p: Pool | pulumi.Input<string>): pulumi.Input<PoolRef> {
  // By node and name: known at the first preview, before the pool (and its uuid) exists.
  if (Pool.isInstance(p)) return pulumi.all([p.node, p.name]).apply(([node, name]) => ({ uuid: "", node, name }));
  return pulumi.output(p).apply((uuid) => ({ uuid, node: "", name: "" }));
}

/**
 * Every pool declared so far as one input, built once per set of pools: the volumes declared
 * after the same pools (typically all of them) share one Output instead of each resolving six
 * outputs of every pool again (200 volumes on 12 pools: 2,400 Outputs less per run).
 */
let declaredPoolsInput: { readonly count: number; readonly value: pulumi.Output<DeclaredPool[]> } | undefined;

function declaredPoolsSoFar(): pulumi.Output<DeclaredPool[]> {
  if (declaredPoolsInput?.count !== declaredPools.length)
    declaredPoolsInput = { count: declaredPools.length, value: pulumi.all(declaredPools.map(declaredOf)) };
  return declaredPoolsInput.value;
}

function declaredOf(p: Pool): pulumi.Input<DeclaredPool> {
  return pulumi
    .all([p.node, p.name, p.disk, p.labels, p.clusterSizeBytes, p.drain])
    .apply(([node, name, disk, labels, clusterSizeBytes, drain]) => ({ node, name, disk, labels: labels ?? {}, clusterSizeBytes: clusterSizeBytes ?? 0, drain: drain ?? false }));
}


/**
 * The last Volume the program declared. Each volume registers after the one before it (its
 * `planAfter` input is that volume's URN), so the provider plans them in declaration order in
 * `pulumi preview` and in `pulumi up` alike, and each sees the reservations of those before it:
 * the same answer both times. (In `up` this also creates new volumes one after another.)
 */
let lastVolume: Volume | undefined;

/** A block volume: replicas on pools, placed by the provider and shown in the plan. Its id is the volume's uuid. */
export class Volume extends pulumi.dynamic.Resource {
  declare readonly uuid: pulumi.Output<string>;
  declare readonly sizeBytes: pulumi.Output<number>;
  declare readonly thin: pulumi.Output<boolean>;
  declare readonly replicas: pulumi.Output<number>;
  /** Where each replica lives (node, pool, replica uuid) and why it was placed there. */
  declare readonly placement: pulumi.Output<PlacedReplica[]>;
  /** What the last create/update/refresh saw of each replica. */
  declare readonly replicaStatus: pulumi.Output<ReplicaStatus[]>;
  /** "online", "degraded" (a replica missing or out of sync) or "faulted" (no healthy replica). */
  declare readonly health: pulumi.Output<VolumeHealth>;
  /** The nexus (node, health, NVMe/TCP nqn, host and port, each child's state); null only for a volume from before every volume had one. */
  declare readonly nexus: pulumi.Output<NexusStatus | null>;
  /** Node of the first replica. */
  declare readonly node: pulumi.Output<string>;
  /** Pool name of the first replica. */
  declare readonly pool: pulumi.Output<string>;
  /**
   * With a frontend: the DH-HMAC-CHAP secret the frontend host must present
   * (`nvme connect … --hostnqn <frontendHostNqn> --dhchap-secret <this>`); a Pulumi secret.
   */
  declare readonly frontendDhchapSecret: pulumi.Output<string>;

  constructor(name: string, args: VolumeArgs, options?: pulumi.CustomResourceOptions) {
    const { importId, opts } = takeImport(options);
    if (!opts?.id) requireClusterConfig();
    super(
      VOLUME_PROVIDER,
      name,
      {
        sizeBytes: args.sizeBytes,
        thin: args.thin ?? true,
        replicas: args.replicas ?? 1,
        pools: (args.pools ?? []).map(poolRefOf),
        poolLabels: args.poolLabels ?? {},
        nodeSelector: args.nodeSelector ?? {},
        topologyKey: args.topologyKey ?? "zone",
        topologySpread: args.topologySpread ?? "preferred",
        group: args.group ?? "",
        frontendHostNqn: args.frontendHostNqn ?? "",
        transport: args.transport ?? "tcp",
        replicaTransport: args.replicaTransport ?? "tcp",
        declaredPools: opts?.id ? [] : declaredPoolsSoFar(),
        uuid: opts?.id ? undefined : importId || derivedUuid("Volume", name),
        importId,
        planAfter: opts?.id ? "" : lastVolume?.urn ?? "",
        nexusUuid: undefined,
        nexusNode: undefined,
        nexus: undefined,
        placement: undefined,
        leaving: undefined,
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
    if (!opts?.id) lastVolume = this;
  }

  /** Reads an existing volume's state (`id`: the volume's uuid, the id the `import` option takes; docs/IMPORT.md). */
  static get(name: string, id: pulumi.Input<pulumi.ID>, opts?: pulumi.CustomResourceOptions): Volume {
    return new Volume(name, { sizeBytes: 0 }, { ...opts, id });
  }

  static override isInstance(obj: unknown): obj is Volume {
    return obj instanceof pulumi.Resource && (obj as unknown as { __pulumiType?: string }).__pulumiType === VOLUME_TYPE;
  }
}

/** A pool by node and name: one made outside this program (or by another stack). */
export interface PoolByName {
  readonly node: string;
  readonly name: string;
}

export interface ReplicaArgs {
  /** The pool it lives on: a Pool resource, a pool uuid, or `{ node, name }`. Changing it replaces the replica (the new one is made first). */
  readonly pool: Pool | pulumi.Input<string> | pulumi.Input<PoolByName>;
  /**
   * Size in bytes, a multiple of 4096. Growing resizes in place; shrinking replaces the replica.
   * Under a Nexus of `sizeBytes: S`, replicas need S + NEXUS_LABEL_REGION_BYTES.
   */
  readonly sizeBytes: pulumi.Input<number>;
  /** Thin replicas allocate on first write. Default true. Changing it converts in place, data kept. */
  readonly thin?: pulumi.Input<boolean>;
  /**
   * The replica's uuid. Default: derived from project, stack and resource name, so an `up` cut
   * short after the engine made the replica adopts it instead of making another.
   */
  readonly uuid?: pulumi.Input<string>;
}

function replicaPoolRef(p: Pool | pulumi.Input<string> | pulumi.Input<PoolByName>): pulumi.Input<PoolRef> {
  // A Pool of the program by node and name: known at the first preview, before the pool (and its uuid) exists.
  if (Pool.isInstance(p)) return pulumi.all([p.node, p.name]).apply(([node, name]) => ({ uuid: "", node, name }));
  return pulumi.output(p as pulumi.Input<string | PoolByName>).apply((v) => (typeof v === "string" ? { uuid: v, node: "", name: "" } : { uuid: "", node: v.node, name: v.name }));
}

/** One replica on a pool the program chooses (manual placement; a Volume places for you). Its id is the replica's uuid. */
export class Replica extends pulumi.dynamic.Resource {
  declare readonly uuid: pulumi.Output<string>;
  /** The node of its pool. */
  declare readonly node: pulumi.Output<string>;
  declare readonly poolUuid: pulumi.Output<string>;
  declare readonly poolName: pulumi.Output<string>;
  declare readonly sizeBytes: pulumi.Output<number>;
  declare readonly thin: pulumi.Output<boolean>;
  declare readonly allocatedBytes: pulumi.Output<number>;
  /** "online", or "faulted" when its pool's device failed. */
  declare readonly state: pulumi.Output<ReplicaResourceState>;

  constructor(name: string, args: ReplicaArgs, options?: pulumi.CustomResourceOptions) {
    const { importId, opts } = takeImport(options);
    if (!opts?.id) requireClusterConfig();
    super(
      REPLICA_PROVIDER,
      name,
      {
        pool: replicaPoolRef(args.pool),
        sizeBytes: args.sizeBytes,
        thin: args.thin ?? true,
        uuid: args.uuid ?? "",
        defaultUuid: opts?.id ? "" : derivedUuid("Replica", name),
        importId,
        uuidGiven: undefined,
        node: undefined,
        poolUuid: undefined,
        poolName: undefined,
        allocatedBytes: undefined,
        state: undefined,
      },
      opts,
      MODULE,
      "Replica",
    );
  }

  /** Reads an existing replica's state (`id`: the replica's uuid; it is found on whichever node holds it). */
  static get(name: string, id: pulumi.Input<pulumi.ID>, opts?: pulumi.CustomResourceOptions): Replica {
    return new Replica(name, { pool: "", sizeBytes: 0 }, { ...opts, id });
  }

  static override isInstance(obj: unknown): obj is Replica {
    return obj instanceof pulumi.Resource && (obj as unknown as { __pulumiType?: string }).__pulumiType === REPLICA_TYPE;
  }
}

export interface NexusArgs {
  /** The node (a key of `strata:endpoints`) the nexus runs on. Changing it replaces the nexus. */
  readonly node: pulumi.Input<string>;
  /** The size hosts see, a multiple of 4096. Every child needs sizeBytes + NEXUS_LABEL_REGION_BYTES. Grows in place (grow the replicas in the same change). */
  readonly sizeBytes: pulumi.Input<number>;
  /**
   * Its RAID-1 children, 1 to 32 Replicas. Replicas on other nodes are shared to this node over
   * NVMe/TCP. An added child is rebuilt in full before the update returns; a removed one leaves
   * only once the remaining children are all in sync, and is unshared (the Replica stays).
   */
  readonly children: Replica[];
  /** Publish over NVMe/TCP to this host NQN only (outputs nqn, host, port, frontendDhchapSecret). Changing it moves the frontend in place. */
  readonly frontendHostNqn?: pulumi.Input<string>;
  /** The nexus's uuid. Default: derived from project, stack and resource name (a re-run after an interrupted create adopts it). */
  readonly uuid?: pulumi.Input<string>;
}

/** A nexus (RAID-1) on a node the program chooses, over Replicas it placed. Its id is the nexus's uuid. */
export class Nexus extends pulumi.dynamic.Resource {
  declare readonly uuid: pulumi.Output<string>;
  declare readonly node: pulumi.Output<string>;
  declare readonly sizeBytes: pulumi.Output<number>;
  declare readonly frontendHostNqn: pulumi.Output<string>;
  /** Each declared child as the nexus sees it: state, why it is not online, rebuild progress. */
  declare readonly children: pulumi.Output<NexusChildStatus[]>;
  /** "online", "degraded", "faulted" or "missing" (not on its node). */
  declare readonly state: pulumi.Output<NexusHealth>;
  /** The NVMe/TCP subsystem and listener the frontend connects to ("", "", 0 while unpublished). */
  declare readonly nqn: pulumi.Output<string>;
  declare readonly host: pulumi.Output<string>;
  declare readonly port: pulumi.Output<number>;
  /** The DH-HMAC-CHAP secret the frontend host presents (`nvme connect --dhchap-secret`); a Pulumi secret. */
  declare readonly frontendDhchapSecret: pulumi.Output<string>;

  constructor(name: string, args: NexusArgs, options?: pulumi.CustomResourceOptions) {
    const { importId, opts } = takeImport(options);
    if (!opts?.id) requireClusterConfig();
    super(
      NEXUS_PROVIDER,
      name,
      {
        node: args.node,
        sizeBytes: args.sizeBytes,
        children: args.children.map((r) =>
          pulumi.all([r.uuid, r.node, r.sizeBytes]).apply(([replicaUuid, node, sizeBytes]) => ({ replicaUuid, node, sizeBytes })),
        ),
        frontendHostNqn: args.frontendHostNqn ?? "",
        uuid: args.uuid ?? "",
        defaultUuid: opts?.id ? "" : derivedUuid("Nexus", name),
        importId,
        uuidGiven: undefined,
        state: undefined,
        nqn: undefined,
        host: undefined,
        port: undefined,
        frontendDhchapSecret: undefined,
      },
      pulumi.mergeOptions(opts, { additionalSecretOutputs: ["frontendDhchapSecret"] }),
      MODULE,
      "Nexus",
    );
  }

  /** Reads an existing nexus's state (`id`: the nexus's uuid; it is found on whichever node runs it). */
  static get(name: string, id: pulumi.Input<pulumi.ID>, opts?: pulumi.CustomResourceOptions): Nexus {
    return new Nexus(name, { node: "", sizeBytes: 0, children: [] }, { ...opts, id });
  }

  static override isInstance(obj: unknown): obj is Nexus {
    return obj instanceof pulumi.Resource && (obj as unknown as { __pulumiType?: string }).__pulumiType === NEXUS_TYPE;
  }
}

export const CONFIG_KEYS = { endpoints: ENDPOINTS_KEY, token: TOKEN_KEY } as const;
