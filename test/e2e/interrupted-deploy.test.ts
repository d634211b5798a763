// Interrupted deployments converge. The Pulumi CLI (and with it the language host and the
// provider) is killed with SIGKILL at random points of `up`s that create, change and delete
// volumes, and of `destroy`s; the stale lock it leaves is cleared the way `strata up` does it,
// and the next `up` (or `destroy`) must leave the engines holding exactly what the state says
// (no orphan pool, replica, share or nexus) while a host keeps writing to one volume through every
// change and reads every byte back after each one.
//
// STRATA_KILL_POINTS (default 20) sets how many kills each phase makes; STRATA_KILL_SEED
// replays a run (the seed is logged).
import test, { ExecutionContext } from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { recoverInterruptedUpdate, openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";
import { expectClean, VerifyingLoad, VolumeModel } from "../helpers/load";
import { seededRandom } from "../helpers/random";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "interrupted");
const PROJECT = "strata-interrupted";
const PULUMI = join(REPO_ROOT, "tools", "pulumi", "bin", "pulumi");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000d6";
const MiB = 1024 * 1024;
const KILL_POINTS = Number(process.env.STRATA_KILL_POINTS ?? 20);
const SEED = Number(process.env.STRATA_KILL_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The program's states the `up`s move between (fixtures/interrupted/index.ts reads them). */
const STATES = [
  { replicas: "3", thin: "true", extras: "2" },
  { replicas: "2", thin: "false", extras: "3" },
  { replicas: "1", thin: "false", extras: "1" },
  { replicas: "3", thin: "true", extras: "0" },
  { replicas: "2", thin: "true", extras: "2" },
];

let cluster: TestCluster;
let stack: Stack;

test.before(async () => {
  cluster = await startCluster({ nodes: 3, diskMib: 512 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  await stack.setAllConfig(stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), frontend: FRONTEND, replicas: "1", thin: "true", extras: "0" }), true);
});
test.after.always(async () => {
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
});

interface Run {
  /** The run ended by itself (before the kill, if one was due). */
  readonly finished: boolean;
  readonly code: number | null;
  readonly output: string;
  /** From the first resource step to the end (or the kill). */
  readonly stepsMs: number;
  /** Operations the state recorded as in flight when the CLI died ("creating Volume extra-1"). */
  readonly pending: string[];
  /** What recoverInterruptedUpdate repaired after the kill (the stale lock, a broken checkpoint sidecar). */
  readonly repairs: string[];
}

