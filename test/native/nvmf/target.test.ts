// The NVMe/TCP target through a spec-level test host (host.ts): connection setup with and
// without digests, Connect rules, I/O through in-capsule data, R2T and C2HData, and
// robustness: every malformed PDU ends only its own connection. Bounds: a host that never
// reads stalls instead of growing memory, the per-listener connection cap, the Connect
// deadline, discovery KATO, controller id reuse, and the reconnect fence.
import test from "ava";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadNative } from "../../../native";
import { expectCode, MiB, native, pattern, tempPool } from "../helpers";
import { adminQueue, BLOCK_BYTES, DISCOVERY_NQN, getLogPageSqe, ioQueue, NvmeTcpHost, ok, STATUS } from "./host";
import type { ExecutionContext } from "ava";

// First start in this worker wins: with fault injection (nexus children only), for the fence test.
loadNative().start({ cores: 2, fault_injection: true });

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

// ---- bounds: what an unauthenticated peer can make the target hold ---------------------------
// These run serially (ava runs serial tests before the concurrent ones): they measure this
// process's RSS and fill a listener up to its connection cap, which concurrent tests would
// disturb or be disturbed by.

/** The resident set of this process, which hosts the addon (and so the target). */
function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return Number(m![1]) * 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Thousands of 1 MiB Get Log Page commands: before the fix the target queued every response
// (about 1 GiB per thousand). STRATA_FLOOD_COMMANDS lowers it to show that on old code safely.
const FLOOD_COMMANDS = Number(process.env.STRATA_FLOOD_COMMANDS ?? 4000);

test.serial("a discovery host that floods 1 MiB Get Log Page commands and never reads is throttled; other hosts' I/O goes on", async (t) => {
  const s = await connected(t);
  const { discovery_port } = await target();
  const flood = await NvmeTcpHost.open(discovery_port);
  t.teardown(() => flood.close());
  await flood.initialize();
  ok(await flood.connect({ subnqn: DISCOVERY_NQN, hostnqn: HOST_B }));
  flood.pauseReading();
  // One batch of 100 capsules (72 bytes each, 1 MiB asked of each), written over and over.
  const sqe = getLogPageSqe(0x70, MiB);
  const batch = Buffer.concat(Array.from({ length: 100 }, (_, i) => flood.forgeRead(Buffer.from(sqe), i + 1, MiB)));
  const before = rssBytes();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes())), 10);
  t.teardown(() => clearInterval(sampler));
  let sent = 0;
  const flooding = (async () => {
    while (sent < FLOOD_COMMANDS) {
      flood.socket.write(batch);
      sent += 100;
      await new Promise((r) => setImmediate(r));
    }
  })();
  // Meanwhile another host writes and reads back a shared replica (paced: the garbage this
  // test's own JavaScript makes also counts in the RSS).
  let rounds = 0;
  let mismatches = 0;
  for (; rounds < 100; rounds++) {
    const data = pattern(32 * 1024, 1000 + rounds);
    ok(await s.io.write(4096 + (rounds % 64) * 8, data, false));
    if (!ok(await s.io.read(4096 + (rounds % 64) * 8, 8)).data!.equals(data)) mismatches++;
    await sleep(10);
  }
  t.is(mismatches, 0, "every round read back what it wrote");
  await flooding;
  await sleep(1000);
  peak = Math.max(peak, rssBytes());
  const growthMiB = (peak - before) / MiB;
  t.log(`${sent} commands of 1 MiB sent; RSS ${(before / MiB).toFixed(0)} MiB -> peak ${(peak / MiB).toFixed(0)} MiB (+${growthMiB.toFixed(1)}); ${rounds} I/O rounds meanwhile`);
  if (!t.true(growthMiB < 64, `RSS grew by ${growthMiB.toFixed(1)} MiB`)) return;
  // The target stopped reading: keep writing and the bytes stay queued on our side (the
  // kernel buffers on loopback hold a few MiB; beyond that nothing drains).
  let pumped = 0;
  while (flood.socket.write(batch) && pumped < 200_000) pumped += 100;
  await sleep(1000);
  t.true(flood.socket.writableLength > 0, `the target still reads after ${pumped} more commands`);
  t.log(`${pumped} more commands written before the socket stopped draining; ${flood.socket.writableLength} bytes still queued`);
  peak = Math.max(peak, rssBytes());
  t.true((peak - before) / MiB < 64, `RSS grew by ${((peak - before) / MiB).toFixed(1)} MiB while pumping`);
  // Still serving the other host.
  const last = pattern(4096, 99);
  ok(await s.io.write(1, last));
  t.true(ok(await s.io.read(1, 1)).data!.equals(last));
});

// Must match kMaxConnectionsPerListener in native/src/nvmf/target.cc.
const MAX_CONNECTIONS_PER_LISTENER = 1024;

