// `strata top`: live I/O of every volume of the local cluster, like top(1). Engines only keep
// counters that grow (IoStats: ops, bytes, a latency sum and a latency histogram since start),
// so rates and latencies are computed here from the difference between two samples: IOPS and
// MiB/s from op and byte deltas over the time between them, the average latency from the
// latency-sum delta over the op delta, p99 from the histogram's bucket-count deltas.
//
// The math is pure and exported (tested without an engine); sampling is one round of gRPC calls
// per running node: ListNexus (every nexus carries its stats) and, for replicas shared over
// NVMe-oF (a remote nexus child, or a volume served without a nexus), GetStats of each.
import { connectEngine, EngineConnection, EngineTarget } from "../common/client";
import type { IoStats__Output as IoStats } from "../engine/generated/strata/engine/v1/IoStats";
import { alive, formatTable, loadCluster, readToken } from "./cluster";
import { strataHome } from "./paths";

const MIB = 1024 * 1024;
/** Each sampling call's deadline: a node slower than this is shown as unreachable for that refresh. */
const SAMPLE_DEADLINE_MS = 3_000;
export const DEFAULT_INTERVAL_MS = 2_000;

/** The counters of one volume at one instant (the part of IoStats top needs). */
export interface IoCounters {
  readonly read_ops: number;
  readonly write_ops: number;
  readonly read_bytes: number;
  readonly write_bytes: number;
  readonly latency_sum_us: number;
  /** Bucket i holds commands slower than bucket i-1's bound and at most this one's (the last: any slower). */
  readonly latency_bucket_upper_us: readonly number[];
  /** Commands per bucket (not cumulative). */
  readonly latency_bucket_counts: readonly number[];
}

/** What top shows a line for: a nexus (a volume) or a shared replica. */
export interface SampledVolume {
  readonly kind: "nexus" | "replica";
  readonly node: string;
  readonly uuid: string;
  readonly counters: IoCounters;
}

export interface TopSample {
  /** When the sample was taken (ms since the epoch). */
  readonly taken_ms: number;
  readonly volumes: readonly SampledVolume[];
  /** Nodes that did not answer, with why. */
  readonly unreachable: readonly { node: string; reason: string }[];
}

export interface IoRates {
  readonly read_iops: number;
  readonly write_iops: number;
  readonly read_mib_per_s: number;
  readonly write_mib_per_s: number;
  /** null when no command completed between the samples. */
  readonly avg_latency_us: number | null;
  readonly p99_latency_us: number | null;
}

export interface TopRow {
  readonly kind: "nexus" | "replica";
  readonly node: string;
  readonly uuid: string;
  /** null when there is nothing to compare with yet (new volume, or its counters restarted). */
  readonly rates: IoRates | null;
}

export function countersOf(stats: IoStats | null | undefined): IoCounters {
  return {
    read_ops: Number(stats?.read_ops ?? 0),
    write_ops: Number(stats?.write_ops ?? 0),
    read_bytes: Number(stats?.read_bytes ?? 0),
    write_bytes: Number(stats?.write_bytes ?? 0),
    latency_sum_us: Number(stats?.latency_sum_us ?? 0),
    latency_bucket_upper_us: (stats?.latency_bucket_upper_us ?? []).map(Number),
    latency_bucket_counts: (stats?.latency_bucket_counts ?? []).map(Number),
  };
}

/**
 * after - before, or null when any counter went backwards: the engine restarted (its counters
 * start from zero) or the volume was destroyed and made again, and a "negative rate" would be a lie.
 */
export function counterDelta(before: IoCounters, after: IoCounters): IoCounters | null {
  const scalar = ["read_ops", "write_ops", "read_bytes", "write_bytes", "latency_sum_us"] as const;
  if (scalar.some((k) => after[k] < before[k])) return null;
  if (after.latency_bucket_counts.length !== before.latency_bucket_counts.length) return null;
  if (after.latency_bucket_counts.some((c, i) => c < before.latency_bucket_counts[i])) return null;
  return {
    read_ops: after.read_ops - before.read_ops,
    write_ops: after.write_ops - before.write_ops,
    read_bytes: after.read_bytes - before.read_bytes,
    write_bytes: after.write_bytes - before.write_bytes,
    latency_sum_us: after.latency_sum_us - before.latency_sum_us,
    latency_bucket_upper_us: after.latency_bucket_upper_us,
    latency_bucket_counts: after.latency_bucket_counts.map((c, i) => c - before.latency_bucket_counts[i]),
  };
}

