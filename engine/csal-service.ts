// CSAL tiered devices on this node (issue 11): CreateCsalDevice formats the FTL once over a cache
// and a base device, DestroyCsalDevice wipes it (refused while a pool is on it), ListCsalDevices
// reports each with its counters. The FTL itself is native (native/src/ftl); a pool opens it by
// the device's `uri`, so engine restarts need nothing here beyond the records.
//
// Architecture invariant: engine/ knows nothing of Pulumi.
import {
  checkBandMib,
  checkBaseDeviceUri,
  checkCacheDeviceUri,
  checkChunkKib,
  checkMapMemoryLimitBytes,
  checkOverprovisionPercent,
  CSAL_BAND_MIB_DEFAULT,
  CSAL_CHUNK_KIB_DEFAULT,
  CSAL_OP_PERCENT_DEFAULT,
  ftlUri,
} from "../common/csal-rules";
import { checkName, checkUuid } from "../common/validate";
import type { FtlStats, NativeStorage } from "../native";
import type { CsalDevice } from "./generated/strata/engine/v1/CsalDevice";
import type { CsalStats } from "./generated/strata/engine/v1/CsalStats";
import { alreadyExists, failedPrecondition } from "./errors";
import type { Logger } from "./log";
import { checkField, Mutex } from "./service";
import type { CsalRecord, StateStore } from "./state";

export interface CreateCsalDeviceRequest {
  uuid: string;
  name: string;
  cache_device_uri: string;
  base_device_uri: string;
  overprovision_percent: number;
  band_mib: number;
  chunk_kib: number;
  force: boolean;
  /** 0: no limit. */
  map_memory_limit_bytes: number;
}

/** The counters as the API reports them; WAF = base bytes / host bytes (0 before any host write). */
export function csalStatsOf(s: FtlStats): CsalStats {
  const base = s.base_write_bytes_host + s.base_write_bytes_gc + s.base_write_bytes_meta;
  return {
    host_write_bytes: s.host_write_bytes,
    host_read_bytes: s.host_read_bytes,
    cache_write_bytes: s.cache_write_bytes,
    base_write_bytes_host: s.base_write_bytes_host,
    base_write_bytes_gc: s.base_write_bytes_gc,
    base_write_bytes_meta: s.base_write_bytes_meta,
    write_amplification: s.host_write_bytes > 0 ? base / s.host_write_bytes : 0,
    gc_relocated_blocks: s.gc_relocated_blocks,
    gc_victims: s.gc_victims,
    band_count: s.band_count,
    free_bands: s.free_bands,
    chunk_count: s.chunk_count,
    free_chunks: s.free_chunks,
    cache_fill: s.chunk_count > 0 ? (s.chunk_count - s.free_chunks) / s.chunk_count : 0,
    throttle_events: s.throttle_events,
    base_writes: s.base_writes,
    base_sequential_writes: s.base_sequential_writes,
    failed_reason: s.failed_reason ?? "",
    map_bytes: s.map_bytes,
    map_limit_bytes: s.map_limit_bytes,
    map_resident_bytes: s.map_resident_bytes,
    map_page_reads: s.map_page_reads,
    map_page_writes: s.map_page_writes,
  };
}

export class CsalService {
  private readonly lock = new Mutex();
  private readonly records = new Map<string, CsalRecord>();

  constructor(
    private readonly native: NativeStorage,
    private readonly store: StateStore,
    private readonly node: string,
    private readonly log: Logger,
    /** The device URIs of this node's pools, by pool uuid (pools live in EngineService). */
    private readonly poolDevices: () => Map<string, string>,
  ) {
    for (const record of this.store.load().csal_devices ?? []) {
      this.records.set(record.uuid, record);
      // Before the pools on these devices are imported: the open (and its recovery) honours it.
      this.native.setFtlMapLimit({ uuid: record.uuid, bytes: record.map_memory_limit_bytes ?? 0 });
    }
  }

