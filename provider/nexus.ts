// The nexus side of a Volume. Every volume made today is a nexus (RAID-1 over 1..5 replicas) on
// its nexus node: replicas on that node are local children, the others are shared to the nexus
// node's host NQN over NVMe/TCP. `converge` takes the nexus from whatever it is to what the
// state says, in an order that never puts written data at risk:
//   grow (every replica first, then the nexus) → publish → bring faulted children back →
//   add new replicas (full rebuild) → wait until every replica of the placement is in sync →
//   only then remove the leaving ones (a move, a scale-down) and anything a crashed run left.
// Every step is idempotent (engines dedupe by uuid), so a run cut short at any point is finished
// by the next one, and create, update and heal share this one function.
import type { EngineConnection } from "../common/client";
import { frontendDhchapSecret, nodeDhchapSecret } from "../common/dhchap";
import { CHILD_IO_TIMEOUT_MS_DEFAULT, childUriIsReplica, localChildUri, remoteChildUri } from "../common/nexus-rules";
import type { Nexus__Output as Nexus } from "../engine/generated/strata/engine/v1/Nexus";
import { CALL_DEADLINE_MS, everyStep, MUTATE_DEADLINE_MS, onNode, REPLICA_SLOTS, replicaUuidFor } from "./cluster";
import type { ClusterConfig } from "./connection";
import type { PlacedReplica } from "./placement";
import { nodeTransports, nvmeConnectCommand, resolveLeg, type TransportMode } from "./transport";
import type { ChildState, NexusHealth, NexusStatus } from "./volume-spec";

export interface ReplicatedSpec {
  readonly uuid: string;
  readonly nexusUuid: string;
  readonly nexusNode: string;
  readonly sizeBytes: number;
  readonly frontendHostNqn: string;
  readonly placement: readonly PlacedReplica[];
  readonly leaving: readonly PlacedReplica[];
  /** The frontend leg's and the replica leg's transports (default "tcp"). */
  readonly transport?: TransportMode;
  readonly replicaTransport?: TransportMode;
}

/** How often a wait for rebuilds looks at the nexus. */
const POLL_MS = 500;
/** A rebuild that copies nothing for this long is stuck: the change stops there (the volume keeps serving). */
const STALL_MS = 120_000;

/** Who may connect to a replica shared for the nexus node: its host NQN, authenticated with the node's secret when its engine has one. */
export interface NexusHost {
  readonly nqn: string;
  readonly dhchapSecret: string | null;
}

export async function nexusHost(cluster: ClusterConfig, nexusNode: string): Promise<NexusHost> {
  const info = await onNode(cluster, nexusNode, (e) => e.call("GetInfo", {}, CALL_DEADLINE_MS));
  return { nqn: info.host_nqn, dhchapSecret: info.host_dhchap ? nodeDhchapSecret(cluster.token, nexusNode) : null };
}

/**
 * The child URI of a replica: local on the nexus node, else shared to the nexus node. A nexus
 * node whose engine authenticates gets shares that require its secret, so a peer that merely
 * claims its NQN is refused.
 */
export async function childUri(
  cluster: ClusterConfig,
  nexusNode: string,
  host: NexusHost,
  replica: PlacedReplica,
  transport: TransportMode = "tcp",
): Promise<string> {
  if (replica.node === nexusNode) return localChildUri(replica.replicaUuid);
  // The leg's ends are both Strata nodes: RDMA only where both serve it ("rdma" was checked at preview).
  let rdmaAddress = "";
  if (transport !== "tcp") {
    const ends = [await nodeTransports(cluster, nexusNode), await nodeTransports(cluster, replica.node)];
    const leg = resolveLeg(transport, ends);
    if ("error" in leg) throw new Error(`replica ${replica.replicaUuid}: replicaTransport "rdma": ${leg.error}`);
    if (leg.transport === "rdma") rdmaAddress = ends[1].rdmaAddress;
  }
  return onNode(cluster, replica.node, async (engine) => {
    const who = host.dhchapSecret
      ? { allowed_host_nqns: [], hosts: [{ nqn: host.nqn, dhchap_secret: host.dhchapSecret, dhchap_ctrl_secret: "" }] }
      : { allowed_host_nqns: [host.nqn], hosts: [] };
    const sub = await engine.call("ShareReplica", { uuid: replica.replicaUuid, ...who }, MUTATE_DEADLINE_MS);
    return rdmaAddress ? remoteChildUri(rdmaAddress, sub.nqn, "rdma") : remoteChildUri(sub.address, sub.nqn);
  });
}

