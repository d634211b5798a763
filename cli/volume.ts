// `strata volume connect NAME [--run] [--show-secrets]`: the `nvme connect` command of one
// Volume of the root stack, read from the stack's state (the Volume's `nexus.connectCommand`
// output, built by provider/transport.ts nvmeConnectCommand), so the operator never assembles
// transport, address, port, subsystem and host NQN by hand.
//
// planVolumeConnect is pure (an exported deployment in, lines and argv out) and tested against a
// deployment fixture; the CLI part reads the state, this host's NQN, and runs `nvme`.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

/** The Volume resource type in state (sdk/index.ts VOLUME_TYPE). */
export const VOLUME_TYPE = "pulumi-nodejs:dynamic/strata:Volume";
const STACK_TYPE = "pulumi:pulumi:Stack";
/** Where nvme-cli (and the kernel's host driver through it) keeps this host's NQN. */
export const HOST_NQN_FILE = "/etc/nvme/hostnqn";
/** How Pulumi marks a secret value in an exported deployment. */
const SECRET_SIGNATURE_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIGNATURE = "1b47061264138c4ac30d75fd1eb44270";

/** A resource of `pulumi stack export`'s deployment (only what this file reads). */
export interface DeploymentResource {
  readonly urn: string;
  readonly type: string;
  readonly outputs?: Record<string, unknown>;
}

/** A user's mistake or a volume that cannot be connected: the message says what to do. */
export class VolumeConnectError extends Error {}

export interface VolumeConnectOptions {
  /** This host's NQN (HOST_NQN_FILE), null when it has none. */
  readonly localHostNqn: string | null;
  /** Put the DH-HMAC-CHAP secret itself in the printed command. */
  readonly showSecrets: boolean;
}

export interface VolumeConnectPlan {
  /** The command to print (stdout): the secret stays out of it unless showSecrets. */
  readonly command: string;
  /** `nvme`'s arguments for --run, with the secret when the frontend needs one. */
  readonly nvmeArgs: readonly string[];
  /** Notes for stderr: host NQN mismatch, where the secret is. */
  readonly notes: readonly string[];
  /** The frontend needs a secret the state did not give in plain text (nvmeArgs lacks it). */
  readonly secretMissing: boolean;
}

/** A resource's name: the last `::` part of its URN. */
export function resourceName(urn: string): string {
  return urn.slice(urn.lastIndexOf("::") + 2);
}

/** A plain value, or the plaintext of a Pulumi secret (undefined: a secret still encrypted). */
function unwrapSecret(value: unknown): { value: unknown; secret: boolean } {
  if (value !== null && typeof value === "object" && (value as Record<string, unknown>)[SECRET_SIGNATURE_KEY] === SECRET_SIGNATURE) {
    const plaintext = (value as Record<string, unknown>).plaintext;
    // `stack export --show-secrets` holds the plaintext as JSON text.
    return { value: typeof plaintext === "string" ? JSON.parse(plaintext) : undefined, secret: true };
  }
  return { value, secret: false };
}

/** The names of every Volume in the deployment, sorted. */
export function volumeNames(resources: readonly DeploymentResource[]): string[] {
  return resources.filter((r) => r.type === VOLUME_TYPE).map((r) => resourceName(r.urn)).sort();
}

/** The stack output holding `secret`, so the operator is pointed at `strata output NAME` rather than shown it. */
function stackOutputHolding(resources: readonly DeploymentResource[], secret: string): string | undefined {
  const stack = resources.find((r) => r.type === STACK_TYPE);
  for (const [key, raw] of Object.entries(stack?.outputs ?? {})) if (unwrapSecret(raw).value === secret) return key;
  return undefined;
}

function hostNqnIn(command: string): string {
  const m = /--hostnqn\s+(\S+)/.exec(command);
  return m ? m[1] : "";
}

