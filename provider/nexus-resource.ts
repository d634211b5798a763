// The Nexus resource's dynamic provider: a RAID-1 nexus on a node the operator chose, over
// Replica resources the operator placed (a Volume does both for you; provider/nexus.ts is its
// path). Remote replicas are shared to the nexus node's host NQN and named by the same child URIs
// as a volume's (provider/nexus.ts `childUri`).
//
// Changes in place, in an order that never puts written data at risk: grow (the replicas were
// grown first: Pulumi updates them before the nexus that depends on them) → publish → bring
// faulted children back → add children → wait until every declared child is Online (rebuilt) →
// only then remove the children that are no longer declared, and unshare them. A node change is
// a replace.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { frontendDhchapSecret } from "../common/dhchap";
import {
  checkNexusSizeBytes,
  CHILD_IO_TIMEOUT_MS_DEFAULT,
  LOCAL_CHILD_URI_PREFIX,
  NEXUS_LABEL_REGION_BYTES,
  NEXUS_MAX_CHILDREN,
  REPLICA_NQN_PREFIX,
} from "../common/nexus-rules";
import { checkNqn, checkUuid, describe } from "../common/validate";
import type { Nexus__Output } from "../engine/generated/strata/engine/v1/Nexus";
import { CALL_DEADLINE_MS, MUTATE_DEADLINE_MS, onNode } from "./cluster";
import { ClusterConfig, ConfiguredProvider } from "./connection";
import { childOf, childUri, destroyNexus, findNexus, nexusHost, observeNexus, waitInSync } from "./nexus";
import type { PlacedReplica } from "./placement";
import { isUnknown } from "./unknown";
import type { NexusChildStatus, NexusHealth } from "./volume-spec";

/** A child as the SDK passes it: a Replica resource's uuid, node and size. */
export interface ChildRef {
  readonly replicaUuid: string;
  readonly node: string;
  readonly sizeBytes: number;
}

export interface NexusInputs {
  readonly node: string;
  /** The size hosts see; every child replica holds this plus the label region (1 MiB). */
  readonly sizeBytes: number;
  readonly children: ChildRef[];
  /** The host NQN the nexus is published to over NVMe/TCP ("" = unpublished). */
  readonly frontendHostNqn: string;
  /** Resolved by check: the given uuid, else the one in state, else the SDK's derived one. */
  readonly uuid: string;
  readonly defaultUuid: string;
  readonly uuidGiven: boolean;
  /** The `import` resource option's id: adopt the existing nexus instead of making one ("" = none). */
  readonly importId: string;
}

export interface NexusOutputs extends Omit<NexusInputs, "children"> {
  /** As the nexus sees each declared child (the input's refs are replaced by their status). */
  readonly children: NexusChildStatus[];
  /** online (every child online), degraded, faulted (no healthy child) or missing (not on its node). */
  readonly state: NexusHealth;
  /** The NVMe/TCP subsystem, listener host and port the frontend connects to ("", "", 0 while unpublished). */
  readonly nqn: string;
  readonly host: string;
  readonly port: number;
  /** The DH-HMAC-CHAP secret the frontend host connects with; "" while unpublished. A secret output. */
  readonly frontendDhchapSecret: string;
}

/** The replica uuid a child URI names: `replica:///<uuid>` or `nvmf://HOST:PORT/<replica nqn>`; "" for anything else. */
export function replicaUuidOfChildUri(uri: string): string {
  if (uri.startsWith(LOCAL_CHILD_URI_PREFIX)) return uri.slice(LOCAL_CHILD_URI_PREFIX.length);
  const nqn = decodeURIComponent(uri.split("?")[0].split("/").pop() ?? "");
  return nqn.startsWith(REPLICA_NQN_PREFIX) ? nqn.slice(REPLICA_NQN_PREFIX.length) : "";
}

/** A child in the shape provider/nexus.ts takes (it knows replicas as placed ones). */
const asPlaced = (c: { replicaUuid: string; node: string }): PlacedReplica => ({ replicaUuid: c.replicaUuid, node: c.node, pool: "", poolUuid: "", reason: "" });

/** A child ref from inputs or state (state holds the status shape; both carry replicaUuid and node). */
function childRefOf(raw: unknown): ChildRef {
  const r = (raw ?? {}) as Record<string, unknown>;
  return {
    replicaUuid: typeof r.replicaUuid === "string" ? r.replicaUuid : "",
    node: typeof r.node === "string" ? r.node : "",
    sizeBytes: typeof r.sizeBytes === "number" ? r.sizeBytes : 0,
  };
}

const sameChildren = (a: readonly { replicaUuid: string }[], b: readonly { replicaUuid: string }[]) =>
  a.length === b.length && a.every((x) => b.some((y) => y.replicaUuid === x.replicaUuid));