/**
 * The q-quantile (0 < q <= 1) of a latency histogram in µs, interpolated linearly inside the
 * bucket it falls in, as Prometheus's histogram_quantile does (the buckets are powers of two, so
 * the bucket bound alone would be up to 2x off). A quantile in the last bucket, which also
 * catches everything slower, is that bucket's lower bound: the histogram knows no more.
 * null for an empty histogram.
 */
export function latencyQuantileUs(upper_us: readonly number[], counts: readonly number[], q: number): number | null {
  const total = counts.reduce((s, c) => s + c, 0);
  if (total <= 0) return null;
  const rank = q * total;
  let cumulative = 0;
  for (let i = 0; i < counts.length; i++) {
    const before = cumulative;
    cumulative += counts[i];
    if (cumulative >= rank && counts[i] > 0) {
      const lower = i === 0 ? 0 : upper_us[i - 1];
      if (i === counts.length - 1 && i > 0) return lower;
      return lower + (upper_us[i] - lower) * ((rank - before) / counts[i]);
    }
  }
  return upper_us[upper_us.length - 1] ?? null;
}

/** Rates between two samples of one volume `elapsed_ms` apart; null when they cannot be compared. */
export function ioRates(before: IoCounters, after: IoCounters, elapsed_ms: number): IoRates | null {
  if (!(elapsed_ms > 0)) return null;
  const d = counterDelta(before, after);
  if (!d) return null;
  const seconds = elapsed_ms / 1000;
  // The histogram counts every completed command (flushes and unmaps too), as the sum does.
  const completed = d.latency_bucket_counts.reduce((s, c) => s + c, 0);
  return {
    read_iops: d.read_ops / seconds,
    write_iops: d.write_ops / seconds,
    read_mib_per_s: d.read_bytes / MIB / seconds,
    write_mib_per_s: d.write_bytes / MIB / seconds,
    avg_latency_us: completed > 0 ? d.latency_sum_us / completed : null,
    p99_latency_us: latencyQuantileUs(d.latency_bucket_upper_us, d.latency_bucket_counts, 0.99),
  };
}

function volumeKey(v: Pick<SampledVolume, "kind" | "node" | "uuid">): string {
  return `${v.node}/${v.kind}/${v.uuid}`;
}

/** One row per volume of `after`, with its rates since `before` (sorted by node, kind, uuid). */
export function topRows(before: TopSample, after: TopSample): TopRow[] {
  const earlier = new Map(before.volumes.map((v) => [volumeKey(v), v]));
  const elapsed_ms = after.taken_ms - before.taken_ms;
  return after.volumes
    .map((v): TopRow => {
      const prev = earlier.get(volumeKey(v));
      return { kind: v.kind, node: v.node, uuid: v.uuid, rates: prev ? ioRates(prev.counters, v.counters, elapsed_ms) : null };
    })
    .sort((a, b) => a.node.localeCompare(b.node) || a.kind.localeCompare(b.kind) || a.uuid.localeCompare(b.uuid));
}

/** `850µs`, `12.3ms`, `1.50s`; "-" when unknown. */
export function formatLatency(us: number | null): string {
  if (us === null || !Number.isFinite(us)) return "-";
  if (us < 1000) return `${Math.round(us)}µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)}ms`;
  return `${(us / 1_000_000).toFixed(2)}s`;
}

function formatRate(value: number, digits: number): string {
  return value.toFixed(digits);
}

/** The table one refresh shows. */
export function renderTop(rows: readonly TopRow[], after: TopSample, elapsed_ms: number): string {
  const header = `strata top - ${new Date(after.taken_ms).toISOString()}, rates over the last ${(elapsed_ms / 1000).toFixed(1)} s`;
  const lines = [header, ""];
  if (rows.length === 0) lines.push("no nexus or shared replica on any running node");
  else
    lines.push(
      formatTable([
        ["NODE", "KIND", "UUID", "R IOPS", "W IOPS", "R MiB/s", "W MiB/s", "AVG LAT", "P99 LAT"],
        ...rows.map((r) => [
          r.node,
          r.kind,
          r.uuid,
          r.rates ? formatRate(r.rates.read_iops, 0) : "-",
          r.rates ? formatRate(r.rates.write_iops, 0) : "-",
          r.rates ? formatRate(r.rates.read_mib_per_s, 1) : "-",
          r.rates ? formatRate(r.rates.write_mib_per_s, 1) : "-",
          formatLatency(r.rates?.avg_latency_us ?? null),
          formatLatency(r.rates?.p99_latency_us ?? null),
        ]),
      ]),
    );
  for (const u of after.unreachable) lines.push(`${u.node}: not sampled (${u.reason})`);
  return lines.join("\n");
}

