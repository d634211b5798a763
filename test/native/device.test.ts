// Devices: probing reports what the engine would open, the engine lists what pools use, and
// a pool is never formatted over someone else's data.
import test, { ExecutionContext } from "ava";
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import { expectCode, native, tempDisk, tempPool, MiB } from "./helpers";

test("probeDevice describes a file without creating or claiming it", async (t) => {
  const n = native();
  const disk = tempDisk(t, 24);
  const d = await n.probeDevice({ uri: disk.uri });
  t.like(d, { uri: disk.uri, kind: "file", path: disk.path, size_bytes: 24 * MiB, block_size_bytes: 512, in_use_by: null });
  t.regex(d.major_minor!, /^\d+:\d+$/);
  t.is(typeof d.direct_io, "boolean");
});

test("listDevices shows the devices pools use, with in_use_by", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t);
  const listed = (await n.listDevices()).find((d) => d.uri === uri);
  t.is(listed?.in_use_by, pool.uuid);
  t.is((await n.probeDevice({ uri })).in_use_by, pool.uuid);
});

test("a malloc device is the same device for the same name within a process", async (t) => {
  const n = native();
  const name = `m${randomUUID().slice(0, 8)}`;
  const a = await n.createPool({ uuid: randomUUID(), name, device_uri: `malloc:///${name}?size_mib=16`, cluster_size_bytes: MiB, force: false });
  await n.exportPool({ uuid: a.uuid });
  const probed = await n.probeDevice({ uri: `malloc:///${name}` });
  t.like(probed, { kind: "malloc", size_bytes: 16 * MiB, in_use_by: null, direct_io: false });
  t.is((await n.importPool({ device_uri: `malloc:///${name}` })).uuid, a.uuid);
  await n.destroyPool({ uuid: a.uuid });
});

// ---- what a pool may be formatted over ------------------------------------------------------

/** Writes `bytes` at `offset` of a fresh sparse file and returns it with its full contents. */
function diskWith(t: ExecutionContext, sizeMiB: number, writes: [number, Buffer][]): { uri: string; path: string; before: Buffer } {
  const disk = tempDisk(t, sizeMiB);
  const fd = openSync(disk.path, "r+");
  for (const [offset, bytes] of writes) writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
  return { ...disk, before: readFileSync(disk.path) };
}

const SIGNATURES: [string, [number, Buffer][], RegExp][] = [
  ["ext4", [[1080, Buffer.from([0x53, 0xef])]], /an ext2\/3\/4 filesystem \(magic 0xEF53 at byte 1080\)/],
  ["MBR", [[446 + 4, Buffer.from([0x83])], [510, Buffer.from([0x55, 0xaa])]], /an MBR partition table/],
  ["GPT", [[512, Buffer.from("EFI PART")]], /a GPT partition table/],
  ["XFS", [[0, Buffer.from("XFSB")]], /an XFS filesystem/],
  ["btrfs", [[65536 + 64, Buffer.from("_BHRfS_M")]], /a btrfs filesystem/],
  ["LVM2", [[512, Buffer.from("LABELONE")]], /an LVM2 physical volume/],
  ["swap", [[4096 - 10, Buffer.from("SWAPSPACE2")]], /a swap area/],
];

for (const [name, writes, described] of SIGNATURES) {
  test(`a device holding a ${name} signature is refused without force and left unchanged`, async (t) => {
    const n = native();
    const disk = diskWith(t, 64, writes);
    const req = { uuid: randomUUID(), name: `sig-${randomUUID().slice(0, 8)}`, device_uri: disk.uri, cluster_size_bytes: MiB };
    await expectCode(t, n.createPool({ ...req, force: false }), "FAILED_PRECONDITION", new RegExp(`${described.source}.*wipe it \\(wipefs -a\\) or pass force`));
    t.true(readFileSync(disk.path).equals(disk.before), "no byte of the device changed");
    t.false((await n.listPools()).some((p) => p.uuid === req.uuid));
  });
}

test("force formats over a foreign signature", async (t) => {
  const n = native();
  const disk = diskWith(t, 64, SIGNATURES[0][1]);
  const pool = await n.createPool({ uuid: randomUUID(), name: `forced-${randomUUID().slice(0, 8)}`, device_uri: disk.uri, cluster_size_bytes: MiB, force: true });
  t.is(pool.state, "online");
  await n.destroyPool({ uuid: pool.uuid });
});

test("an MBR boot sector without partitions is not a partition table", async (t) => {
  const n = native();
  const disk = diskWith(t, 64, [[510, Buffer.from([0x55, 0xaa])]]);
  const pool = await n.createPool({ uuid: randomUUID(), name: `mbr0-${randomUUID().slice(0, 8)}`, device_uri: disk.uri, cluster_size_bytes: MiB, force: false });
  t.is(pool.state, "online");
  await n.destroyPool({ uuid: pool.uuid });
});

test("size_mib does not extend or format an existing file that is not a pool", async (t) => {
  const n = native();
  const disk = tempDisk(t, 0);
  writeFileSync(disk.path, "someone's data, not a pool\n".repeat(1000));
  const before = readFileSync(disk.path);
  for (const force of [false, true]) {
    await expectCode(t, n.createPool({ uuid: randomUUID(), name: `x-${randomUUID().slice(0, 8)}`, device_uri: `${disk.uri}?size_mib=64`, cluster_size_bytes: MiB, force }),
      "FAILED_PRECONDITION", /already exists with 27000 bytes that are not a Strata pool; size_mib=64 would extend it.*left unchanged/);
  }
  t.true(readFileSync(disk.path).equals(before), "the file is byte for byte what it was");
});

test("size_mib still creates an empty file it made, and grows a pool's own file", async (t) => {
  const n = native();
  const disk = tempDisk(t, 0);
  const pool = await n.createPool({ uuid: randomUUID(), name: `e-${randomUUID().slice(0, 8)}`, device_uri: `${disk.uri}?size_mib=32`, cluster_size_bytes: MiB, force: false });
  t.is(statSync(disk.path).size, 32 * MiB);
  await n.exportPool({ uuid: pool.uuid });
  // The pool's file may grow: the create is still refused (it holds a pool), the import sees more room.
  await expectCode(t, n.createPool({ uuid: randomUUID(), name: "again", device_uri: `${disk.uri}?size_mib=48`, cluster_size_bytes: MiB, force: false }), "FAILED_PRECONDITION", /already holds pool/);
  t.is(statSync(disk.path).size, 48 * MiB);
  await n.importPool({ device_uri: disk.uri });
  await n.destroyPool({ uuid: pool.uuid });
});

test("a malloc device beyond the node's memory cap fails cleanly with NO_SPACE", async (t) => {
  const n = native();
  const name = `huge${randomUUID().slice(0, 8)}`;
  await expectCode(t, n.createPool({ uuid: randomUUID(), name, device_uri: `malloc:///${name}?size_mib=999999999`, cluster_size_bytes: MiB, force: false }),
    "NO_SPACE", /malloc device 'huge.*' of 999999999 MiB does not fit in memory: malloc devices may hold \d+ MiB in all \(1\/2 of this node's \d+ MiB of RAM\)/);
  t.false((await n.listDevices()).some((d) => d.uri === `malloc:///${name}`));
  // The engine is still there and serves the next request.
  const ok = await n.createPool({ uuid: randomUUID(), name, device_uri: `malloc:///${name}?size_mib=16`, cluster_size_bytes: MiB, force: false });
  await n.destroyPool({ uuid: ok.uuid });
});
