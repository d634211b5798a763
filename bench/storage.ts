// `npm run bench:storage`: the native data path (a replica in a pool, driven by the native
// load generator, no JavaScript per I/O) against fio with io_uring and O_DIRECT on a backing
// file of the same kind, side by side in one run, alternating so both see the same noise.
// Also: engine memory with 1,000 replicas and an idle engine's CPU use.
//
// Prints a table and, as the last line, one JSON object of ratios (ours / fio).
import { spawn } from "node:child_process";
import { randomUUID, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { connectEngine } from "../common/client";
import { loadNative, NativeStorage } from "../native";
import { ensureFio, runFio } from "./fio";
import { median, ONLY, WORKLOADS } from "./workloads";

const MiB = 1024 * 1024;
const RUNTIME_S = Number(process.env.STRATA_BENCH_RUNTIME_S ?? 4);
const ROUNDS = Number(process.env.STRATA_BENCH_ROUNDS ?? 2);
const SPAN_BYTES = 256 * MiB;
const root = resolve(__dirname, "..", "..");

interface Row {
  device: string;
  workload: string;
  ours_iops: number;
  fio_iops: number;
  ours_p99_us: number;
  fio_p99_us: number;
}

async function prepareReplica(native: NativeStorage, device_uri: string): Promise<string> {
  const pool_uuid = randomUUID();
  await native.createPool({ uuid: pool_uuid, name: `bench-${pool_uuid.slice(0, 8)}`, device_uri, cluster_size_bytes: 4 * MiB, force: true });
  const uuid = randomUUID();
  // Thick, and written once end to end: we measure steady state, as fio does on a laid-out file.
  await native.createReplica({ pool_uuid, uuid, name: uuid, size_bytes: SPAN_BYTES, thin: false });
  await native.benchReplica({ uuid, pattern: "write", block_size_bytes: 1 * MiB, queue_depth: 8, duration_ms: 2_000, span_bytes: SPAN_BYTES });
  return uuid;
}

function fillFile(path: string): void {
  const fd = openSync(path, "w");
  const chunk = randomBytes(MiB);
  for (let off = 0; off < SPAN_BYTES; off += MiB) writeFileSync(fd, chunk);
  closeSync(fd);
}

async function storageBench(native: NativeStorage, dir: string): Promise<Row[]> {
  const kinds = [
    { device: "file", ours: `file://${join(dir, "pool.img")}?size_mib=${SPAN_BYTES / MiB + 64}`, fioFile: join(dir, "fio.img") },
    { device: "malloc", ours: `malloc:///bench?size_mib=${SPAN_BYTES / MiB + 64}`, fioFile: "/dev/shm/strata-bench-fio.img" },
  ];
  const rows: Row[] = [];
  for (const kind of kinds) {
    const replica = await prepareReplica(native, kind.ours);
    fillFile(kind.fioFile);
    for (const w of WORKLOADS.filter((x) => ONLY.test(`${kind.device}_${x.name}`))) {
      const ours: number[] = [];
      const theirs: number[] = [];
      const oursP99: number[] = [];
      const theirsP99: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const r = await native.benchReplica({
          uuid: replica,
          pattern: w.pattern,
          block_size_bytes: w.block_size_bytes,
          queue_depth: w.queue_depth,
          duration_ms: RUNTIME_S * 1000,
          span_bytes: SPAN_BYTES,
        });
        ours.push(r.iops);
        oursP99.push(r.lat_p99_us);
        const f = runFio({ filename: kind.fioFile, size_bytes: SPAN_BYTES, rw: w.pattern, block_size_bytes: w.block_size_bytes, queue_depth: w.queue_depth, runtime_s: RUNTIME_S });
        theirs.push(f.iops);
        theirsP99.push(f.lat_p99_us);
      }
      const row = { device: kind.device, workload: w.name, ours_iops: median(ours), fio_iops: median(theirs), ours_p99_us: median(oursP99), fio_p99_us: median(theirsP99) };
      rows.push(row);
      process.stderr.write(`${row.device} ${row.workload}: ours ${row.ours_iops.toFixed(0)} IOPS, fio ${row.fio_iops.toFixed(0)} IOPS\n`);
    }
    rmSync(kind.fioFile, { force: true });
  }
  return rows;
}

