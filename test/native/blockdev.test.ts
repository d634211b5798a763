// uring:// block devices: a real loop device (major 7) over a temp file. The test needs root
// and a working loop driver; where the kernel has none it says so and fails, rather than
// passing without testing anything. STRATA_SKIP_BLOCKDEV=1 opts out explicitly.
import test, { ExecutionContext } from "ava";
import { execFileSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { closeSync, constants, mkdtempSync, openSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expectCode, MiB, native, tempDisk } from "./helpers";

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

/** A loop device over a fresh temp file, detached at teardown; undefined (test failed) when none. */
function loopDevice(t: ExecutionContext, sizeMiB: number): string | undefined {
  const disk = tempDisk(t, sizeMiB);
  try {
    const loop = execFileSync("losetup", ["--find", "--show", disk.path], { encoding: "utf8" }).trim();
    t.teardown(() => execFileSync("losetup", ["-d", loop]));
    return loop;
  } catch (err) {
    t.fail(`cannot attach a loop device (need root and the loop driver; STRATA_SKIP_BLOCKDEV=1 skips): ${(err as Error).message}`);
    return undefined;
  }
}

const poolOn = (uri: string, force: boolean) => ({ uuid: randomUUID(), name: `loop-${randomUUID().slice(0, 8)}`, device_uri: uri, cluster_size_bytes: MiB, force });

(skip ? test.skip : test)("a block device holding ext4 needs force, and a mounted one is refused even with force", async (t) => {
  const loop = loopDevice(t, 64);
  if (!loop) return;
  execFileSync("mkfs.ext4", ["-q", loop]);
  const n = native();
  const uri = `uring://${loop}`;
  await expectCode(t, n.createPool(poolOn(uri, false)), "FAILED_PRECONDITION", /holds an ext2\/3\/4 filesystem .*pass force/);

  const mountPoint = mkdtempSync(join(tmpdir(), "strata-mnt-"));
  execFileSync("mount", [loop, mountPoint]);
  t.teardown(() => {
    execFileSync("umount", [mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  });
  const mounted = new RegExp(`block device ${loop} is mounted at ${mountPoint} \\(device 7:\\d+\\).*force does not override this`);
  await expectCode(t, n.createPool(poolOn(uri, true)), "FAILED_PRECONDITION", mounted);
  await expectCode(t, n.probeDevice({ uri }), "FAILED_PRECONDITION", mounted);
  // The mounted filesystem was not touched and is still usable.
  execFileSync("touch", [join(mountPoint, "still-here")]);
  t.true(statSync(join(mountPoint, "still-here")).isFile());
});

(skip ? test.skip : test)("a block device someone holds exclusively is refused as in use", async (t) => {
  const loop = loopDevice(t, 64);
  if (!loop) return;
  const held = openSync(loop, constants.O_RDONLY | constants.O_EXCL);
  t.teardown(() => closeSync(held));
  const n = native();
  await expectCode(t, n.createPool(poolOn(`uring://${loop}`, true)), "FAILED_PRECONDITION", /is in use \(mounted, swap, part of RAID\/LVM\/device-mapper, or opened exclusively/);
});
