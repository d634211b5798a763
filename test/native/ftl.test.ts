// The CSAL tiered device (native/src/ftl): created once, loaded ever after, every byte read back
// after overwrites that drive compaction and GC, after reopening, and over a zoned base that
// refuses any write a ZNS drive would.
import test, { ExecutionContext } from "ava";
import { randomUUID } from "node:crypto";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { FtlStats, NativeStorage } from "../../native";
import { csalMapBytes } from "../../common/csal-rules";
import { seededRandom } from "../helpers/random";
import { expectCode, MiB, native, tempDisk } from "./helpers";

const BLOCK = 4096;

interface Ftl {
  n: NativeStorage;
  uri: string;
  uuid: string;
  size: number;
  cachePath: string;
  basePath: string;
  cacheUri: string;
  baseUri: string;
}

/** An FTL over two fresh sparse files (a zoned base when zoneMiB is given). */
async function makeFtl(t: ExecutionContext, opts: { cacheMiB?: number; baseMiB?: number; bandMiB?: number; zoneMiB?: number; maxOpen?: number; op?: number } = {}): Promise<Ftl> {
  const n = native();
  const cache = tempDisk(t, opts.cacheMiB ?? 16);
  const base = tempDisk(t, opts.baseMiB ?? 96);
  const baseUri = opts.zoneMiB
    ? `zoned://?base=${encodeURIComponent(base.uri)}&zone_mib=${opts.zoneMiB}${opts.maxOpen ? `&max_open=${opts.maxOpen}&max_active=${opts.maxOpen}` : ""}`
    : base.uri;
  const created = await n.createFtl({ cache_uri: cache.uri, base_uri: baseUri, band_mib: opts.zoneMiB ? undefined : opts.bandMiB ?? 2, chunk_kib: 256, op_percent: opts.op });
  return { n, uri: created.uri, uuid: created.uuid, size: created.size_bytes, cachePath: cache.path, basePath: base.path, cacheUri: cache.uri, baseUri };
}

/** A shadow of what the device must hold, and a random overwrite workload that keeps it. */
class Shadow {
  readonly bytes: Buffer;
  constructor(size: number) {
    this.bytes = Buffer.alloc(size);
  }
  write(offset: number, data: Buffer): void {
    data.copy(this.bytes, offset);
  }
  trim(offset: number, length: number): void {
    this.bytes.fill(0, offset, offset + length);
  }
}

async function devWrite(f: Ftl, offset: number, data: Buffer) {
  await f.n.deviceIo({ uri: f.uri, kind: "write", offset_bytes: offset, length_bytes: data.length, data });
}

/** A pool on the FTL with one thick replica over most of it: the user's path to the device. */
async function poolOn(f: Ftl, t: ExecutionContext) {
  const pool = await f.n.createPool({ uuid: randomUUID(), name: `ftl-${randomUUID().slice(0, 8)}`, device_uri: f.uri, cluster_size_bytes: MiB, force: false });
  const size = pool.capacity_bytes - 2 * MiB;
  const replica = await f.n.createReplica({ uuid: randomUUID(), pool_uuid: pool.uuid, name: "r", size_bytes: size, thin: false });
  t.teardown(async () => {
    if ((await f.n.listPools()).some((p) => p.uuid === pool.uuid)) await f.n.exportPool({ uuid: pool.uuid });
  });
  return { pool, replica, size };
}

function flipByte(path: string, at: number) {
  const fd = openSync(path, "r+");
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, at);
  byte[0] ^= 0x40;
  writeSync(fd, byte, 0, 1, at);
  closeSync(fd);
}

async function stats(f: Ftl): Promise<FtlStats> {
  const s = (await f.n.listFtl()).find((x) => x.uuid === f.uuid);
  if (!s) throw new Error(`FTL ${f.uuid} is not open`);
  return s;
}

