// `npm run bench:nvmf`: the same replica measured locally (benchReplica in the engine that owns
// it) and remotely (benchDevice on nvmf://127.0.0.1:PORT/NQN from a second engine process, our
// initiator over loopback TCP to our target), alternating workload by workload so both see the
// same noise. Prints a table and, as the LAST line, one JSON object of remote/local ratios plus
// added_latency_qd1_us (remote p50 - local p50, 4K randread at qd1).
//
// The target engine runs in a child process (`node dist/bench/nvmf.js --target`), as in
// production where the host and the storage node are different engines.
import { fork, ChildProcess } from "node:child_process";
import { CounterTotals, median, ONLY, perIo, sumCounters, Workload, WORKLOADS } from "./workloads";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadNative, BenchResult } from "../native";

const MiB = 1024 * 1024;
const RUNTIME_MS = Number(process.env.STRATA_BENCH_RUNTIME_S ?? 3) * 1000;
const ROUNDS = Number(process.env.STRATA_BENCH_ROUNDS ?? 2);
const SPAN_BYTES = 256 * MiB;
const HOST_NQN = "nqn.2026-11.io.strata:node:bench-initiator";
const SELECTED = WORKLOADS.filter((w) => ONLY.test(w.name));
// The remote load generator runs on one host reactor and its I/O queue (one TCP connection).
// Where the depth allows, the same load is also spread over SPREAD_JOBS host reactors, each with
// its own queue, as the kernel's host spreads an application's I/O over per-CPU queues: the
// `_2queues` columns and keys. On 2 shared CPUs the spread measured no better (docs/PERFORMANCE.md).
const SPREAD_JOBS = 2;
const spreads = (w: Workload) => w.queue_depth >= SPREAD_JOBS;

type Msg = { id: number; op: "bench"; w: Workload } | { id: number; op: "counters" } | { id: number; op: "stop" };
type Reply = BenchResult | CounterTotals | null;

/** The target side: a pool on a file, a thick pre-written replica, shared over NVMe/TCP. */
async function targetMain(): Promise<void> {
  const native = loadNative();
  native.start({ cores: 2 });
  const dir = mkdtempSync(join(tmpdir(), "strata-bench-nvmf-"));
  const pool_uuid = randomUUID();
  await native.createPool({ uuid: pool_uuid, name: "bench-nvmf", device_uri: `file://${join(dir, "pool.img")}?size_mib=${SPAN_BYTES / MiB + 64}`, cluster_size_bytes: 4 * MiB, force: true });
  const uuid = randomUUID();
  await native.createReplica({ pool_uuid, uuid, name: "bench", size_bytes: SPAN_BYTES, thin: false });
  // Written end to end once: steady state, no first-write effects.
  await native.benchReplica({ uuid, pattern: "write", block_size_bytes: MiB, queue_depth: 8, duration_ms: 4000, span_bytes: SPAN_BYTES });
  const { listen_port } = await native.startNvmf({ listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0 });
  const { nqn } = await native.shareReplica({ uuid, allowed_host_nqns: [HOST_NQN] });
  process.on("message", (m: Msg) => {
    void (async () => {
      if (m.op === "stop") {
        await native.shutdown();
        rmSync(dir, { recursive: true, force: true });
        process.send!({ id: m.id, result: null }, () => process.exit(0));
        return;
      }
      if (m.op === "counters") return process.send!({ id: m.id, result: sumCounters(native.reactorCounters()) });
      const { w } = m;
      const result = await native.benchReplica({ uuid, pattern: w.pattern, block_size_bytes: w.block_size_bytes, queue_depth: w.queue_depth, duration_ms: RUNTIME_MS, span_bytes: SPAN_BYTES });
      process.send!({ id: m.id, result });
    })();
  });
  process.send!({ id: 0, ready: { port: listen_port, nqn } });
}

class Child {
  private next = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  readonly ready: Promise<{ port: number; nqn: string }>;
  private readonly proc: ChildProcess;
  constructor() {
    this.proc = fork(__filename, ["--target"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.ready = new Promise((resolve, reject) => {
      this.proc.once("exit", (code) => reject(new Error(`target process exited with ${code}`)));
      this.proc.on("message", (m: { id: number; ready?: { port: number; nqn: string }; result?: Reply }) => {
        if (m.ready) return resolve(m.ready);
        this.waiting.get(m.id)?.(m.result ?? null);
        this.waiting.delete(m.id);
      });
    });
  }
  call(msg: { op: "bench"; w: Workload }): Promise<BenchResult>;
  call(msg: { op: "counters" }): Promise<CounterTotals>;
  call(msg: { op: "stop" }): Promise<null>;
  call(msg: { op: "bench"; w: Workload } | { op: "counters" } | { op: "stop" }): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.proc.send({ ...msg, id });
    });
  }
}