test.serial("connections beyond the per-listener cap are refused (closed at once); the ones already open keep working", async (t) => {
  const s = await connected(t); // on the I/O listener: not counted against the discovery one
  const { discovery_port } = await target();
  const total = MAX_CONNECTIONS_PER_LISTENER + 100;
  const hosts: NvmeTcpHost[] = [];
  t.teardown(() => hosts.forEach((h) => h.close()));
  for (let i = 0; i < total; i += 100) {
    hosts.push(...(await Promise.all(Array.from({ length: Math.min(100, total - i) }, () => NvmeTcpHost.open(discovery_port)))));
  }
  let closed = new Set<NvmeTcpHost>();
  for (const h of hosts) void h.closed.then(() => closed.add(h));
  await sleep(1000);
  t.log(`${total} opened, ${closed.size} closed by the target`);
  t.true(closed.size >= total - MAX_CONNECTIONS_PER_LISTENER, `only ${closed.size} refused`);
  t.true(closed.size <= 110, `${closed.size} refused: more than the cap allows (some connections of earlier tests may still be closing)`);
  t.false(hosts.slice(0, 100).some((h) => closed.has(h)), "the first connections were accepted");
  // An accepted one still does discovery; the I/O listener is unaffected.
  const first = hosts[0];
  await first.initialize();
  ok(await first.connect({ subnqn: DISCOVERY_NQN, hostnqn: HOST_A }));
  t.is(ok(await first.getLogPage(0x70, 1024)).data!.length, 1024);
  ok(await s.io.write(2, pattern(4096, 2)));
  t.true(ok(await s.io.read(2, 1)).data!.equals(pattern(4096, 2)));
  // Once they close, the listener accepts again.
  hosts.forEach((h) => h.close());
  await Promise.all(hosts.map((h) => h.closed));
  closed = new Set();
  for (let attempt = 0; ; attempt++) {
    const h = await NvmeTcpHost.open(discovery_port);
    const answered = await Promise.race([h.initialize().then(() => true), h.closed.then(() => false)]);
    h.close();
    if (answered) break;
    if (attempt > 50) return t.fail("the discovery listener stays full after its connections closed");
    await sleep(100);
  }
  t.pass();
});

test.serial("controller ids are reused once their controller is gone, not handed out round-robin", async (t) => {
  const s = await sharedReplica(t);
  const n = native();
  const hostsOf = async () => (await n.listSubsystems()).find((x) => x.nqn === s.nqn)!.connected_hosts;
  const ids = new Set<number>();
  for (let i = 0; i < 100; i++) {
    const { host, cntlid } = await adminQueue(s.port, s.nqn, HOST_A);
    ids.add(cntlid);
    host.close();
    await host.closed;
    while ((await hostsOf()).length > 0) await sleep(5);
  }
  t.log(`100 controllers created one after the other used controller ids ${[...ids].join(", ")}`);
  t.true(ids.size <= 3, `${ids.size} distinct ids`);
});

test("a discovery controller connected with KATO 0 gets a 2 minute keep-alive timeout", async (t) => {
  const { discovery_port } = await target();
  const h = await NvmeTcpHost.open(discovery_port);
  t.teardown(() => h.close());
  await h.initialize();
  ok(await h.connect({ subnqn: DISCOVERY_NQN, hostnqn: HOST_B, kato_ms: 0 }));
  t.is(ok(await h.getFeatures(0x0f)).dw0, 120_000);
  // Setting 0 later means the same.
  ok(await h.setFeatures(0x0f, 0));
  t.is(ok(await h.getFeatures(0x0f)).dw0, 120_000);
  ok(await h.setFeatures(0x0f, 30_000));
  t.is(ok(await h.getFeatures(0x0f)).dw0, 30_000);
});

test("a connection that does not complete ICReq and Connect within 10 s is closed", async (t) => {
  const s = await sharedReplica(t);
  const silent = await NvmeTcpHost.open(s.port); // never sends ICReq
  const noConnect = await NvmeTcpHost.open(s.port); // ICReq, then nothing
  await noConnect.initialize();
  const refused = await NvmeTcpHost.open(s.port); // ICReq and a refused Connect
  await refused.initialize();
  t.is((await refused.connect({ subnqn: s.nqn, hostnqn: HOST_B })).status, STATUS.connectInvalidHost);
  const good = await adminQueue(s.port, s.nqn, HOST_A); // connected: stays
  t.teardown(() => [silent, noConnect, refused, good.host].forEach((h) => h.close()));
  const started = Date.now();
  const when = (h: NvmeTcpHost) => Promise.race([h.closed.then(() => Date.now() - started), sleep(13_000).then(() => -1)]);
  const [a, b, c] = await Promise.all([when(silent), when(noConnect), when(refused)]);
  t.log(`closed after ${a}, ${b}, ${c} ms`);
  for (const ms of [a, b, c]) t.true(ms >= 8_000 && ms <= 12_000, `closed after ${ms} ms`);
  ok(await good.host.keepAlive());
  // Before Connect, a data transfer larger than the Connect data is refused without a buffer.
  const big = await NvmeTcpHost.open(s.port);
  t.teardown(() => big.close());
  await big.initialize();
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x7f;
  sqe[4] = 0x01;
  sqe.writeUInt16LE(31, 44);
  const answer = await big.submit(sqe, { write: Buffer.alloc(MiB) });
  t.is(answer.status, 0x00f, "Data SGL Length Invalid");
});

