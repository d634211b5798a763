// Text progress bars and ETAs for the operator's view (`strata cluster status` shows one per
// rebuilding nexus child). Pure functions: numbers in, text out, so they are tested without an
// engine and the same line reads the same in a terminal and a log file.
import { formatBytes } from "./cluster";

/** Characters between the brackets of a progress bar. */
export const PROGRESS_BAR_WIDTH = 30;

const MIB = 1024 * 1024;

/**
 * `[#########.....................]` for a fraction in [0, 1]. Out-of-range and NaN fractions
 * are clamped, because a rebuild whose total grew (the nexus was resized) can report done > total
 * for a moment, and a bar must never be wider than its brackets.
 */
export function progressBar(fraction: number, width = PROGRESS_BAR_WIDTH): string {
  const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  // Floor, so the bar is full only when the work is: 99.9% still shows one dot.
  const filled = Math.floor(clamped * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}

/** Whole percent done, floored like the bar (100% only when everything is done). */
export function percentDone(done: number, total: number): number {
  if (!(total > 0)) return 0;
  return Math.min(100, Math.max(0, Math.floor((done * 100) / total)));
}

/** `0m42s`, `12m05s`, `1h02m` (seconds stop mattering past an hour); "-" when unknown. */
export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return "-";
  const whole = Math.ceil(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = whole % 60;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, "0")}m`;
  return `${minutes}m${String(secs).padStart(2, "0")}s`;
}

/** What the engine reports about a running rebuild (RebuildStats in engine.proto). */
export interface RebuildProgress {
  readonly bytes_done: number;
  readonly bytes_total: number;
  /** The engine's rate (bytes done over time since start); 0 when it has none yet. */
  readonly mib_per_s: number;
  /** ms since the epoch; 0 when not reported. */
  readonly start_ms: number;
  /** RebuildStats.state when known: only a running (or flushing) rebuild is moving towards an end. */
  readonly state?: string;
}

/**
 * Seconds until the rebuild is done, or null when nothing says how fast it goes. The engine's
 * own rate comes first; without one, the rate since `start_ms` (bytes done over elapsed time) is
 * the estimate. Nothing copied yet means no rate at all: an ETA then would be a guess.
 */
export function rebuildEtaSeconds(r: RebuildProgress, now_ms: number): number | null {
  // A waiting or paused rebuild has a past rate but no future one.
  if (r.state !== undefined && r.state !== "running" && r.state !== "flushing") return null;
  const remaining_bytes = Math.max(0, r.bytes_total - r.bytes_done);
  if (remaining_bytes === 0 && r.bytes_total > 0) return 0;
  let bytes_per_s = r.mib_per_s > 0 ? r.mib_per_s * MIB : 0;
  if (bytes_per_s <= 0 && r.start_ms > 0 && r.bytes_done > 0) {
    const elapsed_s = (now_ms - r.start_ms) / 1000;
    if (elapsed_s > 0) bytes_per_s = r.bytes_done / elapsed_s;
  }
  return bytes_per_s > 0 ? remaining_bytes / bytes_per_s : null;
}

/** `[#######.......] 47%  1.2 GiB/2.5 GiB  ETA 0m42s` */
export function rebuildProgressLine(r: RebuildProgress, now_ms: number, width = PROGRESS_BAR_WIDTH): string {
  const fraction = r.bytes_total > 0 ? r.bytes_done / r.bytes_total : 0;
  const percent = `${percentDone(r.bytes_done, r.bytes_total)}%`.padStart(4);
  return `${progressBar(fraction, width)} ${percent}  ${formatBytes(r.bytes_done)}/${formatBytes(r.bytes_total)}  ETA ${formatEta(rebuildEtaSeconds(r, now_ms))}`;
}
