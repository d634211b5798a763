// The NVMe/TCP initiator (nvmf:// devices) against our own target in the same process:
// probe, data both ways, large I/O, flush, deallocate, refused host, reconnect, I/O timeout.
import test from "ava";
import { randomUUID } from "node:crypto";
import { MiB, native, pattern, tempPool } from "../helpers";
import type { ExecutionContext } from "ava";

const HOST = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-4000-8000-000000000003";
const STRANGER = "nqn.2014-08.org.nvmexpress:uuid:dddddddd-0000-4000-8000-000000000004";

let ports: Promise<{ listen_port: number; discovery_port: number }> | null = null;
function target(): Promise<{ listen_port: number; discovery_port: number }> {
  ports ??= native().startNvmf({ listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0 });
  return ports;
}

async function shared(t: ExecutionContext, params = "") {
  const { listen_port } = await target();
  const n = native();
  const { pool } = await tempPool(t, 128);
  const uuid = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: `r-${uuid.slice(0, 8)}`, size_bytes: 64 * MiB, thin: true });
  const { nqn } = await n.shareReplica({ uuid, allowed_host_nqns: [HOST] });
  t.teardown(() => n.unshareReplica({ uuid }));
  const uri = `nvmf://127.0.0.1:${listen_port}/${nqn}?hostnqn=${HOST}${params}`;
  return { uuid, nqn, uri, port: listen_port };
}

test.serial("probe an nvmf:// device: size is the replica's", async (t) => {
  const s = await shared(t);
  const d = await native().probeDevice({ uri: s.uri });
  t.is(d.size_bytes, 64 * MiB);
  t.is(d.block_size_bytes, 4096);
  t.is(d.uri, `nvmf://127.0.0.1:${s.port}/${s.nqn}`);
});

test.serial("write through the initiator, read via replicaRead, and back; 4 KiB and 1 MiB", async (t) => {
  const n = native();
  const s = await shared(t);
  for (const [offset, len, seed] of [
    [0, 4096, 1],
    [8 * MiB, MiB, 2],
  ] as const) {
    const data = pattern(len, seed);
    await n.deviceIo({ uri: s.uri, kind: "write", offset_bytes: offset, length_bytes: len, data });
    t.true((await n.replicaRead({ uuid: s.uuid, offset_bytes: offset, length_bytes: len })).equals(data));
    const back = pattern(len, seed + 10);
    await n.replicaWrite({ uuid: s.uuid, offset_bytes: offset + 16 * MiB, data: back });
    const got = await n.deviceIo({ uri: s.uri, kind: "read", offset_bytes: offset + 16 * MiB, length_bytes: len, data: null });
    t.true(got!.equals(back));
  }
  await n.deviceIo({ uri: s.uri, kind: "flush", offset_bytes: 0, length_bytes: 0, data: null });
  await n.deviceIo({ uri: s.uri, kind: "deallocate", offset_bytes: 8 * MiB, length_bytes: MiB, data: null });
  t.true((await n.replicaRead({ uuid: s.uuid, offset_bytes: 8 * MiB, length_bytes: MiB })).equals(Buffer.alloc(MiB)));
});

test.serial("a host NQN that is not allowed: probe fails naming the NQN", async (t) => {
  const s = await shared(t);
  const uri = s.uri.replace(HOST, STRANGER);
  const err = await t.throwsAsync(native().probeDevice({ uri }));
  t.regex(err!.message, new RegExp(STRANGER.replace(/[.:-]/g, "\\$&")));
  t.regex(err!.message, /not allowed/);
});

test.serial("benchDevice spreads its queue depth over both I/O queues; every block written carries the bench's bytes", async (t) => {
  const n = native();
  const s = await shared(t);
  const span = 8 * MiB;
  // Sequential writes from two jobs (one per reactor, each on its own queue) over the span.
  const r = await n.benchDevice({ uri: s.uri, pattern: "write", block_size_bytes: 4096, queue_depth: 8, duration_ms: 500, span_bytes: span, jobs: 2 });
  t.true(r.ops >= span / 4096, `only ${r.ops} writes: the span was not covered`);
  // The bench fills each 4 KiB buffer with its own byte offsets as u64s.
  const want = Buffer.alloc(4096);
  for (let b = 0; b < 4096; b += 8) want.writeBigUInt64LE(BigInt(b), b);
  const got = await n.replicaRead({ uuid: s.uuid, offset_bytes: 0, length_bytes: span });
  for (let off = 0; off < span; off += 4096) {
    if (!got.subarray(off, off + 4096).equals(want)) return t.fail(`block at ${off} does not hold the bench's bytes`);
  }
  const bad = await t.throwsAsync(n.benchDevice({ uri: s.uri, pattern: "randread", block_size_bytes: 4096, queue_depth: 2, duration_ms: 100, span_bytes: span, jobs: 3 }));
  t.regex(bad!.message, /jobs 3 must be 1 to queue_depth \(2\)/);
});

