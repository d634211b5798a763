// Runs the real Pulumi CLI (built by scripts/install-pulumi.sh) through the Automation API,
// fully offline: a local file backend, a generated passphrase, no update checks, no plugin
// downloads. Everything that starts `pulumi` goes through pulumiEnv().
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { projectRoot, pulumiBinDir, strataHome } from "./paths";

/** The stack the CLI works on; STRATA_STACK picks another (the tests use their own). */
export const DEFAULT_STACK = process.env.STRATA_STACK ?? "dev";

function passphraseFile(home: string): string {
  const file = join(home, "pulumi-passphrase");
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    writeFileSync(file, randomBytes(24).toString("base64url") + "\n", { mode: 0o600 });
  }
  return file;
}

/** The environment every Pulumi invocation gets. */
export function pulumiEnv(home = strataHome()): Record<string, string> {
  const backend = join(home, "pulumi-state");
  mkdirSync(backend, { recursive: true });
  return {
    PULUMI_BACKEND_URL: `file://${backend}`,
    PULUMI_CONFIG_PASSPHRASE: readFileSync(passphraseFile(home), "utf8").trim(),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_HOME: join(home, "pulumi-home"),
    PATH: `${pulumiBinDir()}:${process.env.PATH ?? ""}`,
  };
}

export async function pulumiCommand(): Promise<PulumiCommand> {
  if (!existsSync(join(pulumiBinDir(), "pulumi")))
    throw new Error("the Pulumi CLI is not installed: run `npm run setup` (it builds it from the Go module proxy)");
  return PulumiCommand.get({ root: join(pulumiBinDir(), ".."), skipVersionCheck: false });
}

export interface StackOptions {
  /** The project directory (holds Pulumi.yaml); the repository root by default. */
  readonly workDir?: string;
  readonly stackName?: string;
  /** The program, for inline runs. */
  readonly program?: () => Promise<Record<string, unknown> | void>;
  readonly home?: string;
}

export async function openStack(opts: StackOptions = {}): Promise<Stack> {
  const workDir = opts.workDir ?? projectRoot();
  const stackName = opts.stackName ?? DEFAULT_STACK;
  const envVars = pulumiEnv(opts.home);
  const pulumiCmd = await pulumiCommand();
  if (opts.program) {
    const ws = await LocalWorkspace.create({ workDir, program: opts.program, envVars, pulumiCommand: pulumiCmd });
    return Stack.createOrSelect(stackName, ws);
  }
  return LocalWorkspace.createOrSelectStack({ stackName, workDir }, { envVars, pulumiCommand: pulumiCmd });
}

/** True when `pid` names no running process of this host. */
function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/**
 * Makes a stack usable again after a Pulumi CLI was killed (SIGKILL, OOM, power loss) in the
 * middle of an update on the local file backend. Returns one line per repair, for the operator.
 *
 * - The update lock (`.pulumi/locks/organization/<project>/<stack>/<id>.json`) stays until
 *   `pulumi cancel`, and every later command fails on it. A lock is removed only when it was
 *   taken on this host by a process that no longer runs; any other lock is left alone.
 * - The backend writes a checkpoint to a temporary file and renames it, but writes its `.attrs`
 *   sidecar (content type and MD5) in place first: a kill in that window leaves an empty
 *   `.attrs` and every command fails with "failed to load checkpoint: EOF" (seen in
 *   test/e2e/interrupted-deploy.test.ts). The checkpoint beside it is the last complete one, so
 *   an unreadable sidecar is removed (the backend reads a checkpoint without one), and so is
 *   the killed write's temporary file. Only when no live process holds the stack's lock.
 */
export function recoverInterruptedUpdate(home: string, project: string, stack: string): string[] {
  const state = join(home, "pulumi-state", ".pulumi");
  const repairs: string[] = [];
  const lockDir = join(state, "locks", "organization", project, stack);
  let liveLocks = 0;
  for (const file of existsSync(lockDir) ? readdirSync(lockDir).filter((f) => f.endsWith(".json")) : []) {
    let lock: { pid?: unknown; hostname?: unknown; timestamp?: unknown };
    try {
      lock = JSON.parse(readFileSync(join(lockDir, file), "utf8"));
    } catch {
      liveLocks++; // Being written by a live CLI, or not ours to judge.
      continue;
    }
    if (typeof lock.pid !== "number" || lock.hostname !== hostname() || !processGone(lock.pid)) {
      liveLocks++;
      continue;
    }
    rmSync(join(lockDir, file), { force: true });
    rmSync(join(lockDir, `${file}.attrs`), { force: true });
    repairs.push(`removed the lock of an interrupted Pulumi update (pid ${lock.pid}, started ${String(lock.timestamp)}): it no longer runs`);
  }
  const stacksDir = join(state, "stacks", project);
  if (liveLocks > 0 || !existsSync(stacksDir)) return repairs;
  for (const file of readdirSync(stacksDir).filter((f) => f.startsWith(`${stack}.json`))) {
    const path = join(stacksDir, file);
    if (file.endsWith(".tmp")) {
      rmSync(path, { force: true });
      repairs.push(`removed ${file}, the unfinished checkpoint write of an interrupted update`);
    } else if (file.endsWith(".attrs")) {
      try {
        JSON.parse(readFileSync(path, "utf8"));
      } catch {
        rmSync(path, { force: true });
        repairs.push(`removed ${file}, left unreadable by an interrupted update (${file.slice(0, -".attrs".length)} is the last complete checkpoint)`);
      }
    }
  }
  return repairs;
}
