// Crash safety: SIGKILL the data path at random points during metadata-heavy work, at least 50
// times, and after every restart check that the pool imports, that the consistency checker
// finds no leaked or doubly-owned cluster, and that every acknowledged write reads back.
//
// The worker (worker.ts) journals each operation to stdout before issuing it and after it is
// acknowledged. SIGKILL does not discard what is already in the pipe, so the journal is a
// complete record of what was acknowledged; operations issued but not acknowledged may or may
// not have happened, and the verifier accepts either outcome — then adopts what it found.
import test from "ava";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadNative } from "../../../native";
import { BLOCK_BYTES, blockContent, CrashEvent } from "./pattern";

const ITERATIONS = Number(process.env.STRATA_CRASH_ITERATIONS ?? 60);
const MiB = 1024 * 1024;

interface WriteRecord {
  readonly version: number;
  readonly issued: number;
  acked: number | null;
}
interface BlockModel {
  /** The version found at the last verification (0 = zeros). */
  baseline: number;
  writes: WriteRecord[];
}
interface ReplicaModel {
  /** "yes": acknowledged and not being destroyed; "maybe": create or destroy in flight. */
  exists: "yes" | "maybe";
  sizes: Set<number>;
}

function acceptable(block: BlockModel): Set<number> {
  const ok = new Set<number>();
  const supersededAt = (seq: number) => block.writes.some((w) => w.acked !== null && w.issued > seq);
  if (!block.writes.some((w) => w.acked !== null)) ok.add(block.baseline);
  for (const w of block.writes) if (w.acked === null || !supersededAt(w.acked)) ok.add(w.version);
  return ok;
}

function versionOf(uuid: string, block: number, data: Buffer): number | "garbage" {
  if (data.every((b) => b === 0)) return 0;
  const version = data.readUInt32LE(4);
  return data.equals(blockContent(uuid, block, version)) ? version : "garbage";
}

