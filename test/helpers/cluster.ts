// A local cluster for end-to-end tests, started the way a user starts one: `strata cluster up`
// with its own STRATA_HOME (disks, token, Pulumi backend) and its own stack name, so tests
// never touch the developer's `.strata/` or `dev` stack.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectEngine, EngineConnection, EngineTarget } from "../../common/client";
import { REPO_ROOT } from "./engine";
import { createServer } from "node:net";

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export function run(cmd: string, args: readonly string[], env: Record<string, string>, timeout_ms = 300_000, cwd = REPO_ROOT): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeout_ms);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

async function portsFree(base: number, count: number): Promise<boolean> {
  for (let port = base; port < base + count; port++) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (!free) return false;
  }
  return true;
}

export interface TestCluster {
  readonly home: string;
  readonly stack: string;
  readonly env: Record<string, string>;
  readonly nodes: EngineTarget[];
  /** The environment the Pulumi CLI runs with (local file backend, passphrase, PULUMI_HOME). */
  readonly pulumiEnv: Record<string, string>;
  strata(...args: string[]): Promise<RunResult>;
  pulumi(...args: string[]): Promise<RunResult>;
  /** The Pulumi CLI on another project directory and stack (a program outside the repository). */
  pulumiIn(project: { cwd: string; stack: string }, ...args: string[]): Promise<RunResult>;
  connect(node: string): EngineConnection;
  /** Runs fn against every node's engine. */
  eachNode<T>(fn: (engine: EngineConnection) => Promise<T>): Promise<T[]>;
  down(): Promise<void>;
}

export async function startCluster(opts: { nodes?: number; diskMib?: number } = {}): Promise<TestCluster> {
  const nodes = opts.nodes ?? 3;
  const home = mkdtempSync(join(tmpdir(), "strata-e2e-"));
  const stack = `e2e-${randomBytes(4).toString("hex")}`;
  const env = { STRATA_HOME: home, STRATA_STACK: stack };
  let base = 0;
  for (let attempt = 0; attempt < 20 && base === 0; attempt++) {
    const candidate = 20000 + Math.floor(Math.random() * 18000);
    // The engines use base+i for gRPC, +1000 and +2000 for NVMe/TCP (see cli/cluster.ts).
    if ((await portsFree(candidate, nodes)) && (await portsFree(candidate + 1000, nodes)) && (await portsFree(candidate + 2000, nodes))) base = candidate;
  }
  const strata = (...args: string[]) => run(process.execPath, [join(REPO_ROOT, "bin", "strata.js"), ...args], env);
  const up = await strata("cluster", "up", "--nodes", String(nodes), "--base-port", String(base), "--disk-mib", String(opts.diskMib ?? 512));
  if (up.code !== 0) throw new Error(`strata cluster up failed:\n${up.stdout}\n${up.stderr}`);
  const record = JSON.parse(readFileSync(join(home, "cluster", "cluster.json"), "utf8")) as {
    token_file: string;
    nodes: { node: string; endpoint: string }[];
  };
  const token = readFileSync(record.token_file, "utf8").trim();
  const targets = record.nodes.map((n) => ({ node: n.node, endpoint: n.endpoint, token }));
  const pulumiEnv = {
    ...env,
    PULUMI_BACKEND_URL: `file://${join(home, "pulumi-state")}`,
    PULUMI_CONFIG_PASSPHRASE: readFileSync(join(home, "pulumi-passphrase"), "utf8").trim(),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_HOME: join(home, "pulumi-home"),
  };
  const cluster: TestCluster = {
    home,
    stack,
    env,
    nodes: targets,
    pulumiEnv,
    strata,
    pulumi: (...args) => run(join(REPO_ROOT, "tools", "pulumi", "bin", "pulumi"), [...args, "--stack", stack, "--non-interactive"], pulumiEnv),
    pulumiIn: (project, ...args) =>
      run(join(REPO_ROOT, "tools", "pulumi", "bin", "pulumi"), [...args, "--stack", project.stack, "--non-interactive"], pulumiEnv, 300_000, project.cwd),
    connect: (node) => connectEngine(targets.find((t) => t.node === node)!),
    async eachNode(fn) {
      return Promise.all(
        targets.map(async (t) => {
          const c = connectEngine(t);
          try {
            return await fn(c);
          } finally {
            c.close();
          }
        }),
      );
    },
    async down() {
      await strata("cluster", "down", "--purge");
      rmSync(join(REPO_ROOT, `Pulumi.${stack}.yaml`), { force: true });
      rmSync(home, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** The stack config an e2e program needs: the secret token, every engine's endpoint, and `extra` plain values. */
export function stackConfig(cluster: TestCluster, extra: Record<string, string>): Record<string, { value: string; secret?: boolean }> {
  const config: Record<string, { value: string; secret?: boolean }> = { "strata:token": { value: cluster.nodes[0].token, secret: true } };
  for (const [k, v] of Object.entries(extra)) config[k] = { value: v };
  for (const n of cluster.nodes) config[`strata:endpoints.${n.node}`] = { value: n.endpoint };
  return config;
}
