// The workloads every Strata benchmark runs, so storage and network results line up row by row.
export interface Workload {
  readonly name: string;
  readonly pattern: "randread" | "randwrite" | "read" | "write";
  readonly block_size_bytes: number;
  readonly queue_depth: number;
}

export const WORKLOADS: readonly Workload[] = [
  { name: "randread_4k_qd1", pattern: "randread", block_size_bytes: 4096, queue_depth: 1 },
  { name: "randread_4k_qd32", pattern: "randread", block_size_bytes: 4096, queue_depth: 32 },
  { name: "randwrite_4k_qd1", pattern: "randwrite", block_size_bytes: 4096, queue_depth: 1 },
  { name: "randwrite_4k_qd32", pattern: "randwrite", block_size_bytes: 4096, queue_depth: 32 },
  { name: "read_128k_qd8", pattern: "read", block_size_bytes: 128 * 1024, queue_depth: 8 },
  { name: "write_128k_qd8", pattern: "write", block_size_bytes: 128 * 1024, queue_depth: 8 },
];

/** STRATA_BENCH_ONLY=regex limits a run to matching names (for quick checks). */
export const ONLY = new RegExp(process.env.STRATA_BENCH_ONLY ?? ".");

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The reactor counters a benchmark reports per I/O (native ReactorCounters, summed over reactors). */
export interface CounterTotals {
  sleeps: number;
  enters: number;
  posts_remote: number;
  wakeup_writes: number;
  polls: number;
  /** io_uring operations completed (disk I/O, socket sends and receives, timers). */
  completions: number;
  /** CPU time of the whole process (every thread, user + system), microseconds. */
  cpu_us: number;
}

/** The reactors' counters summed, plus this process's CPU time now. */
export function sumCounters(all: readonly Omit<CounterTotals, "cpu_us">[]): CounterTotals {
  const t: CounterTotals = { sleeps: 0, enters: 0, posts_remote: 0, wakeup_writes: 0, polls: 0, completions: 0, cpu_us: 0 };
  for (const c of all) for (const k of ["sleeps", "enters", "posts_remote", "wakeup_writes", "polls", "completions"] as const) t[k] += c[k];
  const cpu = process.cpuUsage();
  t.cpu_us = cpu.user + cpu.system;
  return t;
}

/** (after - before) / ops for every counter: how many of each one I/O cost. */
export function perIo(before: CounterTotals, after: CounterTotals, ops: number): CounterTotals {
  const t = {} as CounterTotals;
  for (const k of Object.keys(before) as (keyof CounterTotals)[]) t[k] = ops > 0 ? (after[k] - before[k]) / ops : 0;
  return t;
}
