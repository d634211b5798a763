// The CSAL tiered device rules, in one place on the TypeScript side: the provider (so
// `pulumi preview` refuses what CreateCsalDevice would) and the engine (which checks again)
// import them. The C++ side has them in native/src/ftl/format.h; the addon exports those values
// (`ftlRules()`) and test/native/csal-rules.test.ts asserts that both sides agree.
// Like validate.ts: pure, and each check returns null or a reason ("must be ..."), never throws.
import { checkDeviceUri, describe } from "./validate";

export const CSAL_OP_PERCENT_MIN = 5;
export const CSAL_OP_PERCENT_MAX = 90;
export const CSAL_OP_PERCENT_DEFAULT = 20;
export const CSAL_BAND_MIB_MAX = 4096;
/** On a conventional base; a zoned base's band is its zone. */
export const CSAL_BAND_MIB_DEFAULT = 64;
export const CSAL_CHUNK_KIB_MIN = 64;
export const CSAL_CHUNK_KIB_MAX = 65536;
export const CSAL_CHUNK_KIB_DEFAULT = 1024;
/** The FTL's map: 8-byte entries in 4 KiB pages, paged below a memory limit. */
export const CSAL_MAP_ENTRIES_PER_PAGE = 512;
/** However low the limit, this much of the map stays resident (a read touches two pages). */
export const CSAL_MAP_MIN_RESIDENT_BYTES = 8 * 4096;

/** An FDP device (fdp://): placement handles, reclaim unit size and the drive's spare media. */
export const FDP_HANDLES_MAX = 8;
export const FDP_RU_MIB_DEFAULT = 8;
export const FDP_RU_MIB_MAX = 1024;
export const FDP_OP_PERCENT_DEFAULT = 7;
export const FDP_OP_PERCENT_MAX = 50;

const FDP_FORM = "fdp://?base=<percent-encoded device URI>&handles=N[&ru_mib=N][&op_percent=N]";
const ZONED_FORM = "zoned://?base=<percent-encoded device URI>&zone_mib=N[&max_open=N][&max_active=N]";
const FTL_FORM = "ftl://?cache=<percent-encoded device URI>&base=<percent-encoded device URI>[&op_percent=N][&band_mib=N][&chunk_kib=N]";

