// The engine's control plane: pools and replicas, idempotent by uuid. It validates every
// request (the network is not trusted), serializes changes, keeps the durable state file in
// step with the pools on disk, and leaves the data path to the native addon.
//
// Architecture invariant: engine/ knows nothing of Pulumi.
import type { DeviceInfo, NativeStorage, PoolInfo, RdmaTransportInfo, ReplicaInfo } from "../native";
import { isNativeError } from "../native";
import {
  checkClusterSizeBytes,
  checkDeviceUri,
  checkDhchapSecret,
  checkLabels,
  checkName,
  checkSizeBytes,
  checkNqn,
  checkUuid,
  DEFAULT_CLUSTER_SIZE_BYTES,
} from "../common/validate";
import { nodeNqn } from "../common/nexus-rules";

export { checkNqn };
import type { Device } from "./generated/strata/engine/v1/Device";
import type { IoStats } from "./generated/strata/engine/v1/IoStats";
import type { NodeInfo } from "./generated/strata/engine/v1/NodeInfo";
import type { NvmfTransport } from "./generated/strata/engine/v1/NvmfTransport";
import type { Pool } from "./generated/strata/engine/v1/Pool";
import type { Replica } from "./generated/strata/engine/v1/Replica";
import type { Subsystem } from "./generated/strata/engine/v1/Subsystem";
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "./errors";
import type { Logger } from "./log";
import type { HostSecretRecord, PoolRecord, ShareRecord, StateStore } from "./state";

export const ENGINE_VERSION = "0.1.0";
export const CAPABILITIES = ["pool", "replica", "pool-grow", "replica-resize", "replica-set-thin", "thin-provisioning", "io_uring", "nvmf-tcp", "nexus", "nexus-resize"];

/** The host NQN an engine connects to other nodes' replicas with. */
export function hostNqnOf(node: string): string {
  return nodeNqn(node);
}

/** Where a pool known to this engine stands. */
type PoolEntry =
  /** Imported: the native pool is open and serving. */
  | { readonly kind: "imported"; record: PoolRecord }
  /** In the state file, but its device could not be imported at start; `reason` says why. */
  | { readonly kind: "missing"; record: PoolRecord; readonly reason: string };

export function checkField(value: unknown, field: string, problem: (v: unknown) => string | null): void {
  const reason = problem(value);
  if (reason !== null) throw invalidArgument(`${field} ${reason}`);
}

/** Serializes control operations: two creates of the same uuid must not race. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

/** What a share admits: hosts by NQN, some of them only with a DH-HMAC-CHAP secret. */
interface ShareSpec {
  readonly allowed: readonly string[];
  readonly secrets: readonly HostSecretRecord[];
}

/** Host entries with secrets as the native layer takes them (validated already). */
function nativeSecrets(secrets: readonly HostSecretRecord[]) {
  return secrets.map((h) => ({ host_nqn: h.host_nqn, dhchap_secret: h.dhchap_secret, ...(h.dhchap_ctrl_secret ? { dhchap_ctrl_secret: h.dhchap_ctrl_secret } : {}) }));
}

/**
 * Validates ShareReplica's hosts: allowed_host_nqns (NQN only) and hosts[] (each an NQN with an
 * optional secret). Errors name the field, never the secret.
 */
export function shareSpecOf(allowedNqns: unknown, hosts: unknown): ShareSpec {
  const nqns = allowedNqns ?? [];
  if (!Array.isArray(nqns)) throw invalidArgument("allowed_host_nqns must be a list of host NQNs");
  nqns.forEach((h, i) => checkField(h, `allowed_host_nqns[${i}]`, checkNqn));
  const entries = hosts ?? [];
  if (!Array.isArray(entries)) throw invalidArgument("hosts must be a list of {nqn, dhchap_secret, dhchap_ctrl_secret}");
  const secrets = new Map<string, HostSecretRecord>();
  const allowed = new Set<string>(nqns as string[]);
  entries.forEach((h: { nqn?: unknown; dhchap_secret?: unknown; dhchap_ctrl_secret?: unknown }, i) => {
    checkField(h?.nqn, `hosts[${i}].nqn`, checkNqn);
    const nqn = h.nqn as string;
    allowed.add(nqn);
    const secret = h.dhchap_secret ?? "";
    const ctrl = h.dhchap_ctrl_secret ?? "";
    if (secret === "") {
      if (ctrl !== "") throw invalidArgument(`hosts[${i}].dhchap_ctrl_secret needs hosts[${i}].dhchap_secret`);
      return;
    }
    checkField(secret, `hosts[${i}].dhchap_secret`, checkDhchapSecret);
    if (ctrl !== "") checkField(ctrl, `hosts[${i}].dhchap_ctrl_secret`, checkDhchapSecret);
    if (secrets.has(nqn)) throw invalidArgument(`hosts[${i}].nqn ${nqn} is listed twice`);
    secrets.set(nqn, { host_nqn: nqn, dhchap_secret: secret as string, ...(ctrl !== "" ? { dhchap_ctrl_secret: ctrl as string } : {}) });
  });
  return { allowed: [...allowed].sort(), secrets: [...secrets.values()].sort((a, b) => a.host_nqn.localeCompare(b.host_nqn)) };
}

