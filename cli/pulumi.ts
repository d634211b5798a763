// Runs the real Pulumi CLI (built by scripts/install-pulumi.sh) through the Automation API,
// fully offline: a local file backend, a generated passphrase, no update checks, no plugin
// downloads. Everything that starts `pulumi` goes through pulumiEnv().
import { LocalWorkspace, PulumiCommand, Stack } from "@pulumi/pulumi/automation";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
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