  createCsalDevice(req: CreateCsalDeviceRequest): Promise<CsalDevice> {
    checkField(req.uuid, "uuid", checkUuid);
    checkField(req.name, "name", checkName);
    checkField(req.cache_device_uri, "cache_device_uri", checkCacheDeviceUri);
    checkField(req.base_device_uri, "base_device_uri", checkBaseDeviceUri);
    checkField(req.overprovision_percent, "overprovision_percent", checkOverprovisionPercent);
    checkField(req.band_mib, "band_mib", checkBandMib);
    checkField(req.chunk_kib, "chunk_kib", checkChunkKib);
    checkField(req.map_memory_limit_bytes, "map_memory_limit_bytes", checkMapMemoryLimitBytes);
    const mapLimitBytes = req.map_memory_limit_bytes || 0;
    const geometry = { overprovisionPercent: req.overprovision_percent || CSAL_OP_PERCENT_DEFAULT, bandMib: req.band_mib || 0, chunkKib: req.chunk_kib || CSAL_CHUNK_KIB_DEFAULT };
    return this.lock.run(async () => {
      const existing = this.records.get(req.uuid);
      if (existing) {
        const differs =
          existing.name !== req.name ? `name is "${existing.name}", requested "${req.name}"` :
          existing.cache_device_uri !== req.cache_device_uri ? `cache_device_uri is "${existing.cache_device_uri}", requested "${req.cache_device_uri}"` :
          existing.base_device_uri !== req.base_device_uri ? `base_device_uri is "${existing.base_device_uri}", requested "${req.base_device_uri}"` :
          existing.overprovision_percent !== geometry.overprovisionPercent ? `overprovision_percent is ${existing.overprovision_percent}, requested ${geometry.overprovisionPercent}` :
          req.band_mib && existing.band_mib !== req.band_mib ? `band_mib is ${existing.band_mib}, requested ${req.band_mib}` :
          existing.chunk_kib !== geometry.chunkKib ? `chunk_kib is ${existing.chunk_kib}, requested ${geometry.chunkKib}` : null;
        if (differs) throw alreadyExists(`CSAL device ${req.uuid} already exists with a different spec: ${differs}`);
        if ((existing.map_memory_limit_bytes ?? 0) !== mapLimitBytes) {
          // The one setting that changes in place: recorded first, so a restart keeps it.
          const updated: CsalRecord = { ...existing, map_memory_limit_bytes: mapLimitBytes };
          this.records.set(req.uuid, updated);
          try {
            this.save();
          } catch (err) {
            this.records.set(req.uuid, existing);
            throw err;
          }
          this.native.setFtlMapLimit({ uuid: req.uuid, bytes: mapLimitBytes });
          this.log.info("CSAL device map limit changed", { uuid: req.uuid, from_bytes: existing.map_memory_limit_bytes ?? 0, to_bytes: mapLimitBytes });
          return this.describe(updated);
        }
        return this.describe(existing);
      }
      for (const r of this.records.values()) {
        if (r.name === req.name) throw alreadyExists(`a CSAL device named "${req.name}" already exists on node ${this.node} (uuid ${r.uuid})`);
        for (const d of [req.cache_device_uri, req.base_device_uri]) {
          if (d === r.cache_device_uri || d === r.base_device_uri) throw failedPrecondition(`device ${d} is already used by CSAL device "${r.name}" (${r.uuid})`);
        }
      }
      for (const [pool, uri] of this.poolDevices()) {
        for (const d of [req.cache_device_uri, req.base_device_uri]) {
          if (d === uri) throw failedPrecondition(`device ${d} is already used by pool ${pool}`);
        }
      }
      const created = await this.native.createFtl({
        uuid: req.uuid,
        cache_uri: req.cache_device_uri,
        base_uri: req.base_device_uri,
        op_percent: geometry.overprovisionPercent,
        band_mib: req.band_mib || undefined,
        chunk_kib: geometry.chunkKib,
        force: req.force,
      });
      const zoned = req.base_device_uri.startsWith("zoned:");
      const bandMib = zoned ? Number(/zone_mib(?:=|%3D)([0-9]+)/.exec(req.base_device_uri)?.[1] ?? 0) : req.band_mib || CSAL_BAND_MIB_DEFAULT;
      const record: CsalRecord = {
        uuid: req.uuid,
        name: req.name,
        cache_device_uri: req.cache_device_uri,
        base_device_uri: req.base_device_uri,
        overprovision_percent: geometry.overprovisionPercent,
        band_mib: bandMib,
        chunk_kib: geometry.chunkKib,
        uri: ftlUri(req.cache_device_uri, req.base_device_uri, { ...geometry, bandMib }),
        size_bytes: created.size_bytes,
        map_memory_limit_bytes: mapLimitBytes,
      };
      this.records.set(record.uuid, record);
      try {
        this.save();
      } catch (err) {
        // Transactional: a device the engine would forget must not be formatted either.
        this.records.delete(record.uuid);
        await this.native.destroyFtl({ uri: record.uri }).catch(() => undefined);
        throw err;
      }
      this.native.setFtlMapLimit({ uuid: record.uuid, bytes: mapLimitBytes });
      this.log.info("CSAL device created", { name: record.name, uuid: record.uuid, uri: record.uri, size_bytes: record.size_bytes });
      return this.describe(record);
    });
  }

