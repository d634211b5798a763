// uring:// block devices: a real loop device (major 7) over a temp file. The test needs root
// and a working loop driver; where the kernel has none it says so and fails, rather than
// passing without testing anything. STRATA_SKIP_BLOCKDEV=1 opts out explicitly.
import test from "ava";
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { statSync } from "node:fs";
import { MiB, native, tempDisk } from "./helpers";

const skip = process.env.STRATA_SKIP_BLOCKDEV === "1";

(skip ? test.skip : test)("a pool on a loop block device keeps its data across export and import", async (t) => {
  const disk = tempDisk(t, 128);
  let loop: string;
  try {
    loop = execFileSync("losetup", ["--find", "--show", disk.path], { encoding: "utf8" }).trim();
  } catch (err) {
    t.fail(`cannot attach a loop device (need root and the loop driver; STRATA_SKIP_BLOCKDEV=1 skips): ${(err as Error).message}`);
    return;
  }
  t.teardown(() => {
    execFileSync("losetup", ["-d", loop]);
  });
  const major = Math.floor(statSync(loop).rdev / 256);
  t.is(major, 7, "loop devices have major 7");

  const n = native();
  const uri = `uring://${loop}`;
  const device = await n.probeDevice({ uri });
  t.is(device.kind, "block");
  t.is(device.size_bytes, 128 * MiB);
  t.regex(device.major_minor ?? "", /^7:\d+$/);

  const pool = await n.createPool({ uuid: randomUUID(), name: `loop-${randomUUID().slice(0, 8)}`, device_uri: uri, cluster_size_bytes: MiB, force: false });
  const replica = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid: replica, name: replica, size_bytes: 32 * MiB, thin: true });
  const data = randomBytes(3 * MiB + 4096);
  await n.replicaWrite({ uuid: replica, offset_bytes: 5 * MiB - 4096, data });
  await n.replicaFlush({ uuid: replica });
  await n.exportPool({ uuid: pool.uuid });

  const imported = await n.importPool({ device_uri: uri });
  t.is(imported.uuid, pool.uuid);
  const back = await n.replicaRead({ uuid: replica, offset_bytes: 5 * MiB - 4096, length_bytes: data.length });
  t.true(back.equals(data), "data read back from the block device equals what was written");
  t.deepEqual((await n.checkPool({ uuid: pool.uuid })).problems, []);
  await n.destroyReplica({ uuid: replica });
  await n.destroyPool({ uuid: pool.uuid });
});
