// `strata cluster up|status|down`: a local cluster of engines on loopback, for development and
// the quickstart. Each node is a background strata-engine process with its own data folder and
// a sparse disk file under $STRATA_HOME/cluster/<node>/, all sharing one generated token.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { connectEngine, EngineTarget } from "../common/client";
import type { Nexus__Output as Nexus } from "../engine/generated/strata/engine/v1/Nexus";
import { nodeDhchapSecret } from "../common/dhchap";
import { projectRoot, strataHome } from "./paths";
import { openStack, StackOptions } from "./pulumi";

export const ZONES = ["zone-a", "zone-b", "zone-c"];
export const DEFAULT_BASE_PORT = 10124;
export const DEFAULT_DISK_MIB = 2048;
// How long `cluster up` waits for a started engine that is still alive to answer. Generous: an
// engine restarted after a crash first recovers its pools (a CSAL device scans its log and
// bands), which took over 20 s in the interop VM under load; one that exits fails at once.
const READY_TIMEOUT_MS = 120_000;

export interface NodeRecord {
  readonly node: string;
  readonly endpoint: string;
  readonly data_dir: string;
  readonly disk_uri: string;
  readonly labels: Record<string, string>;
  readonly pid: number;
  readonly log_file: string;
}

export interface ClusterRecord {
  readonly token_file: string;
  readonly nodes: NodeRecord[];
}

function clusterDir(home: string): string {
  return join(home, "cluster");
}

export function loadCluster(home = strataHome()): ClusterRecord | null {
  const file = join(clusterDir(home), "cluster.json");
  if (!existsSync(file)) return null;
  return JSON.parse(readFileSync(file, "utf8")) as ClusterRecord;
}

function saveCluster(record: ClusterRecord, home: string): void {
  writeFileSync(join(clusterDir(home), "cluster.json"), JSON.stringify(record, null, 2) + "\n");
}

export function readToken(record: ClusterRecord): string {
  return readFileSync(record.token_file, "utf8").trim();
}

/** True when `pid` runs and is not a zombie (a node record's engine is serving). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed engine whose parent (the CLI that started it, long gone) has not been reaped yet is
  // a zombie: signal 0 still succeeds, but it serves nothing and must be started again.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true; // no /proc: trust the signal
  }
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

async function waitReady(target: EngineTarget, pid: number, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!alive(pid)) {
      const tail = existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-8).join("\n") : "";
      throw new Error(`engine ${target.node} exited during start; its log (${logFile}) ends with:\n${tail}`);
    }
    const engine = connectEngine(target);
    try {
      await engine.call("GetInfo", {}, 1_000);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      engine.close();
    }
  }
  throw new Error(`engine ${target.node} did not answer at ${target.endpoint} within ${READY_TIMEOUT_MS} ms; see ${logFile}`);
}

/** The first node's CSAL device files (stack config `strata:csal`: node, cacheDevice, baseDevice). */
const CSAL_CACHE_FILE = "csal-cache.img";
const CSAL_BASE_FILE = "csal-base.img";
const CSAL_CACHE_MIB = 128;
const CSAL_BASE_MIB = 1024;

export interface ClusterUpOptions {
  readonly nodes: number;
  readonly basePort: number;
  readonly diskMib: number;
  /** Every engine also serves NVMe over RDMA on this interface ("" = TCP only). */
  readonly rdmaInterface?: string;
  readonly home: string;
  /** Write endpoints, disks and token into this stack's config (skipped when null). */
  readonly stack: StackOptions | null;
  readonly log: (line: string) => void;
}

