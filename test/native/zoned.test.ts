// The zoned device (native/src/device/zoned_device.h): NVMe ZNS rules over a plain file, each
// broken rule failing with its ZNS status, and the zone state kept across opens. Every call
// opens the device anew (deviceIo, zoneReport, zoneManage, zoneAppend), so every state a test
// sees after its first call was read back from the metadata area.
import test, { ExecutionContext } from "ava";
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync, writeSync } from "node:fs";
import { NativeStorage } from "../../native";
import { expectCode, MiB, native, pattern, tempDisk } from "./helpers";

const KiB = 1024;
const ZONE = MiB; // zone_mib=1

// The statuses as the messages carry them (SCT 1h = command specific, SCT 0h = generic).
const INVALID_WRITE = /Zone Invalid Write \(NVMe SCT 1h SC 0xBC\)/;
const BOUNDARY = /Zone Boundary Error \(NVMe SCT 1h SC 0xB8\)/;
const FULL = /Zone Is Full \(NVMe SCT 1h SC 0xB9\)/;
const TOO_MANY_ACTIVE = /Too Many Active Zones \(NVMe SCT 1h SC 0xBD\)/;
const TOO_MANY_OPEN = /Too Many Open Zones \(NVMe SCT 1h SC 0xBE\)/;
const INVALID_TRANSITION = /Zone Invalid State Transition \(NVMe SCT 1h SC 0xBF\)/;
const INVALID_FIELD = /Invalid Field in Command \(NVMe SCT 0h SC 0x02\)/;

interface Zoned {
  n: NativeStorage;
  uri: string;
  path: string;
  write(offset: number, data: Buffer): Promise<unknown>;
  read(offset: number, length: number): Promise<Buffer>;
}

/** A zoned device of (sizeMiB - 1) 1 MiB zones over a fresh sparse file (its first MiB holds the metadata). */
function zoned(t: ExecutionContext, sizeMiB: number, limits = ""): Zoned {
  const n = native();
  const disk = tempDisk(t, sizeMiB);
  const uri = `zoned://?base=${encodeURIComponent(disk.uri)}&zone_mib=1${limits}`;
  return {
    n,
    uri,
    path: disk.path,
    write: (offset, data) => n.deviceIo({ uri, kind: "write", offset_bytes: offset, length_bytes: data.length, data }),
    read: async (offset, length) => (await n.deviceIo({ uri, kind: "read", offset_bytes: offset, length_bytes: length, data: null }))!,
  };
}

async function zone(z: Zoned, index: number) {
  return (await z.n.zoneReport({ uri: z.uri })).zones[index];
}

/** Bytes of the backing file: the device's byte `offset` lives at file byte ZONE + offset. */
function fileBytes(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, "r");
  const out = Buffer.alloc(length);
  readSync(fd, out, 0, length, offset);
  closeSync(fd);
  return out;
}

function writeFileBytes(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, "r+");
  writeSync(fd, data, 0, data.length, offset);
  closeSync(fd);
}

test("a new zoned device has every zone empty, its write pointer at its start; the last partial zone is not exposed", async (t) => {
  const n = native();
  const disk = tempDisk(t, 8);
  // 8.5 MiB: eight whole zones, the first for metadata, and half a zone that is not exposed.
  const fd = openSync(disk.path, "r+");
  writeSync(fd, Buffer.alloc(1), 0, 1, 8 * MiB + 512 * KiB - 1);
  closeSync(fd);
  const uri = `zoned://?base=${encodeURIComponent(disk.uri)}&zone_mib=1`;
  const report = await n.zoneReport({ uri });
  t.like(report, { zone_size_bytes: ZONE, block_size_bytes: 512, max_open: null, max_active: null, open_count: 0, active_count: 0 });
  t.deepEqual(
    report.zones,
    [0, 1, 2, 3, 4, 5, 6].map((i) => ({ start_bytes: i * ZONE, capacity_bytes: ZONE, write_pointer_bytes: i * ZONE, state: "empty" })),
  );
  t.is((await n.probeDevice({ uri })).size_bytes, 7 * ZONE);
  t.true(fileBytes(disk.path, 0, ZONE).equals(Buffer.alloc(ZONE)), "opening (report, probe) wrote nothing");
});

