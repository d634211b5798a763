// `strata cluster status`: zone and labels per node, the nexus table, and a progress bar with an
// ETA for each child being rebuilt. The formatting is tested as pure functions; then the real
// CLI runs against a real engine whose nexus is rebuilding a new child (its source's reads slowed
// by fault injection so the rebuild is still running when the CLI looks).
import * as grpc from "@grpc/grpc-js";
import test from "ava";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { engineDefinition } from "../../common/client";
import { NodeStatus, otherLabels, summarizeNexus, zoneOf } from "../../cli/cluster";
import { renderClusterStatus } from "../../cli/main";
import { formatEta, percentDone, progressBar, rebuildEtaSeconds, rebuildProgressLine } from "../../cli/progress";
import { startEngine, TestEngine } from "../helpers/engine";
import { LABEL_REGION_BYTES, MiB } from "../helpers/nexus";
import { clusterHome, runStrata } from "./fixtures/operator/cluster-home";

const GiB = 1024 * MiB;

test("progress bar: floored, clamped, always the same width", (t) => {
  t.is(progressBar(0, 10), "[..........]");
  t.is(progressBar(0.47, 10), "[####......]");
  t.is(progressBar(0.999, 10), "[#########.]", "full only when done");
  t.is(progressBar(1, 10), "[##########]");
  t.is(progressBar(1.2, 10), "[##########]", "done past the total (a resize mid-rebuild) stays inside the brackets");
  t.is(progressBar(Number.NaN, 4), "[....]");
  t.is(percentDone(47, 100), 47);
  t.is(percentDone(999, 1000), 99);
  t.is(percentDone(5, 0), 0);
});

test("ETA text", (t) => {
  t.is(formatEta(42), "0m42s");
  t.is(formatEta(5.2), "0m06s", "rounded up: never promise sooner than the estimate");
  t.is(formatEta(725), "12m05s");
  t.is(formatEta(3725), "1h02m");
  t.is(formatEta(0), "0m00s");
  t.is(formatEta(null), "-");
  t.is(formatEta(Infinity), "-");
});

test("ETA: the engine's rate first, else bytes done since the start, else unknown", (t) => {
  const now_ms = 1_000_000;
  // 1.3 GiB left at 32 MiB/s.
  t.is(rebuildEtaSeconds({ bytes_done: 1.2 * GiB, bytes_total: 2.5 * GiB, mib_per_s: 32, start_ms: 0 }, now_ms), (1.3 * GiB) / (32 * MiB));
  // No rate reported: 100 MiB in the 10 s since it started, 300 MiB left.
  t.is(rebuildEtaSeconds({ bytes_done: 100 * MiB, bytes_total: 400 * MiB, mib_per_s: 0, start_ms: now_ms - 10_000 }, now_ms), 30);
  t.is(rebuildEtaSeconds({ bytes_done: 0, bytes_total: 400 * MiB, mib_per_s: 0, start_ms: now_ms - 10_000 }, now_ms), null, "nothing copied yet: no rate");
  t.is(rebuildEtaSeconds({ bytes_done: 5, bytes_total: 400, mib_per_s: 0, start_ms: 0 }, now_ms), null, "no start time, no rate");
  t.is(rebuildEtaSeconds({ bytes_done: 400, bytes_total: 400, mib_per_s: 0, start_ms: 0 }, now_ms), 0);
  t.is(rebuildEtaSeconds({ bytes_done: 100 * MiB, bytes_total: 400 * MiB, mib_per_s: 32, start_ms: 1, state: "paused" }, now_ms), null, "paused: no ETA");
  t.is(rebuildEtaSeconds({ bytes_done: 100 * MiB, bytes_total: 400 * MiB, mib_per_s: 0, start_ms: now_ms - 10_000, state: "running" }, now_ms), 30);
});

test("the rebuild line", (t) => {
  const now_ms = 1_000_000;
  t.is(
    rebuildProgressLine({ bytes_done: 1.2 * GiB, bytes_total: 2.55 * GiB, mib_per_s: 0, start_ms: now_ms - 40_000 }, now_ms, 14),
    "[######........]  47%  1.2 GiB/2.5 GiB  ETA 0m45s",
  );
  t.is(rebuildProgressLine({ bytes_done: 0, bytes_total: 64 * MiB, mib_per_s: 0, start_ms: 0 }, now_ms, 14), "[..............]   0%  0 B/64.0 MiB  ETA -");
});

