// The Pool resource's dynamic provider: a pool on one node's device.
//
// Contract (Pulumi's): create is transactional; a failed delete means the pool still exists;
// `read` returns an empty id when the pool is gone so refresh drops it and the next up
// recreates it.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { checkClusterSizeBytes, checkDeviceUri, checkLabels, checkName, checkUuid } from "../common/validate";
import type { Pool__Output } from "../engine/generated/strata/engine/v1/Pool";
import { CALL_DEADLINE_MS, MUTATE_DEADLINE_MS, newUuid, onNode } from "./cluster";
import { ConfiguredProvider } from "./connection";
import { isUnknown } from "./unknown";

/** Inputs as the provider receives them (camelCase: what users write). */
export interface PoolInputs {
  readonly node: string;
  readonly disk: string;
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly clusterSizeBytes: number;
  /**
   * Drain: every volume moves its replicas off this pool (a new replica elsewhere is rebuilt
   * before the old one goes) and no new replica lands here. Placement reads it from the
   * program, so the preview shows the moves. Changes in place.
   */
  readonly drain: boolean;
  /**
   * The pool's uuid, derived by the SDK from project, stack and resource name: a create the
   * Pulumi CLI was killed in (and dropped from state) makes the same pool again, which the engine
   * answers with the pool it already made instead of leaking it. Absent in state written before
   * (the pool keeps the random uuid it was made with); the imported pool's uuid on an import.
   */
  readonly uuid?: string;
  /** The `import` resource option's id (the SDK passes it here): adopt that pool instead of making one; "" = none. */
  readonly importId?: string;
}

/** "online", "faulted" or "missing" (the engine lost the pool's device). */
export type PoolState = "online" | "faulted" | "missing";

export interface PoolOutputs extends PoolInputs {
  readonly uuid: string;
  readonly state: PoolState;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly committedBytes: number;
  readonly replicaCount: number;
}

const REPLACE_ON_CHANGE = ["node", "disk", "name", "clusterSizeBytes"] as const;

function outputsOf(inputs: PoolInputs, pool: Pool__Output): PoolOutputs {
  return {
    ...inputs,
    clusterSizeBytes: pool.cluster_size_bytes,
    uuid: pool.uuid,
    state: pool.state.replace("POOL_STATE_", "").toLowerCase() as PoolState,
    capacityBytes: pool.capacity_bytes,
    usedBytes: pool.used_bytes,
    committedBytes: pool.committed_bytes,
    replicaCount: pool.replica_count,
  };
}

export class PoolProvider extends ConfiguredProvider implements dynamic.ResourceProvider {

