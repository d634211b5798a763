// The CsalDevice resource's dynamic provider: a CSAL tiered device (a flash translation layer
// over a fast cache device and a large base device) on one node. A Pool takes its `uri` as disk.
//
// Contract (Pulumi's): create is transactional (the engine formats once, idempotent by the
// derived uuid, so a create the CLI was killed in is found again, never formatted twice); a
// failed delete means the device still exists (the engine refuses while a pool is on it, and
// says which); `read` returns an empty id when the device is gone.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import {
  checkBandMib,
  checkBaseDeviceUri,
  checkCacheDeviceUri,
  checkChunkKib,
  checkOverprovisionPercent,
  CSAL_BAND_MIB_DEFAULT,
  CSAL_CHUNK_KIB_DEFAULT,
  CSAL_OP_PERCENT_DEFAULT,
  ftlUri,
} from "../common/csal-rules";
import { checkName, checkUuid } from "../common/validate";
import type { CsalDevice__Output } from "../engine/generated/strata/engine/v1/CsalDevice";
import type { CsalStats__Output } from "../engine/generated/strata/engine/v1/CsalStats";
import { CALL_DEADLINE_MS, MUTATE_DEADLINE_MS, onNode } from "./cluster";
import { ConfiguredProvider } from "./connection";
import { isUnknown } from "./unknown";

export interface CsalDeviceInputs {
  readonly node: string;
  readonly cacheDevice: string;
  readonly baseDevice: string;
  readonly name: string;
  /** Base band space kept spare for GC, percent (default 20). */
  readonly overprovisionPercent: number;
  /** 0: the default (64 MiB; a zoned base's zone). */
  readonly bandMib: number;
  /** 0: the default (1024 KiB). */
  readonly chunkKib: number;
  /**
   * The most memory the FTL's map may take, MiB; 0 = no limit. The map takes 8 bytes a 4 KiB
   * block; beyond the limit it pages through the cache device. Changes in place.
   */
  readonly mapMemoryLimitMib: number;
  /** Derived by the SDK from project, stack and resource name; also the FTL's uuid on the devices. */
  readonly uuid: string;
  /** Computed in check from the devices and geometry, so a Pool on it shows in the first preview. */
  readonly uri?: string;
}

/** What the FTL reports while a pool holds it open (zeros otherwise); `pulumi refresh` updates them. */
export interface CsalDeviceStats {
  readonly writeAmplification: number;
  readonly hostWriteBytes: number;
  readonly cacheWriteBytes: number;
  readonly baseWriteBytesHost: number;
  readonly baseWriteBytesGc: number;
  readonly baseWriteBytesMeta: number;
  readonly gcRelocatedBlocks: number;
  readonly freeBands: number;
  readonly bandCount: number;
  readonly cacheFill: number;
  readonly throttleEvents: number;
  /** The whole map, and what of it is resident now (below mapMemoryLimitMib when set). */
  readonly mapBytes: number;
  readonly mapResidentBytes: number;
  /** Map pages read back from the cache device since the FTL opened. */
  readonly mapPageReads: number;
}

export interface CsalDeviceOutputs extends CsalDeviceInputs {
  readonly uri: string;
  readonly sizeBytes: number;
  /** The pool on it ("" when none). */
  readonly inUseBy: string;
  readonly stats: CsalDeviceStats;
}

const MIB = 1024 * 1024;

const REPLACE_ON_CHANGE = ["node", "cacheDevice", "baseDevice", "name", "overprovisionPercent", "bandMib", "chunkKib"] as const;
// mapMemoryLimitMib changes in place: the engine applies it to the open FTL and records it.