test("zone and labels: the Kubernetes zone label first, then zone; the rest as k=v", (t) => {
  t.is(zoneOf({ "topology.kubernetes.io/zone": "eu-1a", zone: "z" }), "eu-1a");
  t.is(otherLabels({ "topology.kubernetes.io/zone": "eu-1a", zone: "z", rack: "r1" }), "rack=r1,zone=z");
  t.is(zoneOf({ zone: "zone-b", rack: "r2" }), "zone-b");
  t.is(otherLabels({ zone: "zone-b", rack: "r2", disk: "nvme" }), "disk=nvme,rack=r2");
  t.is(zoneOf({}), "-");
  t.is(otherLabels({}), "-");
});

test("the status text: nodes with zone and labels, then each nexus and its rebuilding children", (t) => {
  const node = (name: string, labels: Record<string, string>, over: Partial<NodeStatus> = {}): NodeStatus => ({
    node: name, endpoint: "127.0.0.1:1", state: "running", nvmf_endpoint: "127.0.0.1:2", rdma: "", pools: 1, used_bytes: 0, capacity_bytes: GiB,
    replicas: 2, pid: 1, csal: [], labels, zone: zoneOf(labels), nexuses: [], ...over,
  });
  const now_ms = 2_000_000;
  const nexus = summarizeNexus({
    uuid: "4094ebbb-2bcb-5301-aa59-e0c1317ba0a0", node: "node-a", size_bytes: 2.5 * GiB, state: "open", health: "degraded", generation: 3,
    opened_after_unclean_shutdown: false, nqn: "", address: "", frontend_host_nqn: "", stats: null,
    children: [
      { uri: "replica:///a", state: "online", reason: "none", last_error: "", read_ops: 0, write_ops: 0, errors: 0, missed_bytes: 0, rebuild: null },
      {
        uri: "nvmf://127.0.0.1:4420/nqn.2026-11.io.strata:replica:b", state: "rebuilding", reason: "none", last_error: "", read_ops: 0, write_ops: 0, errors: 0, missed_bytes: 0,
        rebuild: { child_uri: "", source_uri: "replica:///a", state: "running", partial: false, bytes_done: 1.2 * GiB, bytes_total: 2.5 * GiB, volume_bytes: 2.5 * GiB,
          segments_skipped: 0, mib_per_s: 0, start_ms: now_ms - 42_000, end_ms: 0, error: "", resync: false },
      },
    ],
  });
  const text = renderClusterStatus([node("node-a", { zone: "zone-a", rack: "r1" }, { nexuses: [nexus] }), node("node-b", {}, { state: "stopped", nvmf_endpoint: "" })], now_ms);
  t.is(
    text,
    [
      "NODE    ENDPOINT     NVMF         RDMA  ZONE    LABELS   STATE    POOLS  USED/CAPACITY  REPLICAS",
      "node-a  127.0.0.1:1  127.0.0.1:2  -     zone-a  rack=r1  running  1      0 B/1.0 GiB    2",
      "node-b  127.0.0.1:1  -            -     -       -        stopped  1      0 B/1.0 GiB    2",
      "",
      "NEXUS                                 NODE    SIZE     HEALTH    CHILDREN  PUBLISHED AT",
      "4094ebbb-2bcb-5301-aa59-e0c1317ba0a0  node-a  2.5 GiB  degraded  1/2       -",
      "  nvmf://127.0.0.1:4420/nqn.2026-11.io.strata:replica:b  rebuild running  [##############................]  48%  1.2 GiB/2.5 GiB  ETA 0m46s",
    ].join("\n"),
  );
});

