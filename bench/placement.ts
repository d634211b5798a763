// `npm run bench:placement`: how long placement takes for a whole plan, and that it grows
// linearly with the number of volumes (placing one volume is O(pools), nothing per volume
// already placed).
//
// Inventory: 1,000 nodes with one pool each (1 TiB, 4 MiB clusters, a few replicas already),
// node label zone in 10 zones. Plans of 1,000 / 2,000 / 5,000 / 10,000 new volumes of 3
// replicas each, all placed into one ledger (as one `pulumi up` does): half thin, half thick,
// 4-64 GiB; two in three spread over zones required, the rest preferred; every fourth volume in
// one of 97 anti-affinity groups. Each size runs ROUNDS times (5; a fresh ledger each time,
// sizes interleaved), median.
// Checks every plan (one replica per node, distinct zones when required, no two volumes of a
// group on a node) outside the timed part.
// Prints a table and, as the LAST line, one JSON object.
import { PlacementLedger, PlacementRequest, placeVolume, PoolCandidate, VolumePlacement } from "../provider/placement";
import { median } from "./workloads";
import { previewBench } from "./preview";

const GiB = 1024 ** 3;
const NODES = Number(process.env.STRATA_BENCH_NODES ?? 1000);
const ZONES = 10;
const ROUNDS = Number(process.env.STRATA_BENCH_ROUNDS ?? 5);
const SIZES = [1000, 2000, 5000, 10000];
/** Time per volume at 10k over time per volume at 1k above this fails the run: not linear. */
const MAX_LINEARITY_RATIO = 2;

function inventory(): PoolCandidate[] {
  return Array.from({ length: NODES }, (_, i) => {
    const node = `node-${String(i).padStart(4, "0")}`;
    const existing = i % 7; // some pools already hold replicas
    return {
      node,
      uuid: i % 50 === 49 ? "" : `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`, // 2% declared, not created yet
      name: "p1",
      labels: { class: "ssd" },
      node_labels: { zone: `zone-${i % ZONES}`, rack: `rack-${i % 40}` },
      online: true,
      draining: i % 100 === 99, // 1% draining
      capacity_bytes: 1024 * GiB,
      used_bytes: existing * 8 * GiB,
      committed_bytes: existing * 16 * GiB,
      cluster_size_bytes: 4 * 1024 * 1024,
      replica_count: existing,
    };
  });
}

function requestFor(i: number): PlacementRequest {
  return {
    volume: `vol-${i}`,
    size_bytes: (4 + (i % 16) * 4) * GiB,
    thin: i % 2 === 0,
    replicas: 3,
    pool_labels: { class: "ssd" },
    pools: [],
    node_selector: {},
    spread: { key: "zone", mode: i % 3 === 2 ? "preferred" : "required" },
    group: i % 4 === 0 ? `group-${i % 97}` : "",
  };
}

function run(pools: readonly PoolCandidate[], volumes: number): { ms: number; plans: VolumePlacement[] } {
  const requests = Array.from({ length: volumes }, (_, i) => requestFor(i));
  const plans: VolumePlacement[] = new Array(volumes);
  const start = process.hrtime.bigint();
  const ledger = new PlacementLedger(pools);
  for (let i = 0; i < volumes; i++) plans[i] = placeVolume(ledger, requests[i], [], (slot) => `${requests[i].volume}-r${slot}`);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  return { ms, plans };
}