export function planVolumeConnect(resources: readonly DeploymentResource[], name: string, opts: VolumeConnectOptions): VolumeConnectPlan {
  const matches = resources.filter((r) => r.type === VOLUME_TYPE && resourceName(r.urn) === name);
  if (matches.length === 0) {
    const names = volumeNames(resources);
    throw new VolumeConnectError(
      names.length > 0
        ? `the stack has no volume "${name}" (its volumes: ${names.join(", ")})`
        : `the stack has no volume "${name}": it has no volumes at all (run \`strata up\` first)`,
    );
  }
  // Several with one name only in nested components; their URNs tell them apart.
  if (matches.length > 1) throw new VolumeConnectError(`the stack has ${matches.length} volumes named "${name}": ${matches.map((m) => m.urn).join(", ")}`);
  const outputs = matches[0].outputs ?? {};
  const nexus = unwrapSecret(outputs.nexus).value as { connectCommand?: unknown } | null | undefined;
  if (!nexus) {
    throw new VolumeConnectError(
      `volume "${name}" has no nexus (a one-replica volume made by an older Strata, or one whose create did not finish): nothing serves it over NVMe-oF; run \`strata up\``,
    );
  }
  const connectCommand = typeof nexus.connectCommand === "string" ? nexus.connectCommand : "";
  if (connectCommand === "") {
    const frontend = opts.localHostNqn ? ` (this host's is ${opts.localHostNqn})` : "";
    throw new VolumeConnectError(
      `volume "${name}" is not published: give it frontendHostNqn, the NQN of the host that mounts it${frontend}, and run \`strata up\``,
    );
  }
  const notes: string[] = [];
  const commandHostNqn = hostNqnIn(connectCommand);
  if (opts.localHostNqn && commandHostNqn && opts.localHostNqn !== commandHostNqn) {
    notes.push(
      `volume "${name}" is published to ${commandHostNqn}, but this host's NQN is ${opts.localHostNqn} (${HOST_NQN_FILE}): ` +
        `the target admits only ${commandHostNqn}, so run this on that host, or publish the volume to this one (frontendHostNqn: "${opts.localHostNqn}") and \`strata up\``,
    );
  }
  const args = connectCommand.split(/\s+/).filter((a) => a !== "");
  // The provider publishes every frontend with a DH-HMAC-CHAP secret, a secret output of the volume.
  const secret = unwrapSecret(outputs.frontendDhchapSecret);
  // An unpublished frontend's secret is "" (kept secret all the same); one still encrypted is assumed needed.
  const needsSecret = typeof secret.value === "string" ? secret.value !== "" : secret.secret;
  if (!needsSecret) return { command: connectCommand, nvmeArgs: args.slice(1), notes, secretMissing: false };
  const secretText = typeof secret.value === "string" && secret.value !== "" ? secret.value : undefined;
  const nvmeArgs = secretText ? [...args.slice(1), "--dhchap-secret", secretText] : args.slice(1);
  const secretMissing = secretText === undefined;
  if (opts.showSecrets && secretText) return { command: `${connectCommand} --dhchap-secret ${secretText}`, nvmeArgs, notes, secretMissing };
  const output = secretText ? stackOutputHolding(resources, secretText) : undefined;
  if (output) {
    notes.push(`the target authenticates the host with DH-HMAC-CHAP: the command reads the secret from the stack output ${output} (\`strata output ${output}\`)`);
    return { command: `${connectCommand} --dhchap-secret "$(npx strata output ${output})"`, nvmeArgs, notes, secretMissing };
  }
  notes.push(
    `the target authenticates the host with DH-HMAC-CHAP: the secret is the volume's secret output frontendDhchapSecret; ` +
      `\`strata volume connect ${name} --show-secrets\` prints the command with it, or export it from the program and read it with \`strata output NAME\``,
  );
  return { command: `${connectCommand} --dhchap-secret <secret>`, nvmeArgs, notes, secretMissing };
}

/** This host's NQN, or null when nvme-cli never made one. */
export function localHostNqn(file = HOST_NQN_FILE): string | null {
  if (!existsSync(file)) return null;
  const text = readFileSync(file, "utf8").trim();
  return text === "" ? null : text;
}

/**
 * Runs `nvme` with the plan's arguments, the terminal its own (it may ask nothing, but its
 * output is the operator's), and resolves with its exit status.
 */
export function runNvme(args: readonly string[], binary = "nvme"): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: "inherit" });
    child.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") reject(new VolumeConnectError("nvme-cli is not installed (apt-get install nvme-cli)"));
      else reject(err);
    });
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
