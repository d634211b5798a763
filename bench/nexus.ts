// `npm run bench:nexus`: the nexus against its baselines, side by side in one run.
//
//  1. Writes: a 3-replica nexus (one local child, two remote children on a second engine process
//     over NVMe/TCP loopback) against a 1-replica nexus (one local child), same workloads,
//     alternating ABBA. Key: replica3_replica1_write_ratio (4K randwrite qd32 IOPS). On one
//     machine every replica shares the same disk and cores, so a third nexus with three LOCAL
//     children measures what the hardware allows for three copies without any network:
//     replica3_local_replica1_write_ratio, the ceiling the first ratio is measured against;
//     replica3_remote_vs_local_children_write_ratio compares the two 3-replica nexuses, and
//     fanout_efficiency = 3 x IOPS(3 replicas) / IOPS(1 replica) (device writes sustained).
//  2. Rebuild: a full rebuild of a remote child from the local one against a raw copy of the same
//     bytes between the same two replicas (copyDevice: read a segment, write it, 4 in flight, the
//     same segment size and depth as the rebuild). Key: rebuild_rawcopy_ratio (MiB/s).
//  3. Partial rebuild: a child faulted, distinct 64 KiB blocks written while it is away, the
//     child onlined; bytes the rebuild copied against bytes written. Key:
//     partial_rebuild_bytes_ratio. The same with 4 KiB writes shows the tracking granularity
//     (64 KiB units) as partial_rebuild_bytes_ratio_4k_writes.
// Prints a table and, as the LAST line, one JSON object.
import { fork, ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BenchResult, loadNative, NativeStorage } from "../native";
import { median } from "./workloads";

const MiB = 1024 * 1024;
const LABEL_BYTES = MiB;
const VOLUME_BYTES = Number(process.env.STRATA_BENCH_VOLUME_MIB ?? 256) * MiB;
const RUNTIME_MS = Number(process.env.STRATA_BENCH_RUNTIME_S ?? 3) * 1000;
const ROUNDS = Number(process.env.STRATA_BENCH_ROUNDS ?? 2);
const HOST_NQN = "nqn.2026-11.io.strata:node:bench-nexus";
const PARTIAL_BLOCKS = 256;

type Ready = { port: number; nqns: string[] };

