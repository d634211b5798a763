// `strata volume connect NAME`: what it prints for a volume of the stack, read from the stack's
// exported deployment. The fixture is `pulumi stack export --show-secrets` of the quickstart on a
// 2-node `strata cluster up` (volumes quickstart: not published, replicated: published over
// NVMe/TCP to the quickstart frontend, tiered: not published), trimmed to the stack and its
// Volumes, with the DH-HMAC-CHAP secret replaced by a made-up one.
import test from "ava";
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { volumeConnectOptions } from "../../cli/main";
import { DeploymentResource, localHostNqn, planVolumeConnect, resourceName, runNvme, VolumeConnectError, volumeNames } from "../../cli/volume";
import { REPO_ROOT } from "../helpers/engine";

const resources = (JSON.parse(readFileSync(join(REPO_ROOT, "test", "cli", "fixtures", "operator", "deployment.json"), "utf8")) as { resources: DeploymentResource[] }).resources;
const FRONTEND = "nqn.2026-11.io.strata:frontend:quickstart";
const COMMAND =
  "nvme connect -t tcp -a 127.0.0.1 -s 24101 -n nqn.2026-11.io.strata:nexus:4094ebbb-2bcb-5301-aa59-e0c1317ba0a0 --hostnqn nqn.2026-11.io.strata:frontend:quickstart";
const SECRET = "DHHC-1:00:ZmFrZS1zZWNyZXQtZm9yLXRlc3RzLW9ubHktMDAwMDAwMDAwMA==:";
const OTHER_HOST = "nqn.2014-08.org.nvmexpress:uuid:e1d3b090-6921-4272-b2b8-e022497c10f8";

/** The fixture with one Volume's outputs changed. */
function withVolume(name: string, change: (outputs: Record<string, unknown>) => Record<string, unknown>): DeploymentResource[] {
  return resources.map((r) => (r.type.endsWith(":Volume") && resourceName(r.urn) === name ? { ...r, outputs: change({ ...(r.outputs ?? {}) }) } : r));
}

test("a published volume: the command with its DH-HMAC-CHAP secret read from the stack output that holds it, never the secret itself", (t) => {
  const plan = planVolumeConnect(resources, "replicated", { localHostNqn: FRONTEND, showSecrets: false });
  t.is(plan.command, `${COMMAND} --dhchap-secret "$(npx strata output replicatedDhchapSecret)"`);
  t.false(plan.command.includes(SECRET));
  t.deepEqual(plan.notes, [
    "the target authenticates the host with DH-HMAC-CHAP: the command reads the secret from the stack output replicatedDhchapSecret (`strata output replicatedDhchapSecret`)",
  ]);
  // What --run hands nvme: the command's words, then the secret itself.
  t.deepEqual(plan.nvmeArgs, [...COMMAND.split(" ").slice(1), "--dhchap-secret", SECRET]);
  t.false(plan.secretMissing);
});

test("--show-secrets puts the secret in the printed command", (t) => {
  const plan = planVolumeConnect(resources, "replicated", { localHostNqn: FRONTEND, showSecrets: true });
  t.is(plan.command, `${COMMAND} --dhchap-secret ${SECRET}`);
  t.deepEqual(plan.notes, []);
});

test("a secret no stack output holds: a placeholder and where to get it", (t) => {
  const withoutOutput = resources.map((r) => (r.type === "pulumi:pulumi:Stack" ? { ...r, outputs: {} } : r));
  const plan = planVolumeConnect(withoutOutput, "replicated", { localHostNqn: FRONTEND, showSecrets: false });
  t.is(plan.command, `${COMMAND} --dhchap-secret <secret>`);
  t.regex(plan.notes[0], /frontendDhchapSecret; `strata volume connect replicated --show-secrets` prints the command with it/);
});

test("this host's NQN differs from the volume's frontend: said on the notes, naming both", (t) => {
  const plan = planVolumeConnect(resources, "replicated", { localHostNqn: OTHER_HOST, showSecrets: false });
  t.is(plan.notes.length, 2);
  t.is(
    plan.notes[0],
    `volume "replicated" is published to ${FRONTEND}, but this host's NQN is ${OTHER_HOST} (/etc/nvme/hostnqn): ` +
      `the target admits only ${FRONTEND}, so run this on that host, or publish the volume to this one (frontendHostNqn: "${OTHER_HOST}") and \`strata up\``,
  );
  // No host NQN file: nothing to compare, nothing said.
  t.is(planVolumeConnect(resources, "replicated", { localHostNqn: null, showSecrets: false }).notes.length, 1);
});

