// DH-HMAC-CHAP through the engine API: ShareReplica with per-host secrets (never returned,
// persisted 0600 and restored at restart), and engine-to-engine nexus children that
// authenticate with the node secret from --dhchap-secret-file.
import test from "ava";
import { status } from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isEngineCallError } from "../../../common/client";
import { startEngine, TestEngine, nvmfPortOf } from "../../helpers/engine";
import { makeSecret, NvmeTcpHost, ok, STATUS } from "./host";

const MiB = 1024 * 1024;
const TOOL = "nqn.2014-08.org.nvmexpress:uuid:abababab-0000-4000-8000-0000000000ab";
const engines: TestEngine[] = [];
test.after.always(async () => {
  await Promise.all(engines.map((e) => e.kill()));
});

test("per-host secrets: write-only, persisted 0600, restored; a nexus child authenticates with the node secret", async (t) => {
  const a = await startEngine({ node: "auth-a" });
  engines.push(a);
  const nodeSecret = makeSecret(1);
  const secretFile = join(a.dir, "node-b.dhchap");
  writeFileSync(secretFile, nodeSecret + "\n", { mode: 0o600 });
  const b = await startEngine({ node: "auth-b", extraArgs: ["--dhchap-secret-file", secretFile] });
  engines.push(b);
  let ca = a.connect();
  const cb = b.connect();
  const infoB = await cb.call("GetInfo", {});
  t.true(infoB.host_dhchap, "GetInfo says node B authenticates");
  t.false(JSON.stringify(infoB).includes(nodeSecret.split(":")[2]));

  const pool = await ca.call("CreatePool", { uuid: randomUUID(), name: "pa", device_uri: `file://${join(a.dir, "disk.img")}?size_mib=128`, labels: {}, cluster_size_bytes: 0, force: false });
  const uuid = randomUUID();
  await ca.call("CreateReplica", { uuid, name: "r", pool: pool.uuid!, size_bytes: 32 * MiB, thin: true });

  const bad = await t.throwsAsync(ca.call("ShareReplica", { uuid, allowed_host_nqns: [], hosts: [{ nqn: infoB.host_nqn, dhchap_secret: nodeSecret.slice(0, -6) + "AAAA=:", dhchap_ctrl_secret: "" }] }));
  t.true(isEngineCallError(bad) && bad.code === status.INVALID_ARGUMENT, String(bad));
  t.regex(bad!.message, /hosts\[0\]\.dhchap_secret/);
  t.false(bad!.message.includes(nodeSecret.slice(10, 30)), "the error does not echo the secret");

  const toolSecret = makeSecret(0);
  const sub = await ca.call("ShareReplica", {
    uuid,
    allowed_host_nqns: [TOOL],
    hosts: [
      { nqn: infoB.host_nqn, dhchap_secret: nodeSecret, dhchap_ctrl_secret: "" },
      { nqn: TOOL, dhchap_secret: toolSecret, dhchap_ctrl_secret: "" },
    ],
  });
  t.deepEqual(sub.allowed_host_nqns, [infoB.host_nqn, TOOL].sort());
  t.deepEqual(sub.dhchap_host_nqns, [infoB.host_nqn, TOOL].sort());
  const listed = JSON.stringify(await ca.call("ListSubsystems", {}));
  for (const s of [nodeSecret, toolSecret]) {
    t.false(listed.includes(s.split(":")[2]), "ListSubsystems never returns a secret");
    t.false(a.logs.includes(s.split(":")[2]), "the engine never logs a secret");
  }
  const statePath = join(a.dataDir, "engine-state.json");
  t.is(statSync(statePath).mode & 0o777, 0o600, "the state file holding secrets is owner-only");
  t.true(readFileSync(statePath, "utf8").includes(nodeSecret), "secrets are persisted so shares come back at start");

  // Engine B's nexus over A's replica: the child connects and authenticates with the node secret.
  const child = `nvmf://${sub.address}/${sub.nqn}`;
  const nexusUuid = randomUUID();
  const nexus = await cb.call("CreateNexus", { uuid: nexusUuid, size_bytes: 16 * MiB, children: [child], child_io_timeout_ms: 0 });
  t.is(nexus.health, "online", JSON.stringify(nexus.children));
  t.deepEqual(nexus.children!.map((c) => c.state), ["online"]);
  await cb.call("DestroyNexus", { uuid: nexusUuid });

  // A host without the secret (the review's attack: claiming node B's NQN) is refused.
  const port = nvmfPortOf(a);
  const thief = await NvmeTcpHost.open(port);
  await thief.initialize();
  const c = ok(await thief.connect({ subnqn: sub.nqn!, hostnqn: infoB.host_nqn }));
  t.is(c.dw0 & (1 << 17), 1 << 17);
  t.is((await thief.propertyGet(0, true)).status, STATUS.authRequired);
  await thief.closed;

  // Restart A: the share comes back with its secrets in force.
  ca.close();
  t.is(await a.stop(), 0);
  await a.restart();
  ca = a.connect();
  const after = (await ca.call("ListSubsystems", {})).subsystems!;
  t.deepEqual(after.map((s) => s.dhchap_host_nqns), [[infoB.host_nqn, TOOL].sort()]);
  const tool = await NvmeTcpHost.open(nvmfPortOf(a));
  await tool.initialize();
  const tc = ok(await tool.connect({ subnqn: sub.nqn!, hostnqn: TOOL }));
  t.is(tc.dw0 & (1 << 17), 1 << 17);
  t.true((await tool.authenticate({ hostnqn: TOOL, subnqn: sub.nqn!, secret: toolSecret })).ok);
  t.is((await tool.enable()) & 1, 1);
  tool.close();

  // Dropping the secret (same host, NQN only) is an explicit choice, and takes effect.
  const open = await ca.call("ShareReplica", { uuid, allowed_host_nqns: [TOOL], hosts: [] });
  t.deepEqual(open.dhchap_host_nqns, []);
  await ca.call("UnshareReplica", { uuid });
  ca.close();
  cb.close();
});