test("a write at the write pointer reads back equal and moves the pointer; below it reads data, above it zeros", async (t) => {
  const z = zoned(t, 4);
  const a = pattern(8 * KiB, 1), b = pattern(4 * KiB, 2);
  await z.write(ZONE, a);
  t.like(await zone(z, 1), { state: "implicitly_opened", write_pointer_bytes: ZONE + 8 * KiB });
  await z.write(ZONE + 8 * KiB, b);
  t.like(await zone(z, 1), { state: "implicitly_opened", write_pointer_bytes: ZONE + 12 * KiB });
  t.deepEqual(await z.read(ZONE, 12 * KiB), Buffer.concat([a, b]));
  // The data is where the layout says (file byte ZONE + device offset), so the read is not from a cache.
  t.deepEqual(fileBytes(z.path, ZONE + ZONE, 12 * KiB), Buffer.concat([a, b]));
  // Bytes the inner device holds above the write pointer never show.
  writeFileBytes(z.path, ZONE + ZONE + 12 * KiB, pattern(4 * KiB, 3));
  t.deepEqual(await z.read(ZONE + 8 * KiB, 8 * KiB), Buffer.concat([b, Buffer.alloc(4 * KiB)]));
  // A read across the zone boundary: zone 1's data, then zone 2's zeros.
  const across = await z.read(ZONE + 12 * KiB - 4 * KiB, ZONE);
  t.deepEqual(across.subarray(0, 4 * KiB), b);
  t.true(across.subarray(4 * KiB).equals(Buffer.alloc(ZONE - 4 * KiB)));
});

test("a write not at the write pointer fails with Zone Invalid Write (0xBC) and changes nothing", async (t) => {
  const z = zoned(t, 4);
  await expectCode(t, z.write(4 * KiB, pattern(4 * KiB, 1)), "FAILED_PRECONDITION", INVALID_WRITE);
  t.like(await zone(z, 0), { state: "empty", write_pointer_bytes: 0 });
  const first = pattern(8 * KiB, 2);
  await z.write(0, first);
  // Behind the pointer (an overwrite) and ahead of it (a gap): both refused.
  await expectCode(t, z.write(0, pattern(4 * KiB, 3)), "FAILED_PRECONDITION", INVALID_WRITE);
  await expectCode(t, z.write(12 * KiB, pattern(4 * KiB, 4)), "FAILED_PRECONDITION", INVALID_WRITE);
  t.like(await zone(z, 0), { state: "implicitly_opened", write_pointer_bytes: 8 * KiB });
  t.deepEqual(await z.read(0, 16 * KiB), Buffer.concat([first, Buffer.alloc(8 * KiB)]));
  // write_zeroes follows the same rule, and at the pointer it moves it.
  await expectCode(t, z.n.deviceIo({ uri: z.uri, kind: "write_zeroes", offset_bytes: 0, length_bytes: 4 * KiB, data: null }), "FAILED_PRECONDITION", INVALID_WRITE);
  await z.n.deviceIo({ uri: z.uri, kind: "write_zeroes", offset_bytes: 8 * KiB, length_bytes: 4 * KiB, data: null });
  t.like(await zone(z, 0), { write_pointer_bytes: 12 * KiB });
});

test("a write crossing the zone's end fails with Zone Boundary Error (0xB8)", async (t) => {
  const z = zoned(t, 4);
  await z.write(0, pattern(ZONE - 4 * KiB, 1));
  await expectCode(t, z.write(ZONE - 4 * KiB, pattern(8 * KiB, 2)), "FAILED_PRECONDITION", BOUNDARY);
  t.like(await zone(z, 0), { state: "implicitly_opened", write_pointer_bytes: ZONE - 4 * KiB });
  t.like(await zone(z, 1), { state: "empty", write_pointer_bytes: ZONE });
  t.true((await z.read(ZONE - 4 * KiB, 8 * KiB)).equals(Buffer.alloc(8 * KiB)), "nothing of the refused write landed");
});

