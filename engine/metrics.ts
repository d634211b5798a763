// Prometheus metrics (`--metrics-listen HOST:PORT`, GET /metrics, text exposition format
// 0.0.4). Every scrape reads the engine's state afresh through the same services the gRPC API
// uses; nothing is cached, so a scrape never reports a number older than itself.
//
// Conventions (https://prometheus.io/docs/practices/naming/): running totals are counters with
// `_total`, sizes end in `_bytes`, durations are `_seconds` histograms with cumulative `le`
// buckets, states are one 0/1 series per state label (so a change is a value change, not a
// series appearing). Labels carry names and uuids, never secrets.
import { createServer, type Server } from "node:http";
import type { CsalDevice } from "./generated/strata/engine/v1/CsalDevice";
import type { IoStats } from "./generated/strata/engine/v1/IoStats";
import type { Nexus } from "./generated/strata/engine/v1/Nexus";
import type { Pool } from "./generated/strata/engine/v1/Pool";
import type { Replica } from "./generated/strata/engine/v1/Replica";
import type { Subsystem } from "./generated/strata/engine/v1/Subsystem";

/** Everything one scrape reports, as the engine API returns it. */
export interface MetricsSnapshot {
  readonly node: string;
  readonly pools: readonly Pool[];
  readonly replicas: readonly { replica: Replica; stats: IoStats | null }[];
  readonly nexuses: readonly Nexus[];
  readonly subsystems: readonly Subsystem[];
  readonly controllers: readonly { uri: string; state: string; reconnects: number }[];
  readonly csal: readonly CsalDevice[];
}

const POOL_STATES = ["online", "degraded", "faulted", "missing"];
const CHILD_STATES = ["online", "rebuilding", "faulted", "offline", "missing"];
const NEXUS_HEALTH = ["online", "degraded", "faulted"];
const CONTROLLER_STATES = ["connecting", "live", "reconnecting", "failed", "lost", "closed"];

type Labels = Record<string, string>;