/** Random overwrites (4 KiB to 128 KiB) of `total` bytes, a trim now and then, with a shadow. */
async function overwrite(f: Ftl, replicaUuid: string, size: number, shadow: Shadow, total: number, seed: number, queue = 8, trimShare = 0.02) {
  const rnd = seededRandom(seed);
  let written = 0;
  const one = async () => {
    while (written < total) {
      const blocks = rnd() < 0.7 ? 1 : 1 + Math.floor(rnd() * 32);
      const offset = Math.floor(rnd() * (size / BLOCK - blocks)) * BLOCK;
      const length = blocks * BLOCK;
      written += length;
      if (rnd() < trimShare) {
        shadow.trim(offset, length);
        await f.n.replicaDeallocate({ uuid: replicaUuid, offset_bytes: offset, length_bytes: length });
      } else {
        const data = Buffer.alloc(length);
        for (let i = 0; i < length; i += 8) data.writeDoubleLE(rnd(), i);
        shadow.write(offset, data);
        await f.n.replicaWrite({ uuid: replicaUuid, offset_bytes: offset, data });
      }
    }
  };
  // Writers never overlap in flight on one range here: each awaits its own I/O, and the shadow
  // is updated before the write is issued, so overlapping writers would race. Keep them apart.
  await Promise.all(Array.from({ length: queue }, () => one()));
}

async function verify(t: ExecutionContext, f: Ftl, replicaUuid: string, shadow: Shadow, size: number) {
  const step = 4 * MiB;
  for (let off = 0; off < size; off += step) {
    const len = Math.min(step, size - off);
    const got = await f.n.replicaRead({ uuid: replicaUuid, offset_bytes: off, length_bytes: len });
    if (!got.equals(shadow.bytes.subarray(off, off + len))) {
      let bad = 0;
      while (got[bad] === shadow.bytes[off + bad]) bad++;
      t.fail(`bytes differ at ${off + bad}`);
      return;
    }
  }
  t.pass();
}

test.serial("created once: reads zeros, keeps writes across reopening, and never formats on open", async (t) => {
  const f = await makeFtl(t);
  t.regex(f.uri, /^ftl:\/\/\?cache=.*&base=/);
  t.true(f.size > 50 * MiB, `logical size ${f.size}`);
  const zeros = await f.n.deviceIo({ uri: f.uri, kind: "read", offset_bytes: 0, length_bytes: 65536, data: null });
  t.true(zeros!.equals(Buffer.alloc(65536)));
  const data = Buffer.alloc(3 * BLOCK, 0x5a);
  await devWrite(f, 8 * BLOCK, data);
  const back = await f.n.deviceIo({ uri: f.uri, kind: "read", offset_bytes: 8 * BLOCK, length_bytes: data.length, data: null });
  t.true(back!.equals(data));
  // A second create over the same devices is refused, naming the FTL; force formats anew.
  await expectCode(t, f.n.createFtl({ cache_uri: f.cacheUri, base_uri: f.baseUri, band_mib: 2, chunk_kib: 256 }), "FAILED_PRECONDITION", new RegExp(`belongs to FTL ${f.uuid}`));
  const again = await f.n.createFtl({ cache_uri: f.cacheUri, base_uri: f.baseUri, band_mib: 2, chunk_kib: 256, force: true });
  t.not(again.uuid, f.uuid);
  const wiped = await f.n.deviceIo({ uri: again.uri, kind: "read", offset_bytes: 8 * BLOCK, length_bytes: data.length, data: null });
  t.true(wiped!.equals(Buffer.alloc(data.length)));
});

