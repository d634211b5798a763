// The Volume resource's dynamic provider: a block volume whose replicas are placed on pools and
// served by a nexus (RAID-1 over 1..5 replicas) on the nexus node.
//
// Placement happens in `check` (provider/plan.ts), so `pulumi preview` shows where each replica
// lands and which ones leave; it is sticky: placed replicas stay unless their pool drains or no
// longer matches the volume's selectors, or the replica count shrinks. Every change is an update
// in place that keeps the data (provider/nexus.ts `converge` orders the steps): the replica
// count (1 ↔ N), growing, thin ↔ thick, moves, the frontend. `read` reports what is there; the
// next `up` heals what is not.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { frontendDhchapSecret } from "../common/dhchap";
import { checkNexusSizeBytes, childUriIsReplica } from "../common/nexus-rules";
import { checkLabels, checkName, checkNqn, checkSizeBytes, checkUuid, describe } from "../common/validate";
import { CALL_DEADLINE_MS, MUTATE_DEADLINE_MS, newUuid, nexusUuidFor, onNode, replicaUuidFor } from "./cluster";
import { ClusterConfig, ConfiguredProvider } from "./connection";
import { converge, destroyNexus, observeNexus } from "./nexus";
import { checkTransportMode, nodeTransports, resolveLeg, type NodeTransports } from "./transport";
import { isPlacementError, PlacedReplica, PlacementRequest } from "./placement";
import { planPlacement } from "./plan";
import { isUnknown } from "./unknown";
import {
  DeclaredPool,
  MAX_REPLICAS,
  normalizeState,
  PoolRef,
  ReplicaStatus,
  replicaSizeBytes,
  VolumeInputs,
  VolumeOutputs,
} from "./volume-spec";

export { MAX_REPLICAS, replicaSizeBytes };
export type { VolumeInputs, VolumeOutputs, ReplicaStatus };

const SPREAD_MODES = ["preferred", "required"] as const;

/** Two pool restrictions name the same pools: by node and name where both sides know them, else by uuid. */
function samePools(a: readonly PoolRef[], b: readonly PoolRef[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x) => b.some((y) => (x.node && y.node ? x.node === y.node && x.name === y.name : x.uuid === y.uuid)));
}

const sameLabels = (a: Record<string, string> | undefined, b: Record<string, string> | undefined) =>
  JSON.stringify(Object.entries(a ?? {}).sort()) === JSON.stringify(Object.entries(b ?? {}).sort());

const samePlacement = (a: readonly PlacedReplica[], b: readonly PlacedReplica[]) =>
  a.length === b.length && a.every((x, i) => x.replicaUuid === b[i].replicaUuid && x.node === b[i].node && x.pool === b[i].pool);

export class VolumeProvider extends ConfiguredProvider implements dynamic.ResourceProvider {

