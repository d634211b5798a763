// `strata top`: the rate and latency math over two samples, and the sampler against a real
// engine: writes through a published nexus and reads from a shared replica over NVMe/TCP show up
// as that nexus's write IOPS and that replica's read IOPS, in the functions and in the CLI.
import test from "ava";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { topOptions } from "../../cli/main";
import { connectEngine } from "../../common/client";
import { counterDelta, formatLatency, IoCounters, ioRates, latencyQuantileUs, renderTop, runningTargets, sampleNodes, TopSample, topRows } from "../../cli/top";
import { startEngine } from "../helpers/engine";
import { FRONTEND_NQN, INSPECTOR_NQN, LABEL_REGION_BYTES, MiB } from "../helpers/nexus";
import { adminQueue, ioQueue } from "../native/nvmf/host";
import { clusterHome, runStrata } from "./fixtures/operator/cluster-home";

/** Bucket bounds as the engine reports them: 1, 2, 4, ... 2^23 µs. */
const UPPER_US = Array.from({ length: 24 }, (_, i) => 2 ** i);

function counters(over: Partial<IoCounters> & { buckets?: Record<number, number> } = {}): IoCounters {
  const counts = UPPER_US.map((_, i) => over.buckets?.[i] ?? 0);
  return {
    read_ops: 0,
    write_ops: 0,
    read_bytes: 0,
    write_bytes: 0,
    latency_sum_us: 0,
    latency_bucket_upper_us: UPPER_US,
    latency_bucket_counts: counts,
    ...over,
  };
}

test("rates: ops and bytes over the time between samples, the average latency from the sum", (t) => {
  const before = counters({ read_ops: 100, write_ops: 50, read_bytes: 100 * 4096, write_bytes: 50 * 4096, latency_sum_us: 1000, buckets: { 6: 150 } });
  // 2 s later: 400 more reads of 4 KiB, 1000 more writes of 1 MiB, all between 64 and 128 µs.
  const after = counters({ read_ops: 500, write_ops: 1050, read_bytes: 500 * 4096, write_bytes: 50 * 4096 + 1000 * MiB, latency_sum_us: 1000 + 1400 * 100, buckets: { 6: 150, 7: 1400 } });
  const r = ioRates(before, after, 2000)!;
  t.is(r.read_iops, 200);
  t.is(r.write_iops, 500);
  t.is(r.read_mib_per_s, (400 * 4096) / MiB / 2);
  t.is(r.write_mib_per_s, 500);
  t.is(r.avg_latency_us, 100);
  // All 1400 in the (64, 128] bucket: p99 is 99% of the way through it.
  t.is(r.p99_latency_us, 64 + 64 * 0.99);
});

test("nothing completed: zero rates and no latency; counters that went back (an engine restart): no rates at all", (t) => {
  const same = counters({ read_ops: 7, buckets: { 3: 7 } });
  t.deepEqual(ioRates(same, same, 1000), { read_iops: 0, write_iops: 0, read_mib_per_s: 0, write_mib_per_s: 0, avg_latency_us: null, p99_latency_us: null });
  t.is(ioRates(counters({ write_ops: 10 }), counters({ write_ops: 3 }), 1000), null);
  t.is(counterDelta(counters({ buckets: { 2: 5 } }), counters({ buckets: { 2: 4, 3: 9 } })), null, "a bucket that shrank is a restart too");
  t.is(ioRates(same, same, 0), null, "no time between samples");
});

test("p99 from bucket deltas: interpolated in the bucket it falls in; the last bucket (and slower) gives its lower bound", (t) => {
  // 990 fast (<= 1 µs), 10 between 512 and 1024 µs: the 99th percentile is the 990th command,
  // the last of the fast bucket.
  const counts = UPPER_US.map(() => 0);
  counts[0] = 990;
  counts[10] = 10;
  t.is(latencyQuantileUs(UPPER_US, counts, 0.99), 1);
  // 980 fast, 20 slow: the 990th command is the 10th of the 20 in (512, 1024].
  counts[0] = 980;
  counts[10] = 20;
  t.is(latencyQuantileUs(UPPER_US, counts, 0.99), 512 + 512 * (10 / 20));
  const slowest = UPPER_US.map(() => 0);
  slowest[23] = 5;
  t.is(latencyQuantileUs(UPPER_US, slowest, 0.99), 2 ** 22);
  t.is(latencyQuantileUs(UPPER_US, UPPER_US.map(() => 0), 0.99), null);
  // Deltas, not totals: what was slow before the first sample does not count.
  const d = counterDelta(counters({ buckets: { 20: 1000 } }), counters({ buckets: { 20: 1000, 2: 100 } }))!;
  t.is(latencyQuantileUs(d.latency_bucket_upper_us, d.latency_bucket_counts, 0.99), 2 + 2 * 0.99);
});