export async function clusterUp(opts: ClusterUpOptions): Promise<ClusterRecord> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 16) throw new Error(`--nodes must be 1 to 16, got ${opts.nodes}`);
  const dir = clusterDir(opts.home);
  mkdirSync(dir, { recursive: true });
  const previous = loadCluster(opts.home);
  const tokenFile = previous?.token_file ?? join(dir, "token");
  if (!existsSync(tokenFile)) writeFileSync(tokenFile, randomBytes(32).toString("base64url") + "\n", { mode: 0o600 });
  const token = readFileSync(tokenFile, "utf8").trim();
  const engineBin = join(projectRoot(), "bin", "strata-engine.js");

  const nodes: NodeRecord[] = [];
  for (let i = 0; i < opts.nodes; i++) {
    const node = `node-${String.fromCharCode(97 + i)}`;
    const old = previous?.nodes.find((n) => n.node === node);
    const endpoint = old?.endpoint ?? `127.0.0.1:${opts.basePort + i}`;
    const target = { node, endpoint, token };
    const dataDir = join(dir, node);
    const diskPath = join(dataDir, "disk.img");
    const logFile = join(dataDir, "engine.log");
    const labels = { zone: ZONES[i % ZONES.length] };
    mkdirSync(dataDir, { recursive: true });
    const { truncateSync } = await import("node:fs");
    // Sparse: the files take no space until written.
    const files: [string, number][] = [[diskPath, opts.diskMib]];
    // The first node also gets a CSAL device's cache and base (the quickstart's tiered pool).
    if (i === 0) files.push([join(dataDir, CSAL_CACHE_FILE), CSAL_CACHE_MIB], [join(dataDir, CSAL_BASE_FILE), CSAL_BASE_MIB]);
    for (const [path, mib] of files) {
      if (existsSync(path)) continue;
      closeSync(openSync(path, "w"));
      truncateSync(path, mib * 1024 * 1024);
    }
    if (old && alive(old.pid)) {
      opts.log(`${node}: already running (pid ${old.pid}) at ${endpoint}`);
      nodes.push(old);
      continue;
    }
    const [host, port] = [endpoint.slice(0, endpoint.lastIndexOf(":")), Number(endpoint.slice(endpoint.lastIndexOf(":") + 1))];
    for (const p of [port, port + 1000, port + 2000]) {
      if (!(await portFree(host, p))) throw new Error(`${node}: port ${host}:${p} is in use by another program; pick other ports with --base-port`);
    }
    // The node's DH-HMAC-CHAP secret (derived from the token, common/dhchap.ts): its nexus
    // children authenticate with it, and the provider shares replicas requiring it.
    const secretFile = join(dataDir, "dhchap-secret");
    writeFileSync(secretFile, nodeDhchapSecret(token, node) + "\n", { mode: 0o600 });
    const out = openSync(logFile, "a");
    const child = spawn(
      process.execPath,
      [engineBin, "--node", node, "--grpc-listen", endpoint, "--data-dir", dataDir, "--labels", `zone=${labels.zone}`, "--cores", "1", "--token-file", tokenFile,
       "--dhchap-secret-file", secretFile,
       // Several engines share this machine, so each gets its own NVMe/TCP ports, stable across
       // restarts so a host can reconnect: the gRPC port + 1000 for I/O, + 2000 for discovery.
       "--nvmf-listen", `${host}:${port + 1000}`, "--nvmf-discovery-listen", `${host}:${port + 2000}`,
       ...(opts.rdmaInterface ? ["--rdma-interface", opts.rdmaInterface] : [])],
      { detached: true, stdio: ["ignore", out, out] },
    );
    closeSync(out);
    child.unref();
    const record: NodeRecord = { node, endpoint, data_dir: dataDir, disk_uri: `file://${diskPath}`, labels, pid: child.pid!, log_file: logFile };
    nodes.push(record);
    saveCluster({ token_file: tokenFile, nodes: mergeNodes(previous?.nodes ?? [], nodes) }, opts.home);
    await waitReady(target, child.pid!, logFile);
    opts.log(`${node}: started (pid ${child.pid}) at ${endpoint}, ${labels.zone}, disk ${diskPath}`);
  }
  const record = { token_file: tokenFile, nodes: mergeNodes(previous?.nodes ?? [], nodes) };
  saveCluster(record, opts.home);
  if (opts.stack) {
    await writeStackConfig(record, token, opts.stack);
    opts.log(`stack config updated: strata:endpoints, strata:disks, strata:csal, strata:token (secret)`);
  }
  return record;
}

function mergeNodes(previous: readonly NodeRecord[], current: readonly NodeRecord[]): NodeRecord[] {
  const byName = new Map(previous.map((n) => [n.node, n]));
  for (const n of current) byName.set(n.node, n);
  return [...byName.values()].sort((a, b) => a.node.localeCompare(b.node));
}

async function writeStackConfig(record: ClusterRecord, token: string, stackOpts: StackOptions): Promise<void> {
  const stack = await openStack(stackOpts);
  const config: Record<string, { value: string; secret?: boolean }> = { "strata:token": { value: token, secret: true } };
  for (const n of record.nodes) {
    config[`strata:endpoints.${n.node}`] = { value: n.endpoint };
    config[`strata:disks.${n.node}`] = { value: `${n.disk_uri}` };
  }
  const first = record.nodes[0];
  if (first && existsSync(join(first.data_dir, CSAL_BASE_FILE))) {
    config["strata:csal.node"] = { value: first.node };
    config["strata:csal.cacheDevice"] = { value: `file://${join(first.data_dir, CSAL_CACHE_FILE)}` };
    config["strata:csal.baseDevice"] = { value: `file://${join(first.data_dir, CSAL_BASE_FILE)}` };
  }
  await stack.setAllConfig(config, true);
}