// ---- fencing: a reconnecting host never races its own old commands ----------------------------

/** A nexus over one local replica (its child wrapped for fault injection), published to HOST_A. */
async function publishedNexus(t: ExecutionContext): Promise<{ uuid: string; nqn: string; child: string; port: number }> {
  const { listen_port } = await target();
  const n = native();
  const { pool } = await tempPool(t, 64);
  const replica = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid: replica, name: `f-${replica.slice(0, 8)}`, size_bytes: 17 * MiB, thin: true });
  const uuid = randomUUID();
  const child = `replica:///${replica}`;
  await n.createNexus({ uuid, size_bytes: 16 * MiB, children: [child], child_io_timeout_ms: 30_000 });
  t.teardown(() => n.destroyNexus({ uuid }));
  const { nqn } = await n.publishNexus({ uuid, frontend_host_nqn: HOST_A });
  t.teardown(() => n.unpublishNexus({ uuid, frontend_host_nqn: HOST_A }));
  return { uuid, nqn, child, port: listen_port };
}

/** Waits until the target lists `count` live controllers on the subsystem: it has seen the others close. */
async function liveControllers(nqn: string, count: number): Promise<void> {
  while ((await native().listSubsystems()).find((x) => x.nqn === nqn)!.connected_hosts.length !== count) await sleep(5);
}

async function delayWrites(uuid: string, child: string, delay_ms: number): Promise<void> {
  await native().injectFault({ uuid, child_uri: child, op: "write", error: "none", delay_ms, offset_bytes: 0, length_bytes: 0, count: 1 });
}

test("fence: after a host drops a controller with a write still executing, its new Connect is answered once that write is done", async (t) => {
  const x = await publishedNexus(t);
  const old = await adminQueue(x.port, x.nqn, HOST_A);
  const oldIo = await ioQueue(x.port, x.nqn, HOST_A, old.cntlid);
  await delayWrites(x.uuid, x.child, 2000);
  const ghost = pattern(4096, 0x6057);
  const writeSent = Date.now();
  void oldIo.write(100, ghost).catch(() => undefined);
  await sleep(200);
  // Meanwhile a second live controller of the same host (multipath) is not held back.
  const live = await adminQueue(x.port, x.nqn, HOST_A);
  t.teardown(() => live.host.close());
  oldIo.close();
  old.host.close();
  // The fence covers controllers the target has deleted. A host that reconnects before the
  // target saw its old connection end is, to the target, a second path (multipath).
  await liveControllers(x.nqn, 1);
  const started = Date.now();
  const h = await NvmeTcpHost.open(x.port);
  t.teardown(() => h.close());
  await h.initialize();
  const c = ok(await h.connect({ subnqn: x.nqn, hostnqn: HOST_A }));
  const answered = Date.now();
  t.log(`the new Connect was answered after ${answered - started} ms, ${answered - writeSent} ms after the old write was sent`);
  t.true(answered - writeSent >= 1900, `answered ${answered - writeSent} ms after the old write (delayed 2 s) was sent`);
  await h.enable();
  // The old write is on the medium now; what the host writes through the new controller wins.
  const io = await ioQueue(x.port, x.nqn, HOST_A, c.dw0 & 0xffff);
  t.teardown(() => io.close());
  t.true(ok(await io.read(100, 1)).data!.equals(ghost), "the old write finished before the Connect was answered");
  const fresh = pattern(4096, 0xf7e5);
  ok(await io.write(100, fresh));
  await sleep(300);
  t.true(ok(await io.read(100, 1)).data!.equals(fresh));
  // Another host NQN, or a live controller's Connect, was never fenced (checked above by `live`).
  ok(await live.host.keepAlive());
});