/** The replica node: two pools on files, one replica each, shared to the nexus node. */
async function replicaNodeMain(): Promise<void> {
  const native = loadNative();
  native.start({ cores: 1 });
  const dir = mkdtempSync(join(tmpdir(), "strata-bench-nexus-remote-"));
  const { listen_port } = await native.startNvmf({ listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0 });
  const nqns: string[] = [];
  for (const i of [0, 1]) {
    const pool_uuid = randomUUID();
    await native.createPool({ uuid: pool_uuid, name: `remote-${i}`, device_uri: `file://${join(dir, `pool-${i}.img`)}?size_mib=${VOLUME_BYTES / MiB + 64}`, cluster_size_bytes: MiB, force: true });
    const uuid = randomUUID();
    await native.createReplica({ pool_uuid, uuid, name: `r-${i}`, size_bytes: VOLUME_BYTES + LABEL_BYTES, thin: true });
    nqns.push((await native.shareReplica({ uuid, allowed_host_nqns: [HOST_NQN] })).nqn);
  }
  process.on("message", () => {
    void native.shutdown().then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
  process.send!({ port: listen_port, nqns });
}

function startReplicaNode(): { proc: ChildProcess; ready: Promise<Ready> } {
  const proc = fork(__filename, ["--replica-node"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const ready = new Promise<Ready>((resolve, reject) => {
    proc.once("exit", (code) => reject(new Error(`replica node exited with ${code}`)));
    proc.once("message", (m: Ready) => resolve(m));
  });
  return { proc, ready };
}

async function waitRebuilt(native: NativeStorage, nexus: string, child: string): Promise<void> {
  for (;;) {
    const n = (await native.listNexus()).find((x) => x.uuid === nexus)!;
    const c = n.children.find((x) => x.uri === child)!;
    if (c.state === "online") return;
    if (c.state === "faulted" || c.state === "offline") throw new Error(`rebuild of ${child} failed: ${c.reason} ${c.last_error}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function fill(native: NativeStorage, nexus: string): Promise<void> {
  // Non-zero data end to end: a rebuild then copies every segment (nothing to skip or zero).
  const chunk = 16 * MiB;
  const data = Buffer.alloc(chunk);
  for (let i = 0; i < chunk; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0 || 1, i);
  for (let off = 0; off < VOLUME_BYTES; off += chunk) await native.deviceIo({ uri: `nexus:///${nexus}`, kind: "write", offset_bytes: off, length_bytes: chunk, data });
}

function distinctBlocks(count: number, unitBytes: number): number[] {
  const units = VOLUME_BYTES / (64 * 1024);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(Math.floor(Math.random() * units));
  // One block per 64 KiB unit, at a random offset inside it for the 4 KiB case.
  return [...picked].map((u) => u * 64 * 1024 + (unitBytes < 64 * 1024 ? Math.floor(Math.random() * ((64 * 1024) / unitBytes)) * unitBytes : 0));
}

async function partialRebuild(native: NativeStorage, nexus: string, child: string, unitBytes: number): Promise<{ written: number; copied: number }> {
  await native.nexusChild({ uuid: nexus, child_uri: child, action: "fault" });
  const data = Buffer.alloc(unitBytes, 0x6b);
  const offsets = distinctBlocks(PARTIAL_BLOCKS, unitBytes);
  for (const off of offsets) await native.deviceIo({ uri: `nexus:///${nexus}`, kind: "write", offset_bytes: off, length_bytes: unitBytes, data });
  await native.nexusChild({ uuid: nexus, child_uri: child, action: "online" });
  await waitRebuilt(native, nexus, child);
  const r = await native.rebuildStats({ uuid: nexus, child_uri: child });
  if (!r.partial) throw new Error("expected a partial rebuild");
  return { written: offsets.length * unitBytes, copied: r.bytes_done };
}

async function main(): Promise<void> {
  const node = startReplicaNode();
  const { port, nqns } = await node.ready;
  const native = loadNative();
  native.start({ cores: 2 });
  const dir = mkdtempSync(join(tmpdir(), "strata-bench-nexus-"));
  const pool_uuid = randomUUID();
  await native.createPool({ uuid: pool_uuid, name: "local", device_uri: `file://${join(dir, "pool.img")}?size_mib=${(5 * (VOLUME_BYTES + LABEL_BYTES)) / MiB + 64}`, cluster_size_bytes: MiB, force: true });
  const local: string[] = [];
  for (const i of [0, 1, 2, 3, 4]) {
    const uuid = randomUUID();
    await native.createReplica({ pool_uuid, uuid, name: `l-${i}`, size_bytes: VOLUME_BYTES + LABEL_BYTES, thin: true });
    local.push(uuid);
  }
  const remote = nqns.map((nqn) => `nvmf://127.0.0.1:${port}/${nqn}?hostnqn=${HOST_NQN}`);
  const one = randomUUID();
  const three = randomUUID();
  await native.createNexus({ uuid: one, size_bytes: VOLUME_BYTES, children: [`replica:///${local[0]}`] });
  await native.createNexus({ uuid: three, size_bytes: VOLUME_BYTES, children: [`replica:///${local[1]}`, ...remote] });
  const threeLocal = randomUUID();
  await native.createNexus({ uuid: threeLocal, size_bytes: VOLUME_BYTES, children: local.slice(2).map((u) => `replica:///${u}`) });
  await fill(native, one);
  await fill(native, three);
  await fill(native, threeLocal);

  // 1. Writes.
  const workloads = [
    { name: "randwrite_4k_qd32", pattern: "randwrite" as const, block_size_bytes: 4096, queue_depth: 32 },
    { name: "randwrite_4k_qd1", pattern: "randwrite" as const, block_size_bytes: 4096, queue_depth: 1 },
    { name: "write_128k_qd8", pattern: "write" as const, block_size_bytes: 128 * 1024, queue_depth: 8 },
  ];
  const results = workloads.map(() => ({ one: [] as BenchResult[], three: [] as BenchResult[], threeLocal: [] as BenchResult[] }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, w] of workloads.entries()) {
      const run = (uuid: string) =>
        native.benchDevice({ uri: `nexus:///${uuid}`, pattern: w.pattern, block_size_bytes: w.block_size_bytes, queue_depth: w.queue_depth, duration_ms: RUNTIME_MS, span_bytes: 0 });
      const order = round % 2 === 0 ? [one, three, threeLocal] : [threeLocal, three, one];
      for (const uuid of order) (uuid === one ? results[i].one : uuid === three ? results[i].three : results[i].threeLocal).push(await run(uuid));
    }
  }

  // 2. Rebuild vs raw copy (remote child 2 of the 3-replica nexus, source: the local child).
  const target = remote[1];
  const rebuilds: number[] = [];
  const copies: number[] = [];
  const copy = async () =>
    copies.push(
      (await native.copyDevice({ src_uri: `replica:///${local[1]}`, dst_uri: target, offset_bytes: LABEL_BYTES, length_bytes: VOLUME_BYTES, segment_bytes: MiB, queue_depth: 4 })).mib_per_s,
    );
  const rebuild = async (measured: boolean) => {
    await native.nexusChild({ uuid: three, child_uri: target, action: "add" });
    await waitRebuilt(native, three, target);
    const r = await native.rebuildStats({ uuid: three, child_uri: target });
    if (r.partial || r.bytes_done !== VOLUME_BYTES) throw new Error(`expected a full rebuild of ${VOLUME_BYTES} bytes, got ${JSON.stringify(r)}`);
    if (measured) rebuilds.push(r.mib_per_s);
  };
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which runs first; the child is back in the nexus at the end of every round.
    await native.nexusChild({ uuid: three, child_uri: target, action: "remove" });
    if (round % 2 === 0) {
      await copy();
      await rebuild(true);
    } else {
      await rebuild(true);
      await native.nexusChild({ uuid: three, child_uri: target, action: "remove" });
      await copy();
      await rebuild(false);
    }
  }

  // 3. Partial rebuilds.
  const p64 = await partialRebuild(native, three, remote[0], 64 * 1024);
  const p4 = await partialRebuild(native, three, remote[0], 4096);

  await native.destroyNexus({ uuid: threeLocal });
  await native.destroyNexus({ uuid: one });
  await native.destroyNexus({ uuid: three });
  await native.shutdown();
  node.proc.send("stop");
  rmSync(dir, { recursive: true, force: true });

  const rows: string[][] = [["measurement", "3 replicas / rebuild", "1 replica / raw copy", "ratio"]];
  const summary: Record<string, number> = {};
  for (const [i, w] of workloads.entries()) {
    const a = median(results[i].three.map((r) => r.iops));
    const b = median(results[i].one.map((r) => r.iops));
    const mib = (rs: BenchResult[]) => median(rs.map((r) => r.mib_per_s));
    rows.push([`${w.name} IOPS (MiB/s)`, `${a.toFixed(0)} (${mib(results[i].three).toFixed(1)})`, `${b.toFixed(0)} (${mib(results[i].one).toFixed(1)})`, (a / b).toFixed(2)]);
    const key = { randwrite_4k_qd32: "replica3_replica1_write_ratio", randwrite_4k_qd1: "replica3_replica1_write_qd1_ratio", write_128k_qd8: "replica3_replica1_write_128k_ratio" }[w.name]!;
    summary[key] = Number((a / b).toFixed(3));
    const c = median(results[i].threeLocal.map((r) => r.iops));
    rows.push([`  same, 3 LOCAL children (shared-hardware ceiling)`, `${c.toFixed(0)} (${mib(results[i].threeLocal).toFixed(1)})`, `${b.toFixed(0)}`, (c / b).toFixed(2)]);
    if (w.name === "randwrite_4k_qd32") {
      summary.replica3_local_replica1_write_ratio = Number((c / b).toFixed(3));
      // The same 3-replica nexus with two of its children over NVMe/TCP against all three local:
      // what the network legs cost, with the disk and cores held equal.
      summary.replica3_remote_vs_local_children_write_ratio = Number((a / c).toFixed(3));
      // Device writes a 3-replica nexus sustains (3 per host write) against a 1-replica nexus's:
      // 1.0 = fanning out costs nothing beyond the copies themselves on this shared machine.
      summary.fanout_efficiency = Number(((3 * a) / b).toFixed(3));
      rows.push([`  3 replicas, remote vs local children`, `${a.toFixed(0)}`, `${c.toFixed(0)}`, (a / c).toFixed(2)]);
    }
  }
  const rb = median(rebuilds);
  const rc = median(copies);
  rows.push([`full rebuild MiB/s (${VOLUME_BYTES / MiB} MiB, local -> remote)`, rb.toFixed(1), rc.toFixed(1), (rb / rc).toFixed(2)]);
  summary.rebuild_rawcopy_ratio = Number((rb / rc).toFixed(3));
  rows.push([`partial rebuild bytes copied / written (${PARTIAL_BLOCKS} x 64 KiB)`, String(p64.copied), String(p64.written), (p64.copied / p64.written).toFixed(2)]);
  rows.push([`partial rebuild bytes copied / written (${PARTIAL_BLOCKS} x 4 KiB)`, String(p4.copied), String(p4.written), (p4.copied / p4.written).toFixed(2)]);
  summary.partial_rebuild_bytes_ratio = Number((p64.copied / p64.written).toFixed(3));
  summary.partial_rebuild_bytes_ratio_4k_writes = Number((p4.copied / p4.written).toFixed(3));
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  console.log(`nexus benchmark: ${ROUNDS} rounds x ${RUNTIME_MS / 1000} s per write workload, medians; volume ${VOLUME_BYTES / MiB} MiB; remote children on a second engine process over NVMe/TCP loopback`);
  for (const r of rows) console.log("| " + r.map((cell, c) => cell.padEnd(widths[c])).join(" | ") + " |");
  console.log(JSON.stringify(summary));
}

if (process.argv.includes("--replica-node")) {
  replicaNodeMain().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