function check(pools: readonly PoolCandidate[], plans: readonly VolumePlacement[]): void {
  const zoneOf = new Map(pools.map((p) => [p.node, p.node_labels.zone]));
  const groupNodes = new Map<string, Map<string, string>>();
  plans.forEach((plan, i) => {
    const req = requestFor(i);
    const nodes = plan.placement.map((r) => r.node);
    if (plan.placement.length !== 3 || new Set(nodes).size !== 3) throw new Error(`${req.volume}: not 3 replicas on 3 nodes: ${nodes}`);
    if (req.spread?.mode === "required" && new Set(nodes.map((n) => zoneOf.get(n))).size !== 3) throw new Error(`${req.volume}: zones repeat: ${nodes}`);
    if (req.group) {
      let members = groupNodes.get(req.group);
      if (!members) groupNodes.set(req.group, (members = new Map()));
      for (const n of nodes) {
        if (members.has(n)) throw new Error(`${req.volume} and ${members.get(n)} of ${req.group} share node ${n}`);
        members.set(n, req.volume);
      }
    }
  });
}

async function main(): Promise<void> {
  const pools = inventory();
  run(pools, 500); // warm up the JIT
  // Rounds interleave the sizes (forward, then backward) so a noisy neighbour hits all sizes alike.
  const times = new Map<number, number[]>(SIZES.map((n) => [n, []]));
  const last = new Map<number, VolumePlacement[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const volumes of round % 2 === 0 ? SIZES : [...SIZES].reverse()) {
      const { ms, plans } = run(pools, volumes);
      times.get(volumes)!.push(ms);
      last.set(volumes, plans);
    }
  }
  const rows = SIZES.map((volumes) => {
    const plans = last.get(volumes)!;
    check(pools, plans);
    const perPool = new Map<string, number>();
    for (const plan of plans) for (const r of plan.placement) perPool.set(r.node, (perPool.get(r.node) ?? 0) + 1);
    const ms = median(times.get(volumes)!);
    return { volumes, ms, usPerVolume: (ms * 1000) / volumes, maxReplicasPerPool: Math.max(...perPool.values()) };
  });

  console.log(`placement: ${NODES} nodes x 1 pool, ${ZONES} zones, 3 replicas per volume, median of ${ROUNDS} rounds`);
  console.log("| volumes | total ms | us per volume | most new replicas on one pool |");
  console.log("|--------:|---------:|--------------:|------------------------------:|");
  for (const r of rows) console.log(`| ${r.volumes} | ${r.ms.toFixed(1)} | ${r.usPerVolume.toFixed(1)} | ${r.maxReplicasPerPool} |`);
  const at = (n: number) => rows.find((r) => r.volumes === n)!;
  const linearity = at(10000).usPerVolume / at(1000).usPerVolume;
  const linear = linearity <= MAX_LINEARITY_RATIO;
  console.log(`linearity: us per volume at 10k / at 1k = ${linearity.toFixed(2)} (${linear ? "linear" : "NOT linear"}: limit ${MAX_LINEARITY_RATIO})`);
  const round1 = (x: number) => Math.round(x * 10) / 10;
  // The same plan through the real CLI against real engines (STRATA_BENCH_SKIP_PREVIEW=1: pure part only).
  const preview = process.env.STRATA_BENCH_SKIP_PREVIEW ? null : await previewBench((line) => console.log(line));
  if (preview) console.log(`preview ratio: ${preview.ratio.toFixed(2)} (target <= 1.5)`);
  console.log(
    JSON.stringify({
      placement_1k_volumes_1k_nodes_ms: round1(at(1000).ms),
      placement_2k_volumes_1k_nodes_ms: round1(at(2000).ms),
      placement_5k_volumes_1k_nodes_ms: round1(at(5000).ms),
      placement_10k_volumes_1k_nodes_ms: round1(at(10000).ms),
      placement_us_per_volume_1k: round1(at(1000).usPerVolume),
      placement_us_per_volume_10k: round1(at(10000).usPerVolume),
      placement_linearity_ratio_10k_1k: Math.round(linearity * 100) / 100,
      placement_linear: linear,
      ...(preview
        ? {
            preview_200_volumes_ms: Math.round(preview.volumesMs),
            preview_200_noop_ms: Math.round(preview.noopMs),
            preview_200_volumes_vs_noop_ratio: Math.round(preview.ratio * 100) / 100,
          }
        : {}),
    }),
  );
  if (!linear) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