export async function findNexus(engine: EngineConnection, uuid: string): Promise<Nexus | undefined> {
  return (await engine.call("ListNexus", {}, CALL_DEADLINE_MS)).nexuses.find((n) => n.uuid === uuid);
}

export const childOf = (nexus: Nexus, replicaUuid: string) => nexus.children.find((c) => childUriIsReplica(c.uri, replicaUuid));

export interface ConvergeOptions {
  /** The frontend the nexus was published to before this change ("" when none or unchanged). */
  readonly previousFrontend?: string;
  /**
   * Replicas this run made again because they had vanished: a child still reported online on
   * one is faulted first, so it is rebuilt in full before it serves a read.
   */
  readonly recreated?: ReadonlySet<string>;
}

/** Takes the volume's nexus to what `spec` says (see the file comment for the order). */
export async function converge(cluster: ClusterConfig, spec: ReplicatedSpec, opts: ConvergeOptions = {}): Promise<void> {
  const host = await nexusHost(cluster, spec.nexusNode);
  const uris = new Map<string, string>();
  const uriOf = async (r: PlacedReplica) => {
    let uri = uris.get(r.replicaUuid);
    if (uri === undefined) {
      uri = await childUri(cluster, spec.nexusNode, host, r, spec.replicaTransport);
      uris.set(r.replicaUuid, uri);
    }
    return uri;
  };
  const recreated = opts.recreated ?? new Set<string>();
  // Every replica of the placement is shared to the nexus node before the nexus looks at it: a
  // replica made again (it vanished) has a new share, and OnlineChild connects to it.
  for (const r of spec.placement) await uriOf(r);

  await onNode(cluster, spec.nexusNode, async (engine) => {
    const found = await findNexus(engine, spec.nexusUuid);
    const existed = found !== undefined;
    let nexus: Nexus;
    if (!found) {
      // Made now (or again, when its node lost it): with every replica the state knows, leaving
      // ones too — one of them may hold the only in-sync copy. Each child is judged by its label.
      const children: string[] = [];
      for (const r of [...spec.placement, ...spec.leaving]) children.push(await uriOf(r));
      nexus = await engine.call(
        "CreateNexus",
        { uuid: spec.nexusUuid, size_bytes: spec.sizeBytes, children, child_io_timeout_ms: CHILD_IO_TIMEOUT_MS_DEFAULT },
        MUTATE_DEADLINE_MS,
      );
    } else if (Number(found.size_bytes) < spec.sizeBytes) {
      // The replicas were grown first (the caller's job); hosts learn the size from an AEN.
      nexus = await engine.call("ResizeNexus", { uuid: spec.nexusUuid, size_bytes: spec.sizeBytes }, MUTATE_DEADLINE_MS);
    } else {
      nexus = found;
    }

    if (opts.previousFrontend && opts.previousFrontend !== spec.frontendHostNqn) {
      await engine.call("UnpublishNexus", { uuid: spec.nexusUuid, frontend_host_nqn: opts.previousFrontend }, MUTATE_DEADLINE_MS);
    }
    if (spec.frontendHostNqn) {
      // The frontend authenticates (DH-HMAC-CHAP) with the volume's secret: its NQN alone is a claim anyone can make.
      const frontend = { frontend_dhchap_secret: frontendDhchapSecret(cluster.token, spec.nexusUuid), frontend_dhchap_ctrl_secret: "" };
      await engine.call("PublishNexus", { uuid: spec.nexusUuid, frontend_host_nqn: spec.frontendHostNqn, ...frontend }, MUTATE_DEADLINE_MS);
    } else if (nexus.frontend_host_nqn) {
      await engine.call("UnpublishNexus", { uuid: spec.nexusUuid, frontend_host_nqn: nexus.frontend_host_nqn }, MUTATE_DEADLINE_MS);
    }

    // Children that are faulted or offline come back (OnlineChild rebuilds them: partially only
    // when the child's label proves what it missed).
    let healed = false;
    for (const child of nexus.children) {
      const remade = existed && [...recreated].some((uuid) => childUriIsReplica(child.uri, uuid));
      if (remade && (child.state === "online" || child.state === "rebuilding")) {
        await engine.call("FaultChild", { uuid: spec.nexusUuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
      }
      if (remade || child.state === "faulted" || child.state === "offline") {
        await engine.call("OnlineChild", { uuid: spec.nexusUuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
        healed = true;
      }
    }

    // New replicas join; AddChild rebuilds them in full before they serve a read.
    let added = false;
    for (const r of spec.placement) {
      if (childOf(nexus, r.replicaUuid)) continue;
      nexus = await engine.call("AddChild", { uuid: spec.nexusUuid, child_uri: await uriOf(r) }, MUTATE_DEADLINE_MS);
      added = true;
    }

    const strays = nexus.children.filter((c) => ![...spec.placement, ...spec.leaving].some((r) => childUriIsReplica(c.uri, r.replicaUuid)));
    if (!added && !healed && spec.leaving.length === 0 && strays.length === 0) return;
    // A change that adds or brings back replicas ends when they hold the data (`replicas: 3`
    // means three copies once `up` returns), and nothing leaves before every replica of the
    // placement does.
    nexus = await waitInSync(engine, spec);
    for (const r of spec.leaving) {
      const child = childOf(nexus, r.replicaUuid);
      if (child) nexus = await engine.call("RemoveChild", { uuid: spec.nexusUuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
    }
    for (const child of strays) await engine.call("RemoveChild", { uuid: spec.nexusUuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
  });

  // Out of the nexus: the leaving replicas go, with their shares.
  for (const r of spec.leaving) await destroyReplica(cluster, spec.nexusNode, r);
  await sweepStrays(cluster, spec);
}

/**
 * Waits until every replica of the placement is an Online child. Fails (the volume keeps serving
 * with the children it has; the next `up` resumes) when one faults or a rebuild stops copying.
 */
export async function waitInSync(engine: EngineConnection, spec: Pick<ReplicatedSpec, "uuid" | "nexusUuid" | "nexusNode" | "placement">): Promise<Nexus> {
  let lastProgress = Date.now();
  let lastDone = -1;
  for (;;) {
    const nexus = await findNexus(engine, spec.nexusUuid);
    if (!nexus) throw new Error(`nexus ${spec.nexusUuid} vanished from ${spec.nexusNode} while its replicas were rebuilding`);
    const children = spec.placement.map((r) => ({ r, c: childOf(nexus, r.replicaUuid) }));
    const failed = children.find(({ c }) => !c || c.state === "faulted" || c.state === "offline");
    if (failed) {
      const { r, c } = failed;
      throw new Error(
        `replica ${r.replicaUuid} on ${r.node}/${r.pool} is ${c ? `${c.state} (${c.reason}${c.last_error ? `: ${c.last_error}` : ""})` : "not a child of the nexus"}; ` +
          "nothing was removed, the volume keeps serving from its other replicas; fix that node and run `pulumi up` again",
      );
    }
    if (children.every(({ c }) => c!.state === "online")) return nexus;
    const done = children.reduce((sum, { c }) => sum + Number(c!.rebuild?.bytes_done ?? 0), 0);
    if (done !== lastDone) {
      lastDone = done;
      lastProgress = Date.now();
    } else if (Date.now() - lastProgress > STALL_MS) {
      throw new Error(`the rebuild into the new replicas of volume ${spec.uuid} made no progress for ${STALL_MS / 1000} s; nothing was removed`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Unshares (when remote) and destroys one replica of the volume. Already gone is fine. */
async function destroyReplica(cluster: ClusterConfig, nexusNode: string, r: PlacedReplica): Promise<void> {
  await onNode(cluster, r.node, async (engine) => {
    if (r.node !== nexusNode) await engine.call("UnshareReplica", { uuid: r.replicaUuid }, MUTATE_DEADLINE_MS);
    await engine.call("DestroyReplica", { uuid: r.replicaUuid }, MUTATE_DEADLINE_MS);
  });
}

/**
 * Replicas of this volume (by their derived uuids) that the state does not name: what a run
 * killed between creating a replica and recording it left. Called only once every replica of
 * the placement is in sync and out of the nexus.
 */
async function sweepStrays(cluster: ClusterConfig, spec: ReplicatedSpec): Promise<void> {
  const known = new Set([...spec.placement, ...spec.leaving].map((r) => r.replicaUuid));
  const ours = new Set(Array.from({ length: REPLICA_SLOTS }, (_, slot) => replicaUuidFor(spec.uuid, slot)).filter((u) => !known.has(u)));
  for (const node of Object.keys(cluster.endpoints).sort()) {
    await onNode(cluster, node, async (engine) => {
      const { replicas } = await engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS);
      for (const r of replicas.filter((x) => ours.has(x.uuid))) {
        await engine.call("UnshareReplica", { uuid: r.uuid }, MUTATE_DEADLINE_MS);
        await engine.call("DestroyReplica", { uuid: r.uuid }, MUTATE_DEADLINE_MS);
      }
    });
  }
}

/**
 * Removes the nexus (never the replicas' data by itself) and the remote replicas' shares.
 * Best-effort per step: a DestroyNexus that fails (often the nexus node is why a create failed)
 * does not keep the shares on the other nodes; the first error is thrown after every step ran.
 */
export async function destroyNexus(cluster: ClusterConfig, spec: Pick<ReplicatedSpec, "nexusUuid" | "nexusNode" | "placement" | "leaving">): Promise<void> {
  if (!spec.nexusNode) return;
  await everyStep([
    () => onNode(cluster, spec.nexusNode, (engine) => engine.call("DestroyNexus", { uuid: spec.nexusUuid }, MUTATE_DEADLINE_MS)),
    ...[...spec.placement, ...spec.leaving]
      .filter((replica) => replica.node !== spec.nexusNode)
      .map((replica) => () => onNode(cluster, replica.node, (engine) => engine.call("UnshareReplica", { uuid: replica.replicaUuid }, MUTATE_DEADLINE_MS))),
  ]);
}

/** Splits "HOST:PORT" (an IPv6 host in brackets) into host and port; "" and 0 when unpublished. */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?(.*?)\]?:([0-9]+)$/.exec(address);
  return m ? { host: m[1], port: Number(m[2]) } : { host: "", port: 0 };
}

/** What the nexus node reports about the volume's nexus. */
export async function observeNexus(
  cluster: ClusterConfig,
  spec: Pick<ReplicatedSpec, "nexusUuid" | "nexusNode" | "placement" | "leaving" | "transport">,
): Promise<NexusStatus> {
  const node = spec.nexusNode;
  const n = await onNode(cluster, node, (engine) => findNexus(engine, spec.nexusUuid));
  // The frontend leg: the nexus is served on every transport of its node; report the chosen one.
  let transport: "tcp" | "rdma" = "tcp";
  let rdmaAddress = "";
  if ((spec.transport ?? "tcp") !== "tcp") {
    const ends = [await nodeTransports(cluster, node)];
    const leg = resolveLeg(spec.transport ?? "tcp", ends);
    if ("transport" in leg && leg.transport === "rdma") {
      transport = "rdma";
      rdmaAddress = ends[0].rdmaAddress;
    }
  }
  const children = [...spec.placement, ...spec.leaving].map((replica) => {
    const c = n ? childOf(n, replica.replicaUuid) : undefined;
    const total = Number(c?.rebuild?.bytes_total ?? 0);
    const rebuildPercent = c?.state === "rebuilding" && total > 0 ? Math.floor((Number(c.rebuild!.bytes_done) * 100) / total) : c?.state === "rebuilding" ? 0 : 100;
    const childTransport = !c ? "" : c.uri.startsWith("replica:") ? "local" : c.uri.startsWith("nvmf+rdma:") ? "rdma" : "tcp";
    return {
      node: replica.node,
      replicaUuid: replica.replicaUuid,
      state: (c?.state ?? "missing") as ChildState,
      reason: c?.reason ?? "none",
      rebuildPercent,
      transport: childTransport as NexusStatus["children"][number]["transport"],
    };
  });
  const published = (n?.address ?? "") !== "";
  const address = published && transport === "rdma" ? rdmaAddress : n?.address ?? "";
  return {
    uuid: spec.nexusUuid,
    node,
    health: (n?.health ?? "missing") as NexusHealth,
    sizeBytes: Number(n?.size_bytes ?? 0),
    nqn: n?.nqn ?? "",
    transport,
    address,
    ...splitAddress(address),
    connectCommand: published ? nvmeConnectCommand(transport, address, n?.nqn ?? "", n?.frontend_host_nqn ?? "") : "",
    children,
  };
}