function sameSpec(a: ShareSpec | undefined, b: ShareSpec): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

export class EngineService {
  private readonly pools = new Map<string, PoolEntry>();
  private readonly lock = new Mutex();
  private readonly startedAt = Date.now();
  /** Replicas shared over NVMe/TCP: uuid -> allowed host NQNs (sorted) and the secrets of those
   * that must authenticate (by NQN). Persisted in the state file (0600). */
  private readonly shares = new Map<string, ShareSpec>();
  /** HOST:PORT hosts connect to, set once the target listens. */
  private nvmfAddress = "";
  private rdmaTransport: RdmaTransportInfo | undefined;
  /** Whether this engine's initiator presents a DH-HMAC-CHAP secret (--dhchap-secret-file). */
  private hostDhchap = false;

  constructor(
    private readonly native: NativeStorage,
    private readonly store: StateStore,
    private readonly node: string,
    private readonly labels: Record<string, string>,
    private readonly cores: number,
    private readonly grpcEndpoint: string,
    private readonly log: Logger,
  ) {}

  /** Re-imports every pool the state file lists. A pool that fails stays listed as missing. */
  async importKnownPools(): Promise<void> {
    for (const record of this.store.load().pools) {
      try {
        const info = await this.native.importPool({ device_uri: record.device_uri });
        if (info.uuid !== record.uuid) {
          await this.native.exportPool({ uuid: info.uuid });
          throw new Error(`device holds pool ${info.name} (${info.uuid}), not ${record.name} (${record.uuid})`);
        }
        this.pools.set(record.uuid, { kind: "imported", record });
        this.log.info("pool imported", { pool: record.name, uuid: record.uuid, device_uri: record.device_uri });
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        this.pools.set(record.uuid, { kind: "missing", record, reason });
        this.log.error("pool import failed", { pool: record.name, uuid: record.uuid, reason });
      }
    }
  }

  /**
   * Imports a missing pool's recorded device and checks it holds that pool. Returns the entry,
   * now imported, or still missing with the new reason.
   */
  private async reimportMissing(entry: PoolEntry & { kind: "missing" }): Promise<PoolEntry> {
    const record = entry.record;
    let next: PoolEntry;
    try {
      const info = await this.native.importPool({ device_uri: record.device_uri });
      if (info.uuid !== record.uuid) {
        await this.native.exportPool({ uuid: info.uuid });
        throw new Error(`device ${record.device_uri} holds pool ${info.name} (${info.uuid}), not ${record.name} (${record.uuid})`);
      }
      next = { kind: "imported", record };
      this.log.info("missing pool imported", { pool: record.name, uuid: record.uuid, device_uri: record.device_uri });
      // Its replicas' shares stayed in the state file (restoreShares could not serve them).
      const replicas = new Set((await this.native.listReplicas()).filter((r) => r.pool_uuid === record.uuid).map((r) => r.uuid));
      for (const [replica, spec] of this.shares) {
        if (!replicas.has(replica)) continue;
        await this.native.shareReplica({ uuid: replica, allowed_host_nqns: [...spec.allowed], host_secrets: nativeSecrets(spec.secrets) }).then(
          ({ nqn }) => this.log.info("replica re-shared", { replica, nqn }),
          (err: unknown) => this.log.error("replica share not restored", { replica, reason: (err as Error).message }),
        );
      }
    } catch (err) {
      next = { kind: "missing", record, reason: err instanceof Error ? err.message : String(err) };
      this.log.error("missing pool import failed", { pool: record.name, uuid: record.uuid, reason: next.reason });
    }
    this.pools.set(record.uuid, next);
    return next;
  }