export interface NodeStatus {
  readonly node: string;
  readonly endpoint: string;
  readonly state: "running" | "stopped" | "unreachable";
  /** Where the node serves NVMe/TCP; empty when it is not running. */
  readonly nvmf_endpoint: string;
  /** NVMe over RDMA: "ADDRESS (DEVICE)" when served, "no: REASON" when asked for but not served, "" when not asked for. */
  readonly rdma: string;
  readonly pools: number;
  readonly used_bytes: number;
  readonly capacity_bytes: number;
  readonly replicas: number;
  readonly pid: number | null;
  /** The node's CSAL tiered devices, with their write amplification and background work. */
  readonly csal: CsalStatus[];
  /** The node's labels as its engine reports them (GetInfo); as it was started when it is not running. */
  readonly labels: Record<string, string>;
  /** The node's zone label, "-" when it has none (zoneOf). */
  readonly zone: string;
  /** The nexuses this node runs (none when it is not running). */
  readonly nexuses: NexusSummary[];
}

/** A nexus as `cluster status` shows it. */
export interface NexusSummary {
  readonly uuid: string;
  readonly node: string;
  readonly size_bytes: number;
  /** online, degraded, faulted */
  readonly health: string;
  /** open, shutting_down, shutdown */
  readonly state: string;
  readonly children_online: number;
  readonly children_total: number;
  /** Where the frontend connects ("" while unpublished). */
  readonly address: string;
  /** Children being rebuilt, with the engine's progress report of each. */
  readonly rebuilding: RebuildingChild[];
}

export interface RebuildingChild {
  readonly uri: string;
  /** waiting, running, paused, flushing, ... (RebuildStats.state) */
  readonly state: string;
  readonly partial: boolean;
  readonly bytes_done: number;
  readonly bytes_total: number;
  readonly mib_per_s: number;
  readonly start_ms: number;
}

/** The label Kubernetes nodes carry their zone in; placement's usual topologyKey. */
export const ZONE_LABEL_KUBERNETES = "topology.kubernetes.io/zone";
/** The label `strata cluster up` gives its local nodes. */
export const ZONE_LABEL = "zone";

/** A node's zone: the Kubernetes topology label, else `zone`, else "-". */
export function zoneOf(labels: Readonly<Record<string, string>>): string {
  return labels[ZONE_LABEL_KUBERNETES] || labels[ZONE_LABEL] || "-";
}

/** `k=v,k=v` of every label but the one the ZONE column already shows, sorted; "-" when none. */
export function otherLabels(labels: Readonly<Record<string, string>>): string {
  const zoneKey = labels[ZONE_LABEL_KUBERNETES] ? ZONE_LABEL_KUBERNETES : labels[ZONE_LABEL] ? ZONE_LABEL : "";
  const rest = Object.keys(labels)
    .filter((k) => k !== zoneKey)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return rest.length > 0 ? rest.join(",") : "-";
}

/** The engine's nexus as the status table needs it. */
export function summarizeNexus(n: Nexus): NexusSummary {
  return {
    uuid: n.uuid,
    node: n.node,
    size_bytes: Number(n.size_bytes),
    health: n.health,
    state: n.state,
    children_online: n.children.filter((c) => c.state === "online").length,
    children_total: n.children.length,
    address: n.address,
    rebuilding: n.children
      .filter((c) => c.state === "rebuilding")
      .map((c) => ({
        uri: c.uri,
        // A child can be rebuilding before its job reports (it joined the write set first).
        state: c.rebuild?.state ?? "waiting",
        partial: c.rebuild?.partial ?? false,
        bytes_done: Number(c.rebuild?.bytes_done ?? 0),
        bytes_total: Number(c.rebuild?.bytes_total ?? 0),
        mib_per_s: c.rebuild?.mib_per_s ?? 0,
        start_ms: Number(c.rebuild?.start_ms ?? 0),
      })),
  };
}

export interface CsalStatus {
  readonly name: string;
  readonly node: string;
  readonly size_bytes: number;
  /** The pool on it, "" when none. */
  readonly pool: string;
  /** Base bytes written / host bytes written; 0 before the first write or while no pool holds it open. */
  readonly write_amplification: number;
  readonly host_write_bytes: number;
  readonly cache_fill: number;
  readonly free_bands: number;
  readonly band_count: number;
  readonly gc_relocated_blocks: number;
  readonly throttle_events: number;
  /** The map resident now, its whole size, and the limit it pages below (0: none). */
  readonly map_resident_bytes: number;
  readonly map_bytes: number;
  readonly map_limit_bytes: number;
}

