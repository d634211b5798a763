// The NVMe/TCP target through a spec-level test host (host.ts): connection setup with and
// without digests, Connect rules, I/O through in-capsule data, R2T and C2HData, and
// robustness: every malformed PDU ends only its own connection.
import test from "ava";
import { randomUUID } from "node:crypto";
import { expectCode, MiB, native, pattern, tempPool } from "../helpers";
import { adminQueue, BLOCK_BYTES, DISCOVERY_NQN, ioQueue, NvmeTcpHost, ok, STATUS } from "./host";
import type { ExecutionContext } from "ava";

const HOST_A = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-4000-8000-000000000001";
const HOST_B = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-4000-8000-000000000002";

let ports: Promise<{ listen_port: number; discovery_port: number }> | null = null;
function target(): Promise<{ listen_port: number; discovery_port: number }> {
  ports ??= native().startNvmf({ listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0 });
  return ports;
}

/** A pool, a 64 MiB thin replica shared to HOST_A; unshared at teardown. */
async function sharedReplica(t: ExecutionContext, hosts = [HOST_A]): Promise<{ uuid: string; nqn: string; port: number; discoveryPort: number }> {
  const { listen_port, discovery_port } = await target();
  const n = native();
  const { pool } = await tempPool(t, 128);
  const uuid = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: `r-${uuid.slice(0, 8)}`, size_bytes: 64 * MiB, thin: true });
  const { nqn } = await n.shareReplica({ uuid, allowed_host_nqns: hosts });
  t.teardown(() => n.unshareReplica({ uuid }));
  return { uuid, nqn, port: listen_port, discoveryPort: discovery_port };
}

async function connected(t: ExecutionContext, digests = false) {
  const s = await sharedReplica(t);
  const admin = await adminQueue(s.port, s.nqn, HOST_A, digests);
  const io = await ioQueue(s.port, s.nqn, HOST_A, admin.cntlid, 1, digests);
  t.teardown(() => {
    io.close();
    admin.host.close();
  });
  return { ...s, admin: admin.host, cntlid: admin.cntlid, io };
}

function zeros(bytes: number): Buffer {
  return Buffer.alloc(bytes);
}

test("ICResp echoes the digests asked for, with CPDA 0 and a legal MAXH2CDATA", async (t) => {
  const { listen_port } = await target();
  for (const [hdgst, ddgst] of [[false, false], [true, false], [false, true], [true, true]]) {
    const h = await NvmeTcpHost.open(listen_port);
    const r = await h.initialize({ hdgst, ddgst });
    t.is(r[0], 0x01);
    t.is(r.readUInt32LE(4), 128);
    t.is(r.readUInt16LE(8), 0, "PFV");
    t.is(r[10], 0, "CPDA");
    t.is(r[11], (hdgst ? 1 : 0) | (ddgst ? 2 : 0), "digest bits echoed");
    const maxH2c = r.readUInt32LE(12);
    t.true(maxH2c >= 4096 && maxH2c % 4 === 0);
    h.close();
  }
});