test("rows pair volumes by node, kind and uuid; a new volume has no rates yet; the table", (t) => {
  const before: TopSample = { taken_ms: 1_000, volumes: [{ kind: "nexus", node: "node-b", uuid: "n1", counters: counters({ write_ops: 10, write_bytes: 10 * 4096 }) }], unreachable: [] };
  const after: TopSample = {
    taken_ms: 3_000,
    volumes: [
      { kind: "nexus", node: "node-b", uuid: "n1", counters: counters({ write_ops: 2010, write_bytes: 10 * 4096 + 2000 * 4096, latency_sum_us: 2000 * 250, buckets: { 8: 2000 } }) },
      { kind: "replica", node: "node-a", uuid: "r1", counters: counters({ read_ops: 5 }) },
    ],
    unreachable: [{ node: "node-c", reason: "UNAVAILABLE" }],
  };
  const rows = topRows(before, after);
  t.deepEqual(rows.map((r) => [r.node, r.kind, r.uuid]), [["node-a", "replica", "r1"], ["node-b", "nexus", "n1"]]);
  t.is(rows[0].rates, null);
  t.is(rows[1].rates!.write_iops, 1000);
  t.is(
    renderTop(rows, after, 2000),
    [
      "strata top - 1970-01-01T00:00:03.000Z, rates over the last 2.0 s",
      "",
      "NODE    KIND     UUID  R IOPS  W IOPS  R MiB/s  W MiB/s  AVG LAT  P99 LAT",
      "node-a  replica  r1    -       -       -        -        -        -",
      "node-b  nexus    n1    0       1000    0.0      3.9      250µs    255µs",
      "node-c: not sampled (UNAVAILABLE)",
    ].join("\n"),
  );
  t.is(formatLatency(12_345), "12.3ms");
  t.is(formatLatency(2_500_000), "2.50s");
});

test("top's flags", (t) => {
  t.like(topOptions(["--interval-ms", "500", "--iterations", "3", "--dir", "/x"]), { interval_ms: 500, iterations: 3, home: "/x" });
  t.is(topOptions([]).iterations, Infinity);
  t.throws(() => topOptions(["--iterations", "0"]), { message: '--iterations must be a positive whole number, got "0"' });
  t.throws(() => topOptions(["--interval-ms"]), { message: "--interval-ms needs a value" });
  t.throws(() => topOptions(["--interval-ms", "10"]), { message: "--interval-ms must be at least 100, got 10" });
  t.throws(() => topOptions(["--watch"]), { message: 'unknown argument "--watch" for top' });
});

