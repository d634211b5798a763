// `npm run bench:csal`: the CSAL tiered device (native/src/ftl) under the native load generator,
// in one run on sparse files in a temp dir:
//   1. write amplification at steady state under uniform random 4 KiB overwrite of the whole
//      replica, against the greedy-GC model (bench/csal-model.ts) of the same geometry;
//   2. the same under an 80/20 skewed overwrite, against the greedy model for that workload;
//   3. how sequential the base's writes are, and their mean size;
//   4. 4 KiB random-write IOPS and latency at QD 32 through the FTL against a pool on a plain
//      file of the base's kind (same load generator), alternating rounds;
//   5. the cost of paging the map: 4 KiB random reads and writes at QD 32 through the same FTL
//      with its map limited to 1/STRATA_CSAL_MAP_FRACTION (8) of its size against fully
//      resident, alternating rounds (uniform random I/O over the whole replica: the worst case,
//      nearly every I/O misses), with the map pages read and written per I/O;
//   6. FDP: two FTLs of the same geometry on fdp:// bases whose reclaim units hold 8 bands (1 %
//      spare media), one with two placement handles (hot and cold bands apart), one with one;
//      the same fill and 80/20 overwrite; the drive's media WAF (media / host bytes written).
//
// WAF = Δ(base_write_bytes_host + gc + meta) / Δ host_write_bytes, counters taken after the FTL's
// background compaction and GC have settled. Prints a table and, as the last line, one JSON object.
//
// Knobs (env): STRATA_CSAL_CACHE_MIB (64), STRATA_CSAL_BASE_MIB (512), STRATA_CSAL_BAND_MIB (8),
// STRATA_CSAL_OP_PERCENT (20), STRATA_CSAL_WARMUP_PASSES (2), STRATA_CSAL_SKEWED_WARMUP_PASSES (3),
// STRATA_CSAL_MEASURED_PASSES (2),
// STRATA_CSAL_IOPS_S (4, per round), STRATA_CSAL_ROUNDS (2), STRATA_CSAL_MAP_FRACTION (8),
// STRATA_CSAL_FDP_BASE_MIB (512), STRATA_CSAL_DIR (a fresh temp dir).
import { randomUUID } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BenchResult, FtlStats, loadNative, NativeStorage } from "../native";
import { ModelConfig, simulateGreedy, SKEWED_80_20, UNIFORM, Workload } from "./csal-model";
import { median } from "./workloads";

const MiB = 1024 * 1024;
const BLOCK = 4096;
const env = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const CACHE_MIB = env("STRATA_CSAL_CACHE_MIB", 64);
const BASE_MIB = env("STRATA_CSAL_BASE_MIB", 512);
const BAND_MIB = env("STRATA_CSAL_BAND_MIB", 8);
const OP_PERCENT = env("STRATA_CSAL_OP_PERCENT", 20);
const WARMUP_PASSES = env("STRATA_CSAL_WARMUP_PASSES", 2);
const MEASURED_PASSES = env("STRATA_CSAL_MEASURED_PASSES", 2);
// The skewed phase starts from the uniform steady state: a longer warm-up to reach its own.
const SKEWED_WARMUP_PASSES = env("STRATA_CSAL_SKEWED_WARMUP_PASSES", 3);
const IOPS_S = env("STRATA_CSAL_IOPS_S", 4);
const ROUNDS = env("STRATA_CSAL_ROUNDS", 2);
const MAP_FRACTION = env("STRATA_CSAL_MAP_FRACTION", 8);
const FDP_BASE_MIB = env("STRATA_CSAL_FDP_BASE_MIB", 512);
const FDP_BAND_MIB = 2;
const FDP_PASSES = 3;
const QD = 32;
const HOT_WRITE = SKEWED_80_20.hotWriteFraction;
const HOT_SPACE = SKEWED_80_20.hotSpaceFraction;
const LONG_MS = 3_600_000; // runs bounded by max_ops, not by time

