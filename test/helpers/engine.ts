// Starts real strata-engine processes for tests: a temp data dir, a token file, a free
// loopback port. Nothing is faked: the test talks to the engine over gRPC like the provider.
import { ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connectEngine, EngineConnection, EngineTarget } from "../../common/client";

export const REPO_ROOT = resolve(__dirname, "..", "..", "..");
export const ENGINE_BIN = join(REPO_ROOT, "bin", "strata-engine.js");

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * A free port below the kernel's ephemeral range (32768+), so no other engine's "any free port"
 * listener can take it between tests or across this engine's restarts.
 */
export async function freeFixedPort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const free = await new Promise<boolean>((resolveFree) => {
      const server = createServer();
      server.once("error", () => resolveFree(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolveFree(true)));
    });
    if (free) return port;
  }
}

/** The NVMe/TCP port an engine listens on, from its latest "engine ready" log line. */
export function nvmfPortOf(e: TestEngine): number {
  const ready = e.logs.split("\n").filter((l) => l.includes('"engine ready"')).pop()!;
  return JSON.parse(ready).nvmf_port as number;
}

export interface TestEngine {
  readonly target: EngineTarget;
  readonly dataDir: string;
  readonly dir: string;
  process: ChildProcess;
  logs: string;
  connect(): EngineConnection;
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  /** Starts the engine again on the same port, data dir and token. */
  restart(): Promise<void>;
}

export async function startEngine(
  opts: {
    node?: string;
    labels?: string;
    dir?: string;
    /** Serve the FaultInjection API (tests only). */
    faultInjection?: boolean;
    /** Keep one NVMe/TCP port across restarts (hosts reconnect to the same address). */
    fixedNvmfPort?: boolean;
    cores?: number;
    /**
     * --device-dir flags. Default: the test's dir, which holds the data dir and the disks tests
     * create beside it; [] passes none, so the engine's default (its data dir) applies.
     */
    deviceDirs?: string[];
    /** More flags, e.g. --dhchap-secret-file. */
    extraArgs?: readonly string[];
  } = {},
): Promise<TestEngine> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "strata-engine-test-"));
  const token = randomBytes(24).toString("base64url");
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, token);
  const port = await freePort();
  const node = opts.node ?? "node-a";
  const target = { node, endpoint: `127.0.0.1:${port}`, token };
  const dataDir = join(dir, "data");
  let nvmfListen = opts.fixedNvmfPort ? `127.0.0.1:${await freeFixedPort()}` : "127.0.0.1:0";

  const engine: TestEngine = {
    target,
    dataDir,
    dir,
    process: undefined as unknown as ChildProcess,
    logs: "",
    connect: () => connectEngine(target),
    async stop() {
      if (engine.process.exitCode !== null) return engine.process.exitCode;
      const exited = new Promise<number | null>((r) => engine.process.once("exit", (code) => r(code)));
      engine.process.kill("SIGTERM");
      return exited;
    },
    async kill() {
      if (engine.process.exitCode !== null || engine.process.signalCode !== null) return;
      const exited = new Promise<void>((r) => engine.process.once("exit", () => r()));
      engine.process.kill("SIGKILL");
      await exited;
    },
    async restart() {
      await launch();
    },
  };

  async function launch(): Promise<void> {
    const args = [ENGINE_BIN, "--node", node, "--grpc-listen", target.endpoint, "--data-dir", dataDir, "--token-file", tokenFile, "--cores", String(opts.cores ?? 1),
      // Several engines share this machine: NVMe/TCP on free ports (GetInfo reports them).
      "--nvmf-listen", nvmfListen, "--nvmf-discovery-listen", "127.0.0.1:0"];
    for (const d of opts.deviceDirs ?? [dir]) args.push("--device-dir", d);
    if (opts.labels) args.push("--labels", opts.labels);
    if (opts.faultInjection) args.push("--enable-fault-injection");
    if (opts.extraArgs) args.push(...opts.extraArgs);
    const logStart = engine.logs.length;
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    engine.process = child;
    child.stdout!.on("data", (d: Buffer) => (engine.logs += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (engine.logs += d.toString()));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`engine exited with ${child.exitCode}:\n${engine.logs}`);
      if (engine.logs.includes('"engine ready"', logStart)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`engine did not become ready:\n${engine.logs}`);
  }

  // A port found free can be taken by another process before the engine binds it (several test
  // files and agents share this machine): the first start tries fresh ports a few times.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      return engine;
    } catch (err) {
      if (attempt >= 4 || !/Address already in use|EADDRINUSE/.test((err as Error).message)) throw err;
      target.endpoint = `127.0.0.1:${await freePort()}`;
      if (opts.fixedNvmfPort) nvmfListen = `127.0.0.1:${await freeFixedPort()}`;
    }
  }
}