export function csalStatsOutput(s: CsalStats__Output | null | undefined): CsalDeviceStats {
  return {
    writeAmplification: s?.write_amplification ?? 0,
    hostWriteBytes: Number(s?.host_write_bytes ?? 0),
    cacheWriteBytes: Number(s?.cache_write_bytes ?? 0),
    baseWriteBytesHost: Number(s?.base_write_bytes_host ?? 0),
    baseWriteBytesGc: Number(s?.base_write_bytes_gc ?? 0),
    baseWriteBytesMeta: Number(s?.base_write_bytes_meta ?? 0),
    gcRelocatedBlocks: Number(s?.gc_relocated_blocks ?? 0),
    freeBands: s?.free_bands ?? 0,
    bandCount: s?.band_count ?? 0,
    cacheFill: s?.cache_fill ?? 0,
    throttleEvents: Number(s?.throttle_events ?? 0),
    mapBytes: Number(s?.map_bytes ?? 0),
    mapResidentBytes: Number(s?.map_resident_bytes ?? 0),
    mapPageReads: Number(s?.map_page_reads ?? 0),
  };
}

function outputsOf(inputs: CsalDeviceInputs, d: CsalDevice__Output): CsalDeviceOutputs {
  return { ...inputs, uri: d.uri, sizeBytes: Number(d.size_bytes), inUseBy: d.in_use_by, stats: csalStatsOutput(d.stats) };
}

export class CsalDeviceProvider extends ConfiguredProvider implements dynamic.ResourceProvider {
  async check(olds: Partial<CsalDeviceInputs>, news: Partial<CsalDeviceInputs>): Promise<dynamic.CheckResult> {
    const failures: dynamic.CheckFailure[] = [];
    const fail = (property: string, reason: string | null) => {
      if (reason !== null) failures.push({ property, reason });
    };
    const inputs = { overprovisionPercent: CSAL_OP_PERCENT_DEFAULT, bandMib: 0, chunkKib: CSAL_CHUNK_KIB_DEFAULT, ...news } as { -readonly [K in keyof CsalDeviceInputs]: CsalDeviceInputs[K] };
    // 0 from the SDK means the default; state keeps the value the device was made with.
    if (inputs.overprovisionPercent === 0) inputs.overprovisionPercent = CSAL_OP_PERCENT_DEFAULT;
    if (inputs.chunkKib === 0) inputs.chunkKib = CSAL_CHUNK_KIB_DEFAULT;
    if (olds.uuid !== undefined) inputs.uuid = olds.uuid;
    else if (!isUnknown(inputs.uuid)) fail("uuid", checkUuid(inputs.uuid));
    if (!isUnknown(inputs.node)) {
      if (typeof inputs.node !== "string" || inputs.node === "") fail("node", "must name a node of strata:endpoints");
      else if (this.cluster && !(inputs.node in this.cluster.endpoints))
        fail("node", `"${inputs.node}" is not a configured node (strata:endpoints has: ${Object.keys(this.cluster.endpoints).sort().join(", ")})`);
    }
    if (!isUnknown(inputs.name)) fail("name", checkName(inputs.name));
    if (!isUnknown(inputs.cacheDevice)) fail("cacheDevice", checkCacheDeviceUri(inputs.cacheDevice));
    if (!isUnknown(inputs.baseDevice)) fail("baseDevice", checkBaseDeviceUri(inputs.baseDevice));
    if (!isUnknown(inputs.cacheDevice) && !isUnknown(inputs.baseDevice) && inputs.cacheDevice === inputs.baseDevice)
      fail("baseDevice", "must be another device than cacheDevice");
    if (!isUnknown(inputs.overprovisionPercent)) fail("overprovisionPercent", checkOverprovisionPercent(inputs.overprovisionPercent));
    if (!isUnknown(inputs.bandMib)) {
      fail("bandMib", checkBandMib(inputs.bandMib));
      if (inputs.bandMib && typeof inputs.baseDevice === "string" && inputs.baseDevice.startsWith("zoned:"))
        fail("bandMib", "must be left out on a zoned base: a band is one zone");
    }
    if (!isUnknown(inputs.chunkKib)) fail("chunkKib", checkChunkKib(inputs.chunkKib));
    if (inputs.mapMemoryLimitMib === undefined) inputs.mapMemoryLimitMib = 0;
    if (!isUnknown(inputs.mapMemoryLimitMib) && !(Number.isInteger(inputs.mapMemoryLimitMib) && inputs.mapMemoryLimitMib >= 0))
      fail("mapMemoryLimitMib", `must be a whole number of MiB (0: no limit), got ${JSON.stringify(inputs.mapMemoryLimitMib)}`);
    if (this.cluster === null) fail("node", this.configError);
    const known = [inputs.cacheDevice, inputs.baseDevice, inputs.overprovisionPercent, inputs.bandMib, inputs.chunkKib].every((v) => !isUnknown(v));
    if (failures.length === 0 && known) {
      const zoned = inputs.baseDevice.startsWith("zoned:");
      const bandMib = zoned ? 0 : inputs.bandMib || CSAL_BAND_MIB_DEFAULT;
      inputs.uri = ftlUri(inputs.cacheDevice, inputs.baseDevice, { overprovisionPercent: inputs.overprovisionPercent, bandMib, chunkKib: inputs.chunkKib });
    }
    // A node that is down or refuses our token is reported now, at preview.
    if (failures.length === 0 && !isUnknown(inputs.node) && olds.node === undefined) {
      await onNode(this.clusterOrThrow(), inputs.node, (engine) => engine.call("GetInfo", {}, CALL_DEADLINE_MS));
    }
    return { inputs, failures };
  }