function wholeIn(value: unknown, min: number, max: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

/** The map's memory limit in bytes: 0 = none, else at least the resident minimum. */
export function checkMapMemoryLimitBytes(value: unknown): string | null {
  if (value === undefined || value === 0) return null;
  return wholeIn(value, CSAL_MAP_MIN_RESIDENT_BYTES, Number.MAX_SAFE_INTEGER)
    ? null
    : `must be 0 (no limit) or a whole number of bytes from ${CSAL_MAP_MIN_RESIDENT_BYTES}, got ${describe(value)}`;
}

/** Over-provisioning in percent; undefined or 0 = the default. */
export function checkOverprovisionPercent(value: unknown): string | null {
  if (value === undefined || value === 0) return null;
  return wholeIn(value, CSAL_OP_PERCENT_MIN, CSAL_OP_PERCENT_MAX)
    ? null
    : `must be a whole percentage from ${CSAL_OP_PERCENT_MIN} to ${CSAL_OP_PERCENT_MAX}, got ${describe(value)}`;
}

/** Band size in MiB; undefined or 0 = the default. */
export function checkBandMib(value: unknown): string | null {
  if (value === undefined || value === 0) return null;
  return wholeIn(value, 1, CSAL_BAND_MIB_MAX) ? null : `must be a whole number of MiB from 1 to ${CSAL_BAND_MIB_MAX}, got ${describe(value)}`;
}

/** Cache chunk size in KiB; undefined or 0 = the default. */
export function checkChunkKib(value: unknown): string | null {
  if (value === undefined || value === 0) return null;
  return wholeIn(value, CSAL_CHUNK_KIB_MIN, CSAL_CHUNK_KIB_MAX) && (value as number) % 4 === 0
    ? null
    : `must be a multiple of 4 KiB from ${CSAL_CHUNK_KIB_MIN} to ${CSAL_CHUNK_KIB_MAX}, got ${describe(value)}`;
}

/** The parameters of a URI whose query nests other URIs (zoned://?…, ftl://?…); null when it is not `scheme://?…`. */
function nestedQuery(value: string, scheme: string): URLSearchParams | null {
  const prefix = `${scheme}://?`;
  return value.startsWith(prefix) ? new URLSearchParams(value.slice(prefix.length)) : null;
}

/** A zoned device (NVMe ZNS rules over a plain device): the only base a CSAL device takes besides a plain one. */
export function checkZonedUri(value: unknown): string | null {
  if (typeof value !== "string") return `must be a URI like ${ZONED_FORM}, got ${describe(value)}`;
  const q = nestedQuery(value, "zoned");
  if (!q) return `must be a URI like ${ZONED_FORM}, got "${value}"`;
  for (const key of q.keys()) {
    if (!["base", "zone_mib", "max_open", "max_active"].includes(key)) return `has unknown parameter "${key}"; the form is ${ZONED_FORM}`;
    if (q.getAll(key).length > 1) return `names ${key} twice`;
  }
  const base = q.get("base");
  if (base === null) return `needs base: ${ZONED_FORM}`;
  const baseProblem = checkDeviceUri(base);
  if (baseProblem !== null) return `base ${baseProblem}`;
  if (!/^[1-9][0-9]{0,4}$/.test(q.get("zone_mib") ?? "")) return `zone_mib must be a whole number of MiB from 1 to 65536, got "${q.get("zone_mib") ?? ""}"`;
  for (const key of ["max_open", "max_active"]) {
    const v = q.get(key);
    if (v !== null && !/^[1-9][0-9]{0,6}$/.test(v)) return `${key} must be a positive whole number, got "${v}"`;
  }
  return null;
}

/**
 * An FDP device (NVMe Flexible Data Placement over a plain device): a CSAL device puts its hot
 * and cold bands through different placement handles on it, and a pool may sit on one.
 */
export function checkFdpUri(value: unknown): string | null {
  if (typeof value !== "string") return `must be a URI like ${FDP_FORM}, got ${describe(value)}`;
  const q = nestedQuery(value, "fdp");
  if (!q) return `must be a URI like ${FDP_FORM}, got "${value}"`;
  for (const key of q.keys()) {
    if (!["base", "handles", "ru_mib", "op_percent"].includes(key)) return `has unknown parameter "${key}"; the form is ${FDP_FORM}`;
    if (q.getAll(key).length > 1) return `names ${key} twice`;
  }
  const base = q.get("base");
  if (base === null || q.get("handles") === null) return `needs base and handles: ${FDP_FORM}`;
  if (/^(fdp|zoned|ftl):/.test(base)) return `base must be a plain device, got "${base}"`;
  const baseProblem = checkDeviceUri(base);
  if (baseProblem !== null) return `base ${baseProblem}`;
  const limits: [string, number][] = [["handles", FDP_HANDLES_MAX], ["ru_mib", FDP_RU_MIB_MAX], ["op_percent", FDP_OP_PERCENT_MAX]];
  for (const [key, max] of limits) {
    const v = q.get(key);
    if (v !== null && !(/^[0-9]{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= max)) return `${key} must be a whole number from 1 to ${max}, got "${v}"`;
  }
  return null;
}

/** A CSAL device's cache: a plain device (file://, uring://, malloc://). */
export function checkCacheDeviceUri(value: unknown): string | null {
  return checkDeviceUri(value);
}

/** A CSAL device's base: a plain device, a zoned one or an FDP one. */
export function checkBaseDeviceUri(value: unknown): string | null {
  if (typeof value === "string" && value.startsWith("zoned:")) return checkZonedUri(value);
  if (typeof value === "string" && value.startsWith("fdp:")) return checkFdpUri(value);
  return checkDeviceUri(value);
}

/** ftl://?cache=…&base=…: a CSAL device's URI, as a pool's device. */
export function checkFtlUri(value: unknown): string | null {
  if (typeof value !== "string") return `must be a URI like ${FTL_FORM}, got ${describe(value)}`;
  const q = nestedQuery(value, "ftl");
  if (!q) return `must be a URI like ${FTL_FORM}, got "${value}"`;
  for (const key of q.keys()) {
    if (!["cache", "base", "op_percent", "band_mib", "chunk_kib"].includes(key)) return `has unknown parameter "${key}"; the form is ${FTL_FORM}`;
    if (q.getAll(key).length > 1) return `names ${key} twice`;
  }
  const numbers: [string, (v: unknown) => string | null][] = [["op_percent", checkOverprovisionPercent], ["band_mib", checkBandMib], ["chunk_kib", checkChunkKib]];
  for (const [key, check] of numbers) {
    const v = q.get(key);
    const problem = v === null ? null : /^[0-9]{1,9}$/.test(v) ? check(Number(v)) : `must be a whole number, got "${v}"`;
    if (problem !== null) return `${key} ${problem}`;
  }
  const cache = checkCacheDeviceUri(q.get("cache") ?? undefined);
  if (cache !== null) return `cache ${cache}`;
  const base = checkBaseDeviceUri(q.get("base") ?? undefined);
  if (base !== null) return `base ${base}`;
  return null;
}

/** What fixes a CSAL device's layout; 0 = the default. */
export interface CsalGeometry {
  readonly overprovisionPercent: number;
  /** Ignored on a zoned base (a band is a zone). */
  readonly bandMib: number;
  readonly chunkKib: number;
}

/**
 * The URI a CSAL device opens by, known from the program alone (so a pool on it shows in
 * `pulumi preview`). The geometry rides along: opening checks it against the superblocks, and
 * placement computes the size from it (csalSizeBytes).
 */
export function ftlUri(cacheDeviceUri: string, baseDeviceUri: string, g: CsalGeometry): string {
  const zoned = baseDeviceUri.startsWith("zoned:");
  return (
    `ftl://?cache=${encodeURIComponent(cacheDeviceUri)}&base=${encodeURIComponent(baseDeviceUri)}` +
    `&op_percent=${g.overprovisionPercent || CSAL_OP_PERCENT_DEFAULT}` +
    (zoned ? "" : `&band_mib=${g.bandMib || CSAL_BAND_MIB_DEFAULT}`) +
    `&chunk_kib=${g.chunkKib || CSAL_CHUNK_KIB_DEFAULT}`
  );
}

/** The parts of an ftl:// URI (checked with checkFtlUri first). */
export function parseFtlUri(uri: string): { cache: string; base: string; geometry: CsalGeometry } {
  const q = nestedQuery(uri, "ftl") ?? new URLSearchParams();
  return {
    cache: q.get("cache") ?? "",
    base: q.get("base") ?? "",
    geometry: { overprovisionPercent: Number(q.get("op_percent") ?? 0), bandMib: Number(q.get("band_mib") ?? 0), chunkKib: Number(q.get("chunk_kib") ?? 0) },
  };
}

// ---- the size a CSAL device will have (native/src/ftl: create_ftl, band_geometry) -------------

const BLOCK_BYTES = 4096;
const FOOTER_HEADER_BYTES = 64;
const FOOTER_ENTRY_BYTES = 24;

/** Data blocks of a band: the rest holds its footer (an entry a block plus one per 8 for trims). */
function bandDataBlocks(bandBlocks: number): number {
  for (let footer = 1; footer < bandBlocks; footer++) {
    const data = bandBlocks - footer;
    const entries = data + Math.floor(data / 8);
    if (FOOTER_HEADER_BYTES + entries * FOOTER_ENTRY_BYTES <= footer * BLOCK_BYTES) return data;
  }
  return 0;
}

/** The FTL's whole map: 8 bytes a 4 KiB logical block, in whole 4 KiB pages (native/src/ftl/FORMAT.md). */
export function csalMapBytes(sizeBytes: number): number {
  return Math.ceil(sizeBytes / BLOCK_BYTES / CSAL_MAP_ENTRIES_PER_PAGE) * BLOCK_BYTES;
}

/** Bands GC keeps free plus the two open ones: not part of the logical space. */
export function csalReservedBands(bandCount: number): number {
  return Math.floor((bandCount * 5) / 100) + 3 + 2;
}

/**
 * The logical size of a CSAL device over a base of `baseBytes` (a zoned base: the size of the
 * device under it and its zone size), or 0 when the base is too small for one.
 */
export function csalSizeBytes(base: { bytes: number; zoneMib?: number }, g: CsalGeometry): number {
  const op = g.overprovisionPercent || CSAL_OP_PERCENT_DEFAULT;
  let bandBlocks: number;
  let bands: number;
  if (base.zoneMib) {
    const zoneBytes = base.zoneMib * 1024 * 1024;
    bandBlocks = zoneBytes / BLOCK_BYTES;
    // The zoned device keeps its first zone for zone states; the FTL its next for the superblock.
    bands = Math.floor(base.bytes / zoneBytes) - 2;
  } else {
    bandBlocks = (g.bandMib || CSAL_BAND_MIB_DEFAULT) * 256;
    bands = Math.floor((Math.floor(base.bytes / BLOCK_BYTES) - 256) / bandBlocks);
  }
  const reserved = csalReservedBands(Math.max(bands, 0));
  if (bands < reserved + 2) return 0;
  return Math.floor(((bands - reserved) * bandDataBlocks(bandBlocks) * (100 - op)) / 100) * BLOCK_BYTES;
}