  destroyCsalDevice(uuid: string): Promise<void> {
    checkField(uuid, "uuid", checkUuid);
    return this.lock.run(async () => {
      const record = this.records.get(uuid);
      if (!record) return;
      const pool = this.poolOn(record);
      if (pool) throw failedPrecondition(`CSAL device "${record.name}" (${uuid}) holds pool ${pool}; destroy the pool first`);
      await this.native.destroyFtl({ uri: record.uri });
      this.records.delete(uuid);
      this.save();
      this.log.info("CSAL device destroyed", { name: record.name, uuid });
    });
  }

  async listCsalDevices(): Promise<CsalDevice[]> {
    const open = new Map((await this.native.listFtl()).map((s) => [s.uuid, s]));
    return [...this.records.values()].map((r) => this.toDevice(r, open.get(r.uuid))).sort((a, b) => (a.name ?? "").localeCompare(b.name ?? ""));
  }

  /** The counters of a CSAL device of this node, or null when `uuid` names none. */
  async statsOf(uuid: string): Promise<CsalStats | null> {
    if (!this.records.has(uuid)) return null;
    const s = (await this.native.listFtl()).find((x) => x.uuid === uuid);
    return s ? csalStatsOf(s) : {};
  }

  private async describe(record: CsalRecord): Promise<CsalDevice> {
    const s = (await this.native.listFtl()).find((x) => x.uuid === record.uuid);
    return this.toDevice(record, s);
  }

  private poolOn(record: CsalRecord): string | undefined {
    for (const [pool, uri] of this.poolDevices()) if (uri === record.uri) return pool;
    return undefined;
  }

  private toDevice(r: CsalRecord, stats: FtlStats | undefined): CsalDevice {
    return {
      uuid: r.uuid,
      name: r.name,
      node: this.node,
      uri: r.uri,
      cache_device_uri: r.cache_device_uri,
      base_device_uri: r.base_device_uri,
      overprovision_percent: r.overprovision_percent,
      band_mib: r.band_mib,
      chunk_kib: r.chunk_kib,
      size_bytes: r.size_bytes,
      in_use_by: this.poolOn(r) ?? "",
      map_memory_limit_bytes: r.map_memory_limit_bytes ?? 0,
      ...(stats ? { stats: csalStatsOf(stats) } : {}),
    };
  }

  private save(): void {
    this.store.save({ ...this.store.load(), csal_devices: [...this.records.values()] });
  }
}