const log = (msg: string) => process.stderr.write(`[bench:csal ${(performance.now() / 1000).toFixed(1)}s] ${msg}\n`);

/** The FTL's band geometry (native/src/ftl/format.cc band_geometry): data blocks before the P2L footer. */
function bandDataBlocks(bandBlocks: number): number {
  for (let footer = 1; footer < bandBlocks; footer++) {
    const data = bandBlocks - footer;
    if (64 + (data + Math.floor(data / 8)) * 24 <= footer * BLOCK) return data;
  }
  return 0;
}

/** native/src/ftl/ftl.h ftl_gc_threshold_bands: GC runs while fewer bands than this are free. */
const gcThresholdBands = (bandCount: number) => Math.floor((bandCount * 5) / 100) + 3;

function sparseFile(path: string, mib: number): string {
  closeSync(openSync(path, "w"));
  truncateSync(path, mib * MiB);
  return `file://${path}`;
}

async function ftlStats(n: NativeStorage, uuid: string): Promise<FtlStats> {
  const s = (await n.listFtl()).find((x) => x.uuid === uuid);
  if (!s) throw new Error(`FTL ${uuid} is not open`);
  if (s.failed_reason) throw new Error(`FTL ${uuid} failed: ${s.failed_reason}`);
  return s;
}

const baseBytes = (s: FtlStats) => s.base_write_bytes_host + s.base_write_bytes_gc + s.base_write_bytes_meta;

/** Counters once background compaction and GC have stopped moving (they run after the host's writes are acknowledged). */
async function settled(n: NativeStorage, uuid: string): Promise<FtlStats> {
  let last = await ftlStats(n, uuid);
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await ftlStats(n, uuid);
    if (baseBytes(now) === baseBytes(last) && now.gc_relocated_blocks === last.gc_relocated_blocks) return now;
    last = now;
  }
  return last;
}

interface Delta {
  host: number;
  base: number;
  baseHost: number;
  baseGc: number;
  baseMeta: number;
  baseWrites: number;
  baseSeqWrites: number;
  gcRelocatedBlocks: number;
  waf: number;
}

function delta(a: FtlStats, b: FtlStats): Delta {
  const host = b.host_write_bytes - a.host_write_bytes;
  const base = baseBytes(b) - baseBytes(a);
  return {
    host,
    base,
    baseHost: b.base_write_bytes_host - a.base_write_bytes_host,
    baseGc: b.base_write_bytes_gc - a.base_write_bytes_gc,
    baseMeta: b.base_write_bytes_meta - a.base_write_bytes_meta,
    baseWrites: b.base_writes - a.base_writes,
    baseSeqWrites: b.base_sequential_writes - a.base_sequential_writes,
    gcRelocatedBlocks: b.gc_relocated_blocks - a.gc_relocated_blocks,
    waf: base / host,
  };
}

/** A pool (1 MiB clusters) on a device with one thick replica of its capacity minus 2 MiB, written end to end once. */
async function poolWithReplica(n: NativeStorage, device_uri: string): Promise<{ pool: string; replica: string; size: number }> {
  const pool = randomUUID();
  const info = await n.createPool({ uuid: pool, name: `csal-${pool.slice(0, 8)}`, device_uri, cluster_size_bytes: MiB, force: true });
  const size = info.capacity_bytes - 2 * MiB;
  const replica = randomUUID();
  await n.createReplica({ uuid: replica, pool_uuid: pool, name: "r", size_bytes: size, thin: false });
  await n.benchReplica({ uuid: replica, pattern: "write", block_size_bytes: MiB, queue_depth: 8, duration_ms: LONG_MS, span_bytes: size, max_ops: size / MiB });
  return { pool, replica, size };
}