  async diff(_id: string, olds: CsalDeviceOutputs, news: CsalDeviceInputs): Promise<dynamic.DiffResult> {
    const replaces = REPLACE_ON_CHANGE.filter((k) => olds[k] !== news[k]);
    return {
      changes: replaces.length > 0 || (olds.mapMemoryLimitMib ?? 0) !== news.mapMemoryLimitMib,
      replaces: [...replaces],
      // The new device may take the same cache and base: the old one goes first.
      deleteBeforeReplace: replaces.length > 0,
    };
  }

  async create(inputs: CsalDeviceInputs): Promise<dynamic.CreateResult> {
    const d = await this.createOrUpdate(inputs);
    return { id: d.uuid, outs: outputsOf(inputs, d) };
  }

  // CreateCsalDevice is idempotent by uuid and changes the map limit in place: one call for both.
  private createOrUpdate(inputs: CsalDeviceInputs): Promise<CsalDevice__Output> {
    return onNode(this.clusterOrThrow(), inputs.node, (engine) =>
      engine.call(
        "CreateCsalDevice",
        {
          uuid: inputs.uuid,
          name: inputs.name,
          cache_device_uri: inputs.cacheDevice,
          base_device_uri: inputs.baseDevice,
          overprovision_percent: inputs.overprovisionPercent,
          band_mib: inputs.bandMib,
          chunk_kib: inputs.chunkKib,
          force: false,
          map_memory_limit_bytes: inputs.mapMemoryLimitMib * MIB,
        },
        MUTATE_DEADLINE_MS,
      ),
    );
  }

  async update(_id: string, _olds: CsalDeviceOutputs, news: CsalDeviceInputs): Promise<dynamic.UpdateResult> {
    // check() carried the device's uuid over from olds.
    const d = await this.createOrUpdate(news);
    return { outs: outputsOf(news, d) };
  }

  async read(id: string, props: CsalDeviceOutputs): Promise<dynamic.ReadResult> {
    const d = await this.find(props.node, id);
    if (!d) return { id: "", props: {} };
    return { id, props: outputsOf(props, d) };
  }

  async delete(id: string, props: CsalDeviceOutputs): Promise<void> {
    await onNode(this.clusterOrThrow(), props.node, (engine) => engine.call("DestroyCsalDevice", { uuid: id }, MUTATE_DEADLINE_MS));
  }

  private async find(node: string, uuid: string): Promise<CsalDevice__Output | undefined> {
    return onNode(this.clusterOrThrow(), node, async (engine) => (await engine.call("ListCsalDevices", {}, CALL_DEADLINE_MS)).devices.find((d) => d.uuid === uuid));
  }
}