  async check(rawOlds: Partial<VolumeInputs>, rawNews: Partial<VolumeInputs>): Promise<dynamic.CheckResult> {
    const failures: dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string | null) => {
      if (reason !== null) failures.push({ property, reason });
    };
    const isNew = typeof rawOlds.uuid !== "string";
    const olds = isNew ? null : normalizeState(rawOlds);
    const news = normalizeState({
      thin: true,
      replicas: 1,
      poolLabels: {},
      nodeSelector: {},
      topologyKey: "zone",
      topologySpread: "preferred",
      group: "",
      frontendHostNqn: "",
      transport: "tcp",
      replicaTransport: "tcp",
      ...rawNews,
      placement: [],
      leaving: [],
      nexusUuid: undefined,
      nexusNode: undefined,
    } as Partial<VolumeInputs>);
    const uuid: string = olds?.uuid ?? (typeof rawNews.uuid === "string" ? rawNews.uuid : newUuid());
    // A one-replica volume made before every volume had a nexus keeps being a plain replica.
    const legacy = olds !== null && olds.nexusUuid === "";
    let inputs: VolumeInputs = {
      ...(news as VolumeInputs),
      uuid,
      placement: olds?.placement ?? [],
      leaving: [],
      nexusUuid: olds ? olds.nexusUuid ?? "" : nexusUuidFor(uuid),
      nexusNode: olds?.nexusNode ?? "",
    };
    if (this.cluster === null) fail("node", this.configError);
    if (!isUnknown(inputs.sizeBytes)) {
      // A nexus serves 4 KiB blocks: CreateNexus refuses what is not a multiple of 4096, so preview does too.
      fail("sizeBytes", checkSizeBytes(inputs.sizeBytes) ?? (legacy ? null : checkNexusSizeBytes(inputs.sizeBytes)));
      if (olds && typeof olds.sizeBytes === "number" && typeof inputs.sizeBytes === "number" && inputs.sizeBytes < olds.sizeBytes)
        fail("sizeBytes", `cannot shrink from ${olds.sizeBytes} to ${inputs.sizeBytes} bytes: volumes only grow (data beyond the new end would be lost)`);
    }
    if (!isUnknown(inputs.thin) && typeof inputs.thin !== "boolean") fail("thin", `must be true or false, got ${describe(inputs.thin)}`);
    if (!isUnknown(inputs.replicas) && (!Number.isInteger(inputs.replicas) || inputs.replicas < 1 || inputs.replicas > MAX_REPLICAS))
      fail("replicas", `must be a whole number from 1 to ${MAX_REPLICAS}, got ${describe(inputs.replicas)}`);
    if (legacy && !isUnknown(inputs.replicas) && inputs.replicas !== 1)
      fail(
        "replicas",
        `volume ${uuid} was made by an older Strata as a plain replica without a nexus, so its replica count cannot change in place; ` +
          "copy it to a new volume",
      );
    if (!isUnknown(inputs.frontendHostNqn) && inputs.frontendHostNqn !== "") {
      fail("frontendHostNqn", checkNqn(inputs.frontendHostNqn));
      if (legacy) fail("frontendHostNqn", `volume ${uuid} was made by an older Strata as a plain replica without a nexus: it cannot be published`);
    }
    if (!isUnknown(inputs.transport)) fail("transport", checkTransportMode(inputs.transport));
    if (!isUnknown(inputs.replicaTransport)) {
      fail("replicaTransport", checkTransportMode(inputs.replicaTransport));
      // A child keeps the transport it was added with: switching one means re-adding it (a full
      // rebuild), which this provider does not do behind a one-word change.
      if (olds && olds.replicaTransport !== inputs.replicaTransport)
        fail(
          "replicaTransport",
          `cannot change from "${olds.replicaTransport}" to "${inputs.replicaTransport}" in place: existing children keep the transport they were added with; ` +
            "declare a new volume with the transport and copy the data",
        );
    }
    if (!isUnknown(inputs.poolLabels)) fail("poolLabels", checkLabels(inputs.poolLabels));
    if (!isUnknown(inputs.nodeSelector)) fail("nodeSelector", checkLabels(inputs.nodeSelector));
    if (!isUnknown(inputs.topologySpread) && !SPREAD_MODES.includes(inputs.topologySpread))
      fail("topologySpread", `must be "preferred" or "required", got ${describe(inputs.topologySpread)}`);
    if (!isUnknown(inputs.group) && inputs.group !== "") fail("group", checkName(inputs.group));
    if (!isUnknown(inputs.uuid)) fail("uuid", checkUuid(inputs.uuid));
    if (!isUnknown(rawNews.pools) && rawNews.pools !== undefined && !Array.isArray(rawNews.pools))
      fail("pools", `must be a list of Pool resources or pool uuids, got ${describe(rawNews.pools)}`);
    if (failures.length > 0 || isUnknown(inputs) || containsUnknown(inputs)) return { inputs, failures };
    if (isNew && inputs.importId) return this.checkImport(inputs);

