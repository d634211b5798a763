// ShareReplica / UnshareReplica / ListSubsystems through a real strata-engine over gRPC, with
// the test host doing I/O over NVMe/TCP, and shares surviving a restart.
import test from "ava";
import { status } from "@grpc/grpc-js";
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isEngineCallError } from "../../../common/client";
import { ENGINE_BIN, startEngine, TestEngine, nvmfPortOf } from "../../helpers/engine";
import { pattern } from "../helpers";
import { adminQueue, ioQueue, ok, STATUS, NvmeTcpHost } from "./host";

const MiB = 1024 * 1024;
const HOST_A = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-00000000000a";
const HOST_B = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-00000000000b";
const engines: TestEngine[] = [];
test.after.always(async () => {
  await Promise.all(engines.map((e) => e.kill()));
});

async function rejects(t: import("ava").ExecutionContext, p: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  const err = await t.throwsAsync(p);
  if (!isEngineCallError(err)) return void t.fail(`not an engine call error: ${String(err)}`);
  t.is(err.code, code, err.message);
  t.regex(err.message, message);
}

test("ShareReplica, ListSubsystems with connected hosts, UnshareReplica, and shares survive a restart", async (t) => {
  const e = await startEngine();
  engines.push(e);
  let c = e.connect();
  const pool = await c.call("CreatePool", { uuid: randomUUID(), name: "p1", device_uri: `file://${join(e.dir, "disk.img")}?size_mib=128`, labels: {}, cluster_size_bytes: 0, force: false });
  const uuid = randomUUID();
  await c.call("CreateReplica", { uuid, name: "r1", pool: pool.uuid!, size_bytes: 32 * MiB, thin: true });

  await rejects(t, c.call("ShareReplica", { uuid, allowed_host_nqns: ["not-an-nqn"] }), status.INVALID_ARGUMENT, /allowed_host_nqns\[0\] must start with "nqn\."/);
  await rejects(t, c.call("ShareReplica", { uuid, allowed_host_nqns: ["nqn." + "x".repeat(220)] }), status.INVALID_ARGUMENT, /at most 223 bytes/);
  await rejects(t, c.call("ShareReplica", { uuid: randomUUID(), allowed_host_nqns: [HOST_A] }), status.NOT_FOUND, /does not exist/);

  const sub = await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST_A] });
  t.is(sub.nqn, `nqn.2026-11.io.strata:replica:${uuid}`);
  t.is(sub.transport, "tcp");
  t.is(sub.address, `127.0.0.1:${nvmfPortOf(e)}`);
  t.deepEqual((await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST_A] })).allowed_host_nqns, [HOST_A], "same list: success");

  const port = nvmfPortOf(e);
  const admin = await adminQueue(port, sub.nqn!, HOST_A);
  const io = await ioQueue(port, sub.nqn!, HOST_A, admin.cntlid);
  const data = pattern(64 * 1024, 5);
  ok(await io.write(3, data, false));
  ok(await io.flush());
  const listed = (await c.call("ListSubsystems", {})).subsystems!;
  t.is(listed.length, 1);
  t.deepEqual(listed[0].connected_hosts!.map((h) => [h.host_nqn, h.cntlid, h.queues]), [[HOST_A, admin.cntlid, 2]]);

  // A different list updates in place: HOST_A is no longer allowed and is disconnected.
  const updated = await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST_B] });
  t.deepEqual(updated.allowed_host_nqns, [HOST_B]);
  await Promise.all([admin.host.closed, io.closed]);
  const refused = await NvmeTcpHost.open(port);
  await refused.initialize();
  t.is((await refused.connect({ subnqn: sub.nqn!, hostnqn: HOST_A })).status, STATUS.connectInvalidHost);
  refused.close();

  await rejects(t, c.call("DestroyReplica", { uuid }), status.FAILED_PRECONDITION, /UnshareReplica first/);
  await rejects(t, c.call("ExportPool", { uuid: pool.uuid! }), status.FAILED_PRECONDITION, /unshare them first/);

  // Restart: the share comes back with its allow list, and the data is there.
  c.close();
  t.is(await e.stop(), 0);
  await e.restart();
  c = e.connect();
  const after = (await c.call("ListSubsystems", {})).subsystems!;
  t.deepEqual(after.map((s) => [s.nqn, s.allowed_host_nqns]), [[sub.nqn, [HOST_B]]]);
  const b = await adminQueue(nvmfPortOf(e), sub.nqn!, HOST_B);
  const bio = await ioQueue(nvmfPortOf(e), sub.nqn!, HOST_B, b.cntlid);
  t.true(ok(await bio.read(3, 16)).data!.equals(data), "data written before the restart reads back");
  bio.close();
  b.host.close();

  await c.call("UnshareReplica", { uuid });
  await c.call("UnshareReplica", { uuid });
  t.deepEqual((await c.call("ListSubsystems", {})).subsystems, []);
  await c.call("DestroyReplica", { uuid });
  c.close();
});

test("a busy NVMe/TCP port stops the engine with a message naming the flag", async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
  const busy = (blocker.address() as { port: number }).port;
  const e = await startEngine();
  engines.push(e);
  await e.stop();
  const tokenFile = join(e.dir, "token");
  const run = spawnSync(process.execPath, [ENGINE_BIN, "--node", "x", "--grpc-listen", "127.0.0.1:0", "--data-dir", join(e.dir, "d2"), "--token-file", tokenFile,
    "--nvmf-listen", "127.0.0.1:0", "--nvmf-discovery-listen", `127.0.0.1:${busy}`], { encoding: "utf8", timeout: 20_000 });
  blocker.close();
  t.is(run.status, 1);
  t.regex(run.stderr, /--nvmf-discovery-listen: cannot listen on 127\.0\.0\.1:\d+: Address already in use/);
});

test("--rdma-interface: an engine that cannot serve RDMA serves TCP, logs why and GetInfo reports both transports", async (t) => {
  // This machine has no RDMA device (the VM's soft-RoCE checks the served case): loopback is
  // refused by name, and the engine must not start silently without the transport it was asked for.
  const e = await startEngine({ extraArgs: ["--rdma-interface", "lo"] });
  engines.push(e);
  const c = e.connect();
  const info = await c.call("GetInfo", {});
  c.close();
  const transports = info.transports ?? [];
  t.deepEqual(transports.map((x) => [x.trtype, x.available]), [["tcp", true], ["rdma", false]]);
  t.is(transports[0].address, `127.0.0.1:${nvmfPortOf(e)}`);
  t.is(transports[1].interface, "lo");
  t.regex(transports[1].reason ?? "", /^network interface 'lo' is a loopback interface/);
  t.regex(e.logs, /"NVMe over RDMA is not served; TCP only".*"interface":"lo".*loopback interface/);

  const plain = await startEngine();
  engines.push(plain);
  const pc = plain.connect();
  t.deepEqual(((await pc.call("GetInfo", {})).transports ?? []).map((x) => x.trtype), ["tcp"], "no --rdma-interface: TCP only, nothing to explain");
  pc.close();
});

test("--rdma-interface must name an interface", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "strata-rdma-flag-"));
  writeFileSync(join(dir, "token"), "a-token-of-at-least-16-characters");
  const run = spawnSync(process.execPath, [ENGINE_BIN, "--node", "x", "--data-dir", join(dir, "d"), "--token-file", join(dir, "token"), "--rdma-interface", "eth0; rm -rf /"], {
    encoding: "utf8",
    timeout: 20_000,
  });
  t.is(run.status, 2);
  t.regex(run.stderr, /--rdma-interface must be a network interface name/);
});
