// The preview half of `npm run bench:placement`: `pulumi preview` (the real CLI, first preview of
// a fresh stack) of a program with a pool on each of 12 engines and 200 three-replica volumes,
// against a program of 200 no-op dynamic resources, alternating ABAB in one run on one cluster.
// Both programs run as a user runs them: a project outside the repository with the packed SDK
// installed (`import * as strata from "@strata/sdk"`), not the repository's TypeScript sources.
// Key: preview_200_volumes_vs_noop_ratio (target <= 1.5).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStack } from "../cli/pulumi";
import { startCluster } from "../test/helpers/cluster";
import { REPO_ROOT } from "../test/helpers/engine";
import { packSdk, userProject } from "../test/helpers/sdk-project";
import { median } from "./workloads";

const NODES = Number(process.env.STRATA_BENCH_PREVIEW_NODES ?? 12);
const VOLUMES = Number(process.env.STRATA_BENCH_PREVIEW_VOLUMES ?? 200);
const ROUNDS = Number(process.env.STRATA_BENCH_PREVIEW_ROUNDS ?? 2);

export interface PreviewResult {
  readonly volumesMs: number;
  readonly noopMs: number;
  readonly ratio: number;
}

export async function previewBench(log: (line: string) => void): Promise<PreviewResult> {
  const cluster = await startCluster({ nodes: NODES, diskMib: 1024 });
  const scratch = [mkdtempSync(join(tmpdir(), "strata-bench-pack-"))];
  try {
    const tarball = await packSdk(scratch[0]);
    // The fixtures' programs, with the SDK imported by its package name.
    const projects = await Promise.all(
      ["preview-volumes", "preview-noop"].map(async (name) => {
        const program = readFileSync(join(REPO_ROOT, "bench", "fixtures", name, "index.ts"), "utf8").replace('"../../../sdk/index"', '"@strata/sdk"');
        const dir = await userProject({ tarball, name: `strata-bench-${name}`, program });
        scratch.push(dir);
        return dir;
      }),
    );
    const config: Record<string, { value: string; secret?: boolean }> = {
      "strata:token": { value: cluster.nodes[0].token, secret: true },
      volumes: { value: String(VOLUMES) },
    };
    for (const n of cluster.nodes) {
      config[`strata:endpoints.${n.node}`] = { value: n.endpoint };
      config[`strata:disks.${n.node}`] = { value: `file://${join(cluster.home, "cluster", n.node, "disk.img")}` };
    }
    const stacks = await Promise.all(
      projects.map(async (workDir) => {
        const stack = await openStack({ workDir, home: cluster.home, stackName: cluster.stack });
        await stack.setAllConfig(config, true);
        return stack;
      }),
    );
    const times: [number[], number[]] = [[], []];
    for (let round = 0; round < ROUNDS; round++) {
      for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
        const started = process.hrtime.bigint();
        await stacks[i].preview();
        times[i].push(Number(process.hrtime.bigint() - started) / 1e6);
      }
    }
    const volumesMs = median(times[0]);
    const noopMs = median(times[1]);
    log(`preview: ${VOLUMES} volumes (3 replicas) and ${NODES} pools on ${NODES} engines vs ${VOLUMES} no-op dynamic resources, median of ${ROUNDS}`);
    log(`| program | preview ms |`);
    log(`|---------|-----------:|`);
    log(`| ${VOLUMES} volumes | ${volumesMs.toFixed(0)} |`);
    log(`| ${VOLUMES} no-op resources | ${noopMs.toFixed(0)} |`);
    return { volumesMs, noopMs, ratio: volumesMs / noopMs };
  } finally {
    await cluster.down();
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  }
}