/** Escapes a label value (backslash, double quote, newline), as the text format requires. */
function escape(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

class Exposition {
  private readonly lines: string[] = [];
  private readonly declared = new Set<string>();

  /** Declares a family once (HELP and TYPE), then adds samples to it. */
  family(name: string, type: "counter" | "gauge" | "histogram", help: string): void {
    if (this.declared.has(name)) return;
    this.declared.add(name);
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  sample(name: string, labels: Labels, value: number): void {
    this.lines.push(`${name}${labelText(labels)} ${Number.isFinite(value) ? value : 0}`);
  }

  /**
   * A latency histogram from the engine's per-bucket counts (native/src/pool/types.h): bucket i
   * counts I/Os above bound i-1 and at most bound i microseconds, and the last bucket also
   * catches everything slower, so it becomes the +Inf bucket.
   */
  histogram(name: string, labels: Labels, upperUs: readonly number[], counts: readonly number[], sumUs: number): void {
    let cumulative = 0;
    for (let i = 0; i < counts.length - 1; i++) {
      cumulative += counts[i];
      this.sample(`${name}_bucket`, { ...labels, le: String(upperUs[i] / 1e6) }, cumulative);
    }
    if (counts.length > 0) cumulative += counts[counts.length - 1];
    this.sample(`${name}_bucket`, { ...labels, le: "+Inf" }, cumulative);
    this.sample(`${name}_sum`, labels, sumUs / 1e6);
    this.sample(`${name}_count`, labels, cumulative);
  }

  text(): string {
    return this.lines.join("\n") + "\n";
  }
}

function ioCounters(out: Exposition, prefix: string, what: string, labels: Labels, stats: IoStats): void {
  out.family(`${prefix}_read_ops_total`, "counter", `Read commands completed by the ${what}.`);
  out.sample(`${prefix}_read_ops_total`, labels, Number(stats.read_ops ?? 0));
  out.family(`${prefix}_write_ops_total`, "counter", `Write commands completed by the ${what}.`);
  out.sample(`${prefix}_write_ops_total`, labels, Number(stats.write_ops ?? 0));
  out.family(`${prefix}_read_bytes_total`, "counter", `Bytes read from the ${what}.`);
  out.sample(`${prefix}_read_bytes_total`, labels, Number(stats.read_bytes ?? 0));
  out.family(`${prefix}_written_bytes_total`, "counter", `Bytes written to the ${what}.`);
  out.sample(`${prefix}_written_bytes_total`, labels, Number(stats.write_bytes ?? 0));
  out.family(`${prefix}_io_errors_total`, "counter", `Commands the ${what} failed.`);
  out.sample(`${prefix}_io_errors_total`, labels, Number(stats.errors ?? 0));
  out.family(`${prefix}_io_latency_seconds`, "histogram", `Completion latency of the ${what}'s commands.`);
  const numbers = (xs: readonly unknown[] | undefined) => (xs ?? []).map((x) => Number(x));
  out.histogram(`${prefix}_io_latency_seconds`, labels, numbers(stats.latency_bucket_upper_us), numbers(stats.latency_bucket_counts), Number(stats.latency_sum_us ?? 0));
}

/** The text a scrape returns. Pure: a snapshot in, the exposition out. */
export function renderMetrics(s: MetricsSnapshot): string {
  const out = new Exposition();
  const node = { node: s.node };

  for (const p of s.pools) {
    const labels = { ...node, pool: p.name ?? "", pool_uuid: p.uuid ?? "" };
    out.family("strata_pool_capacity_bytes", "gauge", "Bytes a pool can hold.");
    out.sample("strata_pool_capacity_bytes", labels, Number(p.capacity_bytes ?? 0));
    out.family("strata_pool_used_bytes", "gauge", "Bytes of a pool allocated to replicas.");
    out.sample("strata_pool_used_bytes", labels, Number(p.used_bytes ?? 0));
    out.family("strata_pool_committed_bytes", "gauge", "Bytes a pool's replicas may grow to (thin replicas counted at full size).");
    out.sample("strata_pool_committed_bytes", labels, Number(p.committed_bytes ?? 0));
    out.family("strata_pool_state", "gauge", "1 for the pool's current state, 0 for the others.");
    const state = String(p.state ?? "").toLowerCase().replace(/^pool_/, "");
    for (const st of POOL_STATES) out.sample("strata_pool_state", { ...labels, state: st }, st === state ? 1 : 0);
  }

  for (const { replica: r, stats } of s.replicas) {
    const labels = { ...node, replica: r.name ?? "", replica_uuid: r.uuid ?? "", pool: r.pool_name ?? "" };
    out.family("strata_replica_size_bytes", "gauge", "A replica's size.");
    out.sample("strata_replica_size_bytes", labels, Number(r.size_bytes ?? 0));
    out.family("strata_replica_allocated_bytes", "gauge", "Bytes a replica holds on its pool.");
    out.sample("strata_replica_allocated_bytes", labels, Number(r.allocated_bytes ?? 0));
    if (stats) ioCounters(out, "strata_replica", "replica", labels, stats);
  }

  for (const n of s.nexuses) {
    const labels = { ...node, nexus_uuid: n.uuid ?? "" };
    out.family("strata_nexus_health", "gauge", "1 for the nexus's current health, 0 for the others.");
    for (const h of NEXUS_HEALTH) out.sample("strata_nexus_health", { ...labels, health: h }, n.health === h ? 1 : 0);
    out.family("strata_nexus_size_bytes", "gauge", "A nexus's (volume's) size.");
    out.sample("strata_nexus_size_bytes", labels, Number(n.size_bytes ?? 0));
    if (n.stats) ioCounters(out, "strata_nexus", "nexus", labels, n.stats);
    for (const c of n.children ?? []) {
      const child = { ...labels, child: c.uri ?? "" };
      out.family("strata_nexus_child_state", "gauge", "1 for the child's current state, 0 for the others.");
      for (const st of CHILD_STATES) out.sample("strata_nexus_child_state", { ...child, state: st }, c.state === st ? 1 : 0);
      out.family("strata_nexus_child_io_errors_total", "counter", "Commands that failed on the child.");
      out.sample("strata_nexus_child_io_errors_total", child, Number(c.errors ?? 0));
      const rb = c.rebuild;
      if (rb && c.state === "rebuilding") {
        out.family("strata_nexus_rebuild_done_bytes", "gauge", "Bytes a running rebuild has copied.");
        out.sample("strata_nexus_rebuild_done_bytes", child, Number(rb.bytes_done ?? 0));
        out.family("strata_nexus_rebuild_total_bytes", "gauge", "Bytes a running rebuild copies in all.");
        out.sample("strata_nexus_rebuild_total_bytes", child, Number(rb.bytes_total ?? 0));
      }
    }
  }

  for (const sub of s.subsystems) {
    const labels = { ...node, nqn: sub.nqn ?? "", kind: sub.kind ?? "" };
    out.family("strata_nvmf_subsystem_connected_hosts", "gauge", "Hosts connected to a subsystem this engine serves.");
    out.sample("strata_nvmf_subsystem_connected_hosts", labels, (sub.connected_hosts ?? []).length);
  }
  out.family("strata_nvmf_initiator_controllers", "gauge", "This engine's initiator controllers (remote children, nvmf:// devices) by state.");
  for (const st of CONTROLLER_STATES) out.sample("strata_nvmf_initiator_controllers", { ...node, state: st }, s.controllers.filter((c) => c.state === st).length);
  for (const c of s.controllers) {
    out.family("strata_nvmf_initiator_reconnects_total", "counter", "Times an initiator controller re-established its association.");
    out.sample("strata_nvmf_initiator_reconnects_total", { ...node, uri: c.uri }, c.reconnects);
  }

  for (const d of s.csal) {
    const st = d.stats;
    if (!st) continue;
    const labels = { ...node, csal: d.name ?? "" };
    out.family("strata_csal_host_written_bytes_total", "counter", "Bytes hosts wrote to a CSAL device.");
    out.sample("strata_csal_host_written_bytes_total", labels, Number(st.host_write_bytes ?? 0));
    out.family("strata_csal_media_written_bytes_total", "counter", "Bytes the CSAL device wrote to its cache and base (host, GC and metadata).");
    out.sample(
      "strata_csal_media_written_bytes_total",
      labels,
      Number(st.cache_write_bytes ?? 0) + Number(st.base_write_bytes_host ?? 0) + Number(st.base_write_bytes_gc ?? 0) + Number(st.base_write_bytes_meta ?? 0),
    );
    out.family("strata_csal_write_amplification_ratio", "gauge", "Media bytes written per host byte (since the device was opened).");
    out.sample("strata_csal_write_amplification_ratio", labels, Number(st.write_amplification ?? 0));
    out.family("strata_csal_free_bands", "gauge", "Free bands of the CSAL device's base.");
    out.sample("strata_csal_free_bands", labels, Number(st.free_bands ?? 0));
  }
  return out.text();
}

export interface MetricsServer {
  readonly port: number;
  stop(): Promise<void>;
}

/** How long /readyz waits for the engine to answer before it reports not ready. */
export const READY_TIMEOUT_MS = 2000;

/**
 * Serves GET /metrics on host:port (port 0 = any free port), and beside it the probes a
 * Kubernetes kubelet (or any supervisor) asks: /livez answers while the process's event loop
 * runs; /readyz answers 200 only when `ready` (a real round trip through the engine's
 * services and reactors) completes within READY_TIMEOUT_MS, else 503 with the reason.
 */
export async function startMetricsServer(
  host: string,
  port: number,
  snapshot: () => Promise<MetricsSnapshot>,
  ready: () => Promise<void> = async () => {},
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && path === "/livez") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (req.method === "GET" && path === "/readyz") {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the engine did not answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      });
      Promise.race([ready(), late]).then(
        () => res.writeHead(200, { "content-type": "text/plain" }).end("ok\n"),
        (err: unknown) => res.writeHead(503, { "content-type": "text/plain" }).end(`not ready: ${(err as Error).message}\n`),
      ).finally(() => clearTimeout(timer));
      return;
    }
    if (req.method !== "GET" || path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("served here: GET /metrics, /livez, /readyz\n");
      return;
    }
    snapshot().then(
      (s) => res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(renderMetrics(s)),
      (err: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`cannot collect metrics: ${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  return {
    port: typeof bound === "object" && bound ? bound.port : port,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}