test("a zone written to capacity is Full and refuses writes and appends with Zone Is Full (0xB9)", async (t) => {
  const z = zoned(t, 4);
  const data = pattern(ZONE, 1);
  await z.write(0, data);
  t.like(await zone(z, 0), { state: "full", write_pointer_bytes: ZONE });
  await expectCode(t, z.write(0, pattern(4 * KiB, 2)), "FAILED_PRECONDITION", FULL);
  await expectCode(t, z.n.zoneAppend({ uri: z.uri, zone_start_bytes: 0, data: pattern(4 * KiB, 3) }), "FAILED_PRECONDITION", FULL);
  t.deepEqual(await z.read(0, ZONE), data);
  t.like(await z.n.zoneReport({ uri: z.uri }), { open_count: 0, active_count: 0 });
});

test("open and active limits: Too Many Open Zones (0xBE) and Too Many Active Zones (0xBD)", async (t) => {
  const z = zoned(t, 8, "&max_open=2&max_active=3");
  const manage = (action: "open" | "close" | "finish" | "reset", index: number) => z.n.zoneManage({ uri: z.uri, action, zone_start_bytes: index * ZONE });
  await manage("open", 0);
  await manage("open", 1);
  // Both open resources are held by explicitly opened zones: the device may not close those.
  await expectCode(t, manage("open", 2), "FAILED_PRECONDITION", TOO_MANY_OPEN);
  await expectCode(t, z.write(2 * ZONE, pattern(4 * KiB, 1)), "FAILED_PRECONDITION", TOO_MANY_OPEN);
  t.like(await zone(z, 2), { state: "empty" });
  await manage("close", 0);
  await manage("open", 2);
  t.like(await z.n.zoneReport({ uri: z.uri }), { max_open: 2, max_active: 3, open_count: 2, active_count: 3 });
  await manage("close", 2);
  // Two open resources free, but all three active ones held (one open, two closed).
  await expectCode(t, z.write(3 * ZONE, pattern(4 * KiB, 2)), "FAILED_PRECONDITION", TOO_MANY_ACTIVE);
  await expectCode(t, manage("open", 3), "FAILED_PRECONDITION", TOO_MANY_ACTIVE);
  await expectCode(t, manage("finish", 3), "FAILED_PRECONDITION", TOO_MANY_ACTIVE);
  // A closed zone reopens (it already holds its active resource).
  await z.write(2 * ZONE, pattern(4 * KiB, 3));
  t.like(await zone(z, 2), { state: "implicitly_opened", write_pointer_bytes: 2 * ZONE + 4 * KiB });
  // Finishing a zone frees its resources.
  await manage("finish", 0);
  await z.write(3 * ZONE, pattern(4 * KiB, 4));
  const report = await z.n.zoneReport({ uri: z.uri });
  // Zone 3 needed an open resource: the device closed implicitly opened zone 2 for it.
  t.deepEqual(report.zones.slice(0, 4).map((x) => x.state), ["full", "explicitly_opened", "closed", "implicitly_opened"]);
  t.like(report, { open_count: 2, active_count: 3 });
});

test("with every open resource taken, a write to another zone closes an implicitly opened one", async (t) => {
  const z = zoned(t, 8, "&max_open=2");
  await z.write(0, pattern(4 * KiB, 1));
  await z.write(ZONE, pattern(4 * KiB, 2));
  await z.write(2 * ZONE, pattern(4 * KiB, 3));
  const report = await z.n.zoneReport({ uri: z.uri });
  t.deepEqual(report.zones.slice(0, 3).map((x) => x.state), ["closed", "implicitly_opened", "implicitly_opened"]);
  t.like(report, { open_count: 2, active_count: 3 });
  t.deepEqual(await z.read(0, 4 * KiB), pattern(4 * KiB, 1), "closing keeps the data");
});

