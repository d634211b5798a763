// Runs fio (the reference every storage engineer trusts) and reads its JSON result.
import { execFileSync, spawnSync } from "node:child_process";

export interface FioResult {
  readonly iops: number;
  readonly mib_per_s: number;
  readonly lat_p50_us: number;
  readonly lat_p99_us: number;
}

export function ensureFio(): void {
  if (spawnSync("fio", ["--version"]).status === 0) return;
  if (process.getuid?.() === 0) {
    execFileSync("bash", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio"], { stdio: "inherit" });
    return;
  }
  throw new Error("fio is not installed: apt-get install -y fio");
}

export function runFio(opts: {
  filename: string;
  size_bytes: number;
  rw: "randread" | "randwrite" | "read" | "write";
  block_size_bytes: number;
  queue_depth: number;
  runtime_s: number;
}): FioResult {
  const out = execFileSync(
    "fio",
    [
      "--name=ref",
      `--filename=${opts.filename}`,
      `--size=${opts.size_bytes}`,
      "--ioengine=io_uring",
      "--direct=1",
      `--rw=${opts.rw}`,
      `--bs=${opts.block_size_bytes}`,
      `--iodepth=${opts.queue_depth}`,
      `--runtime=${opts.runtime_s}`,
      "--time_based",
      "--randrepeat=0",
      "--norandommap",
      "--output-format=json",
    ],
    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  const job = JSON.parse(out).jobs[0];
  const side = opts.rw.includes("read") ? job.read : job.write;
  const pct = side.clat_ns.percentile as Record<string, number>;
  return {
    iops: side.iops,
    mib_per_s: side.bw_bytes / (1024 * 1024),
    lat_p50_us: (pct["50.000000"] ?? 0) / 1000,
    lat_p99_us: (pct["99.000000"] ?? 0) / 1000,
  };
}