  /** Records that the initiator authenticates as hostNqnOf(node) (reported in NodeInfo). */
  setHostDhchap(on: boolean): void {
    this.hostDhchap = on;
  }

  /** Records where the NVMe/TCP target listens (reported in Subsystem.address). */
  setNvmfAddress(address: string): void {
    this.nvmfAddress = address;
  }

  /** Records what became of the RDMA transport (--rdma-interface), reported in NodeInfo.transports. */
  setRdmaTransport(rdma: RdmaTransportInfo): void {
    this.rdmaTransport = rdma;
  }

  /** The transports NodeInfo reports: TCP, and RDMA when it was asked for. */
  transports(): NvmfTransport[] {
    const list: NvmfTransport[] = [{ trtype: "tcp", address: this.nvmfAddress, available: true, reason: "", interface: "", device: "" }];
    const r = this.rdmaTransport;
    if (r) {
      list.push({
        trtype: "rdma",
        address: r.available ? `${r.address}:${r.port}` : "",
        available: r.available,
        reason: r.reason,
        interface: r.interface,
        device: r.device,
      });
    }
    return list;
  }

  /**
   * Re-shares the replicas the state file lists; call after importKnownPools. A share whose
   * replica is gone (pool missing) stays in the state file and is logged, so it comes back
   * when ShareReplica is called again or the pool returns at the next start.
   */
  async restoreShares(): Promise<void> {
    for (const share of this.store.load().shares ?? []) {
      const spec: ShareSpec = { allowed: [...share.allowed_host_nqns], secrets: [...(share.host_secrets ?? [])] };
      this.shares.set(share.replica_uuid, spec);
      try {
        const { nqn } = await this.native.shareReplica({
          uuid: share.replica_uuid,
          allowed_host_nqns: [...spec.allowed],
          host_secrets: nativeSecrets(spec.secrets),
        });
        this.log.info("replica re-shared", { replica: share.replica_uuid, nqn });
      } catch (err) {
        this.log.error("replica share not restored", { replica: share.replica_uuid, reason: (err as Error).message });
      }
    }
  }

  shareReplica(req: {
    uuid: string;
    allowed_host_nqns: string[];
    hosts?: { nqn: string; dhchap_secret?: string; dhchap_ctrl_secret?: string }[];
  }): Promise<Subsystem> {
    checkField(req.uuid, "uuid", checkUuid);
    const spec = shareSpecOf(req.allowed_host_nqns, req.hosts);
    return this.lock.run(async () => {
      const replica = (await this.native.listReplicas()).find((r) => r.uuid === req.uuid);
      if (!replica) throw notFound(`replica ${req.uuid} does not exist on node ${this.node}`);
      const before = this.shares.get(req.uuid);
      const { nqn } = await this.native.shareReplica({ uuid: req.uuid, allowed_host_nqns: [...spec.allowed], host_secrets: nativeSecrets(spec.secrets) });
      this.shares.set(req.uuid, spec);
      try {
        this.saveState();
      } catch (err) {
        // Transactional: a share the engine would forget at restart must not be in effect.
        if (before) {
          this.shares.set(req.uuid, before);
          await this.native
            .shareReplica({ uuid: req.uuid, allowed_host_nqns: [...before.allowed], host_secrets: nativeSecrets(before.secrets) })
            .catch(() => undefined);
        } else {
          this.shares.delete(req.uuid);
          await this.native.unshareReplica({ uuid: req.uuid }).catch(() => undefined);
        }
        throw err;
      }
      // Logged: who may connect and who must authenticate; never a secret.
      if (!sameSpec(before, spec))
        this.log.info(before ? "replica allow list updated" : "replica shared", {
          replica: req.uuid,
          nqn,
          allowed_host_nqns: [...spec.allowed],
          dhchap_host_nqns: spec.secrets.map((h) => h.host_nqn),
        });
      return this.describeSubsystem(nqn);
    });
  }