    // Place now, so the plan shows where replicas land and which ones leave.
    try {
      const placed = await this.place(inputs, inputs.placement);
      // A replica that stays keeps the reason it was placed for: the plan a reviewer reads does
      // not change when nothing moved.
      const reasonOf = (r: PlacedReplica) => {
        const before = inputs.placement.find((o) => o.replicaUuid === r.replicaUuid);
        return before?.reason && r.reason.startsWith("kept: already placed") ? before.reason : r.reason;
      };
      const placement = placed.placement.map((r) => ({ ...r, reason: reasonOf(r) }));
      const nexusNode = inputs.nexusUuid ? inputs.nexusNode || placement[0].node : "";
      inputs = { ...inputs, placement, leaving: placed.leaving, nexusNode };
      failures.push(...(await this.checkTransports(inputs)));
    } catch (err) {
      // Reported on sizeBytes: what most often does not fit is the size (the message names every pool's reason).
      if (isPlacementError(err)) return { inputs, failures: [{ property: "sizeBytes", reason: (err as Error).message }] };
      throw err;
    }
    return { inputs, failures };
  }

  /**
   * With `import`: the volume is what the engines hold under the id (its nexus and children),
   * and the program must declare that, each difference named. Nothing is placed.
   */
  private async checkImport(inputs: VolumeInputs): Promise<dynamic.CheckResult> {
    const id = inputs.importId!;
    const found = await this.discover(id);
    if (!found) return { inputs, failures: [{ property: "sizeBytes", reason: `no volume ${id} (no nexus ${nexusUuidFor(id)} on any configured node): nothing to import` }] };
    const failures: dynamic.CheckFailure[] = [];
    const then = ": declare what exists to import it, then change it";
    if (found.sizeBytes !== inputs.sizeBytes) failures.push({ property: "sizeBytes", reason: `volume ${id} serves ${found.sizeBytes} bytes, the program declares ${inputs.sizeBytes}${then}` });
    if (found.thin !== inputs.thin) failures.push({ property: "thin", reason: `volume ${id} is ${found.thin ? "thin" : "thick"}, the program declares ${inputs.thin ? "thin" : "thick"}${then}` });
    if (found.replicas !== inputs.replicas) failures.push({ property: "replicas", reason: `volume ${id} has ${found.replicas} replicas, the program declares ${inputs.replicas}${then}` });
    if (found.frontendHostNqn !== inputs.frontendHostNqn)
      failures.push({ property: "frontendHostNqn", reason: `volume ${id} is published to "${found.frontendHostNqn}", the program declares "${inputs.frontendHostNqn}"${then}` });
    const adopted = found.placement.map((r) => ({ ...r, reason: "imported: found on the engines" }));
    return { inputs: { ...inputs, uuid: id, placement: adopted, nexusUuid: found.nexusUuid, nexusNode: found.nexusNode }, failures };
  }

  private place(inputs: VolumeInputs, existing: readonly PlacedReplica[]) {
    const req: PlacementRequest = {
      volume: inputs.uuid,
      size_bytes: replicaSizeBytes(inputs),
      thin: inputs.thin,
      replicas: inputs.replicas,
      pool_labels: inputs.poolLabels,
      pools: inputs.pools.map((p) => ({ node: p.node, name: p.name, uuid: p.uuid })),
      node_selector: inputs.nodeSelector,
      spread: inputs.topologyKey ? { key: inputs.topologyKey, mode: inputs.topologySpread } : null,
      group: inputs.group,
    };
    return planPlacement(this.clusterOrThrow(), inputs.uuid, inputs.declaredPools, req, existing, (slot) => replicaUuidFor(inputs.uuid, slot));
  }

  /**
   * A leg declared "rdma" must have RDMA on every Strata end, or preview fails naming the node:
   * the frontend leg on the nexus node, the replica leg on the nexus node and every node of a
   * remote replica. "auto" never fails (it falls back to TCP).
   */
  private async checkTransports(inputs: VolumeInputs): Promise<dynamic.CheckFailure[]> {
    if (!inputs.nexusUuid || (inputs.transport !== "rdma" && inputs.replicaTransport !== "rdma")) return [];
    const cluster = this.clusterOrThrow();
    const known = new Map<string, Promise<NodeTransports>>();
    const of = (node: string) => {
      if (!known.has(node)) known.set(node, nodeTransports(cluster, node));
      return known.get(node)!;
    };
    const failures: dynamic.CheckFailure[] = [];
    if (inputs.transport === "rdma") {
      const leg = resolveLeg("rdma", [await of(inputs.nexusNode)]);
      if ("error" in leg) failures.push({ property: "transport", reason: `the frontend leg cannot use RDMA: ${leg.error}` });
    }
    if (inputs.replicaTransport === "rdma") {
      const remote = [...new Set(inputs.placement.map((r) => r.node).filter((n) => n !== inputs.nexusNode))];
      if (remote.length > 0) {
        const leg = resolveLeg("rdma", [await of(inputs.nexusNode), ...(await Promise.all(remote.map(of)))]);
        if ("error" in leg) failures.push({ property: "replicaTransport", reason: `the replica leg cannot use RDMA: ${leg.error}` });
      }
    }
    return failures;
  }

  async diff(_id: string, rawOlds: VolumeOutputs, news: VolumeInputs): Promise<dynamic.DiffResult> {
    const olds = normalizeState(rawOlds);
    const replaces: string[] = [];
    if (olds.uuid !== news.uuid) replaces.push("uuid");
    const changed =
      olds.sizeBytes !== news.sizeBytes ||
      olds.thin !== news.thin ||
      olds.replicas !== news.replicas ||
      (olds.frontendHostNqn ?? "") !== (news.frontendHostNqn ?? "") ||
      olds.transport !== news.transport ||
      olds.replicaTransport !== news.replicaTransport ||
      !samePlacement(olds.placement, news.placement) ||
      (news.leaving ?? []).length > 0 ||
      !sameLabels(olds.poolLabels, news.poolLabels) ||
      !sameLabels(olds.nodeSelector, news.nodeSelector) ||
      !samePools(olds.pools, news.pools ?? []) ||
      olds.topologyKey !== news.topologyKey ||
      olds.topologySpread !== news.topologySpread ||
      olds.group !== news.group;
    // A volume that is not fully healthy changes at every `up`: the update heals it.
    const degraded = olds.health !== "online";
    return { changes: replaces.length > 0 || changed || degraded, replaces, deleteBeforeReplace: false };
  }

  async create(news: VolumeInputs): Promise<dynamic.CreateResult> {
    const cluster = this.clusterOrThrow();
    // Adopted as it is (check verified it matches the program): nothing changes on the engines.
    if (news.importId) return { id: news.uuid, outs: await this.observe(news) };
    let inputs = news;
    if (inputs.placement.length < inputs.replicas) {
      // The pools were unknown at check (a preview before they existed): place now.
      const placed = await this.place(inputs, inputs.placement);
      inputs = { ...inputs, placement: placed.placement, nexusNode: inputs.nexusNode || placed.placement[0].node };
    }
    // Every replica whose CreateReplica was sent, not only those that returned: a call that hit
    // its deadline (a thick replica zeroing a large disk) may still have been done by the engine.
    const attempted: PlacedReplica[] = [];
    try {
      const placement: PlacedReplica[] = [];
      for (const replica of inputs.placement) {
        attempted.push(replica);
        placement.push(await this.createReplica(cluster, inputs, replica));
      }
      inputs = { ...inputs, placement };
      if (inputs.nexusUuid) await converge(cluster, inputs);
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

  /** Makes one replica on its pool (idempotent by uuid) and returns it with the pool's uuid filled in. */
  private async createReplica(cluster: ClusterConfig, inputs: VolumeInputs, replica: PlacedReplica): Promise<PlacedReplica> {
    const made = await onNode(cluster, replica.node, (engine) =>
      engine.call(
        "CreateReplica",
        { uuid: replica.replicaUuid, name: "", pool: replica.poolUuid || replica.pool, size_bytes: replicaSizeBytes(inputs), thin: inputs.thin },
        MUTATE_DEADLINE_MS,
      ),
    );
    return { ...replica, poolUuid: made.pool_uuid };
  }

  /**
   * Undoes a failed create, best-effort per step (an unreachable node does not stop the others):
   * the nexus and the shares, then every replica create that was attempted. Returns what could
   * not be undone, as "replica <uuid> on <node>" or "nexus <uuid> on <node>"; empty when nothing is left.
   */
  private async rollBack(cluster: ClusterConfig, inputs: VolumeInputs, attempted: readonly PlacedReplica[]): Promise<string[]> {
    const left: string[] = [];
    if (inputs.nexusUuid && inputs.nexusNode) {
      await destroyNexus(cluster, inputs).catch(() => left.push(`nexus ${inputs.nexusUuid} on ${inputs.nexusNode} (or its shares)`));
    }
    for (const r of attempted) {
      await onNode(cluster, r.node, (engine) => engine.call("DestroyReplica", { uuid: r.replicaUuid }, MUTATE_DEADLINE_MS)).catch(() =>
        left.push(`replica ${r.replicaUuid} on ${r.node}`),
      );
    }
    return left;
  }

  async read(id: string, props: VolumeOutputs): Promise<dynamic.ReadResult> {
    const state = normalizeState(props);
    // Known state (a refresh): report what is there. Never an empty id for it: that would make
    // Pulumi forget a volume whose engines were merely unreachable or emptied.
    if (state.placement.length > 0) return { id, props: await this.observe(state) };
    // `Volume.get` and `import` know only the uuid: find its nexus and replicas on the engines.
    const found = await this.discover(id);
    if (!found) return { id: "", props: {} };
    return { id, props: await this.observe({ ...state, ...found }) };
  }

  /** A volume's inputs as the engines hold it, from its uuid alone (its nexus uuid derives from it); null when no node has it. */
  private async discover(uuid: string): Promise<VolumeInputs | null> {
    const cluster = this.clusterOrThrow();
    const nexusUuid = nexusUuidFor(uuid);
    const nodes = Object.keys(cluster.endpoints).sort();
    const perNode = await Promise.all(
      nodes.map((node) =>
        onNode(cluster, node, async (engine) => ({
          node,
          nexus: (await engine.call("ListNexus", {}, CALL_DEADLINE_MS)).nexuses.find((n) => n.uuid === nexusUuid),
          replicas: (await engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS)).replicas,
        })),
      ),
    );
    const home = perNode.find((n) => n.nexus);
    if (!home?.nexus) return null;
    const placement: PlacedReplica[] = [];
    for (const child of home.nexus.children) {
      for (const n of perNode) {
        const r = n.replicas.find((x) => childUriIsReplica(child.uri, x.uuid));
        if (r) placement.push({ replicaUuid: r.uuid, node: n.node, pool: r.pool_name, poolUuid: r.pool_uuid, reason: "imported: found on the engines" });
      }
    }
    const first = perNode.flatMap((n) => n.replicas).find((r) => r.uuid === placement[0]?.replicaUuid);
    return {
      ...normalizeState({} as Partial<VolumeInputs>),
      uuid,
      sizeBytes: Number(home.nexus.size_bytes),
      thin: first?.thin ?? true,
      replicas: placement.length,
      poolLabels: {},
      topologyKey: "zone",
      frontendHostNqn: home.nexus.frontend_host_nqn,
      // The replica leg as the children were added: RDMA when any remote child uses it.
      replicaTransport: home.nexus.children.some((c) => c.uri.startsWith("nvmf+rdma://")) ? "rdma" : "tcp",
      placement,
      leaving: [],
      nexusUuid,
      nexusNode: home.node,
    } as VolumeInputs;
  }

  async update(_id: string, rawOlds: VolumeOutputs, news: VolumeInputs): Promise<dynamic.UpdateResult> {
    const cluster = this.clusterOrThrow();
    const olds = normalizeState(rawOlds);
    const recreated = new Set<string>();
    const placement: PlacedReplica[] = [];
    // Replicas first: made where missing, grown, converted; leaving ones are grown too, since
    // they stay children of the nexus until the new ones are in sync.
    for (const replica of [...news.placement, ...news.leaving]) {
      const staying = news.placement.includes(replica);
      const current = await onNode(cluster, replica.node, async (engine) =>
        (await engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS)).replicas.find((r) => r.uuid === replica.replicaUuid),
      );
      if (!current) {
        if (!staying) continue;
        // New, or gone behind our back: made (again) on its pool. It is empty: the nexus must
        // rebuild it in full (it carries no label), never trust it as it was.
        if (olds.placement.some((r) => r.replicaUuid === replica.replicaUuid)) recreated.add(replica.replicaUuid);
        placement.push(await this.createReplica(cluster, news, replica));
        continue;
      }
      await onNode(cluster, replica.node, async (engine) => {
        if (Number(current.size_bytes) < replicaSizeBytes(news))
          await engine.call("ResizeReplica", { uuid: replica.replicaUuid, size_bytes: replicaSizeBytes(news) }, MUTATE_DEADLINE_MS);
        if (staying && current.thin !== news.thin) await engine.call("SetReplicaThin", { uuid: replica.replicaUuid, thin: news.thin }, MUTATE_DEADLINE_MS);
      });
      if (staying) placement.push({ ...replica, poolUuid: current.pool_uuid });
    }
    const done: VolumeInputs = { ...news, placement };
    if (news.nexusUuid) await converge(cluster, done, { previousFrontend: olds.frontendHostNqn ?? "", recreated });
    return { outs: await this.observe({ ...done, leaving: [] }) };
  }

  async delete(_id: string, rawProps: VolumeOutputs): Promise<void> {
    const cluster = this.clusterOrThrow();
    const props = normalizeState(rawProps);
    if (props.nexusUuid) await destroyNexus(cluster, props);
    for (const replica of [...props.placement, ...props.leaving]) {
      await onNode(cluster, replica.node, (engine) => engine.call("DestroyReplica", { uuid: replica.replicaUuid }, MUTATE_DEADLINE_MS));
    }
  }

  /** Looks at every replica of the volume on its node and reports what is there. */
  private async observe(inputs: VolumeInputs): Promise<VolumeOutputs> {
    const cluster = this.clusterOrThrow();
    const replicaStatus: ReplicaStatus[] = [];
    for (const placed of inputs.placement) {
      const { replicas } = await onNode(cluster, placed.node, (engine) => engine.call("ListReplicas", { pool: "" }, CALL_DEADLINE_MS));
      const found = replicas.find((r) => r.uuid === placed.replicaUuid);
      replicaStatus.push({ ...placed, state: found ? "online" : "missing", allocatedBytes: Number(found?.allocated_bytes ?? 0) });
    }
    const present = replicaStatus.every((r) => r.state === "online");
    const first = { node: inputs.placement[0]?.node ?? "", pool: inputs.placement[0]?.pool ?? "" };
    if (!inputs.nexusUuid) return { ...inputs, ...first, health: present ? "online" : "degraded", nexus: null, replicaStatus, frontendDhchapSecret: "" };
    const nexus = await observeNexus(cluster, inputs);
    const inSync = nexus.children.every((c) => c.state === "online");
    const health = nexus.health === "faulted" ? "faulted" : present && inSync && nexus.health === "online" ? "online" : "degraded";
    const frontendSecret = inputs.frontendHostNqn ? frontendDhchapSecret(cluster.token, inputs.nexusUuid) : "";
    return { ...inputs, ...first, health, nexus, replicaStatus, frontendDhchapSecret: frontendSecret };
  }
}

