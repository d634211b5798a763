// The engine's nexus control plane: validates requests, keeps nexuses in the state file so they
// come back after a restart, and leaves I/O, child health and rebuilds to the native nexus.
// Child health is never stored here: it lives in the labels on the replicas themselves.
//
// Architecture invariant: engine/ knows nothing of Pulumi.
import type { NativeStorage, NexusInfo, RebuildInfo } from "../native";
import { checkDhchapSecret, checkUuid } from "../common/validate";
import {
  checkChildIoTimeoutMs,
  checkChildUri,
  checkNexusSizeBytes,
  CHILD_IO_TIMEOUT_MS_DEFAULT,
  NEXUS_MAX_CHILDREN,
  isRemoteChildUri,
} from "../common/nexus-rules";
import type { Nexus } from "./generated/strata/engine/v1/Nexus";
import type { RebuildStats } from "./generated/strata/engine/v1/RebuildStats";
import { failedPrecondition, invalidArgument, notFound } from "./errors";
import type { Logger } from "./log";
import { checkField, checkNqn, hostNqnOf, Mutex } from "./service";
import type { NexusRecord, StateStore } from "./state";

const UNPUBLISHED = { frontend_host_nqn: "", frontend_dhchap_secret: undefined, frontend_dhchap_ctrl_secret: undefined } as const;

/** The frontend's secrets as publishNexus takes them (absent fields left out). */
function frontendSecrets(r: { frontend_dhchap_secret?: string; frontend_dhchap_ctrl_secret?: string }) {
  return {
    ...(r.frontend_dhchap_secret ? { frontend_dhchap_secret: r.frontend_dhchap_secret } : {}),
    ...(r.frontend_dhchap_ctrl_secret ? { frontend_dhchap_ctrl_secret: r.frontend_dhchap_ctrl_secret } : {}),
  };
}

export class NexusService {
  private readonly lock = new Mutex();
  private readonly records = new Map<string, NexusRecord>();
  private nvmfAddress = "";

  constructor(
    private readonly native: NativeStorage,
    private readonly store: StateStore,
    private readonly node: string,
    private readonly faultInjection: boolean,
    private readonly log: Logger,
  ) {}

  setNvmfAddress(address: string): void {
    this.nvmfAddress = address;
  }

  /** Re-creates the nexuses the state file lists (after pools and shares are back). */
  async restore(): Promise<void> {
    for (const record of this.store.load().nexuses ?? []) {
      this.records.set(record.uuid, record);
      try {
        const info = await this.native.createNexus({
          uuid: record.uuid,
          size_bytes: record.size_bytes,
          children: this.openUris(record.children),
          child_io_timeout_ms: record.child_io_timeout_ms,
          restore: true,
        });
        if (info.size_bytes !== record.size_bytes) {
          // A grow whose label was durable when the engine stopped, before the state file had it.
          this.log.info("nexus size taken from its labels", { nexus: record.uuid, state_file_bytes: record.size_bytes, label_bytes: info.size_bytes });
          this.updateRecord(record.uuid, { size_bytes: info.size_bytes });
        }
        if (record.frontend_host_nqn)
          await this.native.publishNexus({ uuid: record.uuid, frontend_host_nqn: record.frontend_host_nqn, ...frontendSecrets(record) });
        this.log.info("nexus restored", {
          nexus: record.uuid,
          health: info.health,
          children: info.children.map((c) => `${this.shownUri(c.uri)} ${c.state}${c.reason === "none" ? "" : ` (${c.reason})`}`),
          opened_after_unclean_shutdown: info.opened_after_unclean_shutdown,
        });
      } catch (err) {
        this.log.error("nexus not restored", { nexus: record.uuid, reason: (err as Error).message });
      }
    }
  }