test.serial("a swapped or foreign device is refused naming it; a corrupt superblock is DATA_LOSS", async (t) => {
  const a = await makeFtl(t);
  const b = await makeFtl(t);
  const mixed = `ftl://?cache=${encodeURIComponent(a.cacheUri)}&base=${encodeURIComponent(b.baseUri)}`;
  await expectCode(t, a.n.deviceIo({ uri: mixed, kind: "read", offset_bytes: 0, length_bytes: BLOCK, data: null }), "FAILED_PRECONDITION",
    new RegExp(`belongs to FTL ${a.uuid} but base device .* to FTL ${b.uuid}`));
  const swapped = `ftl://?cache=${encodeURIComponent(a.baseUri)}&base=${encodeURIComponent(a.cacheUri)}`;
  await expectCode(t, a.n.deviceIo({ uri: swapped, kind: "read", offset_bytes: 0, length_bytes: BLOCK, data: null }), "FAILED_PRECONDITION", /is the base device of FTL .* given as the cache/);
  const blank = tempDisk(t, 16);
  const noFtl = `ftl://?cache=${encodeURIComponent(blank.uri)}&base=${encodeURIComponent(a.baseUri)}`;
  await expectCode(t, a.n.deviceIo({ uri: noFtl, kind: "read", offset_bytes: 0, length_bytes: BLOCK, data: null }), "FAILED_PRECONDITION", /holds no FTL superblock.*opening never formats/);
  // Data on a device: create refuses without force.
  const used = tempDisk(t, 16);
  const fd = openSync(used.path, "r+");
  writeSync(fd, Buffer.from("someone's filesystem"), 0, 20, 4096);
  closeSync(fd);
  await expectCode(t, a.n.createFtl({ cache_uri: used.uri, base_uri: tempDisk(t, 96).uri, band_mib: 2, chunk_kib: 256 }), "FAILED_PRECONDITION", /cache device .* holds data; pass force/);
  // One flipped byte in the cache superblock.
  const cfd = openSync(a.cachePath, "r+");
  const byte = Buffer.alloc(1);
  readSync(cfd, byte, 0, 1, 70);
  byte[0] ^= 0xff;
  writeSync(cfd, byte, 0, 1, 70);
  closeSync(cfd);
  await expectCode(t, a.n.deviceIo({ uri: a.uri, kind: "read", offset_bytes: 0, length_bytes: BLOCK, data: null }), "DATA_LOSS", /superblock on cache device .* CRC32C/);
});

test.serial("a pool on the FTL: 3x its capacity of random overwrites and trims drive compaction and GC; every byte reads back, also after reopening", async (t) => {
  const f = await makeFtl(t);
  const { pool, replica, size } = await poolOn(f, t);
  const shadow = new Shadow(size);
  await overwrite(f, replica.uuid, size, shadow, 3 * f.size, 11);
  const s = await stats(f);
  t.log(JSON.stringify(s));
  t.is(s.failed_reason, null);
  t.true(s.gc_victims > 0, "GC ran");
  t.true(s.base_write_bytes_host > 0);
  t.is(s.base_sequential_writes, s.base_writes, "every base write is sequential within its band");
  await verify(t, f, replica.uuid, shadow, size);
  await f.n.exportPool({ uuid: pool.uuid });
  await f.n.importPool({ device_uri: f.uri });
  const after = await stats(f);
  t.true(after.loaded_from_checkpoint, "a clean close leaves a checkpoint the next open loads without a scan");
  t.is(after.recovered_records, 0);
  await verify(t, f, replica.uuid, shadow, size);
  // More overwrites on the recovered maps, then reopen again.
  await overwrite(f, replica.uuid, size, shadow, f.size, 12);
  await f.n.exportPool({ uuid: pool.uuid });
  await f.n.importPool({ device_uri: f.uri });
  await verify(t, f, replica.uuid, shadow, size);
});

