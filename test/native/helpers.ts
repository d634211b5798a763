// Shared helpers for the native addon tests: temp backing files, error-code assertions, and a
// CRC32C so tests can forge valid-but-unsupported superblocks.
import type { ExecutionContext } from "ava";
import { randomUUID } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isNativeError, loadNative, NativeErrorCode, NativeStorage, PoolInfo } from "../../native";

export const MiB = 1024 * 1024;

export function native(): NativeStorage {
  const n = loadNative();
  n.start({ cores: 2 });
  return n;
}

/** A sparse backing file of `sizeMiB` in a fresh temp dir, removed when the test ends. */
export function tempDisk(t: ExecutionContext, sizeMiB: number): { path: string; uri: string; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), "strata-native-"));
  const path = join(dir, "disk.img");
  closeSync(openSync(path, "w"));
  truncateSync(path, sizeMiB * MiB);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { path, uri: `file://${path}`, dir };
}

/** A pool on a fresh temp file with 1 MiB clusters; exported (if still imported) at teardown. */
export async function tempPool(t: ExecutionContext, sizeMiB = 64): Promise<{ pool: PoolInfo; path: string; uri: string }> {
  const n = native();
  const disk = tempDisk(t, sizeMiB);
  const pool = await n.createPool({ uuid: randomUUID(), name: `p-${randomUUID().slice(0, 8)}`, device_uri: disk.uri, cluster_size_bytes: MiB, force: false });
  t.teardown(async () => {
    if ((await n.listPools()).some((p) => p.uuid === pool.uuid)) await n.exportPool({ uuid: pool.uuid });
  });
  return { pool, path: disk.path, uri: disk.uri };
}

export async function expectCode(t: ExecutionContext, promise: Promise<unknown>, code: NativeErrorCode, message?: RegExp): Promise<void> {
  const err = await t.throwsAsync(promise);
  t.true(isNativeError(err), `expected a NativeError, got ${String(err)}`);
  t.is((err as { code?: string }).code, code, `wrong code; message: ${err?.message}`);
  if (message) t.regex(err!.message, message);
}

export function pattern(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) out.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return out;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Buffer): number {
  let crc = 0xffffffff;
  for (const b of data) crc = CRC_TABLE[(crc ^ b) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** Superblock field offsets (native/src/pool/format.h, pinned there by static_assert). */
export const SUPERBLOCK = { versionOffset: 8, crcOffset: 184 } as const;
