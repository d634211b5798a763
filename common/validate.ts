// Input rules shared by both sides of the gRPC boundary: the provider checks them at
// `pulumi preview` (so a bad program fails before anything is created) and the engine checks
// them again because the network is not to be trusted. Each function returns null when the
// value is fine, or a reason that names the rule ("must be ..."), never throws.

import { crc32 } from "node:zlib";
// Mutual: csal-rules builds on checkDeviceUri; both only call each other at run time.
import { checkFdpUri, checkFtlUri } from "./csal-rules";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$/;
const LABEL_KEY_RE = /^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,61}[a-zA-Z0-9])?$/;
const LABEL_VALUE_RE = /^([a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?)?$/;

export const SECTOR_BYTES = 512;
export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;
export const DEFAULT_CLUSTER_SIZE_BYTES = 4 * MIB;
export const MIN_CLUSTER_SIZE_BYTES = 1 * MIB;
export const MAX_CLUSTER_SIZE_BYTES = 64 * MIB;
/** Largest size we accept: JS numbers are exact integers up to 2^53. */
export const MAX_SIZE_BYTES = Number.MAX_SAFE_INTEGER - (Number.MAX_SAFE_INTEGER % SECTOR_BYTES);

export const DEVICE_SCHEMES = ["file", "uring", "malloc"] as const;

/** A Linux network interface name (IFNAMSIZ - 1 characters), as --rdma-interface takes it. */
export function checkInterfaceName(value: unknown): string | null {
  if (typeof value !== "string") return `must be a network interface name, got ${describe(value)}`;
  return /^[A-Za-z0-9_.:-]{1,15}$/.test(value) ? null : `must be a network interface name (at most 15 letters, digits, '_', '.', ':' or '-'), got "${value}"`;
}

export function checkUuid(value: unknown): string | null {
  if (typeof value !== "string") return `must be a string uuid, got ${describe(value)}`;
  return UUID_RE.test(value) ? null : `must be a lower-case uuid like 4f0c1d2e-…, got "${value}"`;
}

export function checkName(value: unknown): string | null {
  if (typeof value !== "string") return `must be a string, got ${describe(value)}`;
  return NAME_RE.test(value)
    ? null
    : `must be 1-63 characters of letters, digits, '.', '_' or '-' starting with a letter or digit, got "${value}"`;
}

export function checkLabels(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) return `must be a map of strings, got ${describe(value)}`;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (!LABEL_KEY_RE.test(k)) return `key "${k}" must be 1-63 letters, digits, '.', '_', '-' or '/'`;
    if (typeof v !== "string" || !LABEL_VALUE_RE.test(v))
      return `value of "${k}" must be a string of up to 63 letters, digits, '.', '_' or '-', got ${describe(v)}`;
  }
  return null;
}

/** Sizes are whole bytes, positive, multiples of 512. */
export function checkSizeBytes(value: unknown): string | null {
  if (typeof value !== "number" || !Number.isFinite(value)) return `must be a number of bytes, got ${describe(value)}`;
  if (!Number.isInteger(value)) return `must be a whole number of bytes, got ${value}`;
  if (value <= 0) return `must be positive, got ${value}`;
  if (value % SECTOR_BYTES !== 0) return `must be a multiple of ${SECTOR_BYTES} bytes, got ${value}`;
  if (value > MAX_SIZE_BYTES) return `must be at most ${MAX_SIZE_BYTES} bytes, got ${value}`;
  return null;
}

export function checkClusterSizeBytes(value: unknown): string | null {
  if (value === undefined || value === 0) return null;
  if (typeof value !== "number" || !Number.isInteger(value)) return `must be a whole number of bytes, got ${describe(value)}`;
  const powerOfTwo = value > 0 && (value & (value - 1)) === 0;
  if (!powerOfTwo || value < MIN_CLUSTER_SIZE_BYTES || value > MAX_CLUSTER_SIZE_BYTES)
    return `must be a power of two between ${MIN_CLUSTER_SIZE_BYTES} (1 MiB) and ${MAX_CLUSTER_SIZE_BYTES} (64 MiB), got ${value}`;
  return null;
}

/**
 * Device URIs: file:///abs/path[?size_mib=N], uring:///dev/NAME, malloc:///name?size_mib=N.
 * Only the shape is checked here; whether the device exists and is allowed is the engine's call.
 */