function rssBytes(pid: number | "self"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

/** A real engine: idle CPU over a window, then RSS before and after 1,000 replicas. */
async function engineBench(dir: string): Promise<{ idle_cpu_percent: number; rss_base_mib: number; rss_1000_replicas_mib: number; bytes_per_replica: number }> {
  const tokenFile = join(dir, "token");
  const token = randomBytes(24).toString("base64url");
  writeFileSync(tokenFile, token);
  const endpoint = "127.0.0.1:" + (30000 + Math.floor(Math.random() * 10000));
  const child = spawn(process.execPath, [join(root, "bin", "strata-engine.js"), "--node", "bench", "--grpc-listen", endpoint, "--data-dir", join(dir, "engine"), "--device-dir", dir, "--token-file", tokenFile, "--cores", "2"], { stdio: ["ignore", "ignore", "pipe"] });
  const engine = connectEngine({ node: "bench", endpoint, token });
  try {
    for (let i = 0; ; i++) {
      try {
        await engine.call("GetInfo", {}, 1000);
        break;
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const disk = join(dir, "engine-disk.img");
    closeSync(openSync(disk, "w"));
    truncateSync(disk, 8192 * MiB);
    await engine.call("CreatePool", { uuid: randomUUID(), name: "mem", device_uri: `file://${disk}`, labels: {}, cluster_size_bytes: 4 * MiB, force: false });
    await new Promise((r) => setTimeout(r, 1000));
    const hz = 100;
    const idleWindowS = 5;
    const before = cpuTicks(child.pid!);
    await new Promise((r) => setTimeout(r, idleWindowS * 1000));
    const idle_cpu_percent = ((cpuTicks(child.pid!) - before) / hz / idleWindowS) * 100;
    const rssBase = rssBytes(child.pid!);
    for (let i = 0; i < 1000; i++) await engine.call("CreateReplica", { uuid: randomUUID(), name: "", pool: "mem", size_bytes: 4 * MiB, thin: true });
    await new Promise((r) => setTimeout(r, 500));
    const rss1000 = rssBytes(child.pid!);
    return { idle_cpu_percent, rss_base_mib: rssBase / MiB, rss_1000_replicas_mib: rss1000 / MiB, bytes_per_replica: Math.max(0, (rss1000 - rssBase) / 1000) };
  } finally {
    engine.close();
    child.kill("SIGTERM");
  }
}

async function main(): Promise<void> {
  ensureFio();
  const dir = join(root, ".strata", "bench");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const native = loadNative();
  native.start({ cores: 1 });
  const rows = await storageBench(native, dir);
  await native.shutdown();
  const engine = process.env.STRATA_BENCH_ONLY ? { idle_cpu_percent: NaN, rss_base_mib: NaN, rss_1000_replicas_mib: NaN, bytes_per_replica: NaN } : await engineBench(dir);
  rmSync(dir, { recursive: true, force: true });

  const table = [
    ["device", "workload", "strata IOPS", "fio IOPS", "ratio", "strata p99 us", "fio p99 us"],
    ...rows.map((r) => [r.device, r.workload, r.ours_iops.toFixed(0), r.fio_iops.toFixed(0), (r.ours_iops / r.fio_iops).toFixed(2), r.ours_p99_us.toFixed(0), r.fio_p99_us.toFixed(0)]),
  ];
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
  for (const r of table) console.log("| " + r.map((cell, c) => cell.padEnd(widths[c])).join(" | ") + " |");
  console.log(`\nidle engine CPU: ${engine.idle_cpu_percent.toFixed(2)}% of one core over 5 s`);
  console.log(`engine RSS: ${engine.rss_base_mib.toFixed(1)} MiB with one pool, ${engine.rss_1000_replicas_mib.toFixed(1)} MiB with 1,000 replicas (${engine.bytes_per_replica.toFixed(0)} B per replica)`);
  const summary: Record<string, number> = {};
  for (const r of rows) summary[`${r.device}_${r.workload}_ratio`] = Number((r.ours_iops / r.fio_iops).toFixed(3));
  // The headline keys name the disk-file workloads.
  if (summary.file_randread_4k_qd32_ratio !== undefined) summary.randread_4k_qd32_ratio = summary.file_randread_4k_qd32_ratio;
  if (summary.file_randwrite_4k_qd32_ratio !== undefined) summary.randwrite_4k_qd32_ratio = summary.file_randwrite_4k_qd32_ratio;
  summary.idle_cpu_percent = Number(engine.idle_cpu_percent.toFixed(3));
  summary.rss_1000_replicas_mib = Number(engine.rss_1000_replicas_mib.toFixed(1));
  console.log(JSON.stringify(summary));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