  unshareReplica(uuid: string): Promise<void> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      await this.native.unshareReplica({ uuid });
      if (this.shares.delete(uuid)) {
        this.saveState();
        this.log.info("replica unshared", { replica: uuid });
      }
    });
  }

  async listSubsystems(): Promise<Subsystem[]> {
    return (await this.native.listSubsystems()).map((s) => this.toSubsystem(s)).sort((a, b) => (a.nqn ?? "").localeCompare(b.nqn ?? ""));
  }

  async listControllers(): Promise<
    { uri: string; state: string; cntlid: number; queues: number; reconnects: number; last_error: string }[]
  > {
    return (await this.native.listControllers()).map((c) => ({
      uri: c.uri,
      state: c.state,
      cntlid: c.cntlid,
      queues: c.queues,
      reconnects: c.reconnects,
      last_error: c.last_error ?? "",
    }));
  }

  private async describeSubsystem(nqn: string): Promise<Subsystem> {
    const s = (await this.native.listSubsystems()).find((x) => x.nqn === nqn);
    if (!s) throw notFound(`subsystem ${nqn} is not served`);
    return this.toSubsystem(s);
  }

  private toSubsystem(s: Awaited<ReturnType<NativeStorage["listSubsystems"]>>[number]): Subsystem {
    return {
      nqn: s.nqn,
      replica_uuid: s.replica_uuid,
      allowed_host_nqns: [...s.allowed_host_nqns],
      dhchap_host_nqns: [...s.dhchap_host_nqns],
      connected_hosts: s.connected_hosts.map((h) => ({ host_nqn: h.host_nqn, cntlid: h.cntlid, queues: h.queues })),
      transport: "tcp",
      address: this.nvmfAddress,
      kind: s.kind,
    };
  }

  getInfo(): NodeInfo {
    return {
      node: this.node,
      version: ENGINE_VERSION,
      labels: this.labels,
      capabilities: CAPABILITIES,
      cores: this.cores,
      grpc_endpoint: this.grpcEndpoint,
      uptime_ms: Date.now() - this.startedAt,
      nvmf_endpoint: this.nvmfAddress,
      host_nqn: hostNqnOf(this.node),
      host_dhchap: this.hostDhchap,
      transports: this.transports(),
    };
  }

  async listDevices(probeUris: readonly string[]): Promise<Device[]> {
    const devices = await this.native.listDevices();
    const seen = new Set(devices.map((d) => d.uri));
    for (const uri of probeUris) {
      checkField(uri, "probe_uris entry", checkDeviceUri);
      if (!seen.has(uri)) devices.push(await this.native.probeDevice({ uri }));
    }
    return devices.map(toDevice);
  }

  createPool(req: {
    uuid: string;
    name: string;
    device_uri: string;
    labels: Record<string, string>;
    cluster_size_bytes: number;
    force: boolean;
  }): Promise<Pool> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.name, "name", checkName);
    checkField(req.device_uri, "device_uri", checkDeviceUri);
    checkField(req.labels, "labels", checkLabels);
    checkField(req.cluster_size_bytes, "cluster_size_bytes", checkClusterSizeBytes);
    const clusterSize = req.cluster_size_bytes || DEFAULT_CLUSTER_SIZE_BYTES;
    return this.lock.run(async () => {
      let existing = this.pools.get(req.uuid);
      if (existing) {
        const r = existing.record;
        const differs =
          r.name !== req.name ? `name is "${r.name}", requested "${req.name}"` :
          r.device_uri !== req.device_uri ? `device_uri is "${r.device_uri}", requested "${req.device_uri}"` : null;
        if (differs) throw alreadyExists(`pool ${req.uuid} already exists with a different spec: ${differs}`);
        if (existing.kind === "missing") {
          // The device was absent at start (a disk attached late): the same create is how a
          // declarative caller asks for the pool back, so try the import again. Never format:
          // the device is supposed to hold this pool's data.
          existing = await this.reimportMissing(existing);
          if (existing.kind === "missing")
            throw failedPrecondition(`pool "${r.name}" (${r.uuid}) is missing and its device cannot be imported yet: ${existing.reason}; attach the device and retry`);
        }
        if (existing.kind === "imported") {
          const info = await this.nativePool(req.uuid);
          if (req.cluster_size_bytes && info.cluster_size_bytes !== clusterSize)
            throw alreadyExists(`pool ${req.uuid} already exists with cluster_size_bytes ${info.cluster_size_bytes}, requested ${clusterSize}`);
        }
        if (!sameLabels(r.labels, req.labels)) {
          // Labels are placement metadata, not identity: a create with new labels updates them.
          existing.record = { ...r, labels: { ...req.labels } };
          this.saveState();
        }
        return this.describePool(req.uuid);
      }
      for (const entry of this.pools.values()) {
        if (entry.record.name === req.name)
          throw alreadyExists(`a pool named "${req.name}" already exists on node ${this.node} (uuid ${entry.record.uuid})`);
        if (entry.record.device_uri === req.device_uri)
          throw failedPrecondition(`device ${req.device_uri} is already used by pool "${entry.record.name}" (${entry.record.uuid})`);
      }
      const info = await this.native.createPool({
        uuid: req.uuid,
        name: req.name,
        device_uri: req.device_uri,
        cluster_size_bytes: clusterSize,
        force: req.force,
      });
      const record: PoolRecord = { uuid: info.uuid, name: info.name, device_uri: req.device_uri, labels: { ...req.labels } };
      this.pools.set(info.uuid, { kind: "imported", record });
      try {
        this.saveState();
      } catch (err) {
        // Transactional: a pool the engine would forget at restart must not exist at all.
        this.pools.delete(info.uuid);
        await this.native.destroyPool({ uuid: info.uuid }).catch(() => undefined);
        throw err;
      }
      this.log.info("pool created", { pool: info.name, uuid: info.uuid, device_uri: req.device_uri, capacity_bytes: info.capacity_bytes });
      return this.toPool(info, record);
    });
  }

  importPool(req: { device_uri: string; labels: Record<string, string> }): Promise<Pool> {
    checkField(req.device_uri, "device_uri", checkDeviceUri);
    checkField(req.labels, "labels", checkLabels);
    return this.lock.run(async () => {
      for (const entry of this.pools.values()) {
        if (entry.record.device_uri === req.device_uri && entry.kind === "imported") return this.describePool(entry.record.uuid);
      }
      const info = await this.native.importPool({ device_uri: req.device_uri });
      const record: PoolRecord = { uuid: info.uuid, name: info.name, device_uri: req.device_uri, labels: { ...req.labels } };
      this.pools.set(info.uuid, { kind: "imported", record });
      this.saveState();
      this.log.info("pool imported", { pool: info.name, uuid: info.uuid, device_uri: req.device_uri });
      return this.toPool(info, record);
    });
  }

  exportPool(uuid: string): Promise<void> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      const entry = this.pools.get(uuid);
      if (!entry) return;
      if (entry.kind === "imported") {
        const shared = (await this.native.listReplicas()).filter((r) => r.pool_uuid === uuid && this.shares.has(r.uuid));
        if (shared.length > 0)
          throw failedPrecondition(
            `pool "${entry.record.name}" has replicas shared over NVMe/TCP (${shared.map((r) => r.uuid).join(", ")}); unshare them first`,
          );
        await this.native.exportPool({ uuid });
      }
      this.pools.delete(uuid);
      this.saveState();
      this.log.info("pool exported", { pool: entry.record.name, uuid });
    });
  }

  destroyPool(uuid: string): Promise<void> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      const entry = this.pools.get(uuid);
      if (!entry) return;
      if (entry.kind === "imported") {
        const replicas = (await this.native.listReplicas()).filter((r) => r.pool_uuid === uuid);
        if (replicas.length > 0)
          throw failedPrecondition(
            `pool "${entry.record.name}" still has ${replicas.length} replica(s) (${replicas.map((r) => r.uuid).join(", ")}); destroy them first`,
          );
        await this.native.destroyPool({ uuid });
      }
      this.pools.delete(uuid);
      this.saveState();
      this.log.info("pool destroyed", { pool: entry.record.name, uuid });
    });
  }

  growPool(uuid: string): Promise<Pool> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      const entry = this.importedPool(uuid);
      const before = await this.nativePool(uuid);
      const info = await this.native.growPool({ uuid });
      if (info.capacity_bytes !== before.capacity_bytes)
        this.log.info("pool grown", { pool: info.name, uuid, from_bytes: before.capacity_bytes, to_bytes: info.capacity_bytes });
      return this.toPool(info, entry.record);
    });
  }

  async listPools(): Promise<Pool[]> {
    const infos = new Map((await this.native.listPools()).map((p) => [p.uuid, p]));
    const pools: Pool[] = [];
    for (const entry of this.pools.values()) {
      const info = infos.get(entry.record.uuid);
      pools.push(info && entry.kind === "imported" ? this.toPool(info, entry.record) : this.missingPool(entry));
    }
    return pools.sort((a, b) => (a.name ?? "").localeCompare(b.name ?? ""));
  }

  createReplica(req: { uuid: string; name: string; pool: string; size_bytes: number; thin: boolean }): Promise<Replica> {
    checkField(req.uuid, "uuid", checkUuid);
    const name = req.name || req.uuid;
    checkField(name, "name", checkName);
    checkField(req.size_bytes, "size_bytes", checkSizeBytes);
    if (!req.pool) throw invalidArgument("pool is required (a pool uuid or name)");
    return this.lock.run(async () => {
      const entry = this.resolvePool(req.pool);
      const existing = (await this.native.listReplicas()).find((r) => r.uuid === req.uuid);
      if (existing) {
        const differs =
          existing.pool_uuid !== entry.record.uuid ? `it is in pool ${existing.pool_uuid}, requested pool ${entry.record.uuid}` :
          existing.size_bytes !== req.size_bytes ? `size_bytes is ${existing.size_bytes}, requested ${req.size_bytes} (use ResizeReplica to grow it)` :
          existing.thin !== req.thin ? `thin is ${existing.thin}, requested ${req.thin}` :
          existing.name !== name ? `name is "${existing.name}", requested "${name}"` : null;
        if (differs) throw alreadyExists(`replica ${req.uuid} already exists with a different spec: ${differs}`);
        return this.toReplica(existing);
      }
      const info = await this.native.createReplica({
        pool_uuid: entry.record.uuid,
        uuid: req.uuid,
        name,
        size_bytes: req.size_bytes,
        thin: req.thin,
      });
      this.log.info("replica created", { replica: info.uuid, pool: entry.record.name, size_bytes: info.size_bytes, thin: info.thin });
      return this.toReplica(info);
    });
  }

  resizeReplica(req: { uuid: string; size_bytes: number }): Promise<Replica> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.size_bytes, "size_bytes", checkSizeBytes);
    return this.lock.run(async () => {
      const existing = (await this.native.listReplicas()).find((r) => r.uuid === req.uuid);
      if (!existing) throw notFound(`replica ${req.uuid} does not exist on node ${this.node}`);
      if (existing.size_bytes === req.size_bytes) return this.toReplica(existing);
      if (req.size_bytes < existing.size_bytes)
        throw invalidArgument(`size_bytes ${req.size_bytes} is smaller than the replica (${existing.size_bytes}); replicas only grow`);
      const info = await this.native.resizeReplica({ uuid: req.uuid, size_bytes: req.size_bytes });
      this.log.info("replica resized", { replica: req.uuid, from_bytes: existing.size_bytes, to_bytes: info.size_bytes });
      return this.toReplica(info);
    });
  }

  /**
   * Thin <-> thick in place, data kept. The pool does the work (one control operation at a time,
   * safe under I/O); here: validation, the change mutex, and a log line when something changed.
   */
  setReplicaThin(req: { uuid: string; thin: boolean }): Promise<Replica> {
    checkField(req.uuid, "uuid", checkUuid);
    if (typeof req.thin !== "boolean") throw invalidArgument("thin must be true or false");
    return this.lock.run(async () => {
      const existing = (await this.native.listReplicas()).find((r) => r.uuid === req.uuid);
      if (!existing) throw notFound(`replica ${req.uuid} does not exist on node ${this.node}`);
      if (existing.thin === req.thin) return this.toReplica(existing);
      const info = await this.native.setReplicaThin({ uuid: req.uuid, thin: req.thin });
      this.log.info(req.thin ? "replica made thin" : "replica made thick", {
        replica: req.uuid,
        allocated_bytes_before: existing.allocated_bytes,
        allocated_bytes: info.allocated_bytes,
      });
      return this.toReplica(info);
    });
  }

  destroyReplica(uuid: string): Promise<void> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      if (this.shares.has(uuid))
        throw failedPrecondition(`replica ${uuid} is shared over NVMe/TCP; call UnshareReplica first (its hosts would lose the namespace)`);
      try {
        await this.native.destroyReplica({ uuid });
        this.log.info("replica destroyed", { replica: uuid });
      } catch (err) {
        if (isNativeError(err) && err.code === "NOT_FOUND") return;
        throw err;
      }
    });
  }

  async listReplicas(pool: string): Promise<Replica[]> {
    const poolUuid = pool ? this.resolvePool(pool).record.uuid : null;
    return (await this.native.listReplicas())
      .filter((r) => poolUuid === null || r.pool_uuid === poolUuid)
      .map((r) => this.toReplica(r))
      .sort((a, b) => (a.name ?? "").localeCompare(b.name ?? ""));
  }

  /** Every pool's device URI, by pool uuid (missing pools included: their device is still taken). */
  poolDevices(): Map<string, string> {
    return new Map([...this.pools.values()].map((e) => [e.record.uuid, e.record.device_uri]));
  }

  async getStats(uuid: string): Promise<IoStats> {
    checkField(uuid, "uuid", checkUuid);
    const stats = await this.native.getStats({ uuid });
    return { uuid, ...stats, latency_bucket_upper_us: [...stats.latency_bucket_upper_us], latency_bucket_counts: [...stats.latency_bucket_counts] };
  }

  async shutdown(): Promise<void> {
    await this.lock.run(() => this.native.shutdown());
  }

  private resolvePool(poolRef: string): PoolEntry & { kind: "imported" } {
    for (const entry of this.pools.values()) {
      if (entry.record.uuid === poolRef || entry.record.name === poolRef) {
        if (entry.kind !== "imported") throw failedPrecondition(`pool "${entry.record.name}" is not online: ${entry.reason}`);
        return entry;
      }
    }
    throw notFound(`pool "${poolRef}" does not exist on node ${this.node}`);
  }

  private importedPool(uuid: string): PoolEntry & { kind: "imported" } {
    const entry = this.pools.get(uuid);
    if (!entry) throw notFound(`pool ${uuid} does not exist on node ${this.node}`);
    if (entry.kind !== "imported") throw failedPrecondition(`pool "${entry.record.name}" is not online: ${entry.reason}`);
    return entry;
  }

  private async nativePool(uuid: string): Promise<PoolInfo> {
    const info = (await this.native.listPools()).find((p) => p.uuid === uuid);
    if (!info) throw notFound(`pool ${uuid} is not open in the data path`);
    return info;
  }

  private async describePool(uuid: string): Promise<Pool> {
    const entry = this.pools.get(uuid);
    if (!entry) throw notFound(`pool ${uuid} does not exist on node ${this.node}`);
    if (entry.kind === "missing") return this.missingPool(entry);
    return this.toPool(await this.nativePool(uuid), entry.record);
  }

  private saveState(): void {
    const shares: ShareRecord[] = [...this.shares].map(([replica_uuid, spec]) => ({
      replica_uuid,
      allowed_host_nqns: spec.allowed,
      ...(spec.secrets.length > 0 ? { host_secrets: spec.secrets } : {}),
    }));
    // Nexus and CSAL records belong to their services; keep them as they are on disk.
    this.store.save({ ...this.store.load(), version: 1, pools: [...this.pools.values()].map((e) => e.record), shares });
  }

  private toPool(info: PoolInfo, record: PoolRecord): Pool {
    return {
      uuid: info.uuid,
      name: info.name,
      node: this.node,
      device_uri: record.device_uri,
      state: info.state === "online" ? "POOL_STATE_ONLINE" : "POOL_STATE_FAULTED",
      capacity_bytes: info.capacity_bytes,
      used_bytes: info.used_bytes,
      committed_bytes: info.committed_bytes,
      cluster_size_bytes: info.cluster_size_bytes,
      replica_count: info.replica_count,
      labels: record.labels,
      format_version: info.format_version,
      reason: info.state === "online" ? "" : "the pool's device reported I/O errors",
    };
  }

  private missingPool(entry: PoolEntry): Pool {
    return {
      uuid: entry.record.uuid,
      name: entry.record.name,
      node: this.node,
      device_uri: entry.record.device_uri,
      state: "POOL_STATE_MISSING",
      labels: entry.record.labels,
      reason: entry.kind === "missing" ? entry.reason : "",
    };
  }

  private toReplica(info: ReplicaInfo): Replica {
    const pool = this.pools.get(info.pool_uuid);
    return {
      uuid: info.uuid,
      name: info.name,
      pool_uuid: info.pool_uuid,
      pool_name: pool?.record.name ?? "",
      node: this.node,
      size_bytes: info.size_bytes,
      thin: info.thin,
      allocated_bytes: info.allocated_bytes,
    };
  }
}

function toDevice(d: DeviceInfo): Device {
  return {
    uri: d.uri,
    kind: d.kind,
    path: d.path ?? "",
    size_bytes: d.size_bytes,
    block_size_bytes: d.block_size_bytes,
    major_minor: d.major_minor ?? "",
    direct_io: d.direct_io,
    in_use_by: d.in_use_by ?? "",
  };
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}