  createNexus(req: { uuid: string; size_bytes: number; children: string[]; child_io_timeout_ms: number }): Promise<Nexus> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.size_bytes, "size_bytes", checkNexusSizeBytes);
    const children = req.children ?? [];
    if (children.length < 1 || children.length > NEXUS_MAX_CHILDREN)
      throw invalidArgument(`children must list 1 to ${NEXUS_MAX_CHILDREN} URIs, got ${children.length}`);
    children.forEach((c, i) => checkField(c, `children[${i}]`, checkChildUri));
    if (new Set(children).size !== children.length) throw invalidArgument("children must not list a URI twice");
    const timeout = req.child_io_timeout_ms || CHILD_IO_TIMEOUT_MS_DEFAULT;
    checkField(timeout, "child_io_timeout_ms", checkChildIoTimeoutMs);
    return this.lock.run(async () => {
      const existing = this.records.get(req.uuid);
      const info = await this.native.createNexus({ uuid: req.uuid, size_bytes: req.size_bytes, children: this.openUris(children), child_io_timeout_ms: timeout });
      if (!existing) {
        this.records.set(req.uuid, { uuid: req.uuid, size_bytes: req.size_bytes, children: [...children], child_io_timeout_ms: timeout, frontend_host_nqn: "" });
        try {
          this.save();
        } catch (err) {
          // Transactional: a nexus the engine would forget at restart must not exist.
          this.records.delete(req.uuid);
          await this.native.destroyNexus({ uuid: req.uuid }).catch(() => undefined);
          throw err;
        }
        this.log.info("nexus created", { nexus: req.uuid, size_bytes: req.size_bytes, children, health: info.health });
      }
      return this.toNexus(info);
    });
  }

  /**
   * Grows a nexus in place. The data path grows it (checking every child first) and records the
   * size in the labels; then the state file gets it, so a restart keeps the new size (and a
   * restart in between takes it from the labels: restore()).
   */
  resizeNexus(req: { uuid: string; size_bytes: number }): Promise<Nexus> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.size_bytes, "size_bytes", checkNexusSizeBytes);
    return this.lock.run(async () => {
      const record = this.records.get(req.uuid);
      if (!record) throw notFound(`nexus ${req.uuid} does not exist on node ${this.node}`);
      if (req.size_bytes < record.size_bytes)
        throw invalidArgument(`nexus ${req.uuid} has ${record.size_bytes} bytes; shrinking it to ${req.size_bytes} is not supported (a nexus only grows)`);
      const info = await this.showingUris(this.native.resizeNexus({ uuid: req.uuid, size_bytes: req.size_bytes }));
      if (info.size_bytes !== record.size_bytes) {
        this.updateRecord(req.uuid, { size_bytes: info.size_bytes });
        this.log.info("nexus resized", { nexus: req.uuid, from_bytes: record.size_bytes, to_bytes: info.size_bytes });
      }
      return this.toNexus(info);
    });
  }

  destroyNexus(uuid: string): Promise<void> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      await this.native.destroyNexus({ uuid });
      if (this.records.delete(uuid)) {
        this.save();
        this.log.info("nexus destroyed", { nexus: uuid });
      }
    });
  }

  shutdownNexus(uuid: string): Promise<Nexus> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      await this.native.shutdownNexus({ uuid });
      this.updateRecord(uuid, UNPUBLISHED);
      this.log.info("nexus shut down", { nexus: uuid });
      return this.describe(uuid);
    });
  }

  publishNexus(req: { uuid: string; frontend_host_nqn: string; frontend_dhchap_secret?: string; frontend_dhchap_ctrl_secret?: string }): Promise<Nexus> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.frontend_host_nqn, "frontend_host_nqn", checkNqn);
    const secret = req.frontend_dhchap_secret ?? "";
    const ctrl = req.frontend_dhchap_ctrl_secret ?? "";
    if (secret !== "") checkField(secret, "frontend_dhchap_secret", checkDhchapSecret);
    if (ctrl !== "") {
      if (secret === "") throw invalidArgument("frontend_dhchap_ctrl_secret needs frontend_dhchap_secret");
      checkField(ctrl, "frontend_dhchap_ctrl_secret", checkDhchapSecret);
    }
    const secrets = { frontend_dhchap_secret: secret || undefined, frontend_dhchap_ctrl_secret: ctrl || undefined };
    return this.lock.run(async () => {
      const { nqn } = await this.native.publishNexus({ uuid: req.uuid, frontend_host_nqn: req.frontend_host_nqn, ...frontendSecrets(secrets) });
      this.updateRecord(req.uuid, { frontend_host_nqn: req.frontend_host_nqn, ...secrets });
      // Whether the frontend must authenticate, never the secret.
      this.log.info("nexus published", { nexus: req.uuid, nqn, frontend_host_nqn: req.frontend_host_nqn, dhchap: secret !== "" });
      return this.describe(req.uuid);
    });
  }

  unpublishNexus(req: { uuid: string; frontend_host_nqn: string }): Promise<Nexus> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.frontend_host_nqn, "frontend_host_nqn", checkNqn);
    return this.lock.run(async () => {
      await this.native.unpublishNexus({ uuid: req.uuid, frontend_host_nqn: req.frontend_host_nqn });
      this.updateRecord(req.uuid, UNPUBLISHED);
      return this.describe(req.uuid);
    });
  }

  async listNexus(): Promise<Nexus[]> {
    return (await this.native.listNexus()).map((n) => this.toNexus(n));
  }

  childOp(req: { uuid: string; child_uri: string }, action: "add" | "remove" | "fault" | "online"): Promise<Nexus> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.child_uri, "child_uri", checkChildUri);
    return this.lock.run(async () => {
      const record = this.records.get(req.uuid);
      if (!record) throw notFound(`nexus ${req.uuid} does not exist on node ${this.node}`);
      if (action === "add" && record.children.length >= NEXUS_MAX_CHILDREN)
        throw failedPrecondition(`nexus ${req.uuid} already has ${NEXUS_MAX_CHILDREN} children, the most a nexus can have`);
      await this.showingUris(this.native.nexusChild({ uuid: req.uuid, child_uri: this.openUri(req.child_uri), action }));
      if (action === "add" && !record.children.includes(req.child_uri)) this.updateRecord(req.uuid, { children: [...record.children, req.child_uri] });
      if (action === "remove") this.updateRecord(req.uuid, { children: record.children.filter((c) => c !== req.child_uri) });
      this.log.info(`nexus child ${action}`, { nexus: req.uuid, child: req.child_uri });
      return this.describe(req.uuid);
    });
  }

  async rebuildOp(req: { uuid: string; child_uri: string }, action: "start" | "pause" | "resume" | "stop" | "stats"): Promise<RebuildStats> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.child_uri, "child_uri", checkChildUri);
    const uri = this.openUri(req.child_uri);
    if (action !== "stats") await this.native.nexusRebuild({ uuid: req.uuid, child_uri: uri, action });
    return toRebuildStats(await this.native.rebuildStats({ uuid: req.uuid, child_uri: uri }), this.shownUri.bind(this));
  }

  async rebuildHistory(uuid: string): Promise<RebuildStats[]> {
    checkField(uuid, "uuid", checkUuid);
    return (await this.native.rebuildHistory({ uuid })).map((r) => toRebuildStats(r, this.shownUri.bind(this)));
  }

  async injectFault(req: {
    uuid: string;
    child_uri: string;
    op: string;
    error: string;
    delay_ms: number;
    offset_bytes: number;
    length_bytes: number;
    count: number;
    drop_connection: boolean;
  }): Promise<void> {
    if (!this.faultInjection) throw failedPrecondition("fault injection is off: start the engine with --enable-fault-injection (tests only)");
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.child_uri, "child_uri", checkChildUri);
    const child_uri = this.openUri(req.child_uri);
    if (req.drop_connection) return this.native.injectFault({ uuid: req.uuid, child_uri, drop_connection: true });
    const op = req.op || "any";
    const error = req.error || "eio";
    if (op !== "read" && op !== "write" && op !== "any") throw invalidArgument(`op must be read, write or any, got "${op}"`);
    if (error !== "none" && error !== "eio" && error !== "enospc") throw invalidArgument(`error must be none, eio or enospc, got "${error}"`);
    if (error === "none" && !req.delay_ms) throw invalidArgument("a fault with error none needs delay_ms");
    await this.native.injectFault({
      uuid: req.uuid,
      child_uri,
      op,
      error,
      delay_ms: req.delay_ms ?? 0,
      offset_bytes: req.offset_bytes ?? 0,
      length_bytes: req.length_bytes ?? 0,
      count: req.count ?? 0,
    });
  }

  async clearFaults(req: { uuid: string; child_uri: string }): Promise<void> {
    if (!this.faultInjection) throw failedPrecondition("fault injection is off: start the engine with --enable-fault-injection (tests only)");
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.child_uri, "child_uri", checkChildUri);
    await this.native.injectFault({ uuid: req.uuid, child_uri: this.openUri(req.child_uri), clear: true });
  }

  // ---- helpers ----

  /**
   * The URI the data path opens: a remote child connects as this node's host NQN unless the
   * URI names one, so the replica's owner can allow exactly this node.
   */
  private openUri(uri: string): string {
    if (!isRemoteChildUri(uri) || /[?&]hostnqn=/.test(uri)) return uri;
    return `${uri}${uri.includes("?") ? "&" : "?"}hostnqn=${hostNqnOf(this.node)}`;
  }

  private openUris(uris: readonly string[]): string[] {
    return uris.map((u) => this.openUri(u));
  }

  /** Back from the data path's form to the URI the client gave. */
  private shownUri(uri: string): string {
    const suffix = `hostnqn=${hostNqnOf(this.node)}`;
    if (uri.endsWith(`?${suffix}`)) return uri.slice(0, -suffix.length - 1);
    if (uri.endsWith(`&${suffix}`)) return uri.slice(0, -suffix.length - 1);
    return uri;
  }

  /** Errors of the data path name children as the client gave them (without the added hostnqn). */
  private async showingUris<T>(call: Promise<T>): Promise<T> {
    try {
      return await call;
    } catch (err) {
      if (err instanceof Error) {
        const suffix = `hostnqn=${hostNqnOf(this.node)}`;
        err.message = err.message.split(`?${suffix}`).join("").split(`&${suffix}`).join("");
      }
      throw err;
    }
  }

  private updateRecord(uuid: string, change: Partial<NexusRecord>): void {
    const record = this.records.get(uuid);
    if (!record) return;
    this.records.set(uuid, { ...record, ...change });
    this.save();
  }

  private save(): void {
    const state = this.store.load();
    this.store.save({ ...state, nexuses: [...this.records.values()] });
  }

  private async describe(uuid: string): Promise<Nexus> {
    const info = (await this.native.listNexus()).find((n) => n.uuid === uuid);
    if (!info) throw notFound(`nexus ${uuid} does not exist on node ${this.node}`);
    return this.toNexus(info);
  }

  private toNexus(n: NexusInfo): Nexus {
    const shown = this.shownUri.bind(this);
    return {
      uuid: n.uuid,
      node: this.node,
      size_bytes: n.size_bytes,
      state: n.state,
      health: n.health,
      generation: n.generation,
      opened_after_unclean_shutdown: n.opened_after_unclean_shutdown,
      nqn: n.nqn ?? "",
      address: n.nqn ? this.nvmfAddress : "",
      frontend_host_nqn: n.frontend_host_nqn ?? "",
      children: n.children.map((c) => ({
        uri: shown(c.uri),
        state: c.state,
        reason: c.reason,
        last_error: c.last_error ?? "",
        read_ops: c.read_ops,
        write_ops: c.write_ops,
        errors: c.errors,
        missed_bytes: c.missed_bytes,
        rebuild: c.rebuild ? toRebuildStats(c.rebuild, shown) : null,
      })),
      stats: { uuid: n.uuid, ...n.stats, latency_bucket_upper_us: [...n.stats.latency_bucket_upper_us], latency_bucket_counts: [...n.stats.latency_bucket_counts] },
    };
  }
}

function toRebuildStats(r: RebuildInfo, shown: (uri: string) => string): RebuildStats {
  return {
    child_uri: shown(r.child_uri),
    source_uri: shown(r.source_uri),
    state: r.state,
    partial: r.partial,
    resync: r.resync,
    bytes_done: r.bytes_done,
    bytes_total: r.bytes_total,
    volume_bytes: r.volume_bytes,
    segments_skipped: r.segments_skipped,
    mib_per_s: r.mib_per_s,
    start_ms: r.start_ms,
    end_ms: r.end_ms ?? 0,
    error: r.error ?? "",
  };
}