/** True when any value inside is still unknown (a preview before an input's resource exists). */
function containsUnknown(value: unknown): boolean {
  if (isUnknown(value)) return true;
  if (Array.isArray(value)) return value.some(containsUnknown);
  if (value !== null && typeof value === "object") return Object.values(value).some(containsUnknown);
  return false;
}

/**
 * A create that failed but left something on the engines: Pulumi's "created, but failed to
 * initialize" (an error with `id` and `properties`), so the volume is kept in the stack with its
 * uuid, placement and replica uuids. The next `up` then converges it through `update` (engines
 * dedupe by uuid, so nothing is made twice), and `destroy` removes it; a plain error would make
 * Pulumi forget it and the next `up` place a new volume beside the leftovers.
 */
function keptInState(err: Error, inputs: VolumeInputs, left: readonly string[], what: string): Error {
  const remains = (r: PlacedReplica) => left.some((what) => what.includes(r.replicaUuid));
  const outs: VolumeOutputs = {
    ...inputs,
    health: "degraded",
    nexus: null,
    replicaStatus: inputs.placement.map((r) => ({ ...r, state: remains(r) ? "online" : "missing", allocatedBytes: 0 })),
    frontendDhchapSecret: "",
    node: inputs.placement[0]?.node ?? "",
    pool: inputs.placement[0]?.pool ?? "",
  };
  const message = `${err.message} (${what}; the volume stays in the stack: the next \`pulumi up\` finishes it, \`pulumi destroy\` removes it)`;
  return Object.assign(new Error(message), { id: inputs.uuid, properties: outs, reasons: [message] });
}

export type { DeclaredPool, PoolRef };