test.serial("on a zoned base (max 2 open zones) the FTL issues no write the zoned device refuses", async (t) => {
  const f = await makeFtl(t, { zoneMiB: 2, maxOpen: 2 });
  const { pool, replica, size } = await poolOn(f, t);
  const shadow = new Shadow(size);
  await overwrite(f, replica.uuid, size, shadow, 2 * f.size, 21);
  const s = await stats(f);
  t.log(JSON.stringify(s));
  t.is(s.failed_reason, null, "no write was refused");
  t.true(s.gc_victims > 0);
  await verify(t, f, replica.uuid, shadow, size);
  await f.n.exportPool({ uuid: pool.uuid });
  await f.n.importPool({ device_uri: f.uri });
  await verify(t, f, replica.uuid, shadow, size);
});

test.serial("trim-heavy overwrites on a zoned base: bands whose footer fills with trims first still close at the write pointer", async (t) => {
  const f = await makeFtl(t, { zoneMiB: 2, maxOpen: 2 });
  const { replica, size } = await poolOn(f, t);
  const shadow = new Shadow(size);
  await overwrite(f, replica.uuid, size, shadow, 2 * f.size, 31, 8, 0.4);
  const s = await stats(f);
  t.is(s.failed_reason, null, "no write was refused");
  t.is(s.base_sequential_writes, s.base_writes);
  await verify(t, f, replica.uuid, shadow, size);
});

test.serial("a checkpoint that fails its CRC is not used: the open scans, and every byte is still there", async (t) => {
  const f = await makeFtl(t);
  const { pool, replica, size } = await poolOn(f, t);
  const shadow = new Shadow(size);
  await overwrite(f, replica.uuid, size, shadow, f.size, 41);
  const mapPages = (await stats(f)).map_bytes / BLOCK;
  await f.n.exportPool({ uuid: pool.uuid });
  // The body follows the header (block 1) and the map's pages (from block 2).
  flipByte(f.cachePath, (2 + mapPages) * BLOCK + 1000);
  await f.n.importPool({ device_uri: f.uri });
  const s = await stats(f);
  t.false(s.loaded_from_checkpoint);
  t.true(s.recovered_records > 0 || s.recovered_bands > 0);
  await verify(t, f, replica.uuid, shadow, size);
});

test.serial("a map limited to 64 KiB pages through the cache: every byte reads back under GC, after a clean reopen and after a windowed scan", async (t) => {
  const f = await makeFtl(t, { baseMiB: 256 });
  const limit = 64 * 1024;
  f.n.setFtlMapLimit({ uuid: f.uuid, bytes: limit });
  const { pool, replica, size } = await poolOn(f, t);
  const shadow = new Shadow(size);
  await overwrite(f, replica.uuid, size, shadow, 2 * f.size, 51, 8, 0.05);
  const s = await stats(f);
  t.log(JSON.stringify(s));
  t.is(s.failed_reason, null);
  t.is(s.map_bytes, csalMapBytes(f.size), "the control plane's map size is the FTL's");
  t.true(s.map_bytes >= 5 * limit, `the map (${s.map_bytes} bytes) is several times the limit`);
  t.is(s.map_limit_bytes, limit);
  t.true(s.map_resident_bytes <= limit, `resident ${s.map_resident_bytes} <= ${limit}`);
  t.true(s.map_page_reads > 100 && s.map_page_writes > 100, "pages went out and came back");
  t.true(s.gc_victims > 0, "GC ran on a paged map");
  await verify(t, f, replica.uuid, shadow, size);
  // Clean close: the checkpoint carries the page table; the pages stay where they are.
  await f.n.exportPool({ uuid: pool.uuid });
  await f.n.importPool({ device_uri: f.uri });
  const clean = await stats(f);
  t.true(clean.loaded_from_checkpoint);
  t.true(clean.map_resident_bytes <= limit);
  await verify(t, f, replica.uuid, shadow, size);
  await overwrite(f, replica.uuid, size, shadow, f.size / 2, 52);
  // No checkpoint (header zeroed, as after a crash): the scan rebuilds the map window by window.
  await f.n.exportPool({ uuid: pool.uuid });
  const fd = openSync(f.cachePath, "r+");
  writeSync(fd, Buffer.alloc(BLOCK), 0, BLOCK, BLOCK);
  closeSync(fd);
  await f.n.importPool({ device_uri: f.uri });
  const scanned = await stats(f);
  t.false(scanned.loaded_from_checkpoint);
  await verify(t, f, replica.uuid, shadow, size);
  // Raising the limit applies to the open FTL at once.
  f.n.setFtlMapLimit({ uuid: f.uuid, bytes: 0 });
  await verify(t, f, replica.uuid, shadow, size);
  const unlimited = await stats(f);
  t.is(unlimited.map_limit_bytes, 0);
  t.true(unlimited.map_resident_bytes > limit && unlimited.map_resident_bytes <= s.map_bytes, `every page read stays resident: ${unlimited.map_resident_bytes}`);
  await f.n.exportPool({ uuid: pool.uuid });
});