/** Every nexus and shared replica of one node, with its counters now. */
export async function sampleNode(engine: EngineConnection): Promise<SampledVolume[]> {
  const target = engine.target;
    const [{ nexuses }, { subsystems }] = await Promise.all([
      engine.call("ListNexus", {}, SAMPLE_DEADLINE_MS),
      engine.call("ListSubsystems", {}, SAMPLE_DEADLINE_MS),
    ]);
    // A published nexus is a subsystem too (kind "nexus"): its line is the nexus's own.
    const shared = subsystems.filter((s) => s.kind === "replica");
    const replicaStats = await Promise.all(shared.map((s) => engine.call("GetStats", { uuid: s.replica_uuid }, SAMPLE_DEADLINE_MS)));
    return [
      ...nexuses.map((n): SampledVolume => ({ kind: "nexus", node: target.node, uuid: n.uuid, counters: countersOf(n.stats) })),
      ...shared.map((s, i): SampledVolume => ({ kind: "replica", node: target.node, uuid: s.replica_uuid, counters: countersOf(replicaStats[i]) })),
  ];
}

/**
 * One sample of every given node, taken concurrently; a node that fails is listed as unreachable.
 * The connections are kept from one sample to the next, so a refresh costs no connection setup.
 */
export async function sampleNodes(engines: readonly EngineConnection[], now: () => number = Date.now): Promise<TopSample> {
  const results = await Promise.allSettled(engines.map((e) => sampleNode(e)));
  // One instant for the whole sample: the calls ran concurrently, and their answers arrived
  // within a round trip of the time taken here.
  const taken_ms = now();
  const volumes: SampledVolume[] = [];
  const unreachable: { node: string; reason: string }[] = [];
  results.forEach((r, i) => {
    if (r.status === "fulfilled") volumes.push(...r.value);
    else unreachable.push({ node: engines[i].target.node, reason: (r.reason as Error).message });
  });
  return { taken_ms, volumes, unreachable };
}

/** The running nodes of the local cluster under `home` (stopped ones have nothing to sample). */
export function runningTargets(home: string): EngineTarget[] {
  const record = loadCluster(home);
  if (!record) throw new Error("no local cluster: start one with `npx strata cluster up`");
  const token = readToken(record);
  return record.nodes.filter((n) => alive(n.pid)).map((n) => ({ node: n.node, endpoint: n.endpoint, token }));
}

export interface TopOptions {
  readonly home?: string;
  readonly interval_ms: number;
  /** Stop after this many refreshes; Infinity runs until interrupted. */
  readonly iterations: number;
  readonly write: (text: string) => void;
  /** Redraw in place (a terminal) rather than append (a pipe, a log). */
  readonly redraw: boolean;
}

const CLEAR_SCREEN = "\x1b[2J\x1b[H";

export async function runTop(opts: TopOptions): Promise<void> {
  const home = opts.home ?? strataHome();
  const targets = runningTargets(home);
  if (targets.length === 0) throw new Error("no node of the local cluster is running: start them with `npx strata cluster up`");
  const engines = targets.map((t) => connectEngine(t));
  try {
    let before = await sampleNodes(engines);
    for (let refresh = 0; refresh < opts.iterations; refresh++) {
      // Sleep what is left of the interval after sampling, so refreshes stay interval_ms apart.
      await new Promise((r) => setTimeout(r, Math.max(0, before.taken_ms + opts.interval_ms - Date.now())));
      const after = await sampleNodes(engines);
      const text = renderTop(topRows(before, after), after, after.taken_ms - before.taken_ms);
      opts.write(opts.redraw ? `${CLEAR_SCREEN}${text}\n` : `${refresh > 0 ? "\n" : ""}${text}\n`);
      before = after;
    }
  } finally {
    for (const e of engines) e.close();
  }
}