test("admin Connect, properties and Identify as the Linux host uses them", async (t) => {
  const s = await sharedReplica(t);
  const h = await NvmeTcpHost.open(s.port);
  await h.initialize();
  const c = ok(await h.connect({ subnqn: s.nqn, hostnqn: HOST_A, kato_ms: 5000 }));
  const cntlid = c.dw0 & 0xffff;
  t.true(cntlid >= 1 && cntlid <= 0xffef);
  const cap = ok(await h.propertyGet(0x0, true));
  t.is(cap.dw0 & 0xffff, 127, "MQES");
  t.is((cap.dw1 >> 5) & 1, 1, "CSS: NVM");
  t.is(ok(await h.propertyGet(0x8, false)).dw0, 0x00010300, "VS 1.3");
  t.is((await h.enable()) & 1, 1, "CSTS.RDY");
  const id = ok(await h.identify(0x01)).data!;
  t.is(id.readUInt16LE(78), cntlid, "Identify CNTLID matches Connect");
  t.is(id[111], 1, "CNTRLTYPE I/O");
  t.is(id.subarray(768, 768 + s.nqn.length).toString(), s.nqn);
  t.is(id.readUInt32LE(1792), (64 + 8192) / 16, "IOCCSZ");
  t.is(id.readUInt16LE(320) > 0, true, "KAS");
  const ns = ok(await h.identify(0x00, 1)).data!;
  t.is(Number(ns.readBigUInt64LE(0)), (64 * MiB) / BLOCK_BYTES, "NSZE");
  t.is(ns[130], 12, "4 KiB LBAs");
  t.false(ns.subarray(104, 120).equals(Buffer.alloc(16)), "NGUID set");
  const list = ok(await h.identify(0x02, 0)).data!;
  t.is(list.readUInt32LE(0), 1);
  t.is(list.readUInt32LE(4), 0);
  const desc = ok(await h.identify(0x03, 1)).data!;
  t.is(desc[0], 1, "EUI-64 descriptor first");
  ok(await h.keepAlive());
  t.is(ok(await h.setFeatures(0x07, (3 << 16) | 3)).dw0, (3 << 16) | 3, "number of queues granted");
  const smart = ok(await h.getLogPage(0x02, 512));
  t.is(smart.data!.length, 512);
  // A second controller of the same host gets another cntlid.
  const other = await adminQueue(s.port, s.nqn, HOST_A);
  t.not(other.cntlid, cntlid);
  const subs = await native().listSubsystems();
  const mine = subs.find((x) => x.nqn === s.nqn)!;
  t.deepEqual(mine.allowed_host_nqns, [HOST_A]);
  t.is(mine.connected_hosts.length, 2);
  other.host.close();
  h.close();
});

async function ioRoundTrip(t: ExecutionContext, digests: boolean): Promise<void> {
  const { io, uuid } = await connected(t, digests);
  const small = pattern(4096, 7);
  ok(await io.write(10, small));
  t.true(ok(await io.read(10, 1)).data!.equals(small), "4 KiB in-capsule write reads back");
  const big = pattern(128 * 1024, 11);
  ok(await io.write(100, big, false));
  t.true(ok(await io.read(100, 32)).data!.equals(big), "128 KiB R2T write reads back");
  const huge = pattern(1024 * 1024, 13);
  ok(await io.write(1000, huge, false));
  t.true(ok(await io.read(1000, 256)).data!.equals(huge), "1 MiB write (several H2CData PDUs) reads back");
  ok(await io.flush());
  // The bytes are really in the replica, not only in the target.
  t.true((await native().replicaRead({ uuid, offset_bytes: 100 * BLOCK_BYTES, length_bytes: big.length })).equals(big));
  ok(await io.deallocate([{ slba: 100, blocks: 32 }, { slba: 10, blocks: 1 }]));
  t.true(ok(await io.read(100, 32)).data!.equals(zeros(128 * 1024)), "deallocated blocks read as zeros");
  t.true(ok(await io.read(10, 1)).data!.equals(zeros(4096)));
  ok(await io.writeZeroes(1000, 256));
  t.true(ok(await io.read(1000, 256)).data!.equals(zeros(1024 * 1024)));
  const beyond = await io.read((64 * MiB) / BLOCK_BYTES - 1, 2);
  t.is(beyond.status, STATUS.lbaOutOfRange);
  // Many commands in flight at once on one queue.
  const writes = [];
  for (let i = 0; i < 64; i++) writes.push(io.write(2000 + i * 2, pattern(8192, i)));
  (await Promise.all(writes)).forEach(ok);
  const reads = await Promise.all(Array.from({ length: 64 }, (_, i) => io.read(2000 + i * 2, 2)));
  reads.forEach((r, i) => t.true(ok(r).data!.equals(pattern(8192, i))));
}

test("write 4 KiB and 128 KiB, read back, flush, deallocate, write zeroes", (t) => ioRoundTrip(t, false));
test("the same I/O with header and data digests", (t) => ioRoundTrip(t, true));