test.serial("a map page that fails its CRC is caught when read back: I/O fails naming it, and a reopen rebuilds the map from the log", async (t) => {
  const f = await makeFtl(t);
  f.n.setFtlMapLimit({ uuid: f.uuid, bytes: 32 * 1024 });
  const { pool, replica, size } = await poolOn(f, t);
  const shadow = new Shadow(size);
  await overwrite(f, replica.uuid, size, shadow, f.size, 61);
  // A page in the middle of the replica's data (the pool's own metadata pages are left alone).
  const page = Math.floor((await stats(f)).map_bytes / BLOCK / 2);
  await f.n.exportPool({ uuid: pool.uuid });
  flipByte(f.cachePath, (2 + page) * BLOCK + 8 * 100 + 2);
  // The first read of that page fails the FTL: the pool's import, when the FTL's compaction of
  // the chunks it found needs the page at once; else the replica's reads.
  const named = new RegExp(`L2P page ${page} on .* fails its CRC32C check`);
  const imported = await f.n.importPool({ device_uri: f.uri }).then(
    () => true,
    (e: Error) => (t.regex(e.message, named), false),
  );
  if (imported) {
    t.true((await stats(f)).loaded_from_checkpoint);
    const err = await t.throwsAsync(async () => {
      for (let off = 0; off < size; off += 4 * MiB) await f.n.replicaRead({ uuid: replica.uuid, offset_bytes: off, length_bytes: Math.min(4 * MiB, size - off) });
    });
    t.regex(err!.message, /I\/O|EIO|input\/output/i);
    t.regex((await stats(f)).failed_reason ?? "", named);
    // (The export's clean-shutdown write fails on the failed FTL; the pool is let go regardless.)
    await expectCode(t, f.n.exportPool({ uuid: pool.uuid }), "IO_ERROR", named);
    t.false((await f.n.listPools()).some((p) => p.uuid === pool.uuid));
  }
  // The log and the band footers are the truth: with no checkpoint left, the next open scans.
  await f.n.importPool({ device_uri: f.uri });
  const s = await stats(f);
  t.false(s.loaded_from_checkpoint);
  t.is(s.failed_reason, null);
  await verify(t, f, replica.uuid, shadow, size);
  await f.n.exportPool({ uuid: pool.uuid });
});

test.serial("destroying an FTL a pool is on is refused; after the pool goes, it wipes both superblocks", async (t) => {
  const f = await makeFtl(t);
  const { pool } = await poolOn(f, t);
  await expectCode(t, f.n.destroyFtl({ uri: f.uri }), "FAILED_PRECONDITION", /is open \(a pool is on it\)/);
  await f.n.destroyPool({ uuid: pool.uuid });
  await f.n.destroyFtl({ uri: f.uri });
  await f.n.destroyFtl({ uri: f.uri }); // gone already: succeeds
  await expectCode(t, f.n.deviceIo({ uri: f.uri, kind: "read", offset_bytes: 0, length_bytes: BLOCK, data: null }), "FAILED_PRECONDITION", /holds no FTL superblock/);
});