test("fence: a Connect held back longer than 5 s gets a retryable Controller Busy; the retry after the write succeeds", async (t) => {
  const x = await publishedNexus(t);
  const old = await adminQueue(x.port, x.nqn, HOST_A);
  const oldIo = await ioQueue(x.port, x.nqn, HOST_A, old.cntlid);
  await delayWrites(x.uuid, x.child, 7000);
  void oldIo.write(200, pattern(4096, 1)).catch(() => undefined);
  await sleep(200);
  oldIo.close();
  old.host.close();
  await liveControllers(x.nqn, 0);
  const started = Date.now();
  const h = await NvmeTcpHost.open(x.port);
  t.teardown(() => h.close());
  await h.initialize();
  const busy = await h.connect({ subnqn: x.nqn, hostnqn: HOST_A });
  const waited = Date.now() - started;
  t.log(`answered after ${waited} ms with status 0x${busy.status.toString(16)}, DNR ${busy.dnr}`);
  t.is(busy.status, STATUS.connectControllerBusy);
  t.false(busy.dnr, "DNR clear: the host retries");
  t.true(waited >= 4500 && waited <= 6500, `after ${waited} ms`);
  await sleep(7500 - waited);
  const again = await NvmeTcpHost.open(x.port);
  t.teardown(() => again.close());
  await again.initialize();
  ok(await again.connect({ subnqn: x.nqn, hostnqn: HOST_A }));
});

test("a grown namespace: Identify and I/O see the new size at once; the Namespace Attribute Changed notice goes only to controllers that enabled it, waits for an AER, is not repeated until log page 0x04 is read with RAE clear", async (t) => {
  const s = await connected(t);
  const n = native();
  const nsze = async (h: NvmeTcpHost) => Number(ok(await h.identify(0, 1)).data!.readBigUInt64LE(0));
  const changedList = async (h: NvmeTcpHost, rae: boolean) => {
    const sqe = getLogPageSqe(0x04, 4096);
    if (rae) sqe.writeUInt32LE(sqe.readUInt32LE(40) | (1 << 15), 40);
    return ok(await h.submit(sqe, { readBytes: 4096 })).data!.readUInt32LE(0);
  };
  const aer = (h: NvmeTcpHost) => {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x0c;
    let done: { dw0: number; status: number } | null = null;
    const p = h.submit(sqe).then((c) => (done = c));
    p.catch(() => undefined);
    return { p, done: () => done };
  };
  const settle = () => new Promise((r) => setTimeout(r, 300));
  // A second controller of another host that never enables the notice.
  await n.shareReplica({ uuid: s.uuid, allowed_host_nqns: [HOST_A, HOST_B] });
  const quiet = await adminQueue(s.port, s.nqn, HOST_B);
  t.teardown(() => quiet.host.close());
  const quietAer = aer(quiet.host);

  t.is(await changedList(s.admin, false), 0, "nothing changed yet");
  t.is(await nsze(s.admin), (64 * MiB) / BLOCK_BYTES);
  t.is((await s.io.read((64 * MiB) / BLOCK_BYTES, 1)).status, STATUS.lbaOutOfRange);

  // Enabled, but no AER held: the notice waits for the next one.
  ok(await s.admin.setFeatures(0x0b, 1 << 8));
  await n.resizeReplica({ uuid: s.uuid, size_bytes: 80 * MiB });
  t.is(await nsze(s.admin), (80 * MiB) / BLOCK_BYTES, "Identify reports the new size at once");
  t.is((await s.io.write((72 * MiB) / BLOCK_BYTES, pattern(4096, 7))).status, 0, "the I/O queue serves the grown range");
  t.deepEqual(ok(await s.io.read((72 * MiB) / BLOCK_BYTES, 1)).data, pattern(4096, 7));
  const first = aer(s.admin);
  const c1 = await first.p;
  t.is(c1.status, 0);
  t.is(c1.dw0, 0x040002, "Notice / Namespace Attribute Changed / log page 0x04");

  // Masked until the log is read with RAE clear: a second change sends nothing new.
  const second = aer(s.admin);
  await n.resizeReplica({ uuid: s.uuid, size_bytes: 88 * MiB });
  await settle();
  t.is(second.done(), null, "no duplicate notice while the first is unread");
  t.is(await changedList(s.admin, true), 1, "RAE set: NSID 1 listed and retained");
  await n.resizeReplica({ uuid: s.uuid, size_bytes: 92 * MiB });
  await settle();
  t.is(second.done(), null, "still masked after a read with RAE set");
  t.is(await changedList(s.admin, false), 1, "RAE clear: listed, then consumed");
  t.is(await changedList(s.admin, false), 0, "the list was cleared by the read");
  await n.resizeReplica({ uuid: s.uuid, size_bytes: 96 * MiB });
  t.is((await second.p).dw0, 0x040002, "unmasked: the next change is announced on the held AER");

  // The host that never enabled the notice got none, but its Changed Namespace List has NSID 1.
  t.is(quietAer.done(), null);
  t.is(await changedList(quiet.host, false), 1);
  t.is(await nsze(quiet.host), (96 * MiB) / BLOCK_BYTES);
});
