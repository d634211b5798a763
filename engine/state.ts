// The engine's durable state: which pools to import at start, with their labels. Everything
// else (replicas, allocation) lives on the pool devices themselves; this file only says where
// to look. Written atomically (temp file, fsync, rename, fsync of the directory) so a crash
// leaves either the old or the new version, never a torn one.
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const STATE_FORMAT_VERSION = 1;

export interface PoolRecord {
  readonly uuid: string;
  readonly name: string;
  readonly device_uri: string;
  readonly labels: Record<string, string>;
}

/** A host that must authenticate with DH-HMAC-CHAP. The file is 0600: it holds these secrets. */
export interface HostSecretRecord {
  readonly host_nqn: string;
  readonly dhchap_secret: string;
  /** Absent: unidirectional. */
  readonly dhchap_ctrl_secret?: string;
}

/** A replica shared over NVMe/TCP: re-shared after the pools are imported at start. */
export interface ShareRecord {
  readonly replica_uuid: string;
  readonly allowed_host_nqns: readonly string[];
  /** Absent in files written before host authentication existed. */
  readonly host_secrets?: readonly HostSecretRecord[];
}

/** A nexus: re-created (children's labels decide their health) and re-published at start. */
export interface NexusRecord {
  readonly uuid: string;
  readonly size_bytes: number;
  readonly children: readonly string[];
  readonly child_io_timeout_ms: number;
  /** Empty when not published. */
  readonly frontend_host_nqn: string;
  /** The frontend's DH-HMAC-CHAP secrets, when it must authenticate. */
  readonly frontend_dhchap_secret?: string;
  readonly frontend_dhchap_ctrl_secret?: string;
}

/** A CSAL tiered device this engine formatted: a pool opens it by `uri` (its FTL uuid is `uuid`). */
export interface CsalRecord {
  readonly uuid: string;
  readonly name: string;
  readonly cache_device_uri: string;
  readonly base_device_uri: string;
  readonly overprovision_percent: number;
  /** The band size; on a zoned base, its zone size. */
  readonly band_mib: number;
  readonly chunk_kib: number;
  /** ftl://?cache=…&base=…&op_percent=…: what pools take as their device_uri. */
  readonly uri: string;
  readonly size_bytes: number;
  /** The map's memory limit (0 or absent: none); applied before pools are imported. */
  readonly map_memory_limit_bytes?: number;
}

export interface EngineState {
  readonly version: number;
  readonly pools: readonly PoolRecord[];
  /** Absent in files written before NVMe/TCP sharing existed (still version 1). */
  readonly shares?: readonly ShareRecord[];
  /** Absent in files written before the nexus existed (still version 1). */
  readonly nexuses?: readonly NexusRecord[];
  /** Absent in files written before CSAL devices existed (still version 1). */
  readonly csal_devices?: readonly CsalRecord[];
}

export class StateStore {
  private readonly path: string;

  constructor(readonly dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.path = join(dataDir, "engine-state.json");
  }

  load(): EngineState {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: STATE_FORMAT_VERSION, pools: [] };
      throw err;
    }
    const parsed = JSON.parse(text) as EngineState;
    if (parsed.version !== STATE_FORMAT_VERSION)
      throw new Error(`${this.path} has state version ${parsed.version}; this engine reads version ${STATE_FORMAT_VERSION}`);
    return parsed;
  }

  save(state: EngineState): void {
    const tmp = `${this.path}.tmp`;
    // Owner-only: the file holds DH-HMAC-CHAP secrets. chmod too, since a leftover tmp file
    // keeps its old mode through writeFileSync; the rename carries the mode to the real file.
    writeFileSync(tmp, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
    chmodSync(tmp, 0o600);
    const fd = openSync(tmp, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dirFd = openSync(this.dataDir, "r");
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}
