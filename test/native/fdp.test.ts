// The FDP device (native/src/device/fdp_device.h): NVMe Flexible Data Placement over a plain
// device, with the drive's reclaim-unit media model. Data passes through unchanged; the FTL puts
// its hot and cold bands through different placement handles, and the drive's own GC then has
// nothing to copy (media bytes written = host bytes written), where one shared handle makes it copy.
import test, { ExecutionContext } from "ava";
import { randomUUID } from "node:crypto";
import { NativeStorage } from "../../native";
import { seededRandom } from "../helpers/random";
import { expectCode, MiB, native, tempDisk } from "./helpers";

const BLOCK = 4096;

test("an fdp:// URI names what is wrong with it", async (t) => {
  const n = native();
  const base = tempDisk(t, 16);
  const enc = encodeURIComponent(base.uri);
  await expectCode(t, n.probeDevice({ uri: `fdp://?base=${enc}` }), "INVALID_ARGUMENT", /needs base and handles/);
  await expectCode(t, n.probeDevice({ uri: `fdp://?base=${enc}&handles=9` }), "INVALID_ARGUMENT", /handles in .* must be given once, as an integer from 1 to 8, got '9'/);
  await expectCode(t, n.probeDevice({ uri: `fdp://?base=${enc}&handles=2&ruh=1` }), "INVALID_ARGUMENT", /unknown parameter 'ruh'/);
  await expectCode(t, n.probeDevice({ uri: `fdp://?base=${encodeURIComponent(`zoned://?base=${enc}&zone_mib=2`)}&handles=2` }), "INVALID_ARGUMENT", /has a zoned:\/\/ base/);
  const info = await n.probeDevice({ uri: `fdp://?base=${enc}&handles=2` });
  t.is(info.size_bytes, 16 * MiB);
});

test("data written through an fdp:// device reads back, also from the base underneath", async (t) => {
  const n = native();
  const base = tempDisk(t, 16);
  const uri = `fdp://?base=${encodeURIComponent(base.uri)}&handles=2&ru_mib=1`;
  const data = Buffer.alloc(64 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i * 2654435761 >>> 0, i);
  await n.deviceIo({ uri, kind: "write", offset_bytes: 3 * MiB, length_bytes: data.length, data });
  t.true((await n.deviceIo({ uri, kind: "read", offset_bytes: 3 * MiB, length_bytes: data.length, data: null }))!.equals(data));
  t.true((await n.deviceIo({ uri: base.uri, kind: "read", offset_bytes: 3 * MiB, length_bytes: data.length, data: null }))!.equals(data));
});

/**
 * An FTL on an FDP base whose reclaim units hold 8 of its bands (drives' RUs are large: often a
 * whole superblock of erase blocks), with 1 % spare media: filled, then skewed random overwrites
 * (80 % of writes to 20 % of the space) through the native load generator, 3 times the replica,
 * so the FTL's GC writes cold bands beside its hot ones. Then every byte of the replica is
 * written with a known pattern and read back.
 */
async function ftlOnFdp(t: ExecutionContext, n: NativeStorage, handles: number) {
  const cache = tempDisk(t, 64);
  const base = tempDisk(t, 512);
  const baseUri = `fdp://?base=${encodeURIComponent(base.uri)}&handles=${handles}&ru_mib=16&op_percent=1`;
  const ftl = await n.createFtl({ cache_uri: cache.uri, base_uri: baseUri, band_mib: 2 });
  const pool = await n.createPool({ uuid: randomUUID(), name: `fdp-${handles}`, device_uri: ftl.uri, cluster_size_bytes: MiB, force: false });
  const size = pool.capacity_bytes - 2 * MiB;
  const replica = await n.createReplica({ uuid: randomUUID(), pool_uuid: pool.uuid, name: "r", size_bytes: size, thin: false });
  const long = 3_600_000; // bounded by max_ops
  await n.benchReplica({ uuid: replica.uuid, pattern: "write", block_size_bytes: MiB, queue_depth: 8, duration_ms: long, span_bytes: size, max_ops: size / MiB });
  await n.benchReplica({ uuid: replica.uuid, pattern: "randwrite", block_size_bytes: BLOCK, queue_depth: 32, duration_ms: long, span_bytes: size, max_ops: (3 * size) / BLOCK, hot_write_fraction: 0.8, hot_space_fraction: 0.2 });
  const s = (await n.listFtl()).find((x) => x.uuid === ftl.uuid)!;
  const rnd = seededRandom(handles);
  const pattern = (off: number) => {
    const b = Buffer.alloc(MiB);
    for (let i = 0; i < b.length; i += 8) b.writeDoubleLE(rnd() + off, i);
    return b;
  };
  const written: Buffer[] = [];
  for (let off = 0; off < size; off += MiB) {
    written.push(pattern(off));
    await n.replicaWrite({ uuid: replica.uuid, offset_bytes: off, data: written[written.length - 1] });
  }
  for (let off = 0, i = 0; off < size; off += MiB, i++) {
    if (!(await n.replicaRead({ uuid: replica.uuid, offset_bytes: off, length_bytes: MiB })).equals(written[i])) return t.fail(`bytes differ in the MiB at ${off}`), s;
  }
  await n.exportPool({ uuid: pool.uuid });
  return s;
}

test.serial("the FTL's hot and cold bands through two placement handles: the drive's GC copies far less than with one shared handle", async (t) => {
  t.timeout(10 * 60_000);
  const n = native();
  const two = await ftlOnFdp(t, n, 2);
  const one = await ftlOnFdp(t, n, 1);
  const mediaWaf = (s: typeof two) => s.base_fdp_media_write_bytes / s.base_fdp_host_write_bytes;
  t.log(`media WAF: two handles ${mediaWaf(two).toFixed(3)}, one handle ${mediaWaf(one).toFixed(3)}; FTL GC victims ${two.gc_victims} / ${one.gc_victims}; by handle ${JSON.stringify(two.base_fdp_handle_write_bytes)}`);
  t.is(two.base_fdp_handles, 2);
  const [hot, cold] = two.base_fdp_handle_write_bytes;
  t.true(hot > 0 && cold > 0, "hot bands went through handle 0, cold (GC) bands through handle 1");
  t.is(hot + cold, two.base_fdp_host_write_bytes);
  t.true(mediaWaf(two) < 1.15, `two handles: media WAF ${mediaWaf(two)}`);
  t.true(mediaWaf(one) > mediaWaf(two) + 0.15, `one handle: media WAF ${mediaWaf(one)} is not well above two handles' ${mediaWaf(two)}`);
});
