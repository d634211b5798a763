// The replicated side of a Volume: replicas > 1 become a nexus on the node of the first
// replica, with that replica as a local child and the others shared to the nexus node's host
// NQN over NVMe/TCP. Every step is idempotent (engines dedupe by uuid), so `create` and the
// healing `update` share one function.
import type { EngineConnection } from "../common/client";
import { frontendDhchapSecret, nodeDhchapSecret } from "../common/dhchap";
import { CHILD_IO_TIMEOUT_MS_DEFAULT, childUriIsReplica, localChildUri, NEXUS_LABEL_REGION_BYTES, remoteChildUri } from "../common/nexus-rules";
import { CALL_DEADLINE_MS, everyStep, MUTATE_DEADLINE_MS, onNode } from "./cluster";
import type { ClusterConfig } from "./connection";
import type { PlacedReplica } from "./placement";

/** Each replica of a replicated volume starts with the nexus label region (native/src/nexus/LABEL.md). */
export const NEXUS_LABEL_BYTES = NEXUS_LABEL_REGION_BYTES;

export interface NexusChildStatus {
  readonly node: string;
  readonly replicaUuid: string;
  /** online, rebuilding, faulted or offline (as the nexus sees the child); missing: not in the nexus. */
  readonly state: string;
  /** Why it is not online ("none" when it is). */
  readonly reason: string;
}

export interface NexusStatus {
  readonly uuid: string;
  readonly node: string;
  /** online, degraded or faulted; "missing" when the nexus node has no such nexus. */
  readonly health: string;
  /** The NVMe/TCP subsystem the frontend connects to ("" while unpublished). */
  readonly nqn: string;
  readonly address: string;
  readonly children: NexusChildStatus[];
}

interface ReplicatedSpec {
  readonly nexusUuid: string;
  readonly sizeBytes: number;
  readonly frontendHostNqn: string;
  readonly placement: PlacedReplica[];
}

/** Who may connect to a replica shared for the nexus node: its host NQN, authenticated with the node's secret when its engine has one. */
interface NexusHost {
  readonly nqn: string;
  readonly dhchapSecret: string | null;
}

async function childUri(cluster: ClusterConfig, nexusNode: string, host: NexusHost, replica: PlacedReplica): Promise<string> {
  if (replica.node === nexusNode) return localChildUri(replica.replica_uuid);
  return onNode(cluster, replica.node, async (engine) => {
    const who = host.dhchapSecret
      ? { allowed_host_nqns: [], hosts: [{ nqn: host.nqn, dhchap_secret: host.dhchapSecret, dhchap_ctrl_secret: "" }] }
      : { allowed_host_nqns: [host.nqn], hosts: [] };
    const sub = await engine.call("ShareReplica", { uuid: replica.replica_uuid, ...who }, MUTATE_DEADLINE_MS);
    return remoteChildUri(sub.address, sub.nqn);
  });
}

/**
 * The child URIs of the volume's replicas, sharing the remote ones to the nexus node. A nexus
 * node whose engine authenticates (--dhchap-secret-file, as `strata cluster up` sets it) gets
 * shares that require its secret, so a peer that merely claims its NQN is refused.
 */
export async function childUris(cluster: ClusterConfig, spec: ReplicatedSpec): Promise<string[]> {
  const nexusNode = spec.placement[0].node;
  const info = await onNode(cluster, nexusNode, (e) => e.call("GetInfo", {}, CALL_DEADLINE_MS));
  const host: NexusHost = { nqn: info.host_nqn, dhchapSecret: info.host_dhchap ? nodeDhchapSecret(cluster.token, nexusNode) : null };
  const uris: string[] = [];
  for (const replica of spec.placement) uris.push(await childUri(cluster, nexusNode, host, replica));
  return uris;
}

/**
 * Makes the nexus exist, publishes it as asked, and brings back children that are faulted or
 * offline (OnlineChild rebuilds them: partially only when the child's label proves what it
 * missed). `previousFrontend` is unpublished first when it changed. `recreated`: replicas this
 * update made again because they had vanished; a child still reported online on one is faulted
 * first, so it is rebuilt before it serves a read.
 */