export function checkDeviceUri(value: unknown): string | null {
  if (typeof value !== "string" || value.length === 0) return `must be a device URI string, got ${describe(value)}`;
  if (value.startsWith("ftl:")) return checkFtlUri(value);  // a CSAL device
  if (value.startsWith("fdp:")) return checkFdpUri(value);  // FDP placement over a plain device
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `must be a URI like file:///var/lib/strata/disk.img?size_mib=1024, got "${value}"`;
  }
  const scheme = url.protocol.replace(/:$/, "");
  if (scheme === "nvmf" || scheme === "nvmf+rdma") return checkNvmfUri(value);
  if (!(DEVICE_SCHEMES as readonly string[]).includes(scheme))
    return `has unknown scheme "${scheme}:"; supported: ${DEVICE_SCHEMES.map((s) => s + "://").join(", ")}`;
  if (url.host !== "") return `must have an empty host (three slashes: ${scheme}:///...), got host "${url.host}"`;
  if (url.pathname.length <= 1) return `must name a path after ${scheme}:///`;
  for (const [key, v] of url.searchParams) {
    if (key !== "size_mib") return `has unknown parameter "${key}"; only size_mib is supported`;
    if (!/^[1-9][0-9]{0,8}$/.test(v)) return `size_mib must be a positive whole number of MiB, got "${v}"`;
  }
  if (scheme === "malloc" && !url.searchParams.has("size_mib")) return "malloc:// devices need ?size_mib=N";
  if (scheme === "uring" && !url.pathname.startsWith("/dev/")) return `uring:// must name a block device under /dev, got "${url.pathname}"`;
  return null;
}

/**
 * nvmf[+rdma]://HOST:PORT/NQN[?hostnqn=NQN&io_timeout_ms=N&io_queues=N]: a remote namespace through the
 * NVMe/TCP (or NVMe/RDMA) initiator, as a pool device or a nexus child (common/nexus-rules.ts checkChildUri).
 */
export function checkNvmfUri(value: unknown): string | null {
  const form = "nvmf://HOST:PORT/NQN";
  if (typeof value !== "string") return `must be a URI like ${form}, got ${describe(value)}`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `must be a URI like ${form}, got "${value}"`;
  }
  if (url.protocol !== "nvmf:" && url.protocol !== "nvmf+rdma:") return `must start with nvmf:// (NVMe/TCP) or nvmf+rdma:// (NVMe/RDMA), got "${value}"`;
  if (url.hostname === "" || url.port === "") return `must look like ${form} (host and port), got "${value}"`;
  const nqn = decodeURIComponent(url.pathname.slice(1));
  if (nqn.includes("/") || checkNqn(nqn) !== null) return `must name a subsystem NQN ("nqn.…", printable, at most 223 bytes) after the port, got "${nqn}"`;
  for (const [key, v] of url.searchParams) {
    if (key === "hostnqn") {
      if (checkNqn(v) !== null) return `hostnqn must be an NQN ("nqn.…", printable, at most 223 bytes), got "${v}"`;
    } else if (key === "io_timeout_ms" || key === "io_queues") {
      if (!/^[1-9][0-9]{0,9}$/.test(v)) return `${key} must be a positive whole number, got "${v}"`;
    } else {
      return `has unknown parameter "${key}"; ${url.protocol}// takes hostnqn, io_timeout_ms and io_queues`;
    }
  }
  return null;
}

/** Parses "1GiB", "512MiB", "4096" (bytes) and numbers into bytes; null when not a size. */
export function parseSize(value: unknown): number | null {
  if (typeof value === "number") return value;
  if (typeof value !== "string") return null;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB|TiB)?\s*$/.exec(value);
  if (!m) return null;
  const unit = { B: 1, KiB: 1024, MiB: MIB, GiB: GIB, TiB: 1024 * GIB }[(m[2] ?? "B") as "B"];
  return Number(m[1]) * unit;
}

export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (typeof value === "string") return `"${value}"`;
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

/** NVMe Qualified Names: "nqn." then printable ASCII without spaces, at most 223 bytes (NVMe base spec). */
export function checkNqn(value: unknown): string | null {
  if (typeof value !== "string") return `must be a string NQN, got ${typeof value}`;
  if (!value.startsWith("nqn.")) return `must start with "nqn." (e.g. nqn.2014-08.org.nvmexpress:uuid:…), got "${value}"`;
  if (Buffer.byteLength(value, "utf8") > 223) return `must be at most 223 bytes, got ${Buffer.byteLength(value, "utf8")}`;
  if (!/^[\x21-\x7e]+$/.test(value)) return `must be printable ASCII without spaces, got "${value}"`;
  return null;
}

/**
 * DH-HMAC-CHAP secrets as `nvme gen-dhchap-key` prints them: "DHHC-1:XX:<base64>:" where XX is
 * 00-03 (the key transform hash) and the base64 holds a 32-, 48- or 64-byte key and its CRC-32
 * (little-endian). Reasons never quote the secret.
 */
export function checkDhchapSecret(value: unknown): string | null {
  if (typeof value !== "string") return `must be a string DH-HMAC-CHAP secret, got ${typeof value}`;
  const m = /^DHHC-1:0([0-3]):([A-Za-z0-9+/]+={0,2}):$/.exec(value);
  if (!m) return 'must look like "DHHC-1:XX:<base64>:" (as `nvme gen-dhchap-key` prints it, XX 00 to 03)';
  const raw = Buffer.from(m[2], "base64");
  if (![36, 52, 68].includes(raw.length)) return "must hold a 32-, 48- or 64-byte key and its CRC-32";
  const key = raw.subarray(0, raw.length - 4);
  if (crc32(key) !== raw.readUInt32LE(raw.length - 4)) return "has a CRC-32 that does not match its key (a typo or a truncated copy?)";
  return null;
}