test("zone management outside the state machine fails with Zone Invalid State Transition (0xBF)", async (t) => {
  const z = zoned(t, 4);
  const manage = (action: "open" | "close" | "finish" | "reset", index: number) => z.n.zoneManage({ uri: z.uri, action, zone_start_bytes: index * ZONE });
  await expectCode(t, manage("close", 0), "FAILED_PRECONDITION", INVALID_TRANSITION);
  await manage("finish", 0);
  t.like(await zone(z, 0), { state: "full", write_pointer_bytes: ZONE });
  await expectCode(t, manage("open", 0), "FAILED_PRECONDITION", INVALID_TRANSITION);
  await expectCode(t, manage("close", 0), "FAILED_PRECONDITION", INVALID_TRANSITION);
  await manage("finish", 0); // finishing a full zone changes nothing
  await expectCode(t, z.n.zoneManage({ uri: z.uri, action: "open", zone_start_bytes: ZONE + 4 * KiB }), "INVALID_ARGUMENT", INVALID_FIELD);
});

test("finish makes a zone Full; the rest of it reads as zeros", async (t) => {
  const z = zoned(t, 4);
  const data = pattern(8 * KiB, 1);
  await z.write(ZONE, data);
  writeFileBytes(z.path, ZONE + ZONE + 8 * KiB, pattern(4 * KiB, 2)); // stale bytes past the last write
  await z.n.zoneManage({ uri: z.uri, action: "finish", zone_start_bytes: ZONE });
  t.like(await zone(z, 1), { state: "full", write_pointer_bytes: 2 * ZONE });
  t.deepEqual(await z.read(ZONE, 16 * KiB), Buffer.concat([data, Buffer.alloc(8 * KiB)]));
  await expectCode(t, z.write(ZONE + 8 * KiB, pattern(4 * KiB, 3)), "FAILED_PRECONDITION", FULL);
});

test("reset empties a zone: its write pointer back at the start, its blocks reading zeros, writable from the start again", async (t) => {
  const z = zoned(t, 4);
  await z.write(ZONE, pattern(ZONE, 1));
  t.like(await zone(z, 1), { state: "full" });
  await z.n.zoneManage({ uri: z.uri, action: "reset", zone_start_bytes: ZONE });
  t.like(await zone(z, 1), { state: "empty", write_pointer_bytes: ZONE });
  t.true((await z.read(ZONE, ZONE)).equals(Buffer.alloc(ZONE)));
  t.true(fileBytes(z.path, 2 * ZONE, ZONE).equals(Buffer.alloc(ZONE)), "the inner device's space was deallocated too");
  const again = pattern(4 * KiB, 2);
  await z.write(ZONE, again);
  t.deepEqual(await z.read(ZONE, 4 * KiB), again);
});

test("deallocate takes whole zones only, and resets them", async (t) => {
  const z = zoned(t, 4);
  await z.write(0, pattern(8 * KiB, 1));
  await z.write(ZONE, pattern(8 * KiB, 2));
  const dealloc = (offset: number, length: number) => z.n.deviceIo({ uri: z.uri, kind: "deallocate", offset_bytes: offset, length_bytes: length, data: null });
  await expectCode(t, dealloc(0, 4 * KiB), "INVALID_ARGUMENT", INVALID_FIELD);
  t.like(await zone(z, 0), { write_pointer_bytes: 8 * KiB });
  await dealloc(0, 2 * ZONE);
  const report = await z.n.zoneReport({ uri: z.uri });
  t.deepEqual(report.zones.slice(0, 2).map((x) => [x.state, x.write_pointer_bytes]), [["empty", 0], ["empty", ZONE]]);
  t.true((await z.read(0, 16 * KiB)).equals(Buffer.alloc(16 * KiB)));
});