test.serial("connection loss: the controller reconnects and I/O continues", async (t) => {
  const n = native();
  const s = await shared(t, "&io_timeout_ms=10000");
  // A long bench keeps the controller open across the unshare/share.
  const bench = n.benchDevice({ uri: s.uri, pattern: "randwrite", block_size_bytes: 4096, queue_depth: 4, duration_ms: 3000, span_bytes: 8 * MiB });
  await new Promise((r) => setTimeout(r, 500));
  await n.unshareReplica({ uuid: s.uuid });
  await new Promise((r) => setTimeout(r, 300));
  const during = (await n.listControllers()).find((c) => c.uri.includes(s.nqn));
  t.truthy(during);
  t.not(during!.state, "live");
  await n.shareReplica({ uuid: s.uuid, allowed_host_nqns: [HOST] });
  let after = during!;
  for (let i = 0; i < 50 && after.state !== "live"; i++) {
    await new Promise((r) => setTimeout(r, 100));
    after = (await n.listControllers()).find((c) => c.uri.includes(s.nqn)) ?? after;
  }
  t.is(after.state, "live");
  t.true(after.reconnects >= 1);
  t.is(after.queues, 2);
  const result = await bench; // fails if any I/O issued during the outage was lost
  t.true(result.ops > 0);
  const data = pattern(4096, 7);
  await n.deviceIo({ uri: s.uri, kind: "write", offset_bytes: 0, length_bytes: 4096, data });
  t.true((await n.replicaRead({ uuid: s.uuid, offset_bytes: 0, length_bytes: 4096 })).equals(data));
});

test.serial("an I/O that cannot complete fails with a timeout within its configured timeout", async (t) => {
  const n = native();
  const s = await shared(t, "&io_timeout_ms=2000");
  const bench = n.benchDevice({ uri: s.uri, pattern: "randread", block_size_bytes: 4096, queue_depth: 1, duration_ms: 60000, span_bytes: 8 * MiB });
  await new Promise((r) => setTimeout(r, 300));
  await n.unshareReplica({ uuid: s.uuid });
  const started = Date.now();
  const err = await t.throwsAsync(bench);
  const waited = Date.now() - started;
  t.regex(err!.message, /timed out/i);
  t.true(waited <= 3500, `failed after ${waited} ms`);
});

test.serial("a pool on an nvmf:// device: create, write, read, export", async (t) => {
  const n = native();
  const s = await shared(t);
  const pool = await n.createPool({ uuid: randomUUID(), name: `nv-${randomUUID().slice(0, 8)}`, device_uri: s.uri, cluster_size_bytes: MiB, force: false });
  const uuid = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: "inner", size_bytes: 8 * MiB, thin: true });
  const data = pattern(128 * 1024, 9);
  await n.replicaWrite({ uuid, offset_bytes: MiB, data });
  t.true((await n.replicaRead({ uuid, offset_bytes: MiB, length_bytes: data.length })).equals(data));
  t.true((await n.listControllers()).some((c) => c.uri.includes(s.nqn) && c.state === "live" && c.queues === 2));
  await n.exportPool({ uuid: pool.uuid });
  // The controller closes with the device; its queues finish closing on their reactors, so it
  // leaves the list a moment later (longer under the sanitizers).
  let lingering = true;
  for (let i = 0; i < 100 && lingering; i++) {
    lingering = (await n.listControllers()).some((c) => c.uri.includes(s.nqn) && c.state !== "closed");
    if (lingering) await new Promise((r) => setTimeout(r, 20));
  }
  t.false(lingering, "the export closed the pool's NVMe/TCP controller");
});