test("the pool survives 50+ SIGKILLs during metadata-heavy work with every acknowledged write intact", async (t) => {
  t.timeout(15 * 60_000);
  const native = loadNative();
  native.start({ cores: 1 });
  const dir = mkdtempSync(join(tmpdir(), "strata-crash-"));
  const disk = join(dir, "disk.img");
  closeSync(openSync(disk, "w"));
  truncateSync(disk, 96 * MiB);
  const poolUuid = randomUUID();
  const worker = join(__dirname, "worker.js");

  const replicas = new Map<string, ReplicaModel>();
  const blocks = new Map<string, BlockModel>();
  let seq = 0;
  let acknowledgedWrites = 0;
  let acknowledgedMetadata = 0;

  for (let iteration = 0; iteration < ITERATIONS; iteration++) {
    const child = spawn(process.execPath, [worker, disk, poolUuid, String(iteration * 7919 + 1)], { stdio: ["ignore", "pipe", "pipe"] });
    let pending = "";
    let stderr = "";
    let ready = false;
    const killAfterMs = 50 + Math.floor(Math.random() * 500);
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const apply = (event: CrashEvent) => {
      seq++;
      switch (event.kind) {
        case "ready":
          ready = true;
          setTimeout(() => child.kill("SIGKILL"), killAfterMs);
          return;
        case "issue":
        case "ack":
          break;
      }
      const ack = event.kind === "ack";
      switch (event.op) {
        case "create":
          if (ack) acknowledgedMetadata++;
          replicas.set(event.uuid, { exists: ack ? "yes" : "maybe", sizes: new Set([event.size_bytes]) });
          return;
        case "destroy":
          if (ack) {
            acknowledgedMetadata++;
            replicas.delete(event.uuid);
          } else if (replicas.has(event.uuid)) replicas.get(event.uuid)!.exists = "maybe";
          return;
        case "resize": {
          const r = replicas.get(event.uuid);
          if (!r) return;
          if (ack) {
            acknowledgedMetadata++;
            r.sizes = new Set([event.size_bytes]);
          } else r.sizes.add(event.size_bytes);
          return;
        }
        case "write": {
          const key = `${event.uuid}/${event.block}`;
          const b = blocks.get(key) ?? { baseline: 0, writes: [] };
          blocks.set(key, b);
          if (!ack) b.writes.push({ version: event.version, issued: seq, acked: null });
          else {
            acknowledgedWrites++;
            const w = b.writes.find((x) => x.version === event.version);
            if (w) w.acked = seq;
          }
          return;
        }
        case "grow":
          if (ack) acknowledgedMetadata++;
          return;
      }
    };
    child.stdout.on("data", (d: Buffer) => {
      pending += d.toString();
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) if (line) apply(JSON.parse(line) as CrashEvent);
    });
    const exit = await new Promise<string | null>((resolve) => child.on("close", (_code, signal) => resolve(signal)));
    if (pending) apply(JSON.parse(pending) as CrashEvent);
    t.true(ready, `iteration ${iteration}: worker never became ready: ${stderr}`);
    t.is(exit, "SIGKILL", `iteration ${iteration}: worker ended by itself: ${stderr}`);

    // Restart: the pool must import and be consistent.
    const pool = await native.importPool({ device_uri: `file://${disk}` });
    t.is(pool.uuid, poolUuid);
    const report = await native.checkPool({ uuid: poolUuid });
    t.deepEqual(
      [report.leaked_clusters, report.doubly_owned_clusters, report.owned_but_free_clusters, report.problems],
      [0, 0, 0, []],
      `iteration ${iteration}: inconsistent pool`,
    );

    // Replicas: every acknowledged one exists with an acceptable size; adopt what is there.
    const actual = new Map((await native.listReplicas()).filter((r) => r.pool_uuid === poolUuid).map((r) => [r.uuid, r.size_bytes]));
    for (const [uuid, model] of replicas) {
      if (model.exists === "yes") t.true(actual.has(uuid), `iteration ${iteration}: acknowledged replica ${uuid} is gone`);
      if (actual.has(uuid)) t.true(model.sizes.has(actual.get(uuid)!), `iteration ${iteration}: replica ${uuid} has size ${actual.get(uuid)}, expected one of ${[...model.sizes]}`);
    }
    for (const uuid of actual.keys()) t.true(replicas.has(uuid), `iteration ${iteration}: replica ${uuid} appeared from nowhere`);
    replicas.clear();
    for (const [uuid, size] of actual) replicas.set(uuid, { exists: "yes", sizes: new Set([size]) });

    // Blocks: every acknowledged write (or a later one in flight) reads back exactly.
    for (const [key, model] of blocks) {
      const [uuid, blockText] = key.split("/");
      const block = Number(blockText);
      const size = actual.get(uuid);
      if (size === undefined) {
        blocks.delete(key);
        continue;
      }
      if ((block + 1) * BLOCK_BYTES > size) {
        t.false(model.writes.some((w) => w.acked !== null), `iteration ${iteration}: acknowledged write to ${key} is beyond the replica's end`);
        blocks.delete(key);
        continue;
      }
      const data = await native.replicaRead({ uuid, offset_bytes: block * BLOCK_BYTES, length_bytes: BLOCK_BYTES });
      const found = versionOf(uuid, block, data);
      const ok = acceptable(model);
      if (found === "garbage" || !ok.has(found)) {
        t.fail(`iteration ${iteration}: block ${key} holds version ${found}, expected one of ${[...ok].join(", ")}`);
        blocks.delete(key);
        continue;
      }
      model.baseline = found;
      model.writes = [];
    }
    await native.exportPool({ uuid: poolUuid });
    if (!t.passed) break;
  }
  t.log(`${ITERATIONS} kills; ${acknowledgedWrites} acknowledged writes and ${acknowledgedMetadata} metadata operations verified`);
  t.true(acknowledgedWrites > ITERATIONS, "the workload actually wrote data");
  t.true(acknowledgedMetadata > ITERATIONS, "the workload actually changed metadata");
  await native.shutdown();
  rmSync(dir, { recursive: true, force: true });
});