/** `passes` × the replica's size in 4 KiB random writes at QD 32 (skewed when hot fractions are given). */
function overwrite(n: NativeStorage, replica: string, size: number, passes: number, skew?: { hot_write_fraction: number; hot_space_fraction: number }): Promise<BenchResult> {
  return n.benchReplica({ uuid: replica, pattern: "randwrite", block_size_bytes: BLOCK, queue_depth: QD, duration_ms: LONG_MS, span_bytes: size, max_ops: Math.round((passes * size) / BLOCK), ...skew });
}

/** Warm up, then measure: counters around the measured passes. */
async function wafPhase(n: NativeStorage, ftl: string, replica: string, size: number, name: string, warmupPasses: number, skew?: { hot_write_fraction: number; hot_space_fraction: number }) {
  log(`${name}: warm-up, ${warmupPasses}× the replica`);
  await overwrite(n, replica, size, warmupPasses, skew);
  const before = await settled(n, ftl);
  log(`${name}: measuring, ${MEASURED_PASSES}× the replica`);
  const io = await overwrite(n, replica, size, MEASURED_PASSES, skew);
  const after = await settled(n, ftl);
  const d = delta(before, after);
  log(`${name}: WAF ${d.waf.toFixed(3)} (${(d.host / MiB).toFixed(0)} MiB host, ${(d.base / MiB).toFixed(0)} MiB base), ${io.iops.toFixed(0)} IOPS`);
  return { d, io, after };
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

async function main(): Promise<void> {
  const t0 = performance.now();
  const dir = process.env.STRATA_CSAL_DIR ?? mkdtempSync(join(tmpdir(), "strata-bench-csal-"));
  const n = loadNative();
  n.start({ cores: 2 });
  try {
    // ---- the FTL and a pool on it ----
    const created = await n.createFtl({
      cache_uri: sparseFile(join(dir, "cache.img"), CACHE_MIB),
      base_uri: sparseFile(join(dir, "base.img"), BASE_MIB),
      op_percent: OP_PERCENT,
      band_mib: BAND_MIB,
      force: true,
    });
    const ftl = created.uuid;
    log(`FTL ${ftl}: ${(created.size_bytes / MiB).toFixed(0)} MiB logical over ${CACHE_MIB} MiB cache + ${BASE_MIB} MiB base (bands ${BAND_MIB} MiB, OP ${OP_PERCENT} %)`);
    const onFtl = await poolWithReplica(n, created.uri);
    const filled = await settled(n, ftl);
    log(`replica ${(onFtl.size / MiB).toFixed(0)} MiB written end to end; ${filled.band_count} bands, ${filled.free_bands} free`);

    // ---- 1. uniform WAF ----
    const uniform = await wafPhase(n, ftl, onFtl.replica, onFtl.size, "uniform", WARMUP_PASSES);

    // ---- 4. random-write IOPS at QD 32: FTL (uniform steady state) against a pool on a plain file ----
    const plain = await poolWithReplica(n, sparseFile(join(dir, "plain.img"), BASE_MIB));
    const ftlRuns: BenchResult[] = [];
    const plainRuns: BenchResult[] = [];
    const timed = (replica: string, size: number) =>
      n.benchReplica({ uuid: replica, pattern: "randwrite", block_size_bytes: BLOCK, queue_depth: QD, duration_ms: IOPS_S * 1000, span_bytes: size });
    for (let round = 0; round < ROUNDS; round++) {
      ftlRuns.push(await timed(onFtl.replica, onFtl.size));
      plainRuns.push(await timed(plain.replica, plain.size));
      log(`randwrite 4k qd${QD} round ${round + 1}: FTL ${ftlRuns[round].iops.toFixed(0)} IOPS, plain file ${plainRuns[round].iops.toFixed(0)} IOPS`);
    }
    await n.exportPool({ uuid: plain.pool });
    rmSync(join(dir, "plain.img"), { force: true });

    // ---- 5. the paged map against the resident one, same FTL, alternating rounds ----
    const mapBytes = (await ftlStats(n, ftl)).map_bytes;
    const pagedLimit = Math.max(32 * 1024, Math.floor(mapBytes / MAP_FRACTION / BLOCK) * BLOCK);
    const paging: Record<"resident" | "paged", Record<"randread" | "randwrite", BenchResult[]>> = { resident: { randread: [], randwrite: [] }, paged: { randread: [], randwrite: [] } };
    let pagedOps = 0;
    let pagedReads = 0;
    let pagedWrites = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of ["resident", "paged"] as const) {
        n.setFtlMapLimit({ uuid: ftl, bytes: mode === "paged" ? pagedLimit : 0 });
        for (const pattern of ["randread", "randwrite"] as const) {
          const before = await ftlStats(n, ftl);
          const r = await n.benchReplica({ uuid: onFtl.replica, pattern, block_size_bytes: BLOCK, queue_depth: QD, duration_ms: IOPS_S * 1000, span_bytes: onFtl.size });
          const after = await ftlStats(n, ftl);
          paging[mode][pattern].push(r);
          if (mode === "paged") {
            pagedOps += r.ops;
            pagedReads += after.map_page_reads - before.map_page_reads;
            pagedWrites += after.map_page_writes - before.map_page_writes;
          }
        }
      }
      log(`map ${mapBytes / 1024} KiB, paged through ${pagedLimit / 1024} KiB, round ${round + 1}: randread ${paging.resident.randread[round].iops.toFixed(0)} → ${paging.paged.randread[round].iops.toFixed(0)} IOPS, randwrite ${paging.resident.randwrite[round].iops.toFixed(0)} → ${paging.paged.randwrite[round].iops.toFixed(0)} IOPS`);
    }
    n.setFtlMapLimit({ uuid: ftl, bytes: 0 });
    const iopsOf = (runs: BenchResult[]) => median(runs.map((r) => r.iops));

    // ---- 6. FDP: two placement handles against one, same FTL geometry and workload ----
    const fdpMediaWaf: Record<number, number> = {};
    for (const handles of [2, 1]) {
      const fdpDir = mkdtempSync(join(dir, "fdp-"));
      const fdpBase = `fdp://?base=${encodeURIComponent(sparseFile(join(fdpDir, "base.img"), FDP_BASE_MIB))}&handles=${handles}&ru_mib=${8 * FDP_BAND_MIB}&op_percent=1`;
      const fdpFtl = await n.createFtl({ cache_uri: sparseFile(join(fdpDir, "cache.img"), CACHE_MIB), base_uri: fdpBase, band_mib: FDP_BAND_MIB, force: true });
      const onFdp = await poolWithReplica(n, fdpFtl.uri);
      await overwrite(n, onFdp.replica, onFdp.size, FDP_PASSES, { hot_write_fraction: HOT_WRITE, hot_space_fraction: HOT_SPACE });
      const s = await settled(n, fdpFtl.uuid);
      fdpMediaWaf[handles] = s.base_fdp_media_write_bytes / s.base_fdp_host_write_bytes;
      log(`FDP, ${handles} handle(s): media WAF ${fdpMediaWaf[handles].toFixed(3)} (host bytes by handle ${JSON.stringify(s.base_fdp_handle_write_bytes)})`);
      await n.exportPool({ uuid: onFdp.pool });
      rmSync(fdpDir, { recursive: true, force: true });
    }

    // ---- 2. skewed WAF (the FTL comes from the uniform steady state; the warm-up re-shapes it) ----
    const skewed = await wafPhase(n, ftl, onFtl.replica, onFtl.size, "skewed 80/20", SKEWED_WARMUP_PASSES, { hot_write_fraction: HOT_WRITE, hot_space_fraction: HOT_SPACE });
    const stats = skewed.after;

    // ---- the greedy model of the same geometry ----
    const bandBlocks = bandDataBlocks(BAND_MIB * 256);
    const logicalBlocks = onFtl.size / BLOCK;
    const threshold = gcThresholdBands(stats.band_count);
    const config: ModelConfig = {
      bands: stats.band_count,
      bandBlocks,
      opFraction: 1 - logicalBlocks / (stats.band_count * bandBlocks),
      // The FTL collects while free < threshold; the model while free <= gcFreeBands.
      gcFreeBands: threshold - 1,
      separateHotCold: true,
      seed: 11,
    };
    const modelUniform = simulateGreedy(config, UNIFORM as Workload);
    const modelSkewed = simulateGreedy(config, SKEWED_80_20);
    log(`model: ${config.bands} bands × ${bandBlocks} blocks, ${logicalBlocks} logical blocks (OP ${(config.opFraction * 100).toFixed(1)} %), GC at ≤ ${config.gcFreeBands} free: WAF ${modelUniform.waf.toFixed(3)} uniform, ${modelSkewed.waf.toFixed(3)} skewed`);

    // ---- 3. base write shape over both measured windows ----
    const both = [uniform.d, skewed.d];
    const baseWrites = both.reduce((s, d) => s + d.baseWrites, 0);
    const baseSeq = both.reduce((s, d) => s + d.baseSeqWrites, 0);
    const baseWritten = both.reduce((s, d) => s + d.base, 0);

    const ftlIops = median(ftlRuns.map((r) => r.iops));
    const plainIops = median(plainRuns.map((r) => r.iops));
    const result = {
      csal_waf_model_ratio: r3(uniform.d.waf / modelUniform.waf),
      csal_skewed_waf_vs_greedy_ratio: r3(skewed.d.waf / modelSkewed.waf),
      base_sequential_write_fraction: r3(baseSeq / baseWrites),
      csal_vs_base_randwrite_4k_qd32_ratio: r3(ftlIops / plainIops),
      waf_uniform: r3(uniform.d.waf),
      waf_uniform_model: r3(modelUniform.waf),
      waf_skewed: r3(skewed.d.waf),
      waf_skewed_model: r3(modelSkewed.waf),
      // What the base sees per block compaction drains from the cache (the cache absorbs overwrites of blocks it still holds).
      waf_uniform_per_drained_block: r3(uniform.d.base / uniform.d.baseHost),
      waf_skewed_per_drained_block: r3(skewed.d.base / skewed.d.baseHost),
      base_mean_write_kib: r3(baseWritten / baseWrites / 1024),
      base_writes: baseWrites,
      base_sequential_writes: baseSeq,
      ftl_randwrite_4k_qd32_iops: Math.round(ftlIops),
      base_randwrite_4k_qd32_iops: Math.round(plainIops),
      ftl_randwrite_4k_qd32_p99_us: median(ftlRuns.map((r) => r.lat_p99_us)),
      base_randwrite_4k_qd32_p99_us: median(plainRuns.map((r) => r.lat_p99_us)),
      ftl_randwrite_4k_qd32_p999_us: median(ftlRuns.map((r) => r.lat_p999_us)),
      base_randwrite_4k_qd32_p999_us: median(plainRuns.map((r) => r.lat_p999_us)),
      fdp_media_waf_two_handles: r3(fdpMediaWaf[2]),
      fdp_media_waf_one_handle: r3(fdpMediaWaf[1]),
      fdp_two_vs_one_handle_media_waf_ratio: r3(fdpMediaWaf[2] / fdpMediaWaf[1]),
      map_bytes: mapBytes,
      map_paged_limit_bytes: pagedLimit,
      csal_paged_map_vs_resident_randread_4k_qd32_ratio: r3(iopsOf(paging.paged.randread) / iopsOf(paging.resident.randread)),
      csal_paged_map_vs_resident_randwrite_4k_qd32_ratio: r3(iopsOf(paging.paged.randwrite) / iopsOf(paging.resident.randwrite)),
      map_page_reads_per_io: r3(pagedReads / pagedOps),
      map_page_writes_per_io: r3(pagedWrites / pagedOps),
      ftl_randread_4k_qd32_p99_us_resident_paged: [median(paging.resident.randread.map((r) => r.lat_p99_us)), median(paging.paged.randread.map((r) => r.lat_p99_us))],
      ftl_overwrite_uniform_iops: Math.round(uniform.io.iops),
      ftl_overwrite_skewed_iops: Math.round(skewed.io.iops),
      uniform_split_host_gc_meta: [uniform.d.baseHost / uniform.d.host, uniform.d.baseGc / uniform.d.host, uniform.d.baseMeta / uniform.d.host].map(r3),
      skewed_split_host_gc_meta: [skewed.d.baseHost / skewed.d.host, skewed.d.baseGc / skewed.d.host, skewed.d.baseMeta / skewed.d.host].map(r3),
      geometry: { cache_mib: CACHE_MIB, base_mib: BASE_MIB, band_mib: BAND_MIB, op_percent: OP_PERCENT, bands: stats.band_count, band_data_blocks: bandBlocks, logical_blocks: logicalBlocks, ftl_logical_blocks: created.size_bytes / BLOCK, gc_threshold_bands: threshold },
      throttle_events: stats.throttle_events,
      padded_band_closes: stats.padded_band_closes,
      elapsed_s: Math.round((performance.now() - t0) / 1000),
    };
    await n.exportPool({ uuid: onFtl.pool });

    const rows: [string, string, string, string][] = [
      ["WAF, uniform 4 KiB overwrite", result.waf_uniform.toFixed(3), `model ${result.waf_uniform_model.toFixed(3)}`, `ratio ${result.csal_waf_model_ratio} (target <= 1.1: ${result.csal_waf_model_ratio <= 1.1 ? "met" : "NOT met"})`],
      ["WAF, 80/20 skewed overwrite", result.waf_skewed.toFixed(3), `greedy ${result.waf_skewed_model.toFixed(3)}`, `ratio ${result.csal_skewed_waf_vs_greedy_ratio} (target <= 0.8: ${result.csal_skewed_waf_vs_greedy_ratio <= 0.8 ? "met" : "NOT met"})`],
      ["base writes sequential", `${(result.base_sequential_write_fraction * 100).toFixed(1)} %`, `${baseSeq} of ${baseWrites}`, `mean ${result.base_mean_write_kib.toFixed(0)} KiB`],
      ["randwrite 4k QD32 IOPS", `${result.ftl_randwrite_4k_qd32_iops}`, `plain file ${result.base_randwrite_4k_qd32_iops}`, `ratio ${result.csal_vs_base_randwrite_4k_qd32_ratio}`],
      ["map paged to 1/" + MAP_FRACTION + ": randread / randwrite IOPS", `${result.csal_paged_map_vs_resident_randread_4k_qd32_ratio} / ${result.csal_paged_map_vs_resident_randwrite_4k_qd32_ratio} of resident`, `${result.map_page_reads_per_io} page reads, ${result.map_page_writes_per_io} writes an I/O`, `map ${mapBytes / 1024} KiB, limit ${pagedLimit / 1024} KiB`],
      ["FDP media WAF, hot/cold on 2 handles", `${result.fdp_media_waf_two_handles}`, `1 handle ${result.fdp_media_waf_one_handle}`, `ratio ${result.fdp_two_vs_one_handle_media_waf_ratio}`],
      ["randwrite 4k QD32 p99 / p99.9 us", `${result.ftl_randwrite_4k_qd32_p99_us} / ${result.ftl_randwrite_4k_qd32_p999_us}`, `plain file ${result.base_randwrite_4k_qd32_p99_us} / ${result.base_randwrite_4k_qd32_p999_us}`, ""],
    ];
    const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), ["metric", "FTL", "reference", "verdict"][i].length));
    const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ");
    console.log(line(["metric", "FTL", "reference", "verdict"]));
    for (const r of rows) console.log(line(r));
    console.log(JSON.stringify(result));
  } finally {
    if (!process.env.STRATA_CSAL_DIR) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