test("zone append writes at the write pointer and returns consecutive LBAs", async (t) => {
  const z = zoned(t, 4);
  const parts = [pattern(4 * KiB, 1), pattern(8 * KiB, 2), pattern(512, 3)];
  const lbas: number[] = [];
  for (const data of parts) {
    const r = await z.n.zoneAppend({ uri: z.uri, zone_start_bytes: 2 * ZONE, data });
    t.is(r.offset_bytes, r.lba * 512);
    lbas.push(r.lba);
  }
  const first = (2 * ZONE) / 512;
  t.deepEqual(lbas, [first, first + 8, first + 24]);
  t.deepEqual(await z.read(2 * ZONE, 12 * KiB + 512), Buffer.concat(parts));
  t.like(await zone(z, 2), { state: "implicitly_opened", write_pointer_bytes: 2 * ZONE + 12 * KiB + 512 });
  // An append names the zone by its start, and must fit before the zone's end.
  await expectCode(t, z.n.zoneAppend({ uri: z.uri, zone_start_bytes: 2 * ZONE + 512, data: pattern(512, 4) }), "INVALID_ARGUMENT", INVALID_FIELD);
  await expectCode(t, z.n.zoneAppend({ uri: z.uri, zone_start_bytes: 2 * ZONE, data: pattern(ZONE, 5) }), "FAILED_PRECONDITION", BOUNDARY);
});

test("zone states and write pointers survive reopening, from the metadata area", async (t) => {
  const z = zoned(t, 8);
  const manage = (action: "open" | "close" | "finish" | "reset", index: number) => z.n.zoneManage({ uri: z.uri, action, zone_start_bytes: index * ZONE });
  await z.write(0, pattern(12 * KiB, 1));
  await manage("open", 1);
  await z.write(2 * ZONE, pattern(4 * KiB, 2));
  await manage("close", 2);
  await manage("finish", 3);
  await z.write(4 * ZONE, pattern(ZONE, 3));
  const expected = [
    ["implicitly_opened", 12 * KiB],
    ["explicitly_opened", ZONE],
    ["closed", 2 * ZONE + 4 * KiB],
    ["full", 4 * ZONE],
    ["full", 5 * ZONE],
    ["empty", 5 * ZONE],
  ];
  // Every call opened the device anew; the state it reports came from the metadata area, whose
  // magic the backing file now holds.
  t.deepEqual((await z.n.zoneReport({ uri: z.uri })).zones.slice(0, 6).map((x) => [x.state, x.write_pointer_bytes]), expected);
  t.is(fileBytes(z.path, 0, 8).toString(), "STRZONED");
  // The write pointer persisted: the next write must continue there, an overwrite still fails.
  await expectCode(t, z.write(0, pattern(4 * KiB, 4)), "FAILED_PRECONDITION", INVALID_WRITE);
  await z.write(12 * KiB, pattern(4 * KiB, 5));
  t.deepEqual(await z.read(0, 16 * KiB), Buffer.concat([pattern(12 * KiB, 1), pattern(4 * KiB, 5)]));
  // The zone size is fixed when the metadata is written.
  await expectCode(t, z.n.zoneReport({ uri: z.uri.replace("zone_mib=1", "zone_mib=2") }), "INVALID_ARGUMENT", /was made a zoned device as .*zone_mib=1/);
  await expectCode(t, z.n.zoneReport({ uri: `${z.uri}&max_open=4` }), "INVALID_ARGUMENT", /open it with the URI it was made with/);
});

test("writes in flight together all land and the persisted write pointers account for every byte", async (t) => {
  // The load generator keeps 8 sequential writes in flight: each is admitted at the write
  // pointer in order, and each completes only once a metadata write holding it has landed, so
  // a fresh open must see every byte the generator counted (an older metadata write landing
  // after a newer one would lose some).
  const z = zoned(t, 1024);
  const bench = await z.n.benchDevice({ uri: z.uri, pattern: "write", block_size_bytes: 64 * KiB, queue_depth: 8, duration_ms: 150, span_bytes: 0 });
  t.log(`${bench.ops} writes, ${bench.bytes} bytes`);
  t.true(bench.bytes > 0 && bench.bytes < 1023 * ZONE, `wrote ${bench.bytes} bytes without wrapping around`);
  const report = await z.n.zoneReport({ uri: z.uri });
  const written = report.zones.reduce((sum, x) => sum + (x.write_pointer_bytes - x.start_bytes), 0);
  t.is(written, bench.bytes);
  const fullZones = Math.floor(bench.bytes / ZONE);
  t.true(report.zones.slice(0, fullZones).every((x) => x.state === "full"));
  t.true(report.zones.slice(fullZones + 1).every((x) => x.state === "empty"));
  // The last block the generator wrote holds its pattern (a little-endian byte offset every 8 bytes).
  const last = await z.read(bench.bytes - 64 * KiB, 64 * KiB);
  t.is(Number(last.readBigUInt64LE(64 * KiB - 8)), 64 * KiB - 8);
});