/** The pulumi command and its whole session (language host, provider plugins) killed together. */
function killSession(child: ChildProcess): void {
  spawnSync("pkill", ["-KILL", "-s", String(child.pid)]);
  try {
    process.kill(-child.pid!, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/**
 * Runs `pulumi <command>` and, when `killAfterMs` is given, SIGKILLs it that long after its first
 * resource step started, as a power loss or an OOM kill would.
 */
async function runPulumi(command: "up" | "destroy", killAfterMs?: number): Promise<Run> {
  const child = spawn(PULUMI, [command, "--yes", "--skip-preview", "--non-interactive", "--stack", cluster.stack], {
    cwd: FIXTURE,
    env: { ...process.env, ...cluster.pulumiEnv },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  let code: number | null = null;
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on("close", (c) => {
      exited = true;
      code = c;
      resolve();
    }),
  );
  let firstStepAt = 0;
  const stepStarted = new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      output += d.toString();
      if (!firstStepAt && /strata:(Pool|Volume)\s+\S+\s+(creating|updating|deleting)/.test(output)) {
        firstStepAt = Date.now();
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
  });
  await Promise.race([stepStarted, exit]);
  if (!exited && killAfterMs !== undefined) await Promise.race([new Promise((r) => setTimeout(r, killAfterMs)), exit]);
  const finished = exited || killAfterMs === undefined;
  if (!exited && killAfterMs !== undefined) killSession(child);
  await exit;
  const stepsMs = firstStepAt ? Date.now() - firstStepAt : 0;
  // What `strata up` does first: clear the dead CLI's lock, repair what its kill broke.
  const repairs = recoverInterruptedUpdate(cluster.home, PROJECT, cluster.stack);
  const deployment = (await stack.exportStack()).deployment as { pending_operations?: { type: string; resource: { urn: string } }[] };
  const pending = (deployment.pending_operations ?? []).map((p) => `${p.type} ${p.resource.urn.split("::").slice(-2).join(" ")}`);
  return { finished, code, output, stepsMs, pending, repairs };
}

/** A run that must succeed; returns how long its resource steps took. */
async function completes(command: "up" | "destroy"): Promise<number> {
  const r = await runPulumi(command);
  if (r.code !== 0) throw new Error(`pulumi ${command} failed:\n${r.output}`);
  return r.stepsMs;
}

async function pulumi(...args: string[]): Promise<number> {
  const started = Date.now();
  const r = await cluster.pulumiIn({ cwd: FIXTURE, stack: cluster.stack }, ...args);
  if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  return Date.now() - started;
}

interface StateView {
  pools: { uuid: string; node: string }[];
  volumes: { placement: { replicaUuid: string; node: string }[]; nexusUuid: string; nexusNode: string; frontendHostNqn: string }[];
}

async function stateView(): Promise<StateView> {
  const resources = ((await stack.exportStack()).deployment as { resources?: { type: string; outputs?: Record<string, unknown> }[] }).resources ?? [];
  const of = (type: string) => resources.filter((r) => r.type === `pulumi-nodejs:dynamic/strata:${type}`).map((r) => r.outputs ?? {});
  return {
    pools: of("Pool") as unknown as StateView["pools"],
    volumes: of("Volume") as unknown as StateView["volumes"],
  };
}

/** Every engine holds exactly what the state names: pools, replicas, nexuses and shares. */
async function enginesMatchState(t: ExecutionContext, when: string): Promise<void> {
  const s = await stateView();
  for (const target of cluster.nodes) {
    const node = target.node;
    const engine = cluster.connect(node);
    try {
      const [pools, replicas, nexuses, subsystems] = await Promise.all([
        engine.call("ListPools", {}),
        engine.call("ListReplicas", { pool: "" }),
        engine.call("ListNexus", {}),
        engine.call("ListSubsystems", {}),
      ]);
      const sorted = (xs: string[]) => [...xs].sort();
      const expected = {
        pools: sorted(s.pools.filter((p) => p.node === node).map((p) => p.uuid)),
        replicas: sorted(s.volumes.flatMap((v) => v.placement.filter((r) => r.node === node).map((r) => r.replicaUuid))),
        nexuses: sorted(s.volumes.filter((v) => v.nexusNode === node).map((v) => v.nexusUuid)),
        // A replica is shared when its nexus is on another node; a nexus when it has a frontend.
        shares: sorted([
          ...s.volumes.flatMap((v) => v.placement.filter((r) => r.node === node && r.node !== v.nexusNode).map((r) => `replica ${r.replicaUuid}`)),
          ...s.volumes.filter((v) => v.nexusNode === node && v.frontendHostNqn).map((v) => `nexus ${v.nexusUuid}`),
        ]),
      };
      const actual = {
        pools: sorted(pools.pools.map((p) => p.uuid)),
        replicas: sorted(replicas.replicas.map((r) => r.uuid)),
        nexuses: sorted(nexuses.nexuses.map((n) => n.uuid)),
        shares: sorted(subsystems.subsystems.map((x) => `${x.kind} ${x.replica_uuid}`)),
      };
      t.deepEqual(actual, expected, `${when}: ${node} holds exactly what the state says`);
    } finally {
      engine.close();
    }
  }
}

async function setState(state: Record<string, string>): Promise<void> {
  await stack.setAllConfig(Object.fromEntries(Object.entries(state).map(([k, value]) => [k, { value }])));
}

test.serial(`${KILL_POINTS} SIGKILLs of the Pulumi CLI during ups that create, change and delete volumes: the next up converges, nothing leaks, no byte is lost`, async (t) => {
  t.timeout(KILL_POINTS * 90_000);
  t.log(`seed ${SEED} (STRATA_KILL_SEED=${SEED} replays it)`);
  const random = seededRandom(SEED);
  let longestStepsMs = await completes("up");
  const nexus = (await stack.outputs()).nexus.value as { port: number; nqn: string };
  const secret = (await stack.outputs()).frontendDhchapSecret.value as string;
  const load = await VerifyingLoad.connect(nexus.port, nexus.nqn, FRONTEND, new VolumeModel(64 * MiB), secret);
  t.teardown(() => load.close());
  for (let block = 0; block < load.model.blocks; block += 32) t.is(await load.writeOnce(block, 32), 0);
  load.start(2, 0.3);

  let interrupted = 0;
  for (let i = 0; i < KILL_POINTS; i++) {
    const iterationStart = Date.now();
    const state = STATES[i % STATES.length];
    await setState(state);
    // Uniform over the run's resource steps: from its first step to as long as the longest up's steps took.
    const delayMs = Math.floor(random() * longestStepsMs);
    const phases: string[] = [];
    let mark = Date.now();
    const phase = (name: string) => {
      phases.push(`${name} ${((Date.now() - mark) / 1000).toFixed(1)}`);
      mark = Date.now();
    };
    const killed = await runPulumi("up", delayMs);
    phase("killed");
    if (killed.pending.length > 0) interrupted++;
    const what = `#${i} ${JSON.stringify(state)} +${delayMs} ms: ${killed.finished ? "finished first" : killed.pending.join(", ") || "between steps"}`;
    // A CLI that finished leaves no lock to clear; a killed one leaves at most one, and none when
    // the kill landed after it had released its lock but before it exited (CI caught that window).
    // Either way the next `up` below must run: a stale lock left behind would fail it.
    const lockRepairs = killed.repairs.filter((r) => r.includes("lock")).length;
    t.true(lockRepairs <= (killed.finished ? 0 : 1), `#${i}: ${lockRepairs} locks cleared (${killed.finished ? "finished" : "killed"})`);
    if (killed.repairs.length > 1) t.log(`#${i}: ${killed.repairs.join("; ")}`);
    longestStepsMs = Math.max(longestStepsMs, await completes("up"));
    phase("up");
    await pulumi("preview", "--expect-no-changes");
    phase("preview");
    await enginesMatchState(t, `#${i} after the up that followed the kill`);
    phase("check");
    await load.stop();
    expectClean(t, load.counters);
    t.deepEqual(await load.verifyAll(), [], `#${i}: every byte the host wrote reads back`);
    load.start(2, 0.3);
    phase("verify");
    t.log(`${what} (${((Date.now() - iterationStart) / 1000).toFixed(0)} s: ${phases.join(", ")})`);
  }
  await load.stop();
  // A kill that never lands inside a resource step tests nothing: most must.
  t.true(interrupted >= KILL_POINTS / 4, `${interrupted} of ${KILL_POINTS} kills interrupted a resource step`);
});

test.serial(`${KILL_POINTS} SIGKILLs of the Pulumi CLI during destroys: the next destroy leaves every engine empty`, async (t) => {
  t.timeout(KILL_POINTS * 90_000);
  const random = seededRandom(SEED + 1);
  let interrupted = 0;
  let longestStepsMs = 0;
  for (let i = 0; i < KILL_POINTS; i++) {
    await setState(STATES[i % STATES.length]);
    await completes("up");
    if (i === 0) {
      longestStepsMs = await completes("destroy");
      await completes("up");
    }
    const delayMs = Math.floor(random() * longestStepsMs);
    const killed = await runPulumi("destroy", delayMs);
    // Only a delete in flight counts: Pulumi keeps a create that an earlier kill interrupted among
    // the pending operations through later destroys.
    if (killed.pending.some((p) => p.startsWith("deleting"))) interrupted++;
    t.log(`#${i} +${delayMs} ms: ${killed.finished ? "finished first" : killed.pending.join(", ") || "between steps"}`);
    if (killed.repairs.length > 1) t.log(`#${i}: ${killed.repairs.join("; ")}`);
    longestStepsMs = Math.max(longestStepsMs, await completes("destroy"));
    await enginesMatchState(t, `#${i} after the destroy that followed the kill`);
    const s = await stateView();
    t.deepEqual([s.pools.length, s.volumes.length], [0, 0], `#${i}: the state is empty`);
  }
  t.true(interrupted >= KILL_POINTS / 4, `${interrupted} of ${KILL_POINTS} kills interrupted a resource step`);
});