async function main(): Promise<void> {
  const child = new Child();
  const { port, nqn } = await child.ready;
  const native = loadNative();
  native.start({ cores: 2 });
  const uri = `nvmf://127.0.0.1:${port}/${nqn}?hostnqn=${HOST_NQN}`;
  type Costs = { host: CounterTotals; target: CounterTotals };
  const rows: { workload: string; local: BenchResult[]; remote: BenchResult[]; remoteSpread: BenchResult[]; costs: Costs[]; localCpuUs: number[] }[] = SELECTED.map((w) => ({
    workload: w.name,
    local: [],
    remote: [],
    remoteSpread: [],
    costs: [],
    localCpuUs: [],
  }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, w] of SELECTED.entries()) {
      // ABBA order: whichever side runs second also absorbs the page-cache writeback of the
      // first side's writes, so neither side is always second.
      const local = async () => {
        const target0 = await child.call({ op: "counters" });
        const r = await child.call({ op: "bench", w });
        const target1 = await child.call({ op: "counters" });
        rows[i].local.push(r);
        rows[i].localCpuUs.push((target1.cpu_us - target0.cpu_us) / r.ops);
      };
      const remote = async () => {
        const host0 = sumCounters(native.reactorCounters()), target0 = await child.call({ op: "counters" });
        const r = await native.benchDevice({ uri, pattern: w.pattern, block_size_bytes: w.block_size_bytes, queue_depth: w.queue_depth, duration_ms: RUNTIME_MS, span_bytes: SPAN_BYTES });
        const host1 = sumCounters(native.reactorCounters()), target1 = await child.call({ op: "counters" });
        rows[i].remote.push(r);
        rows[i].costs.push({ host: perIo(host0, host1, r.ops), target: perIo(target0, target1, r.ops) });
        // The same load spread over host queues, in the same slot of the ABBA order: what
        // spreading buys, side by side.
        if (spreads(w)) {
          rows[i].remoteSpread.push(await native.benchDevice({ uri, pattern: w.pattern, block_size_bytes: w.block_size_bytes, queue_depth: w.queue_depth, duration_ms: RUNTIME_MS, span_bytes: SPAN_BYTES, jobs: SPREAD_JOBS }));
        }
      };
      if (round % 2 === 0) {
        await local();
        await remote();
      } else {
        await remote();
        await local();
      }
    }
  }
  await native.shutdown();
  await child.call({ op: "stop" });

  const pick = (rs: BenchResult[]) => ({ iops: median(rs.map((r) => r.iops)), p50: median(rs.map((r) => r.lat_p50_us)), p99: median(rs.map((r) => r.lat_p99_us)) });
  const header = ["workload", "local IOPS", "local p50 us", "local p99 us", "remote IOPS", "remote p50 us", "remote p99 us", "remote/local", `${SPREAD_JOBS} queues: remote IOPS`, `${SPREAD_JOBS} queues: remote/local`];
  const table = [header];
  const summary: Record<string, number> = {};
  let added = 0;
  for (const r of rows) {
    const l = pick(r.local), m = pick(r.remote);
    const ratio = m.iops / l.iops;
    summary[`remote_local_${r.workload}_ratio`] = Number(ratio.toFixed(3));
    if (r.workload === "randread_4k_qd1") added = m.p50 - l.p50;
    const spread = r.remoteSpread.length > 0 ? pick(r.remoteSpread).iops : NaN;
    if (!Number.isNaN(spread)) summary[`remote_local_${r.workload}_${SPREAD_JOBS}queues_ratio`] = Number((spread / l.iops).toFixed(3));
    table.push([r.workload, l.iops.toFixed(0), String(l.p50), String(l.p99), m.iops.toFixed(0), String(m.p50), String(m.p99), ratio.toFixed(2), Number.isNaN(spread) ? "-" : spread.toFixed(0), Number.isNaN(spread) ? "-" : (spread / l.iops).toFixed(2)]);
  }
  summary.added_latency_qd1_us = added;
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
  console.log(`NVMe/TCP over loopback: ${ROUNDS} rounds x ${RUNTIME_MS / 1000} s per workload, medians; local = benchReplica in the target engine, remote = benchDevice(${uri.replace(/\?.*/, "")}) from a second engine process on one host queue (and spread over ${SPREAD_JOBS})`);
  for (const row of table) console.log("| " + row.map((cell, c) => cell.padEnd(widths[c])).join(" | ") + " |");
  // Per remote I/O, from the reactors' own counters (last round): what the profile attributes
  // the time to. sleeps = wakeups; enters = io_uring_enter syscalls; hops = cross-thread posts.
  const costHeader = ["workload (per remote I/O)", "host sleeps", "host enters", "host hops", "target sleeps", "target enters", "target hops", "target eventfd writes", "host ring ops", "target ring ops", "CPU us remote (host+target)", "CPU us host", "CPU us target", "CPU us local"];
  const costTable = [costHeader];
  for (const r of rows) {
    const c = r.costs.at(-1)!;
    const remoteCpu = c.host.cpu_us + c.target.cpu_us, localCpu = median(r.localCpuUs);
    costTable.push([r.workload, ...[c.host.sleeps, c.host.enters, c.host.posts_remote, c.target.sleeps, c.target.enters, c.target.posts_remote, c.target.wakeup_writes, c.host.completions, c.target.completions, remoteCpu, c.host.cpu_us, c.target.cpu_us, localCpu].map((x) => x.toFixed(2))]);
    summary[`cpu_per_io_remote_vs_local_${r.workload}_ratio`] = Number((remoteCpu / localCpu).toFixed(2));
    if (r.workload === "randread_4k_qd1") summary.target_sleeps_per_io_qd1 = Number(c.target.sleeps.toFixed(2));
    if (r.workload === "randread_4k_qd1") summary.host_sleeps_per_io_qd1 = Number(c.host.sleeps.toFixed(2));
  }
  const costWidths = costHeader.map((_, c) => Math.max(...costTable.map((row) => row[c].length)));
  for (const row of costTable) console.log("| " + row.map((cell, c) => cell.padEnd(costWidths[c])).join(" | ") + " |");
  console.log(JSON.stringify(summary));
}

if (process.argv.includes("--target")) {
  targetMain().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