function rdmaStatus(transports: readonly { trtype: string; available: boolean; address: string; device: string; reason: string }[]): string {
  const r = transports.find((t) => t.trtype === "rdma");
  if (!r) return "";
  return r.available ? `${r.address} (${r.device})` : `no: ${r.reason}`;
}

export async function clusterStatus(home = strataHome()): Promise<NodeStatus[]> {
  const record = loadCluster(home);
  if (!record) return [];
  const token = readToken(record);
  return Promise.all(
    record.nodes.map(async (n): Promise<NodeStatus> => {
      const recorded = n.labels ?? {};
      const base = {
        node: n.node, endpoint: n.endpoint, nvmf_endpoint: "", rdma: "", pools: 0, used_bytes: 0, capacity_bytes: 0, replicas: 0, csal: [],
        labels: recorded, zone: zoneOf(recorded), nexuses: [],
      };
      if (!alive(n.pid)) return { ...base, state: "stopped", pid: null };
      const engine = connectEngine({ node: n.node, endpoint: n.endpoint, token });
      try {
        const [info, { pools }, { replicas }, { devices }, { nexuses }] = await Promise.all([
          engine.call("GetInfo", {}, 3_000),
          engine.call("ListPools", {}, 3_000),
          engine.call("ListReplicas", { pool: "" }, 3_000),
          engine.call("ListCsalDevices", {}, 3_000),
          engine.call("ListNexus", {}, 3_000),
        ]);
        const labels = { ...(info.labels ?? {}) };
        const poolNames = new Map(pools.map((p) => [p.uuid, p.name]));
        return {
          ...base,
          state: "running",
          pid: n.pid,
          nvmf_endpoint: info.nvmf_endpoint,
          rdma: rdmaStatus(info.transports ?? []),
          pools: pools.length,
          used_bytes: pools.reduce((s, p) => s + p.used_bytes, 0),
          capacity_bytes: pools.reduce((s, p) => s + p.capacity_bytes, 0),
          replicas: replicas.length,
          labels,
          zone: zoneOf(labels),
          nexuses: nexuses.map(summarizeNexus),
          csal: devices.map((d) => ({
            name: d.name,
            node: n.node,
            size_bytes: Number(d.size_bytes),
            pool: poolNames.get(d.in_use_by) ?? d.in_use_by,
            write_amplification: d.stats?.write_amplification ?? 0,
            host_write_bytes: Number(d.stats?.host_write_bytes ?? 0),
            cache_fill: d.stats?.cache_fill ?? 0,
            free_bands: d.stats?.free_bands ?? 0,
            band_count: d.stats?.band_count ?? 0,
            gc_relocated_blocks: Number(d.stats?.gc_relocated_blocks ?? 0),
            throttle_events: Number(d.stats?.throttle_events ?? 0),
            map_resident_bytes: Number(d.stats?.map_resident_bytes ?? 0),
            map_bytes: Number(d.stats?.map_bytes ?? 0),
            map_limit_bytes: Number(d.map_memory_limit_bytes ?? 0),
          })),
        };
      } catch {
        return { ...base, state: "unreachable", pid: n.pid };
      } finally {
        engine.close();
      }
    }),
  );
}

export async function clusterDown(opts: { home: string; purge: boolean; log: (line: string) => void }): Promise<void> {
  const record = loadCluster(opts.home);
  if (record) {
    await Promise.all(
      record.nodes.map(async (n) => {
        if (!alive(n.pid)) return;
        process.kill(n.pid, "SIGTERM");
        const deadline = Date.now() + 10_000;
        while (alive(n.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        if (alive(n.pid)) {
          process.kill(n.pid, "SIGKILL");
          opts.log(`${n.node}: did not stop within 10 s of SIGTERM; killed`);
        } else opts.log(`${n.node}: stopped`);
      }),
    );
  }
  if (opts.purge) {
    // The stack's state describes pools on disks that are about to vanish; drop both together.
    rmSync(clusterDir(opts.home), { recursive: true, force: true });
    rmSync(join(opts.home, "pulumi-state"), { recursive: true, force: true });
    opts.log(`purged ${clusterDir(opts.home)} and the local Pulumi state`);
  }
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  return rows.map((r) => r.map((cell, col) => cell.padEnd(widths[col])).join("  ").trimEnd()).join("\n");
}
