// Issue 11 point 4: SIGKILL at random points of a random-overwrite workload on a pool on the FTL,
// with GC active, 100 times (STRATA_FTL_KILLS). After each kill the pool is imported again (the
// FTL rebuilt from band footers and the cache log) and every block must hold the newest write
// acknowledged before the kill, or the one write in flight on it then; trimmed blocks read
// zeros. The child reports each write before issuing it and each acknowledgement
// (fixtures/ftl-crash-child.ts); each block's content names the write it came from.
import test from "ava";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { seededRandom } from "../helpers/random";
import { BLOCK, blockContent, writeIdOf } from "./fixtures/ftl-crash-content";
import { MiB, native, tempDisk } from "./helpers";

const KILLS = Number(process.env.STRATA_FTL_KILLS ?? 100);
// The children page the map (128 KiB here) through 32 KiB; recovery then runs in 4 windows.
const MAP_LIMIT_BYTES = 32 * 1024;
const SEED = Number(process.env.STRATA_FTL_KILL_SEED ?? Date.now() % 1_000_000);

interface RunResult {
  acked: number;
  /** The child opened the FTL from the checkpoint the parent's clean close left. */
  fromCheckpoint: boolean;
  gcActiveAtKill: boolean;
  victims: number;
}

test.serial(`${KILLS} SIGKILLs under random overwrites with GC active: every acknowledged write reads back, trims read zeros`, async (t) => {
  t.timeout(30 * 60_000);
  t.log(`seed ${SEED} (STRATA_FTL_KILL_SEED replays it)`);
  const rnd = seededRandom(SEED);
  const n = native();
  const cache = tempDisk(t, 16);
  const base = tempDisk(t, 96);
  const ftl = await n.createFtl({ cache_uri: cache.uri, base_uri: base.uri, band_mib: 2, chunk_kib: 256 });
  const pool = await n.createPool({ uuid: randomUUID(), name: "crash", device_uri: ftl.uri, cluster_size_bytes: MiB, force: false });
  const size = pool.capacity_bytes - 2 * MiB;
  const replica = await n.createReplica({ uuid: randomUUID(), pool_uuid: pool.uuid, name: "r", size_bytes: size, thin: false });
  const blocks = size / BLOCK;
  // What each block must hold: the last acknowledged write (0: zeros), and the write in flight.
  const acked = new Float64Array(blocks);
  const inFlight = new Float64Array(blocks);
  const trims = new Set<number>();
  // Fill it first, so GC has work from the first run on.
  let id = 1;
  for (let first = 0; first < blocks; first += 256) {
    const count = Math.min(256, blocks - first);
    const data = Buffer.alloc(count * BLOCK);
    for (let b = 0; b < count; b++) blockContent(id, first + b).copy(data, b * BLOCK);
    await n.replicaWrite({ uuid: replica.uuid, offset_bytes: first * BLOCK, data });
    acked.fill(id, first, first + count);
    id++;
  }
  await n.exportPool({ uuid: pool.uuid });

  const child = join(__dirname, "fixtures", "ftl-crash-child.js");
  const runOnce = (seed: number, firstId: number, killAfterMs: number) =>
    new Promise<RunResult>((resolve, reject) => {
      const p = spawn(process.execPath, [child, ftl.uri, replica.uuid, String(size), String(seed), String(firstId), ftl.uuid, String(MAP_LIMIT_BYTES)], { stdio: ["ignore", "pipe", "pipe"] });
      let buffered = "";
      let stderr = "";
      let ackedCount = 0;
      let victims = 0;
      let fromCheckpoint = false;
      let gcBytes = 0;
      let gcMovedAt = 0;
      const ops = new Map<number, { first: number; count: number; trim: boolean }>();
      p.stderr.on("data", (d) => (stderr += d));
      p.stdout.on("data", (d: Buffer) => {
        buffered += d.toString();
        let nl;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const [kind, a, b, c] = buffered.slice(0, nl).split(" ");
          buffered = buffered.slice(nl + 1);
          if (kind === "READY") {
            fromCheckpoint = a === "1";
            setTimeout(() => p.kill("SIGKILL"), killAfterMs);
          }
          else if (kind === "W" || kind === "T") {
            const op = { first: Number(b), count: Number(c), trim: kind === "T" };
            ops.set(Number(a), op);
            inFlight.fill(Number(a), op.first, op.first + op.count);
            if (op.trim) trims.add(Number(a));
          } else if (kind === "A") {
            const op = ops.get(Number(a))!;
            acked.fill(Number(a), op.first, op.first + op.count);
            inFlight.fill(0, op.first, op.first + op.count);
            ops.delete(Number(a));
            ackedCount++;
          } else if (kind === "G") {
            if (Number(b) > gcBytes) gcMovedAt = Date.now();
            victims = Number(a);
            gcBytes = Number(b);
          }
        }
      });
      p.on("exit", (code, signal) => {
        if (signal !== "SIGKILL") return reject(new Error(`child exited ${code}: ${stderr}`));
        resolve({ acked: ackedCount, fromCheckpoint, gcActiveAtKill: Date.now() - gcMovedAt < 150, victims });
      });
    });

  let totalAcked = 0;
  let killsWithGc = 0;
  for (let kill = 0; kill < KILLS; kill++) {
    // Recovery here alternates between the whole map at once and windows of the paged limit.
    n.setFtlMapLimit({ uuid: ftl.uuid, bytes: kill % 2 === 0 ? 0 : MAP_LIMIT_BYTES });
    const firstId = (kill + 1) * 10_000_000;
    const r = await runOnce(Math.floor(rnd() * 1e9), firstId, 50 + Math.floor(rnd() * 900));
    totalAcked += r.acked;
    if (r.gcActiveAtKill) killsWithGc++;
    if (!r.fromCheckpoint) t.fail(`kill ${kill}: the child did not open from the checkpoint the clean export left`);
    // Recover and judge every block. The child invalidated the checkpoint when it opened it,
    // so this open must scan (a stale checkpoint would lose everything the child wrote).
    await n.importPool({ device_uri: ftl.uri });
    const opened = (await n.listFtl()).find((x) => x.uuid === ftl.uuid)!;
    if (opened.loaded_from_checkpoint) t.fail(`kill ${kill}: the open after a crash used a checkpoint`);
    const step = 256;
    for (let first = 0; first < blocks; first += step) {
      const count = Math.min(step, blocks - first);
      const data = await n.replicaRead({ uuid: replica.uuid, offset_bytes: first * BLOCK, length_bytes: count * BLOCK });
      for (let i = 0; i < count; i++) {
        const b = first + i;
        const got = writeIdOf(data.subarray(i * BLOCK, (i + 1) * BLOCK), b);
        const want = trims.has(acked[b]) ? 0 : acked[b];
        const maybe = inFlight[b] === 0 ? null : trims.has(inFlight[b]) ? 0 : inFlight[b];
        if (got !== want && got !== maybe) {
          t.fail(`kill ${kill}: block ${b} holds ${got === null ? "garbage" : `write ${got}`}; acknowledged write ${acked[b]}${maybe !== null ? `, in flight ${inFlight[b]}` : ""}`);
          await n.exportPool({ uuid: pool.uuid });
          return;
        }
        // What the device settled on is what later runs build on.
        if (inFlight[b] !== 0) {
          if (got === maybe) acked[b] = inFlight[b];
          inFlight[b] = 0;
        }
      }
    }
    await n.exportPool({ uuid: pool.uuid });
  }
  t.log(`${KILLS} kills, ${totalAcked} writes acknowledged, ${killsWithGc} kills while GC was relocating`);
  t.true(totalAcked > KILLS * 10, "the runs wrote");
  t.true(killsWithGc >= KILLS / 10, `GC was active at ${killsWithGc} of ${KILLS} kills`);
  await n.importPool({ device_uri: ftl.uri });
  const s = (await n.listFtl()).find((x) => x.uuid === ftl.uuid)!;
  t.is(s.failed_reason, null);
  await n.exportPool({ uuid: pool.uuid });
});