export async function ensureNexus(cluster: ClusterConfig, spec: ReplicatedSpec, previousFrontend = "", recreated: ReadonlySet<string> = new Set()): Promise<void> {
  const children = await childUris(cluster, spec);
  await onNode(cluster, spec.placement[0].node, async (engine) => {
    // A nexus this call makes has just judged every child by its label (an empty, recreated
    // replica has none, so it is not trusted); only a nexus that already had the child online
    // must be told that the replica under it was replaced.
    const existed = (await engine.call("ListNexus", {}, CALL_DEADLINE_MS)).nexuses.some((n) => n.uuid === spec.nexusUuid);
    const nexus = await engine.call(
      "CreateNexus",
      { uuid: spec.nexusUuid, size_bytes: spec.sizeBytes, children, child_io_timeout_ms: CHILD_IO_TIMEOUT_MS_DEFAULT },
      MUTATE_DEADLINE_MS,
    );
    if (previousFrontend && previousFrontend !== spec.frontendHostNqn) {
      await engine.call("UnpublishNexus", { uuid: spec.nexusUuid, frontend_host_nqn: previousFrontend }, MUTATE_DEADLINE_MS);
    }
    if (spec.frontendHostNqn) {
      // The frontend authenticates (DH-HMAC-CHAP) with the volume's secret: its NQN alone is a
      // claim anyone can make.
      const frontend = { frontend_dhchap_secret: frontendDhchapSecret(cluster.token, spec.nexusUuid), frontend_dhchap_ctrl_secret: "" };
      await engine.call("PublishNexus", { uuid: spec.nexusUuid, frontend_host_nqn: spec.frontendHostNqn, ...frontend }, MUTATE_DEADLINE_MS);
    }
    for (const child of nexus.children) {
      const remade = existed && [...recreated].some((uuid) => childUriIsReplica(child.uri, uuid));
      if (remade && (child.state === "online" || child.state === "rebuilding")) {
        await engine.call("FaultChild", { uuid: spec.nexusUuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
      }
      if (remade || child.state === "faulted" || child.state === "offline") await onlineChild(engine, spec.nexusUuid, child.uri);
    }
  });
}

async function onlineChild(engine: EngineConnection, nexus: string, uri: string): Promise<void> {
  await engine.call("OnlineChild", { uuid: nexus, child_uri: uri }, MUTATE_DEADLINE_MS);
}

/**
 * Removes the nexus (never the replicas' data by itself) and the remote replicas' shares.
 * Best-effort per step: a DestroyNexus that fails (often the nexus node is why a create failed)
 * does not keep the shares on the other nodes; the first error is thrown after every step ran.
 */
export async function destroyNexus(cluster: ClusterConfig, spec: Pick<ReplicatedSpec, "nexusUuid" | "placement">): Promise<void> {
  if (spec.placement.length === 0) return;
  const nexusNode = spec.placement[0].node;
  await everyStep([
    () => onNode(cluster, nexusNode, (engine) => engine.call("DestroyNexus", { uuid: spec.nexusUuid }, MUTATE_DEADLINE_MS)),
    ...spec.placement
      .filter((replica) => replica.node !== nexusNode)
      .map((replica) => () => onNode(cluster, replica.node, (engine) => engine.call("UnshareReplica", { uuid: replica.replica_uuid }, MUTATE_DEADLINE_MS))),
  ]);
}

/** What the nexus node reports about the volume's nexus. */
export async function observeNexus(cluster: ClusterConfig, spec: Pick<ReplicatedSpec, "nexusUuid" | "placement">): Promise<NexusStatus> {
  const node = spec.placement[0].node;
  const { nexuses } = await onNode(cluster, node, (engine) => engine.call("ListNexus", {}, CALL_DEADLINE_MS));
  const n = nexuses.find((x) => x.uuid === spec.nexusUuid);
  const children = spec.placement.map((replica) => {
    const c = n?.children.find((x) => childUriIsReplica(x.uri, replica.replica_uuid));
    return { node: replica.node, replicaUuid: replica.replica_uuid, state: c?.state ?? "missing", reason: c?.reason ?? "none" };
  });
  return { uuid: spec.nexusUuid, node, health: n?.health ?? "missing", nqn: n?.nqn ?? "", address: n?.address ?? "", children };
}