test("a real engine: writes through a published nexus are its write IOPS, reads of a shared replica that replica's read IOPS", async (t) => {
  const engine = await startEngine({ node: "node-a", labels: "zone=zone-a" });
  t.teardown(() => engine.kill());
  const c = engine.connect();
  t.teardown(() => c.close());
  await c.call("CreatePool", { uuid: randomUUID(), name: "pool-a", device_uri: `file://${join(engine.dir, "disk.img")}?size_mib=128`, cluster_size_bytes: MiB });
  const child = randomUUID();
  const shared = randomUUID();
  await c.call("CreateReplica", { uuid: child, name: "child", pool: "pool-a", size_bytes: 16 * MiB + LABEL_REGION_BYTES, thin: true });
  await c.call("CreateReplica", { uuid: shared, name: "shared", pool: "pool-a", size_bytes: 16 * MiB, thin: true });
  const nexus = randomUUID();
  await c.call("CreateNexus", { uuid: nexus, size_bytes: 16 * MiB, children: [`replica:///${child}`], child_io_timeout_ms: 2000 }, 60_000);
  const published = await c.call("PublishNexus", { uuid: nexus, frontend_host_nqn: FRONTEND_NQN });
  const sub = await c.call("ShareReplica", { uuid: shared, allowed_host_nqns: [INSPECTOR_NQN] });

  const port = (address: string) => Number(address.split(":").pop());
  const front = await adminQueue(port(published.address), published.nqn, FRONTEND_NQN);
  const frontIo = await ioQueue(port(published.address), published.nqn, FRONTEND_NQN, front.cntlid);
  const inspector = await adminQueue(port(sub.address), sub.nqn, INSPECTOR_NQN);
  const inspectorIo = await ioQueue(port(sub.address), sub.nqn, INSPECTOR_NQN, inspector.cntlid);
  t.teardown(() => [frontIo, front.host, inspectorIo, inspector.host].forEach((h) => h.socket.destroy()));

  const home = clusterHome(t, engine, { zone: "zone-a" });
  const targets = runningTargets(home);
  t.deepEqual(targets.map((x) => x.node), ["node-a"]);
  const engines = targets.map((x) => connectEngine(x));
  t.teardown(() => engines.forEach((e) => e.close()));
  const before = await sampleNodes(engines);
  const block = Buffer.alloc(4096, 0x5a);
  for (let i = 0; i < 64; i++) t.is((await frontIo.write(i, block)).status, 0);
  for (let i = 0; i < 16; i++) t.is((await inspectorIo.read(i, 1)).status, 0);
  const after = await sampleNodes(engines);
  const elapsed_s = (after.taken_ms - before.taken_ms) / 1000;

  const rows = topRows(before, after);
  const nexusRow = rows.find((r) => r.kind === "nexus" && r.uuid === nexus)!;
  const replicaRow = rows.find((r) => r.kind === "replica" && r.uuid === shared)!;
  t.truthy(nexusRow, JSON.stringify(rows));
  t.truthy(replicaRow, JSON.stringify(rows));
  t.true(nexusRow.rates!.write_iops > 0);
  // The rates are the counted commands over the time between samples, nothing lost or doubled.
  t.is(Math.round(nexusRow.rates!.write_iops * elapsed_s), 64);
  t.is(Math.round(nexusRow.rates!.read_iops * elapsed_s), 0);
  t.is(Math.round(nexusRow.rates!.write_mib_per_s * elapsed_s * 1024), 64 * 4);
  t.true(nexusRow.rates!.avg_latency_us! > 0);
  t.true(nexusRow.rates!.p99_latency_us! > 0);
  t.is(Math.round(replicaRow.rates!.read_iops * elapsed_s), 16);
  t.is(Math.round(replicaRow.rates!.write_iops * elapsed_s), 0);
  t.false(rows.some((r) => r.uuid === child), "the nexus's local child is not shared: its I/O is the nexus's line");

  // The CLI, through a pipe (no terminal: appended tables, no screen clearing), while writes go on.
  let writing = true;
  const writes = (async () => {
    for (let i = 0; writing; i = (i + 1) % 4096) if ((await frontIo.write(i, block)).status !== 0) throw new Error("write failed");
  })();
  const cli = await runStrata(["top", "--iterations", "2", "--interval-ms", "400", "--dir", home]);
  writing = false;
  await writes;
  t.is(cli.code, 0, cli.stderr);
  t.log(cli.stdout);
  t.false(cli.stdout.includes("\x1b[2J"));
  const frames = cli.stdout.split(/\n(?=strata top - )/);
  t.is(frames.length, 2, cli.stdout);
  for (const frame of frames) {
    const line = frame.split("\n").find((l) => l.includes(nexus));
    t.truthy(line, frame);
    const [node, kind, , rIops, wIops] = line!.split(/\s+/);
    t.deepEqual([node, kind], ["node-a", "nexus"]);
    t.is(rIops, "0");
    t.true(Number(wIops) > 0, line);
    t.regex(line!, /[\d.]+(µs|ms)\s+[\d.]+(µs|ms)$/, "average and p99 latency");
  }
  t.regex(cli.stdout, new RegExp(`node-a\\s+replica\\s+${shared}\\s+0\\s+0\\s+0\\.0\\s+0\\.0\\s+-\\s+-`), "an idle shared replica: zero rates, no latency");

  const usage = await runStrata(["top", "--iterations", "x"]);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /^strata: --iterations must be a positive whole number, got "x"\n\nusage: strata <command>/);
});