  async check(olds: Partial<PoolInputs>, news: Partial<PoolInputs>): Promise<dynamic.CheckResult> {
    const failures: dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string | null) => {
      if (reason !== null) failures.push({ property, reason });
    };
    const inputs = { labels: {}, clusterSizeBytes: 0, drain: false, ...news } as { -readonly [K in keyof PoolInputs]: PoolInputs[K] };
    // An existing pool keeps its uuid (older state has none as an input: the random one it was made with).
    if (olds.node !== undefined) {
      if (olds.uuid === undefined) delete inputs.uuid;
      else inputs.uuid = olds.uuid;
    } else if (inputs.uuid !== undefined && !isUnknown(inputs.uuid)) fail("uuid", checkUuid(inputs.uuid));
    if (!isUnknown(inputs.node)) {
      if (typeof inputs.node !== "string" || inputs.node === "") fail("node", "must name a node of strata:endpoints");
      else if (this.cluster && !(inputs.node in this.cluster.endpoints))
        fail("node", `"${inputs.node}" is not a configured node (strata:endpoints has: ${Object.keys(this.cluster.endpoints).sort().join(", ")})`);
    }
    if (!isUnknown(inputs.disk)) fail("disk", checkDeviceUri(inputs.disk));
    if (!isUnknown(inputs.name)) fail("name", checkName(inputs.name));
    if (!isUnknown(inputs.labels)) fail("labels", checkLabels(inputs.labels));
    if (!isUnknown(inputs.clusterSizeBytes)) fail("clusterSizeBytes", checkClusterSizeBytes(inputs.clusterSizeBytes));
    if (!isUnknown(inputs.drain) && typeof inputs.drain !== "boolean") fail("drain", `must be true or false, got ${JSON.stringify(inputs.drain)}`);
    if (this.cluster === null) fail("node", this.configError);
    if (failures.length === 0 && !isUnknown(inputs) && olds.node === undefined && inputs.importId) await this.checkImport(inputs, fail);
    // A node that is down or refuses our token is reported now, at preview, not halfway through an up.
    if (failures.length === 0 && !isUnknown(inputs.node) && olds.node === undefined) {
      await onNode(this.clusterOrThrow(), inputs.node, (engine) => engine.call("GetInfo", {}, CALL_DEADLINE_MS));
    }
    return { inputs, failures };
  }

  /** With `import`: the pool must exist on the declared node and match what the program declares, each difference named. */
  private async checkImport(inputs: PoolInputs, fail: (property: string, reason: string | null) => void): Promise<void> {
    const id = inputs.importId!;
    const pool = await this.findPool(inputs.node, id);
    if (!pool) return fail("node", `no pool ${id} on node ${inputs.node}: nothing to import (remove the import option to make one)`);
    const then = ": declare what exists to import it, then change it";
    if (pool.device_uri !== inputs.disk) fail("disk", `pool ${id} is on "${pool.device_uri}", the program declares "${inputs.disk}"${then}`);
    if (pool.name !== inputs.name) fail("name", `pool ${id} is named "${pool.name}", the program declares "${inputs.name}"${then}`);
    if (JSON.stringify(sortKeys(pool.labels)) !== JSON.stringify(sortKeys(inputs.labels)))
      fail("labels", `pool ${id} has labels ${JSON.stringify(pool.labels)}, the program declares ${JSON.stringify(inputs.labels)}${then}`);
    if (inputs.clusterSizeBytes !== 0 && inputs.clusterSizeBytes !== pool.cluster_size_bytes)
      fail("clusterSizeBytes", `pool ${id} has ${pool.cluster_size_bytes}-byte clusters, the program declares ${inputs.clusterSizeBytes}${then}`);
  }

  private async findPool(node: string, uuid: string): Promise<Pool__Output | undefined> {
    return onNode(this.clusterOrThrow(), node, async (engine) => (await engine.call("ListPools", {}, CALL_DEADLINE_MS)).pools.find((p) => p.uuid === uuid));
  }

  async diff(_id: string, olds: PoolOutputs, news: PoolInputs): Promise<dynamic.DiffResult> {
    const replaces = REPLACE_ON_CHANGE.filter((k) => k === "clusterSizeBytes"
      ? news.clusterSizeBytes !== 0 && olds.clusterSizeBytes !== news.clusterSizeBytes
      : olds[k] !== news[k]);
    const labelsChanged = JSON.stringify(sortKeys(olds.labels)) !== JSON.stringify(sortKeys(news.labels));
    const stale = olds.state !== "online";
    const drainChanged = (olds.drain ?? false) !== news.drain;
    return {
      changes: replaces.length > 0 || labelsChanged || stale || drainChanged,
      replaces: [...replaces],
      // Two pools cannot share a device, so the old one must go before the new one is made.
      deleteBeforeReplace: replaces.length > 0,
    };
  }

  async create(inputs: PoolInputs): Promise<dynamic.CreateResult> {
    if (inputs.importId) {
      // Adopted as it is: check verified it matches the program; nothing changes on the engine.
      const found = await this.findPool(inputs.node, inputs.importId);
      if (!found) throw new Error(`node: pool ${inputs.importId} is no longer on node ${inputs.node}: nothing to import`);
      return { id: found.uuid, outs: outputsOf(inputs, found) };
    }
    const uuid = inputs.uuid ?? newUuid();
    const pool = await onNode(this.clusterOrThrow(), inputs.node, (engine) =>
      engine.call(
        "CreatePool",
        { uuid, name: inputs.name, device_uri: inputs.disk, labels: inputs.labels, cluster_size_bytes: inputs.clusterSizeBytes, force: false },
        MUTATE_DEADLINE_MS,
      ),
    );
    return { id: pool.uuid, outs: outputsOf(inputs, pool) };
  }

  async read(id: string, props: PoolOutputs): Promise<dynamic.ReadResult> {
    const cluster = this.clusterOrThrow();
    // `Pool.get` and `import` know only the uuid: look for it on every node.
    const nodes = props.node ? [props.node] : Object.keys(cluster.endpoints).sort();
    let found: { node: string; pool: Pool__Output } | undefined;
    for (const node of nodes) {
      const pools = await onNode(cluster, node, (engine) => engine.call("ListPools", {}, CALL_DEADLINE_MS));
      const pool = pools.pools.find((p) => p.uuid === id);
      if (pool) found = { node, pool };
      if (found) break;
    }
    if (!found) return { id: "", props: {} };
    const { node, pool } = found;
    props = { ...props, node, clusterSizeBytes: props.clusterSizeBytes || pool.cluster_size_bytes };
    const inputs: PoolInputs = {
      node,
      disk: pool.device_uri,
      name: pool.name,
      labels: pool.labels,
      clusterSizeBytes: props.clusterSizeBytes,
      drain: props.drain ?? false,
    };
    return { id, props: outputsOf(inputs, pool) };
  }

  async update(id: string, olds: PoolOutputs, news: PoolInputs): Promise<dynamic.UpdateResult> {
    // Only labels change in place; CreatePool with the same identity updates them, and
    // re-imports the pool when it was missing.
    const pool = await onNode(this.clusterOrThrow(), news.node, (engine) =>
      engine.call(
        "CreatePool",
        { uuid: id, name: olds.name, device_uri: olds.disk, labels: news.labels, cluster_size_bytes: 0, force: false },
        MUTATE_DEADLINE_MS,
      ),
    );
    return { outs: outputsOf(news, pool) };
  }

  async delete(id: string, props: PoolOutputs): Promise<void> {
    await onNode(this.clusterOrThrow(), props.node, (engine) => engine.call("DestroyPool", { uuid: id }, MUTATE_DEADLINE_MS));
  }
}

function sortKeys(labels: Record<string, string> | undefined): [string, string][] {
  return Object.entries(labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
}
