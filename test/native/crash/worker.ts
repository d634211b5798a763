// The crash-test worker: opens (or creates) a pool and does metadata-heavy work as fast as it
// can — creating, resizing and destroying replicas, thin allocation under concurrent writes,
// growing the pool — journaling each step to stdout before issuing it and after it is
// acknowledged, until the parent SIGKILLs it. Run: node worker.js <disk-path> <pool-uuid> <seed>
import { statSync, truncateSync } from "node:fs";
import { loadNative } from "../../../native";
import { BLOCK_BYTES, blockContent, CrashEvent } from "./pattern";

const [diskPath, poolUuid, seedText] = process.argv.slice(2);
const MiB = 1024 * 1024;
let rng = Number(seedText) >>> 0 || 1;
function random(n: number): number {
  // xorshift32: reproducible per seed.
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng % n;
}
const emit = (event: CrashEvent) => process.stdout.write(JSON.stringify(event) + "\n");

async function main(): Promise<void> {
  const native = loadNative();
  native.start({ cores: 1 });
  const uri = `file://${diskPath}`;
  try {
    await native.importPool({ device_uri: uri });
  } catch {
    await native.createPool({ uuid: poolUuid, name: "crash", device_uri: uri, cluster_size_bytes: MiB, force: false });
  }
  const replicas = new Map((await native.listReplicas()).map((r) => [r.uuid, r.size_bytes]));
  emit({ kind: "ready", replicas: [...replicas].map(([uuid, size_bytes]) => ({ uuid, size_bytes })) });
  let version = Date.now() % 1_000_000;

  const writer = async () => {
    for (;;) {
      const targets = [...replicas.keys()];
      if (targets.length === 0) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      const uuid = targets[random(targets.length)];
      const size = replicas.get(uuid)!;
      const block = random(Math.floor(size / BLOCK_BYTES));
      const v = ++version;
      emit({ kind: "issue", op: "write", uuid, block, version: v });
      try {
        await native.replicaWrite({ uuid, offset_bytes: block * BLOCK_BYTES, data: blockContent(uuid, block, v) });
        emit({ kind: "ack", op: "write", uuid, block, version: v });
      } catch {
        // Destroyed or resized under us, or out of space: not acknowledged, nothing to verify.
      }
    }
  };

  const metadata = async () => {
    for (let n = 0; ; n++) {
      const choice = random(10);
      const uuids = [...replicas.keys()];
      try {
        if (choice < 4 || uuids.length < 2) {
          const uuid = crypto.randomUUID();
          const size_bytes = (1 + random(8)) * MiB;
          const thin = random(3) !== 0;
          emit({ kind: "issue", op: "create", uuid, size_bytes, thin });
          await native.createReplica({ pool_uuid: poolUuid, uuid, name: uuid, size_bytes, thin });
          replicas.set(uuid, size_bytes);
          emit({ kind: "ack", op: "create", uuid, size_bytes, thin });
        } else if (choice < 6) {
          const uuid = uuids[random(uuids.length)];
          const size_bytes = replicas.get(uuid)! + (1 + random(4)) * MiB;
          emit({ kind: "issue", op: "resize", uuid, size_bytes });
          await native.resizeReplica({ uuid, size_bytes });
          replicas.set(uuid, size_bytes);
          emit({ kind: "ack", op: "resize", uuid, size_bytes });
        } else if (choice < 9) {
          const uuid = uuids[random(uuids.length)];
          replicas.delete(uuid);
          emit({ kind: "issue", op: "destroy", uuid });
          await native.destroyReplica({ uuid });
          emit({ kind: "ack", op: "destroy", uuid });
        } else {
          const device_bytes = statSync(diskPath).size + 8 * MiB;
          if (device_bytes < 512 * MiB) {
            emit({ kind: "issue", op: "grow", device_bytes });
            truncateSync(diskPath, device_bytes);
            await native.growPool({ uuid: poolUuid });
            emit({ kind: "ack", op: "grow", device_bytes });
          }
        }
      } catch {
        // Out of space and the like: the op was refused, which the journal shows as no ack.
      }
    }
  };

  await Promise.all([metadata(), writer(), writer(), writer(), writer()]);
}

main().catch((err: unknown) => {
  process.stderr.write(`crash worker failed: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
