// The model `npm run bench:csal` (issue 11) will hold the FTL's measured write amplification
// against: a pure simulation of a log-structured base device with greedy garbage collection.
// The logical space is `logicalBlocks` blocks; the base has `bands` bands of `bandBlocks` each,
// and over-provisioning is what the bands hold beyond the logical space. Host writes (what
// compaction drains from the cache) append to the open hot band; when free bands fall to the
// threshold, GC takes the closed band with the fewest valid blocks and appends its valid blocks
// to the open band (the cold one when hot/cold separation is on). Deterministic for a seed.
//
// WAF here is base blocks written / host blocks written, measured after a warm-up that writes
// the logical space `warmupPasses` times, so it is the steady state, not the fill.

import { seededRandom } from "../test/helpers/random";

export interface ModelConfig {
  readonly bands: number;
  readonly bandBlocks: number;
  /** Over-provisioning: the fraction of the base's blocks the logical space leaves free (0.2 = 20 %). */
  readonly opFraction: number;
  /** GC runs while free bands are at or below this. */
  readonly gcFreeBands: number;
  /** GC-relocated blocks go to their own open band (cold), apart from host writes (hot). */
  readonly separateHotCold: boolean;
  /**
   * How GC picks its victim: "greedy" (fewest valid blocks; the default) or "cost-benefit"
   * (LFS: most (1 - u) * age / (1 + u), u the valid fraction, age the writes since the band
   * closed), which leaves recently written (hot) bands to invalidate further.
   */
  readonly victimPolicy?: "greedy" | "cost-benefit";
  /**
   * With separateHotCold: how many GC streams relocated blocks are split into by age (a block
   * relocated from a band of stream k goes to stream min(k + 1, gcStreams)); default 1.
   */
  readonly gcStreams?: number;
  readonly seed: number;
}

export interface Workload {
  /** Fraction of writes that go to the hot part of the space (0.8), and the hot part's size (0.2); uniform: 1 and 1. */
  readonly hotWriteFraction: number;
  readonly hotSpaceFraction: number;
  readonly warmupPasses: number;
  readonly measuredPasses: number;
}

export const UNIFORM: Workload = { hotWriteFraction: 1, hotSpaceFraction: 1, warmupPasses: 3, measuredPasses: 3 };
export const SKEWED_80_20: Workload = { hotWriteFraction: 0.8, hotSpaceFraction: 0.2, warmupPasses: 3, measuredPasses: 3 };

export interface ModelResult {
  readonly logicalBlocks: number;
  readonly hostBlocks: number;
  readonly relocatedBlocks: number;
  readonly waf: number;
  readonly gcRuns: number;
}

const NONE = -1;

export function simulateGreedy(config: ModelConfig, workload: Workload): ModelResult {
  const { bands, bandBlocks } = config;
  if (bands < config.gcFreeBands + 3) throw new Error(`need more than ${config.gcFreeBands + 3} bands, got ${bands}`);
  const logicalBlocks = Math.floor(bands * bandBlocks * (1 - config.opFraction));
  // Physical block p = band * bandBlocks + offset. l2p: logical -> physical; p2l: physical -> logical.
  const l2p = new Int32Array(logicalBlocks).fill(NONE);
  const p2l = new Int32Array(bands * bandBlocks).fill(NONE);
  const valid = new Int32Array(bands);
  const closed = new Uint8Array(bands);
  const closedAt = new Float64Array(bands);
  let clock = 0;
  const free: number[] = [];
  for (let b = bands - 1; b >= 0; b--) free.push(b);
  const streams = config.separateHotCold ? Math.max(1, config.gcStreams ?? 1) : 0;
  // Stream 0 takes host writes; streams 1..n what GC relocates (without separation, stream 0 too).
  const open = Array.from({ length: streams + 1 }, () => ({ band: free.pop()!, fill: 0 }));
  const streamOf = new Int32Array(bands);
  open.forEach((stream, i) => (streamOf[stream.band] = i));
  let hostBlocks = 0;
  let relocatedBlocks = 0;
  let gcRuns = 0;
  let counting = false;

  const append = (stream: { band: number; fill: number }, logical: number) => {
    if (stream.fill === bandBlocks) {
      closed[stream.band] = 1;
      closedAt[stream.band] = clock;
      const next = free.pop();
      if (next === undefined) throw new Error("out of free bands: the GC threshold is too low for this geometry");
      stream.band = next;
      stream.fill = 0;
      streamOf[next] = open.indexOf(stream);
    }
    const old = l2p[logical];
    if (old !== NONE) {
      p2l[old] = NONE;
      valid[Math.floor(old / bandBlocks)]--;
    }
    const p = stream.band * bandBlocks + stream.fill++;
    l2p[logical] = p;
    p2l[p] = logical;
    valid[stream.band]++;
  };

  const collect = () => {
    while (free.length <= config.gcFreeBands) {
      let victim = NONE;
      if (config.victimPolicy === "cost-benefit") {
        let best = -1;
        for (let b = 0; b < bands; b++) {
          if (!closed[b]) continue;
          const u = valid[b] / bandBlocks;
          const score = ((1 - u) * (clock - closedAt[b] + 1)) / (1 + u);
          if (score > best) [best, victim] = [score, b];
        }
      } else {
        for (let b = 0; b < bands; b++) if (closed[b] && (victim === NONE || valid[b] < valid[victim])) victim = b;
      }
      if (victim === NONE) throw new Error("no closed band to collect");
      gcRuns++;
      const target = streams === 0 ? open[0] : open[Math.min(streamOf[victim] + 1, streams)];
      for (let off = 0; off < bandBlocks && valid[victim] > 0; off++) {
        const logical = p2l[victim * bandBlocks + off];
        if (logical === NONE) continue;
        append(target, logical);
        if (counting) relocatedBlocks++;
      }
      closed[victim] = 0;
      free.push(victim);
    }
  };

  const random = seededRandom(config.seed);
  const hotBlocks = Math.max(1, Math.floor(logicalBlocks * workload.hotSpaceFraction));
  const pick = () => {
    if (random() < workload.hotWriteFraction) return Math.floor(random() * hotBlocks);
    return hotBlocks + Math.floor(random() * Math.max(1, logicalBlocks - hotBlocks)) ;
  };
  // Fill sequentially first (a fresh device), then overwrite at random.
  for (let l = 0; l < logicalBlocks; l++) {
    append(open[0], l);
    collect();
  }
  const total = (workload.warmupPasses + workload.measuredPasses) * logicalBlocks;
  for (let i = 0; i < total; i++) {
    counting = i >= workload.warmupPasses * logicalBlocks;
    clock++;
    append(open[0], Math.min(pick(), logicalBlocks - 1));
    if (counting) hostBlocks++;
    collect();
  }
  return { logicalBlocks, hostBlocks, relocatedBlocks, waf: (hostBlocks + relocatedBlocks) / hostBlocks, gcRuns };
}
