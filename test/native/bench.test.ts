// The native load generator, and the promise that an idle engine sleeps.
import test from "ava";
import { randomUUID } from "node:crypto";
import { MiB, native, tempPool } from "./helpers";

test.serial("benchReplica drives I/O natively and reports IOPS, throughput and latency", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "bench", size_bytes: 16 * MiB, thin: false });
  for (const pattern of ["randwrite", "randread", "write", "read"] as const) {
    const res = await n.benchReplica({ uuid: r.uuid, pattern, block_size_bytes: 4096, queue_depth: 16, duration_ms: 200, span_bytes: 8 * MiB });
    t.true(res.ops > 0, pattern);
    t.is(res.bytes, res.ops * 4096);
    t.true(res.elapsed_us >= 200_000);
    t.true(res.iops > 0 && res.mib_per_s > 0);
    t.true(res.lat_p50_us <= res.lat_p99_us);
  }
  const stats = await n.getStats({ uuid: r.uuid });
  t.true(stats.write_ops > 0 && stats.read_ops > 0);
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
});

test.serial("an idle engine uses almost no CPU (reactors sleep instead of polling)", async (t) => {
  native();
  await tempPool(t);
  await new Promise((r) => setTimeout(r, 100));
  const before = process.cpuUsage();
  await new Promise((r) => setTimeout(r, 1000));
  const used = process.cpuUsage(before);
  const cpuMs = (used.user + used.system) / 1000;
  t.true(cpuMs < 100, `idle engine used ${cpuMs} ms of CPU in 1 s`);
});

test.serial("reactors count their work, and an idle reactor stops polling and sleeps", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "poll", size_bytes: 16 * MiB, thin: false });
  const sum = () => n.reactorCounters().reduce((a, c) => ({ sleeps: a.sleeps + c.sleeps, polls: a.polls + c.polls, completions: a.completions + c.completions }), { sleeps: 0, polls: 0, completions: 0 });
  // How often a busy qd1 stream sleeps depends on the machine's load (a yielded CPU may come
  // back after the window): bench:nvmf reports it per I/O. Here: every I/O went through a ring.
  const busy0 = sum();
  const res = await n.benchReplica({ uuid: r.uuid, pattern: "randwrite", block_size_bytes: 4096, queue_depth: 1, duration_ms: 300, span_bytes: 8 * MiB });
  const busy1 = sum();
  t.true(busy1.completions - busy0.completions >= res.ops, "every I/O completed through the ring");
  // Idle: the window shrinks to nothing, so a reactor polls at most briefly after the last work
  // (a reactor that kept polling would count hundreds of thousands of turns a second).
  await new Promise((resolve) => setTimeout(resolve, 200));
  const idle0 = sum();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const idle1 = sum();
  t.true(idle1.polls - idle0.polls < 1000, `idle reactors polled ${idle1.polls - idle0.polls} times in 1 s`);
  t.true(idle1.sleeps - idle0.sleeps < 100, `idle reactors woke ${idle1.sleeps - idle0.sleeps} times in 1 s`);
});
