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