test("Connect from a host that is not allowed, or to an unknown NQN, is refused", async (t) => {
  const s = await sharedReplica(t);
  const h = await NvmeTcpHost.open(s.port);
  await h.initialize();
  const refused = await h.connect({ subnqn: s.nqn, hostnqn: HOST_B });
  t.is(refused.status, STATUS.connectInvalidHost);
  const unknown = await h.connect({ subnqn: "nqn.2026-11.io.strata:replica:00000000-0000-4000-8000-000000000000", hostnqn: HOST_A });
  t.is(unknown.status, STATUS.connectInvalidParameters);
  t.is(unknown.dw0, (1 << 16) | 256, "IATTR data, IPO 256 (SUBNQN)");
  // An I/O queue for a controller that does not exist.
  const noCtrl = await h.connect({ subnqn: s.nqn, hostnqn: HOST_A, qid: 1, cntlid: 0x1234 });
  t.is(noCtrl.status, STATUS.connectInvalidParameters);
  h.close();
  // An empty allow list refuses everyone.
  const closed = await sharedReplica(t, []);
  const h2 = await NvmeTcpHost.open(closed.port);
  await h2.initialize();
  t.is((await h2.connect({ subnqn: closed.nqn, hostnqn: HOST_A })).status, STATUS.connectInvalidHost);
  h2.close();
});

test("discovery lists only the subsystems the asking host may use", async (t) => {
  const a = await sharedReplica(t, [HOST_A]);
  const b = await sharedReplica(t, [HOST_B]);
  async function discover(hostnqn: string): Promise<string[]> {
    const h = await NvmeTcpHost.open(a.discoveryPort);
    try {
    await h.initialize();
    ok(await h.connect({ subnqn: DISCOVERY_NQN, hostnqn }));
    await h.enable();
    const id = ok(await h.identify(0x01)).data!;
    t.is(id[111], 2, "CNTRLTYPE discovery");
    t.is(id.readUInt32LE(516), 0, "NN 0");
    // Other tests in this file share and unshare replicas concurrently, so the number of
    // records can change between two reads (hosts use the generation counter for this): take
    // the count from the same read as the records, with room for more.
    const header = ok(await h.getLogPage(0x70, 1024)).data!;
    const room = Number(header.readBigUInt64LE(8)) + 8;
    const log = ok(await h.getLogPage(0x70, 1024 * (room + 1))).data!;
    const count = Math.min(room, Number(log.readBigUInt64LE(8)));
    const nqns: string[] = [];
    for (let i = 0; i < count; i++) {
      const e = log.subarray(1024 * (i + 1), 1024 * (i + 2));
      t.is(e[0], 3, "TCP");
      t.is(e[1], 1, "IPv4");
      t.is(e[2], 2, "NVM subsystem");
      t.is(e.subarray(32, 64).toString().replace(/\0+$/, ""), String(a.port), "trsvcid = the I/O listener");
      t.is(e.subarray(512, 768).toString().replace(/\0+$/, ""), "127.0.0.1");
      nqns.push(e.subarray(256, 512).toString().replace(/\0+$/, ""));
    }
    return nqns;
    } finally {
      h.close();
    }
  }
  const forA = await discover(HOST_A);
  t.true(forA.includes(a.nqn));
  t.false(forA.includes(b.nqn));
  const forB = await discover(HOST_B);
  t.true(forB.includes(b.nqn));
  t.false(forB.includes(a.nqn));
  t.deepEqual(await discover("nqn.2014-08.org.example:nobody"), []);
});

test("unshare disconnects hosts; a shared replica cannot be destroyed; unshare is idempotent", async (t) => {
  const s = await connected(t);
  ok(await s.io.write(0, pattern(4096, 1)));
  await expectCode(t, native().destroyReplica({ uuid: s.uuid }), "FAILED_PRECONDITION", /unshare it first/);
  await native().unshareReplica({ uuid: s.uuid });
  await native().unshareReplica({ uuid: s.uuid });
  await Promise.all([s.io.closed, s.admin.closed]);
  t.false((await native().listSubsystems()).some((x) => x.nqn === s.nqn));
  await native().destroyReplica({ uuid: s.uuid });
  t.pass();
});

