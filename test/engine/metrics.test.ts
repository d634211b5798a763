// Prometheus metrics (engine/metrics.ts, --metrics-listen): the exposition follows the text
// format and the naming conventions, and the counters move with real I/O through NVMe/TCP.
import test from "ava";
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderMetrics, type MetricsSnapshot } from "../../engine/metrics";
import { startEngine, TestEngine, nvmfPortOf } from "../helpers/engine";
import { pattern } from "../native/helpers";
import { adminQueue, ioQueue, ok } from "../native/nvmf/host";

const MiB = 1024 * 1024;
const HOST = "nqn.2014-08.org.nvmexpress:uuid:3e700000-0000-4000-8000-00000000e7e7";
const engines: TestEngine[] = [];
test.after.always(async () => {
  for (const e of engines) await e.stop();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A strict reader of the text format: every sample must belong to a family declared before it. */
function parse(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.trimEnd().split("\n")) {
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      if (types.has(type[1])) throw new Error(`family ${type[1]} declared twice`);
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    const family = m[1].replace(/_(bucket|sum|count)$/, "");
    if (!types.has(m[1]) && !(types.get(family) === "histogram")) throw new Error(`sample ${m[1]} before its # TYPE`);
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { types, samples };
}

const stats = (over: Partial<Record<string, unknown>> = {}) => ({
  uuid: "",
  read_ops: 3,
  write_ops: 5,
  read_bytes: 3 * 4096,
  write_bytes: 5 * 4096,
  flush_ops: 0,
  unmap_ops: 0,
  errors: 0,
  latency_bucket_upper_us: Array.from({ length: 24 }, (_, i) => 2 ** i),
  latency_bucket_counts: [0, 0, 0, 0, 0, 0, 2, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  latency_sum_us: 9_000_700,
  ...over,
});

test("the exposition: conventions, cumulative buckets ending at +Inf, escaped labels", (t) => {
  const snapshot = {
    node: "node-a",
    pools: [{ uuid: "p1", name: 'we"ird\\pool', state: "POOL_ONLINE", capacity_bytes: 100 * MiB, used_bytes: 10 * MiB, committed_bytes: 50 * MiB }],
    replicas: [{ replica: { uuid: "r1", name: "r", pool_name: "p", size_bytes: 8 * MiB, allocated_bytes: MiB }, stats: stats() }],
    nexuses: [
      {
        uuid: "n1",
        health: "degraded",
        size_bytes: 8 * MiB,
        stats: stats(),
        children: [
          { uri: "replica:///r1", state: "online", errors: 0 },
          { uri: "nvmf://10.0.0.2:4420/nqn.x", state: "rebuilding", errors: 2, rebuild: { bytes_done: MiB, bytes_total: 8 * MiB } },
        ],
      },
    ],
    subsystems: [{ nqn: "nqn.x", kind: "nexus", connected_hosts: [{}, {}] }],
    controllers: [{ uri: "nvmf://10.0.0.2:4420/nqn.x", state: "live", reconnects: 1 }],
    csal: [],
  } as unknown as MetricsSnapshot;
  const text = renderMetrics(snapshot);
  const { types, samples } = parse(text);
  for (const [name, type] of types) {
    if (type === "counter") t.regex(name, /_total$/, `${name}: counters end in _total`);
    if (name.endsWith("_total")) t.is(type, "counter", `${name} is a counter`);
  }
  t.is(types.get("strata_replica_io_latency_seconds"), "histogram");
  const buckets = samples.filter((s) => s.name === "strata_replica_io_latency_seconds_bucket");
  t.is(buckets.at(-1)!.labels.le, "+Inf");
  t.is(buckets.at(-1)!.value, 8, "+Inf holds every I/O, the slow one in the last bucket too");
  for (let i = 1; i < buckets.length; i++) t.true(buckets[i].value >= buckets[i - 1].value, "cumulative");
  t.is(buckets.find((b) => b.labels.le === "0.000128")!.value, 6);
  t.is(samples.find((s) => s.name === "strata_replica_io_latency_seconds_count")!.value, 8);
  t.is(samples.find((s) => s.name === "strata_replica_io_latency_seconds_sum")!.value, 9.0007);
  t.true(text.includes('pool="we\\"ird\\\\pool"'), "quotes and backslashes are escaped");
  const state = samples.filter((s) => s.name === "strata_pool_state");
  t.deepEqual(state.filter((s) => s.value === 1).map((s) => s.labels.state), ["online"], "exactly one state is 1");
  const child = samples.filter((s) => s.name === "strata_nexus_child_state" && s.value === 1).map((s) => [s.labels.child, s.labels.state]);
  t.deepEqual(child, [["replica:///r1", "online"], ["nvmf://10.0.0.2:4420/nqn.x", "rebuilding"]]);
  t.is(samples.find((s) => s.name === "strata_nexus_rebuild_done_bytes")!.value, MiB);
  t.is(samples.find((s) => s.name === "strata_nexus_health" && s.value === 1)!.labels.health, "degraded");
  t.is(samples.find((s) => s.name === "strata_nvmf_subsystem_connected_hosts")!.value, 2);
  t.is(samples.find((s) => s.name === "strata_nvmf_initiator_controllers" && s.labels.state === "live")!.value, 1);
});

test("--metrics-listen: counters move with I/O through NVMe/TCP; promtool accepts the exposition", async (t) => {
  const e = await startEngine({ extraArgs: ["--metrics-listen", "127.0.0.1:0"] });
  engines.push(e);
  const port = Number(/"metrics_port":(\d+)/.exec(e.logs)![1]);
  t.true(port > 0);
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    t.is(res.status, 200);
    t.regex(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return res.text();
  };
  const c = e.connect();
  const pool = await c.call("CreatePool", { uuid: randomUUID(), name: "m", device_uri: `file://${join(e.dir, "disk.img")}?size_mib=64`, labels: {}, cluster_size_bytes: 0, force: false });
  const uuid = randomUUID();
  await c.call("CreateReplica", { uuid, name: "mr", pool: pool.uuid!, size_bytes: 16 * MiB, thin: true });
  const sub = await c.call("ShareReplica", { uuid, allowed_host_nqns: [HOST] });
  c.close();
  const value = (text: string, name: string) => parse(text).samples.find((s) => s.name === name && s.labels.replica_uuid === uuid)?.value;
  const before = await scrape();
  t.is(value(before, "strata_replica_write_ops_total"), 0);

  const admin = await adminQueue(nvmfPortOf(e), sub.nqn!, HOST);
  const io = await ioQueue(nvmfPortOf(e), sub.nqn!, HOST, admin.cntlid);
  for (let i = 0; i < 10; i++) ok(await io.write(i * 16, pattern(64 * 1024, i), false));
  ok(await io.read(0, 16));
  io.close();
  admin.host.close();

  const after = await scrape();
  t.is(value(after, "strata_replica_write_ops_total"), 10);
  t.is(value(after, "strata_replica_written_bytes_total"), 10 * 64 * 1024);
  t.is(value(after, "strata_replica_read_ops_total"), 1);
  t.is(value(after, "strata_replica_io_latency_seconds_count"), 11);
  t.true(value(after, "strata_replica_io_latency_seconds_sum")! > 0);
  t.is(parse(after).samples.find((s) => s.name === "strata_pool_capacity_bytes")!.labels.pool, "m");
  t.is((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
  const live = await fetch(`http://127.0.0.1:${port}/livez`);
  t.is(live.status, 200, "/livez answers while the engine runs");
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.is(ready.status, 200, `/readyz: ${await ready.text()}`);

  const promtool = spawnSync("promtool", ["--version"], { encoding: "utf8" });
  if (promtool.error) return t.fail("promtool is missing: scripts/setup.sh installs Debian's prometheus package");
  const file = join(e.dir, "metrics.txt");
  writeFileSync(file, after);
  const check = spawnSync("sh", ["-c", `promtool check metrics < ${file}`], { encoding: "utf8" });
  t.is(check.status, 0, `${check.stdout}${check.stderr}`);
});