test("an unknown name lists the volumes that exist", (t) => {
  t.deepEqual(volumeNames(resources), ["quickstart", "replicated", "tiered"]);
  const err = t.throws(() => planVolumeConnect(resources, "db", { localHostNqn: null, showSecrets: false }), { instanceOf: VolumeConnectError });
  t.is(err!.message, 'the stack has no volume "db" (its volumes: quickstart, replicated, tiered)');
  const none = resources.filter((r) => !r.type.endsWith(":Volume"));
  t.regex(t.throws(() => planVolumeConnect(none, "db", { localHostNqn: null, showSecrets: false }))!.message, /has no volumes at all \(run `strata up` first\)/);
});

test("a volume without a published nexus, and one without a nexus, say so", (t) => {
  const unpublished = t.throws(() => planVolumeConnect(resources, "quickstart", { localHostNqn: OTHER_HOST, showSecrets: false }), { instanceOf: VolumeConnectError });
  t.is(unpublished!.message, `volume "quickstart" is not published: give it frontendHostNqn, the NQN of the host that mounts it (this host's is ${OTHER_HOST}), and run \`strata up\``);
  const legacy = withVolume("replicated", (o) => ({ ...o, nexus: null }));
  t.regex(t.throws(() => planVolumeConnect(legacy, "replicated", { localHostNqn: null, showSecrets: false }))!.message, /^volume "replicated" has no nexus/);
});

test("a secret the state holds only encrypted: the command still prints, --run knows it lacks the secret", (t) => {
  const encrypted = withVolume("replicated", (o) => ({ ...o, frontendDhchapSecret: { "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", ciphertext: "v1:abc" } }));
  const plan = planVolumeConnect(encrypted, "replicated", { localHostNqn: FRONTEND, showSecrets: false });
  t.true(plan.secretMissing);
  t.is(plan.command, `${COMMAND} --dhchap-secret <secret>`);
  t.false(plan.nvmeArgs.includes("--dhchap-secret"));
});

test("a frontend without DH-HMAC-CHAP: the command as the provider built it", (t) => {
  const open = withVolume("replicated", (o) => ({ ...o, frontendDhchapSecret: "" }));
  const plan = planVolumeConnect(open, "replicated", { localHostNqn: FRONTEND, showSecrets: false });
  t.is(plan.command, COMMAND);
  t.deepEqual(plan.notes, []);
});

test("volume connect's arguments: one name, --run, --show-secrets; anything else is a usage error", (t) => {
  t.deepEqual(volumeConnectOptions(["connect", "db", "--run"]), { name: "db", run: true, showSecrets: false });
  t.deepEqual(volumeConnectOptions(["connect", "--show-secrets", "db"]), { name: "db", run: false, showSecrets: true });
  t.throws(() => volumeConnectOptions(["connect"]), { message: "volume connect needs the name of a Volume of the stack" });
  t.throws(() => volumeConnectOptions(["connect", "a", "b"]), { message: 'volume connect takes one volume name, got "a" and "b"' });
  t.throws(() => volumeConnectOptions(["connect", "a", "--force"]), { message: 'unknown flag "--force" for volume connect' });
  t.throws(() => volumeConnectOptions(["disconnect", "a"]), { message: 'unknown volume command "disconnect"' });
});

test("the host NQN file, and --run without nvme-cli", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "strata-hostnqn-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.is(localHostNqn(join(dir, "missing")), null);
  writeFileSync(join(dir, "hostnqn"), `${OTHER_HOST}\n`);
  t.is(localHostNqn(join(dir, "hostnqn")), OTHER_HOST);
  await t.throwsAsync(runNvme(["version"], join(dir, "no-such-nvme")), { instanceOf: VolumeConnectError, message: "nvme-cli is not installed (apt-get install nvme-cli)" });
  // A program that runs: its exit status comes back.
  t.is(await runNvme(["-e", "process.exit(3)"], process.execPath), 3);
});