// ---- robustness: each case ends only its own connection -------------------------------------

async function expectTerminated(t: ExecutionContext, h: NvmeTcpHost, fes?: number): Promise<void> {
  const timeout = new Promise<string>((r) => setTimeout(() => r("timeout"), 5000));
  t.not(await Promise.race([h.closed.then(() => "closed"), timeout]), "timeout", "the target closed the connection");
  if (fes !== undefined) t.is(h.termReq?.fes, fes, "C2HTermReq fatal error status");
}

function header(type: number, hlen: number, pdo: number, plen: number, size = hlen): Buffer {
  const b = Buffer.alloc(size);
  b[0] = type;
  b[2] = hlen;
  b[3] = pdo;
  b.writeUInt32LE(plen, 4);
  return b;
}

test("malformed PDUs end only their connection; another keeps doing I/O", async (t) => {
  const s = await connected(t);
  const cases: [string, (h: NvmeTcpHost) => void, number | undefined, boolean][] = [
    ["garbage bytes", (h) => h.send(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), 2, false],
    ["a truncated header (plen < hlen)", (h) => h.send(header(0x04, 72, 0, 40)), 1, true],
    ["wrong hlen", (h) => h.send(header(0x04, 60, 0, 72, 72)), 1, true],
    ["wrong plen on ICReq", (h) => h.send(header(0x00, 128, 0, 4096, 128)), 1, false],
    ["wrong pdo", (h) => h.send(Buffer.concat([header(0x04, 72, 80, 72 + 8 + 4096, 72), Buffer.alloc(8 + 4096)])), 1, true],
    ["huge plen", (h) => h.send(header(0x04, 72, 72, 0xfffffff0, 72)), 1, true],
    ["unknown PDU type", (h) => h.send(header(0x0f, 24, 0, 24)), 1, true],
    ["a controller-to-host PDU type", (h) => h.send(header(0x05, 24, 0, 24)), 1, true],
    ["H2CData for no R2T", (h) => h.send(h.h2cData(1, 7, 0, Buffer.alloc(4096), true)), 1, true],
    ["a second ICReq", (h) => h.send(header(0x00, 128, 0, 128)), 2, true],
  ];
  for (const [name, send, fes, initialize] of cases) {
    const h = await NvmeTcpHost.open(s.port);
    if (initialize) await h.initialize();
    send(h);
    await expectTerminated(t, h, fes);
    t.log(`${name}: terminated with FES ${h.termReq?.fes}`);
    ok(await s.io.write(5, pattern(4096, name.length)));
    t.true(ok(await s.io.read(5, 1)).data!.equals(pattern(4096, name.length)), `I/O still works after: ${name}`);
  }
});

test("data beyond the R2T, and I/O before Connect, end the connection", async (t) => {
  const s = await connected(t);
  // I/O before Connect.
  const early = await NvmeTcpHost.open(s.port);
  await early.initialize();
  void early.read(0, 1).catch(() => undefined);
  await expectTerminated(t, early, 2);
  // H2CData carrying more than the R2T asked for.
  const admin = await adminQueue(s.port, s.nqn, HOST_A);
  const io = await ioQueue(s.port, s.nqn, HOST_A, admin.cntlid);
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x01;
  sqe.writeUInt32LE(1, 4);
  sqe.writeUInt32LE(0, 48); // one block
  sqe.writeUInt16LE(0x77, 2);
  sqe[1] = 0x40;
  sqe.writeUInt32LE(4096, 24 + 8);
  sqe[24 + 15] = 0x5a;
  io.send(io.capsule(sqe, null));
  await new Promise((r) => setTimeout(r, 200));
  io.send(io.h2cData(0x77, 1, 0, Buffer.alloc(8192), true)); // ttag: the first I/O slot is 1 after Connect took slot 0
  await expectTerminated(t, io);
  t.true(io.termReq !== null && [1, 4].includes(io.termReq.fes), `FES ${io.termReq?.fes}`);
  // An unknown command opcode is a command error, not a transport error.
  const bad = Buffer.alloc(64);
  bad[0] = 0x7e;
  bad.writeUInt32LE(1, 4);
  t.is((await s.io.submit(bad)).status, STATUS.invalidOpcode);
  ok(await s.io.write(3, pattern(4096, 3)));
  admin.host.close();
});