/** Calls the engine's FaultInjection service (served with --enable-fault-injection). */
function faultCall(engine: TestEngine, method: "InjectFault" | "ClearFaults", request: object): Promise<void> {
  const definition = engineDefinition();
  const client = new definition.strata.engine.v1.FaultInjection(engine.target.endpoint, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${engine.target.token}`);
  return new Promise<void>((resolve, reject) => {
    (client as unknown as Record<string, Function>)[method].call(client, request, metadata, (err: grpc.ServiceError | null) => {
      client.close();
      if (err) reject(new Error(`${method}: ${err.details}`));
      else resolve();
    });
  });
}

test("a real engine: `strata cluster status` shows the node's zone and labels, the nexus, and its rebuild with a bar and an ETA", async (t) => {
  const engine = await startEngine({ node: "node-a", labels: "zone=zone-a,rack=r1", faultInjection: true });
  t.teardown(() => engine.kill());
  const c = engine.connect();
  t.teardown(() => c.close());
  await c.call("CreatePool", { uuid: randomUUID(), name: "pool-a", device_uri: `file://${join(engine.dir, "disk.img")}?size_mib=256`, cluster_size_bytes: MiB });
  const sizeBytes = 64 * MiB;
  const [first, second] = [randomUUID(), randomUUID()];
  // Thick: every segment of the source is copied (a thin source's unwritten ones are only zeroed).
  for (const uuid of [first, second]) await c.call("CreateReplica", { uuid, name: uuid, pool: "pool-a", size_bytes: sizeBytes + LABEL_REGION_BYTES, thin: false });
  const nexus = randomUUID();
  await c.call("CreateNexus", { uuid: nexus, size_bytes: sizeBytes, children: [`replica:///${first}`], child_io_timeout_ms: 5000 }, 60_000);
  const source = `replica:///${first}`;
  const newChild = `replica:///${second}`;
  // Slow the source's reads (the rebuild copies from it) so the rebuild is still running when
  // the CLI looks; the source stays open, so the rule is in place before the rebuild starts.
  await faultCall(engine, "InjectFault", { uuid: nexus, child_uri: source, op: "read", error: "none", delay_ms: 1000, offset_bytes: 0, length_bytes: 0, count: 0, drop_connection: false });
  await c.call("AddChild", { uuid: nexus, child_uri: newChild });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const stats = await c.call("GetRebuildStats", { uuid: nexus, child_uri: newChild });
    if (stats.bytes_done > 0 && stats.bytes_done < stats.bytes_total) break;
    if (stats.state === "completed" || Date.now() > deadline) return t.fail(`the rebuild did not stay running: ${JSON.stringify(stats)}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const home = clusterHome(t, engine, { zone: "zone-a", rack: "r1" });
  const status = await runStrata(["cluster", "status", "--dir", home]);
  t.is(status.code, 0, status.stderr);
  t.log(status.stdout);
  const lines = status.stdout.trimEnd().split("\n");
  t.regex(lines[0], /^NODE\s+ENDPOINT\s+NVMF\s+RDMA\s+ZONE\s+LABELS\s+STATE\s+POOLS\s+USED\/CAPACITY\s+REPLICAS$/);
  t.regex(lines[1], new RegExp(`^node-a\\s+${engine.target.endpoint}\\s+\\S+\\s+-\\s+zone-a\\s+rack=r1\\s+running\\s+1\\s+`));
  const header = lines.findIndex((l) => l.startsWith("NEXUS"));
  t.true(header > 0, status.stdout);
  t.regex(lines[header], /^NEXUS\s+NODE\s+SIZE\s+HEALTH\s+CHILDREN\s+PUBLISHED AT$/);
  t.regex(lines[header + 1], new RegExp(`^${nexus}\\s+node-a\\s+64\\.0 MiB\\s+degraded\\s+1/2\\s+-$`));
  t.regex(
    lines[header + 2],
    new RegExp(`^  ${newChild}  rebuild running  \\[#*\\.*\\]\\s+\\d{1,2}%  [\\d.]+ [KM]i?B/64\\.0 MiB  ETA \\d+m\\d\\ds$`),
    "the rebuild line: bar, percent, bytes, and an ETA from the engine's rate",
  );
  t.is(lines[header + 2].match(/\[([#.]*)\]/)![1].length, 30);

  // Let it finish: the child comes online and the line goes away.
  await faultCall(engine, "ClearFaults", { uuid: nexus, child_uri: source });
  const done = Date.now() + 60_000;
  while ((await c.call("ListNexus", {})).nexuses[0].children.some((ch) => ch.state !== "online")) {
    if (Date.now() > done) return t.fail("the rebuild did not finish after the faults were cleared");
    await new Promise((r) => setTimeout(r, 100));
  }
  const after = await runStrata(["cluster", "status", "--dir", home]);
  t.regex(after.stdout, new RegExp(`${nexus}\\s+node-a\\s+64\\.0 MiB\\s+online\\s+2/2\\s+-\\n?$`));
  t.false(after.stdout.includes("rebuild running"));
});