test("corrupt zone metadata is refused at open, naming the device", async (t) => {
  const z = zoned(t, 4);
  await z.write(0, pattern(4 * KiB, 1));
  const entry = fileBytes(z.path, 64 + 8, 1); // zone 0's write pointer, low byte
  writeFileBytes(z.path, 64 + 8, Buffer.from([entry[0] ^ 0x10]));
  const base = z.uri.slice(z.uri.indexOf("=") + 1, z.uri.indexOf("&"));
  const named = new RegExp(`zoned metadata on ${decodeURIComponent(base).replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} fails its CRC32C`);
  await expectCode(t, z.n.zoneReport({ uri: z.uri }), "DATA_LOSS", named);
  await expectCode(t, z.read(0, 4 * KiB), "DATA_LOSS", named);
  await expectCode(t, z.write(4 * KiB, pattern(4 * KiB, 2)), "DATA_LOSS", named);
  t.is(fileBytes(z.path, 64 + 8, 1)[0], entry[0] ^ 0x10, "the refused device was not rewritten");
});

test("a device whose first zone holds other data is refused and left unchanged", async (t) => {
  const z = zoned(t, 4);
  writeFileBytes(z.path, 4096, Buffer.from("not zone metadata"));
  const before = readFileSync(z.path);
  await expectCode(t, z.n.zoneReport({ uri: z.uri }), "FAILED_PRECONDITION", /hold data that is not zoned-device metadata/);
  t.true(readFileSync(z.path).equals(before));
});

test("only zoned devices have zones; zoned URIs are checked", async (t) => {
  const n = native();
  const disk = tempDisk(t, 4);
  await expectCode(t, n.zoneReport({ uri: disk.uri }), "INVALID_ARGUMENT", /is not a zoned device/);
  const base = encodeURIComponent(disk.uri);
  await expectCode(t, n.zoneReport({ uri: `zoned://?base=${base}` }), "INVALID_ARGUMENT", /needs base and zone_mib/);
  await expectCode(t, n.zoneReport({ uri: `zoned://?base=${base}&zone_mib=1&max_open=3&max_active=2` }), "INVALID_ARGUMENT", /MOR <= MAR/);
  await expectCode(t, n.zoneReport({ uri: `zoned://?base=${base}&zone_mib=4` }), "INVALID_ARGUMENT", /a zoned device needs 2 to/);
  await expectCode(t, n.zoneReport({ uri: `zoned://?base=${base}&zone_mib=1&colour=red` }), "INVALID_ARGUMENT", /unknown parameter 'colour'/);
  t.true(readFileSync(disk.path).equals(Buffer.alloc(4 * MiB)), "refused URIs wrote nothing");
});

test("a pool is refused on a zoned device, which stays untouched", async (t) => {
  const z = zoned(t, 16);
  await expectCode(
    t,
    z.n.createPool({ uuid: randomUUID(), name: `z-${randomUUID().slice(0, 8)}`, device_uri: z.uri, cluster_size_bytes: MiB, force: false }),
    "FAILED_PRECONDITION",
    /is a zoned device; a pool writes at any offset/,
  );
  await expectCode(t, z.n.importPool({ device_uri: z.uri }), "FAILED_PRECONDITION", /is a zoned device/);
  t.true(readFileSync(z.path).equals(Buffer.alloc(16 * MiB)));
});