test("200 connections opened at once do not hurt the engine", async (t) => {
  const s = await connected(t);
  const hosts = await Promise.all(Array.from({ length: 200 }, () => NvmeTcpHost.open(s.port)));
  await Promise.all(hosts.slice(0, 100).map((h) => h.initialize()));
  ok(await s.io.write(7, pattern(4096, 77)));
  t.true(ok(await s.io.read(7, 1)).data!.equals(pattern(4096, 77)));
  for (const h of hosts) h.close();
  await Promise.all(hosts.map((h) => h.closed));
  ok(await s.io.flush());
});

test("keep-alive: a silent host is torn down after KATO (its queues close, the subsystem lists no host); one that keeps alive stays", async (t) => {
  const s = await sharedReplica(t);
  const n = native();
  const hostsOf = async () => (await n.listSubsystems()).find((x) => x.nqn === s.nqn)!.connected_hosts;

  // Silent: KATO 1 s, no Keep Alive and no other admin command afterwards.
  const silent = await NvmeTcpHost.open(s.port);
  await silent.initialize();
  const c = ok(await silent.connect({ subnqn: s.nqn, hostnqn: HOST_A, kato_ms: 1000 }));
  await silent.enable();
  const silentIo = await ioQueue(s.port, s.nqn, HOST_A, c.dw0 & 0xffff);
  t.is((await hostsOf()).length, 1);
  const started = Date.now();
  const closed = await Promise.race([
    Promise.all([silent.closed, silentIo.closed]).then(() => true),
    new Promise<boolean>((r) => setTimeout(() => r(false), 6000)),
  ]);
  t.true(closed, "both queues were closed by the target");
  const elapsed = Date.now() - started;
  t.true(elapsed >= 900, `torn down after ${elapsed} ms, not before KATO`);
  t.deepEqual(await hostsOf(), []);

  // Alive: Keep Alive every 300 ms for three KATO periods; I/O still works afterwards.
  const alive = await NvmeTcpHost.open(s.port);
  await alive.initialize();
  const c2 = ok(await alive.connect({ subnqn: s.nqn, hostnqn: HOST_A, kato_ms: 1000 }));
  await alive.enable();
  const aliveIo = await ioQueue(s.port, s.nqn, HOST_A, c2.dw0 & 0xffff);
  t.teardown(() => {
    aliveIo.close();
    alive.close();
  });
  for (let i = 0; i < 10; i++) {
    ok(await alive.keepAlive());
    await new Promise((r) => setTimeout(r, 300));
  }
  t.is((await hostsOf()).length, 1);
  ok(await aliveIo.write(0, pattern(4096, 5)));
  t.true(ok(await aliveIo.read(0, 1)).data!.equals(pattern(4096, 5)));
});

test("a command without SGLs (PSDT 00b) is refused with Invalid Field, as the Linux target does; the queue goes on", async (t) => {
  const s = await connected(t);
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x09; // Set Features, Number of Queues: what our initiator once sent without the flag
  sqe.writeUInt32LE(0x07, 40);
  sqe.writeUInt32LE(0x00010001, 44);
  const refused = await s.admin.submit(sqe, { psdt: 0 });
  t.is(refused.status & 0x7ff, 0x002, "Invalid Field in Command");
  ok(await s.admin.setFeatures(0x07, 0x00010001));
  ok(await s.io.write(0, pattern(4096, 7)));
});