export class NexusResourceProvider extends ConfiguredProvider implements dynamic.ResourceProvider {

  async check(rawOlds: Partial<NexusOutputs>, rawNews: Partial<NexusInputs>): Promise<dynamic.CheckResult> {
    const failures: dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string | null) => {
      if (reason !== null) failures.push({ property, reason });
    };
    const olds = typeof rawOlds.uuid === "string" && rawOlds.uuid !== "" ? rawOlds : null;
    const given = typeof rawNews.uuid === "string" ? rawNews.uuid : "";
    const importId = typeof rawNews.importId === "string" ? rawNews.importId : "";
    const children = rawNews.children;
    const inputs: NexusInputs = {
      node: rawNews.node as string,
      sizeBytes: rawNews.sizeBytes as number,
      children: Array.isArray(children) ? children.map((c) => (isUnknown(c) ? (c as ChildRef) : childRefOf(c))) : (children as unknown as ChildRef[]),
      frontendHostNqn: rawNews.frontendHostNqn ?? "",
      uuid: given || olds?.uuid || importId || (rawNews.defaultUuid ?? ""),
      defaultUuid: rawNews.defaultUuid ?? "",
      uuidGiven: given !== "",
      importId,
    };
    const cluster = this.cluster;
    if (cluster === null) fail("node", this.configError);
    const known = cluster ? Object.keys(cluster.endpoints).sort().join(", ") : "";
    const notConfigured = (node: string) => cluster !== null && !(node in cluster.endpoints);
    if (!isUnknown(inputs.node)) {
      if (typeof inputs.node !== "string" || inputs.node === "") fail("node", `must name a node of strata:endpoints, got ${describe(inputs.node)}`);
      else if (notConfigured(inputs.node)) fail("node", `"${inputs.node}" is not a configured node (strata:endpoints has: ${known})`);
    }
    if (!isUnknown(inputs.sizeBytes)) {
      fail("sizeBytes", checkNexusSizeBytes(inputs.sizeBytes));
      if (olds && typeof olds.sizeBytes === "number" && typeof inputs.sizeBytes === "number" && inputs.sizeBytes < olds.sizeBytes)
        fail("sizeBytes", `cannot shrink from ${olds.sizeBytes} to ${inputs.sizeBytes} bytes: a nexus only grows (data beyond the new end would be lost)`);
    }
    if (!isUnknown(inputs.frontendHostNqn) && inputs.frontendHostNqn !== "") fail("frontendHostNqn", checkNqn(inputs.frontendHostNqn));
    if (given !== "") fail("uuid", checkUuid(given));
    if (!isUnknown(children)) {
      if (!Array.isArray(children) || children.length === 0 || children.length > NEXUS_MAX_CHILDREN) {
        fail("children", `must be 1 to ${NEXUS_MAX_CHILDREN} Replica resources, got ${Array.isArray(children) ? `${children.length}` : describe(children)}`);
      } else {
        inputs.children.forEach((c, i) => {
          if (isUnknown(c)) return;
          const which = `children[${i}] (replica ${c.replicaUuid})`;
          if (notConfigured(c.node)) fail("children", `${which} is on node "${c.node}", which is not a configured node (strata:endpoints has: ${known})`);
          if (inputs.children.findIndex((o) => !isUnknown(o) && o.replicaUuid === c.replicaUuid) !== i) fail("children", `${which} is listed twice`);
          if (!isUnknown(inputs.sizeBytes) && typeof inputs.sizeBytes === "number" && c.sizeBytes < inputs.sizeBytes + NEXUS_LABEL_REGION_BYTES)
            fail(
              "children",
              `${which} holds ${c.sizeBytes} bytes; a nexus of ${inputs.sizeBytes} bytes needs children of at least ${inputs.sizeBytes + NEXUS_LABEL_REGION_BYTES} ` +
                `(its size plus the ${NEXUS_LABEL_REGION_BYTES}-byte label region): grow the replica in the same change`,
            );
        });
      }
    }
    if (failures.length === 0 && olds === null && inputs.importId && !isUnknown(inputs)) await this.checkImport(inputs, fail);
    return { inputs, failures };
  }

  /** With `import`: the nexus must exist on the declared node and match what the program declares. */
  private async checkImport(inputs: NexusInputs, fail: (property: string, reason: string | null) => void): Promise<void> {
    const n = await onNode(this.clusterOrThrow(), inputs.node, (e) => findNexus(e, inputs.importId));
    if (!n) return fail("node", `no nexus ${inputs.importId} on node ${inputs.node}: nothing to import (remove the import option to make one)`);
    const then = ": declare what exists to import it, then change it";
    if (Number(n.size_bytes) !== inputs.sizeBytes) fail("sizeBytes", `nexus ${n.uuid} serves ${n.size_bytes} bytes, the program declares ${inputs.sizeBytes}${then}`);
    if (n.frontend_host_nqn !== inputs.frontendHostNqn)
      fail("frontendHostNqn", `nexus ${n.uuid} is published to "${n.frontend_host_nqn}", the program declares "${inputs.frontendHostNqn}"${then}`);
    const have = n.children.map((c) => replicaUuidOfChildUri(c.uri));
    if (!sameChildren(have.map((replicaUuid) => ({ replicaUuid })), inputs.children))
      fail("children", `nexus ${n.uuid} has children ${have.join(", ")}, the program declares ${inputs.children.map((c) => c.replicaUuid).join(", ")}${then}`);
  }

  async diff(_id: string, olds: NexusOutputs, news: NexusInputs): Promise<dynamic.DiffResult> {
    const replaces: string[] = [];
    if (olds.node !== news.node) replaces.push("node");
    if (news.uuidGiven && news.uuid !== olds.uuid) replaces.push("uuid");
    const changes =
      replaces.length > 0 ||
      olds.sizeBytes !== news.sizeBytes ||
      (olds.frontendHostNqn ?? "") !== news.frontendHostNqn ||
      !sameChildren((olds.children ?? []).map(childRefOf), news.children) ||
      // Not fully healthy: the update brings faulted children back.
      olds.state !== "online";
    // The nexus keeps its uuid on the new node, and its children can serve one nexus at a time.
    return { changes, replaces, deleteBeforeReplace: replaces.length > 0 };
  }

  async create(inputs: NexusInputs): Promise<dynamic.CreateResult> {
    const cluster = this.clusterOrThrow();
    if (inputs.importId) return { id: inputs.importId, outs: await this.observe({ ...inputs, uuid: inputs.importId }) };
    try {
      await this.reconcile(cluster, inputs, null);
    } catch (err) {
      // Transactional: a nexus that failed to create leaves no nexus or share behind (engines dedupe by uuid, so a retry starts clean).
      await destroyNexus(cluster, { nexusUuid: inputs.uuid, nexusNode: inputs.node, placement: inputs.children.map(asPlaced), leaving: [] }).catch(() => undefined);
      throw err;
    }
    return { id: inputs.uuid, outs: await this.observe(inputs) };
  }

  async update(id: string, olds: NexusOutputs, news: NexusInputs): Promise<dynamic.UpdateResult> {
    const cluster = this.clusterOrThrow();
    await this.reconcile(cluster, { ...news, uuid: id }, { children: (olds.children ?? []).map(childRefOf) });
    return { outs: await this.observe({ ...news, uuid: id }) };
  }

  /** Takes the nexus from what it is (and what `previous` declared) to `spec`; see the file comment for the order. */
  private async reconcile(cluster: ClusterConfig, spec: NexusInputs, previous: { children: ChildRef[] } | null): Promise<void> {
    const host = await nexusHost(cluster, spec.node);
    const uris = new Map<string, string>();
    for (const c of spec.children) uris.set(c.replicaUuid, await childUri(cluster, spec.node, host, asPlaced(c)));
    await onNode(cluster, spec.node, async (engine) => {
      let nexus: Nexus__Output | undefined = await findNexus(engine, spec.uuid);
      if (!nexus) {
        // Made now (or again, when its node lost it): each child is judged by its own label.
        nexus = await engine.call(
          "CreateNexus",
          { uuid: spec.uuid, size_bytes: spec.sizeBytes, children: [...uris.values()], child_io_timeout_ms: CHILD_IO_TIMEOUT_MS_DEFAULT },
          MUTATE_DEADLINE_MS,
        );
      } else if (Number(nexus.size_bytes) < spec.sizeBytes) {
        // The replicas grew first (Pulumi updated them before this nexus); hosts learn the size from an AEN.
        nexus = await engine.call("ResizeNexus", { uuid: spec.uuid, size_bytes: spec.sizeBytes }, MUTATE_DEADLINE_MS);
      }

      const before = nexus.frontend_host_nqn;
      if (before && before !== spec.frontendHostNqn) {
        nexus = await engine.call("UnpublishNexus", { uuid: spec.uuid, frontend_host_nqn: before }, MUTATE_DEADLINE_MS);
      }
      if (spec.frontendHostNqn) {
        // The frontend authenticates (DH-HMAC-CHAP) with the nexus's secret: its NQN alone is a claim anyone can make.
        const secret = { frontend_dhchap_secret: frontendDhchapSecret(cluster.token, spec.uuid), frontend_dhchap_ctrl_secret: "" };
        nexus = await engine.call("PublishNexus", { uuid: spec.uuid, frontend_host_nqn: spec.frontendHostNqn, ...secret }, MUTATE_DEADLINE_MS);
      }

      // Declared children that faulted come back (OnlineChild rebuilds what they missed); new ones
      // join (AddChild rebuilds them in full before they serve a read).
      let joined = false;
      for (const c of spec.children) {
        const child = childOf(nexus, c.replicaUuid);
        if (!child) {
          nexus = await engine.call("AddChild", { uuid: spec.uuid, child_uri: uris.get(c.replicaUuid)! }, MUTATE_DEADLINE_MS);
          joined = true;
        } else if (child.state === "faulted" || child.state === "offline") {
          nexus = await engine.call("OnlineChild", { uuid: spec.uuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
          joined = true;
        }
      }
      const leaving = nexus.children.filter((child) => !spec.children.some((c) => replicaUuidOfChildUri(child.uri) === c.replicaUuid));
      if (!joined && leaving.length === 0) return;
      // The update returns when every declared child holds the data, and nothing leaves before.
      nexus = await waitInSync(engine, { uuid: spec.uuid, nexusUuid: spec.uuid, nexusNode: spec.node, placement: spec.children.map(asPlaced) });
      for (const child of leaving) await engine.call("RemoveChild", { uuid: spec.uuid, child_uri: child.uri }, MUTATE_DEADLINE_MS);
    });
    // Out of the nexus: a removed remote replica is no longer shared (the Replica resource keeps the replica itself).
    for (const c of previous?.children ?? []) {
      if (c.node === spec.node || spec.children.some((s) => s.replicaUuid === c.replicaUuid)) continue;
      await onNode(cluster, c.node, (engine) => engine.call("UnshareReplica", { uuid: c.replicaUuid }, MUTATE_DEADLINE_MS));
    }
  }

  /** What the nexus node reports, in the resource's output shape. */
  private async observe(inputs: NexusInputs): Promise<NexusOutputs> {
    const cluster = this.clusterOrThrow();
    const status = await observeNexus(cluster, { nexusUuid: inputs.uuid, nexusNode: inputs.node, placement: inputs.children.map(asPlaced), leaving: [] });
    const { children: _refs, ...rest } = inputs;
    return {
      ...rest,
      sizeBytes: status.sizeBytes || inputs.sizeBytes,
      children: status.children,
      state: status.health,
      nqn: status.nqn,
      host: status.host,
      port: status.port,
      frontendDhchapSecret: inputs.frontendHostNqn ? frontendDhchapSecret(cluster.token, inputs.uuid) : "",
    };
  }

  async read(id: string, props: Partial<NexusOutputs>): Promise<dynamic.ReadResult> {
    const cluster = this.clusterOrThrow();
    const nodes = props.node ? [props.node] : Object.keys(cluster.endpoints).sort();
    let home: { node: string; nexus: Nexus__Output } | undefined;
    for (const node of nodes) {
      const nexus = await onNode(cluster, node, (e) => findNexus(e, id));
      if (nexus) home = { node, nexus };
      if (home) break;
    }
    if (!home) return { id: "", props: {} };
    // `Nexus.get` knows only the uuid: the children's replicas are found on the engines.
    const children: ChildRef[] = [];
    for (const child of home.nexus.children) {
      const replicaUuid = replicaUuidOfChildUri(child.uri);
      let node = (props.children ?? []).find((c) => c.replicaUuid === replicaUuid)?.node ?? "";
      let sizeBytes = 0;
      for (const n of node ? [node] : Object.keys(cluster.endpoints).sort()) {
        const r = await onNode(cluster, n, async (e) => (await e.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS)).replicas.find((x) => x.uuid === replicaUuid));
        if (r) {
          node = n;
          sizeBytes = Number(r.size_bytes);
          break;
        }
      }
      children.push({ replicaUuid, node, sizeBytes });
    }
    const inputs: NexusInputs = {
      node: home.node,
      sizeBytes: Number(home.nexus.size_bytes),
      children,
      frontendHostNqn: home.nexus.frontend_host_nqn,
      uuid: id,
      defaultUuid: props.defaultUuid || id,
      uuidGiven: props.uuidGiven ?? false,
      importId: props.importId ?? "",
    };
    return { id, props: await this.observe(inputs) };
  }

  async delete(id: string, props: NexusOutputs): Promise<void> {
    // The nexus goes (never its replicas: the Replica resources own them), then the remote children's shares.
    await destroyNexus(this.clusterOrThrow(), { nexusUuid: id, nexusNode: props.node, placement: (props.children ?? []).map(asPlaced), leaving: [] });
  }
}
