// The one typed declaration of everything the native addon exports (after the Temporal SDK's
// core-bridge): every control call crosses as ONE plain options object and comes back as a
// Promise. Fields are snake_case with units last, exactly as the C++ structs name them;
// absent values are `null`, never `undefined`.
//
// Architecture invariant: JavaScript validates, C++ trusts. Callers (engine/) check every
// field before calling in; the addon asserts invariants but does not re-explain bad input.
// The replica read/write calls below are for tests and tools only; the I/O path (NVMe/TCP
// target, nexus) never moves data bytes through JavaScript.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** A block device the data path can open, by URI (file://, uring://, malloc://). */
export interface DeviceInfo {
  readonly uri: string;
  /** "file" (regular file), "block" (allowed block device) or "malloc" (RAM). */
  readonly kind: "file" | "block" | "malloc";
  readonly path: string | null;
  readonly size_bytes: number;
  readonly block_size_bytes: number;
  /** "major:minor" for block devices and the backing device of files; null for malloc. */
  readonly major_minor: string | null;
  /** true when the device was opened with O_DIRECT (false: buffered fallback, see reason). */
  readonly direct_io: boolean;
  /** The pool uuid that uses the device, or null. */
  readonly in_use_by: string | null;
}

export type PoolState =
  /** Imported and serving I/O. */
  | "online"
  /** Imported, but the device reported I/O errors; metadata writes are refused. */
  | "faulted";

export interface PoolInfo {
  readonly uuid: string;
  readonly name: string;
  readonly device_uri: string;
  readonly state: PoolState;
  readonly cluster_size_bytes: number;
  /** Bytes usable for replica data (all clusters). */
  readonly capacity_bytes: number;
  /** Bytes of clusters allocated to replicas. */
  readonly used_bytes: number;
  /** Sum of all replica sizes (thin replicas count fully): the committed capacity. */
  readonly committed_bytes: number;
  readonly replica_count: number;
  /** On-disk format version of the superblock. */
  readonly format_version: number;
}

export interface ReplicaInfo {
  readonly uuid: string;
  readonly name: string;
  readonly pool_uuid: string;
  readonly size_bytes: number;
  readonly thin: boolean;
  /** Bytes of clusters this replica owns. */
  readonly allocated_bytes: number;
}

export interface IoStats {
  readonly read_ops: number;
  readonly write_ops: number;
  readonly read_bytes: number;
  readonly write_bytes: number;
  readonly flush_ops: number;
  readonly unmap_ops: number;
  readonly errors: number;
  /** Latency histogram: bucket upper bounds in microseconds and counts per bucket. */
  readonly latency_bucket_upper_us: readonly number[];
  readonly latency_bucket_counts: readonly number[];
  /** Sum of every recorded I/O's latency, µs. */
  readonly latency_sum_us: number;
}

export interface PoolCheckReport {
  readonly pool_uuid: string;
  /** Clusters marked allocated in the allocator but owned by no replica. */
  readonly leaked_clusters: number;
  /** Clusters owned by two replicas (or twice by one). */
  readonly doubly_owned_clusters: number;
  /** Clusters owned by a replica but free in the allocator. */
  readonly owned_but_free_clusters: number;
  /** Human-readable findings, empty when consistent. */
  readonly problems: readonly string[];
}

export interface BenchResult {
  readonly ops: number;
  readonly bytes: number;
  readonly elapsed_us: number;
  readonly iops: number;
  readonly mib_per_s: number;
  readonly lat_p50_us: number;
  readonly lat_p99_us: number;
  /** benchReplica only (benchDevice reports 0). */
  readonly lat_p999_us: number;
}

/** What one reactor did since it started (monotonic counts; reactor.h ReactorCounters). */
export interface ReactorCounters {
  /** Blocking io_uring_enter calls: each ends in a thread wakeup. */
  readonly sleeps: number;
  /** io_uring_enter system calls of any kind. */
  readonly enters: number;
  /** Completed io_uring operations. */
  readonly completions: number;
  /** Tasks posted from another thread (cross-reactor hops). */
  readonly posts_remote: number;
  /** Tasks a reactor posted to itself (no syscall). */
  readonly posts_local: number;
  /** eventfd writes to wake a sleeping reactor (one syscall each). */
  readonly wakeup_writes: number;
  /** Loop turns spent polling instead of sleeping. */
  readonly polls: number;
  /** Poll windows that found work before they ran out. */
  readonly poll_hits: number;
}

/** The ports the NVMe/TCP target bound (useful when 0 asked for any free port). */
export interface NvmfListenInfo {
  readonly listen_port: number;
  readonly discovery_port: number;
  /** Present when `rdma_interface` was given: whether NVMe over RDMA is served, and why not. */
  readonly rdma?: RdmaTransportInfo;
}

/** What became of the RDMA transport an engine was asked to serve. */
export interface RdmaTransportInfo {
  readonly interface: string;
  /** The interface's IPv4 address ("" when none). */
  readonly address: string;
  /** The RDMA listener's port (the TCP I/O port's number), 0 when not served. */
  readonly port: number;
  /** The RDMA device behind the address, e.g. "rxe0" ("" when none). */
  readonly device: string;
  readonly available: boolean;
  /** Why not, when not available. */
  readonly reason: string;
}

/** A host connected to a subsystem: one controller and its queues (admin + I/O). */
export interface NvmfConnectedHost {
  readonly host_nqn: string;
  readonly cntlid: number;
  readonly queues: number;
}

/** One shared replica: an NVMe-oF subsystem with one namespace (NSID 1, 4 KiB blocks). */
export interface NvmfSubsystemInfo {
  /** nqn.2026-11.io.strata:replica:<replica uuid> */
  readonly nqn: string;
  /** The uuid of what the namespace serves: a replica or a nexus (see `kind`). */
  readonly replica_uuid: string;
  readonly kind: "replica" | "nexus";
  /** Host NQNs allowed to connect; empty means nobody may. */
  readonly allowed_host_nqns: readonly string[];
  /** The allowed hosts that must authenticate with DH-HMAC-CHAP (their secrets are never listed). */
  readonly dhchap_host_nqns: readonly string[];
  readonly connected_hosts: readonly NvmfConnectedHost[];
}

/**
 * A host that must authenticate with DH-HMAC-CHAP (NVMe in-band authentication, what
 * `nvme connect --dhchap-secret` speaks) before any other command on any of its queues.
 */
export interface NvmfHostSecret {
  readonly host_nqn: string;
  /** "DHHC-1:XX:<base64 key + CRC-32>:" as `nvme gen-dhchap-key` prints it. */
  readonly dhchap_secret: string;
  /** Optional: the subsystem then proves itself to the host too (bidirectional). */
  readonly dhchap_ctrl_secret?: string;
}

/** A nexus child's lifecycle state. */
export type NexusChildState =
  /** In sync: receives every write, serves reads. */
  | "online"
  /** Receives writes while a rebuild copies the rest into it; serves no reads. */
  | "rebuilding"
  /** Out of sync after an error, a timeout, a failed rebuild or a client request. */
  | "faulted"
  /** Out of sync and closed: could not be opened. */
  | "offline";

/** Why a child is not online ("none" when it is). */
export type NexusChildReason =
  | "none"
  | "io_failure"
  | "timed_out"
  | "cannot_open"
  | "no_space"
  | "rebuild_failed"
  | "by_client"
  | "out_of_sync";

export interface RebuildInfo {
  readonly child_uri: string;
  readonly source_uri: string;
  /** waiting, running, paused, flushing (copied, making it durable), completed, stopped or failed. */
  readonly state: "waiting" | "running" | "paused" | "flushing" | "completed" | "stopped" | "failed";
  /** Only the segments written while the child was away are copied. */
  readonly partial: boolean;
  /** A resync after an unclean shutdown: an in-sync child given the primary's copy (it stays online). */
  readonly resync: boolean;
  readonly bytes_done: number;
  readonly bytes_total: number;
  /** The nexus size: a partial rebuild's bytes_total is measured against it. */
  readonly volume_bytes: number;
  /** Segments a thin source never wrote: zeroed on the child instead of copied. */
  readonly segments_skipped: number;
  readonly mib_per_s: number;
  readonly start_ms: number;
  readonly end_ms: number | null;
  readonly error: string | null;
}

export interface NexusChildInfo {
  /** replica:///<uuid> (on this node) or nvmf://HOST:PORT/NQN. */
  readonly uri: string;
  readonly state: NexusChildState;
  readonly reason: NexusChildReason;
  readonly last_error: string | null;
  readonly read_ops: number;
  readonly write_ops: number;
  readonly errors: number;
  /** Bytes written while it was away: what a partial rebuild will copy. */
  readonly missed_bytes: number;
  readonly rebuild: RebuildInfo | null;
}

export interface NexusInfo {
  readonly uuid: string;
  /** open, shutting_down or shutdown. */
  readonly state: "open" | "shutting_down" | "shutdown";
  /** online (every child online), degraded (some) or faulted (none: I/O fails). */
  readonly health: "online" | "degraded" | "faulted";
  readonly size_bytes: number;
  /** The newest membership generation on the children's labels. */
  readonly generation: number;
  /** The newest label did not record a clean shutdown. */
  readonly opened_after_unclean_shutdown: boolean;
  /** nqn.2026-11.io.strata:nexus:<uuid> while published. */
  readonly nqn: string | null;
  readonly frontend_host_nqn: string | null;
  readonly children: readonly NexusChildInfo[];
  readonly stats: IoStats;
}

/** NVMe ZNS zone states (native/src/device/zones.h); Read Only and Offline are not modelled. */
export type ZoneState = "empty" | "implicitly_opened" | "explicitly_opened" | "closed" | "full";

export type ZoneAction = "open" | "close" | "finish" | "reset";

export interface ZoneInfo {
  readonly start_bytes: number;
  readonly capacity_bytes: number;
  /** Absolute; start + capacity for a full zone. */
  readonly write_pointer_bytes: number;
  readonly state: ZoneState;
}

/** A CSAL tiered device just formatted (createFtl): what a pool takes as its disk. */
export interface FtlCreated {
  uri: string;
  uuid: string;
  size_bytes: number;
}

/** An open FTL's counters (native/src/ftl/ftl_device.h FtlStatsData). */
export interface FtlStats {
  uuid: string;
  uri: string;
  logical_bytes: number;
  host_write_bytes: number;
  host_read_bytes: number;
  /** Data and record headers. */
  cache_write_bytes: number;
  /** Compaction: cache to base. */
  base_write_bytes_host: number;
  /** GC relocation: base to base. */
  base_write_bytes_gc: number;
  /** Band footers and padding. */
  base_write_bytes_meta: number;
  base_writes: number;
  /** Base writes that began where the band's previous write ended. */
  base_sequential_writes: number;
  gc_relocated_blocks: number;
  gc_victims: number;
  /** Host writes that waited for a free cache chunk. */
  throttle_events: number;
  padded_band_closes: number;
  band_count: number;
  free_bands: number;
  chunk_count: number;
  free_chunks: number;
  recovered_records: number;
  recovered_bands: number;
  /** The last open loaded the clean-shutdown checkpoint instead of scanning bands and cache. */
  loaded_from_checkpoint: boolean;
  /** Set once a cache or base write failed; every I/O fails from then on. */
  failed_reason: string | null;
  /** The whole L2P map: 8 bytes a logical block, in 4 KiB pages. */
  map_bytes: number;
  /** The most of it kept resident (0: no limit, all of it may be). */
  map_limit_bytes: number;
  map_resident_bytes: number;
  /** Map pages read back from the cache (misses). */
  map_page_reads: number;
  /** Changed map pages written home (evictions and the clean-shutdown checkpoint). */
  map_page_writes: number;
  /** On an FDP base (fdp://): its placement handles (hot bands use 0, cold 1), and its FDP statistics: host and media bytes written. */
  base_fdp_handles: number;
  base_fdp_host_write_bytes: number;
  base_fdp_media_write_bytes: number;
  /** Host bytes by placement handle: [hot bands, cold bands] with two or more handles. */
  base_fdp_handle_write_bytes: number[];
}

export interface RdmaProbe {
  readonly interface: string;
  /** The interface's IPv4 address ("" when none). */
  readonly address: string;
  /** The RDMA device serving that address, e.g. "rxe0" ("" when none). */
  readonly device: string;
  readonly usable: boolean;
  /** Why not, when not usable. */
  readonly reason: string;
}

export interface ZoneReport {
  readonly zone_size_bytes: number;
  readonly block_size_bytes: number;
  /** null: no limit */
  readonly max_open: number | null;
  readonly max_active: number | null;
  readonly open_count: number;
  readonly active_count: number;
  readonly zones: readonly ZoneInfo[];
}

export interface ZoneAppendResult {
  readonly offset_bytes: number;
  /** offset_bytes in logical blocks: what an NVMe Zone Append returns. */
  readonly lba: number;
}

/**
 * Errors from the addon are `Error`s with a `code` that the engine maps to gRPC status in one
 * place (engine/errors.ts).
 */
export type NativeErrorCode =
  | "INVALID_ARGUMENT" // a malformed URI, size not a multiple of the block size, …
  | "NOT_FOUND" // no such pool, replica or file
  | "ALREADY_EXISTS" // a pool or replica with that uuid or name exists
  | "PERMISSION_DENIED" // device not on the allow list
  | "FAILED_PRECONDITION" // the device already holds a pool; the pool still has replicas; …
  | "NO_SPACE" // no free cluster for a thin write or a thick create; not enough memory (malloc devices, replica maps)
  | "OUT_OF_RANGE" // I/O beyond a replica's end
  | "DATA_LOSS" // checksum mismatch on metadata read back
  | "UNIMPLEMENTED" // unknown on-disk version
  | "IO_ERROR"; // the device failed

export interface NativeError extends Error {
  code: NativeErrorCode;
}

/**
 * The nexus and NQN rules as the C++ data path enforces them (native/src/nexus/rules.h,
 * native/src/nvmf/protocol.h). The control plane's copies are common/nexus-rules.ts;
 * test/native/nexus-rules.test.ts keeps the two equal.
 */
export interface NativeNexusRules {
  readonly label_region_bytes: number;
  readonly max_children: number;
  readonly size_alignment_bytes: number;
  readonly child_io_timeout_ms_min: number;
  readonly child_io_timeout_ms_max: number;
  readonly child_io_timeout_ms_default: number;
  /** "replica:///" */
  readonly local_child_uri_prefix: string;
  /** "nvmf://" */
  readonly remote_child_uri_prefix: string;
  readonly replica_nqn_prefix: string;
  readonly nexus_nqn_prefix: string;
  readonly node_nqn_prefix: string;
}

/** The CSAL device limits as C++ enforces them (native/src/ftl/format.h); copy: common/csal-rules.ts. */
export interface NativeFtlRules {
  readonly op_percent_min: number;
  readonly op_percent_max: number;
  readonly op_percent_default: number;
  readonly band_mib_max: number;
  readonly band_mib_default: number;
  readonly chunk_kib_min: number;
  readonly chunk_kib_max: number;
  readonly chunk_kib_default: number;
  readonly map_entries_per_page: number;
  readonly map_min_resident_bytes: number;
  readonly fdp_handles_max: number;
  readonly fdp_ru_mib_default: number;
  readonly fdp_ru_mib_max: number;
  readonly fdp_op_percent_default: number;
  readonly fdp_op_percent_max: number;
}

export interface NativeStorage {
  /** The nexus rules compiled into the addon. Synchronous, and callable before `start`. */
  nexusRules(): NativeNexusRules;
  /** The CSAL device limits compiled into the addon. Synchronous. */
  ftlRules(): NativeFtlRules;
  /**
   * Starts `cores` reactor threads. Must be called once before any other call.
   * `fault_injection` (tests only) wraps nexus children so injectFault works.
   * `device_dirs`: regular files may hold pools only when they resolve (symlinks followed) into
   * one of these existing directories; when given it replaces the list, even on a later call.
   * Absent: no directory rule (tools and tests; strata-engine always passes its --device-dir).
   */
  start(opts: { cores: number; fault_injection?: boolean; device_dirs?: string[] }): void;
  /** Drains in-flight I/O, writes clean-shutdown state for every pool, stops reactors. */
  shutdown(): Promise<void>;
  /** Each reactor's counters since start (native/src/reactor/reactor.h), for benchmarks. */
  reactorCounters(): ReactorCounters[];

  probeDevice(opts: { uri: string }): Promise<DeviceInfo>;
  listDevices(): Promise<DeviceInfo[]>;

  /**
   * Formats a new pool on a device. Refused when the device holds a pool, a partition table, a
   * filesystem or another known signature, unless `force`; a mounted or busy block device is
   * refused even with `force`.
   */
  createPool(opts: {
    uuid: string;
    name: string;
    device_uri: string;
    cluster_size_bytes: number;
    force: boolean;
  }): Promise<PoolInfo>;
  /** Imports the pool found on a device (replaying its journal). */
  importPool(opts: { device_uri: string }): Promise<PoolInfo>;
  /** Closes a pool cleanly and forgets it; the data stays on the device. */
  exportPool(opts: { uuid: string }): Promise<void>;
  /** Destroys a pool and its replicas; the superblock is wiped. */
  destroyPool(opts: { uuid: string }): Promise<void>;
  /** Extends a pool to the current size of its device. */
  growPool(opts: { uuid: string }): Promise<PoolInfo>;
  listPools(): Promise<PoolInfo[]>;
  checkPool(opts: { uuid: string }): Promise<PoolCheckReport>;

  createReplica(opts: {
    pool_uuid: string;
    uuid: string;
    name: string;
    size_bytes: number;
    thin: boolean;
  }): Promise<ReplicaInfo>;
  resizeReplica(opts: { uuid: string; size_bytes: number }): Promise<ReplicaInfo>;
  /**
   * Converts a replica in place, data kept. Thin -> thick allocates (zeroed) every cluster it
   * lacks, all or nothing (NO_SPACE names needed and free bytes); thick -> thin frees nothing.
   * The same value is a no-op.
   */
  setReplicaThin(opts: { uuid: string; thin: boolean }): Promise<ReplicaInfo>;
  destroyReplica(opts: { uuid: string }): Promise<void>;
  listReplicas(): Promise<ReplicaInfo[]>;
  getStats(opts: { uuid: string }): Promise<IoStats>;

  // Tests and tools only (not the I/O path).
  replicaWrite(opts: { uuid: string; offset_bytes: number; data: Buffer }): Promise<void>;
  replicaRead(opts: { uuid: string; offset_bytes: number; length_bytes: number }): Promise<Buffer>;
  replicaFlush(opts: { uuid: string }): Promise<void>;
  replicaDeallocate(opts: { uuid: string; offset_bytes: number; length_bytes: number }): Promise<void>;
  replicaWriteZeroes(opts: { uuid: string; offset_bytes: number; length_bytes: number }): Promise<void>;

  /** A native load generator on a replica (fio-like), so benchmarks measure the data path, not JS. */
  benchReplica(opts: {
    uuid: string;
    pattern: "randread" | "randwrite" | "read" | "write";
    block_size_bytes: number;
    queue_depth: number;
    duration_ms: number;
    span_bytes: number;
    /** Skewed random patterns: this fraction of I/Os (e.g. 0.8) go to the first `hot_space_fraction` of the span (e.g. 0.2). Default 1 and 1: uniform. */
    hot_write_fraction?: number;
    hot_space_fraction?: number;
    /** Stop after this many I/Os (e.g. exactly one pass of a sequential write); duration_ms still bounds the run. */
    max_ops?: number;
  }): Promise<BenchResult>;

  /**
   * Starts the NVMe/TCP target: the I/O listener and the discovery controller's listener
   * (port 0 = any free port). Once per start(); a busy port rejects with FAILED_PRECONDITION.
   */
  startNvmf(opts: {
    listen_host: string;
    listen_port: number;
    discovery_host: string;
    discovery_port: number;
    /** Also serve NVMe over RDMA (I/O and discovery) on this interface's address; TCP is served regardless. */
    rdma_interface?: string;
  }): Promise<NvmfListenInfo>;
  /**
   * Shares a replica as an NVMe/TCP subsystem that only `allowed_host_nqns` may connect to.
   * Sharing again replaces the allow list in place (hosts no longer allowed are disconnected).
   * A shared replica cannot be destroyed (FAILED_PRECONDITION) until it is unshared.
   * Hosts named in `host_secrets` (each must be allowed) must authenticate with DH-HMAC-CHAP;
   * a changed secret disconnects that host. Secrets are never listed or logged.
   */
  shareReplica(opts: { uuid: string; allowed_host_nqns: string[]; host_secrets?: NvmfHostSecret[] }): Promise<{ nqn: string }>;
  /**
   * The initiator's keyring: DH-HMAC-CHAP secrets this process presents as `host_nqn` when a
   * target requires authentication (every queue authenticates). An empty `dhchap_secret`
   * forgets the host. Secrets never go into nvmf:// URIs.
   */
  setHostSecret(opts: { host_nqn: string; dhchap_secret: string; dhchap_ctrl_secret?: string }): Promise<void>;
  /** Removes the subsystem and disconnects its hosts. Unsharing an unshared replica succeeds. */
  unshareReplica(opts: { uuid: string }): Promise<void>;
  listSubsystems(): Promise<NvmfSubsystemInfo[]>;

  /**
   * NVMe/TCP initiator controllers of this process: one per open nvmf:// device
   * (nvmf://HOST:PORT/NQN[?hostnqn=NQN&io_timeout_ms=N&io_queues=N]).
   */
  listControllers(): Promise<NvmfControllerInfo[]>;
  /** benchReplica's load generator on a raw device by URI (e.g. nvmf://), no pool in between. */
  benchDevice(opts: {
    uri: string;
    pattern: "randread" | "randwrite" | "read" | "write";
    block_size_bytes: number;
    queue_depth: number;
    duration_ms: number;
    span_bytes: number;
    /**
     * Spread queue_depth over this many reactors (default 1), as a kernel host spreads an
     * application's I/O over per-CPU queues. A device with a home reactor (a replica) uses one.
     */
    jobs?: number;
  }): Promise<BenchResult>;
  /**
   * Tests and tools only: one I/O on a raw device (opened and closed per call). Resolves with the data for "read".
   * On a zoned device a broken ZNS rule rejects with FAILED_PRECONDITION and the status in the message.
   */
  deviceIo(opts: {
    uri: string;
    kind: "read" | "write" | "flush" | "deallocate" | "write_zeroes";
    offset_bytes: number;
    length_bytes: number;
    data: Buffer | null;
  }): Promise<Buffer | undefined>;

  /**
   * Tests and tools only: the zones of a zoned device (zoned://?base=<percent-encoded URI>&zone_mib=N
   * [&max_open=N][&max_active=N], native/src/device/zoned_device.h), opened and closed per call.
   * A device that is not zoned is INVALID_ARGUMENT.
   */
  zoneReport(opts: { uri: string }): Promise<ZoneReport>;
  /**
   * Zone Management Send on the zone starting at zone_start_bytes. A broken ZNS rule rejects with
   * FAILED_PRECONDITION and the status in the message, e.g. "Zone Invalid State Transition (NVMe SCT 1h SC 0xBF)".
   */
  zoneManage(opts: { uri: string; action: ZoneAction; zone_start_bytes: number }): Promise<void>;
  /** Zone Append: writes `data` at the zone's write pointer and resolves with where it went. */
  zoneAppend(opts: { uri: string; zone_start_bytes: number; data: Buffer }): Promise<ZoneAppendResult>;

  /**
   * Formats a CSAL tiered device (FTL) over a cache and a base device, once: refuses devices
   * holding data (or another FTL) unless `force`. Resolves with its ftl:// URI, which opens
   * (loads, never formats) wherever a device URI is taken.
   */
  createFtl(opts: {
    cache_uri: string;
    base_uri: string;
    op_percent?: number;
    band_mib?: number;
    chunk_kib?: number;
    force?: boolean;
    /** The FTL's uuid; with it, a create repeated over devices holding this FTL returns it unformatted. */
    uuid?: string;
  }): Promise<FtlCreated>;
  /** Wipes both superblocks; refused while the FTL is open (a pool is on it). */
  destroyFtl(opts: { uri: string }): Promise<void>;
  /** FTLs open in this process, with their counters. */
  listFtl(): Promise<FtlStats[]>;
  /**
   * The map memory limit of an FTL (0: all resident): applied now if it is open and whenever it
   * opens in this process (recovery then rebuilds the map in windows of this size).
   */
  setFtlMapLimit(opts: { uuid: string; bytes: number }): void;
  /** Whether NVMe over RDMA could be served on a network interface (its address, the RDMA device behind it), and why not. Synchronous. */
  probeRdma(opts: { interface: string }): RdmaProbe;

  /** Benchmarks only: copies a range between two devices, `queue_depth` segments in flight (the raw-copy baseline of a rebuild). */
  copyDevice(opts: { src_uri: string; dst_uri: string; offset_bytes: number; length_bytes: number; segment_bytes: number; queue_depth: number }): Promise<BenchResult>;
  /**
   * Creates a nexus (RAID-1) over children: replica:///<uuid> (local) or nvmf:// URIs. Child
   * health comes from the labels on the children (the newest generation wins); children that
   * cannot be opened are left out as offline/cannot_open. Idempotent by uuid. The nexus is
   * also a device: nexus:///<uuid> for benchDevice and deviceIo.
   */
  createNexus(opts: {
    uuid: string;
    size_bytes: number;
    children: string[];
    child_io_timeout_ms?: number;
    /** Engine restart: the newest label's (larger) size wins; a child too small to open leaves the nexus degraded. */
    restore?: boolean;
  }): Promise<NexusInfo>;
  /**
   * Grows a nexus in place: re-reads the size of every online/rebuilding child (a remote one is
   * identified again), fails naming a child that is too small (nothing changed), writes the new
   * size into the labels, then grows the published namespace and notifies its hosts (AEN).
   * A smaller size is refused; the same size succeeds.
   */
  resizeNexus(opts: { uuid: string; size_bytes: number }): Promise<NexusInfo>;
  /** Shuts the nexus down (if needed) and forgets it; never touches the replicas. Idempotent. */
  destroyNexus(opts: { uuid: string }): Promise<void>;
  /** Unpublishes, drains I/O, writes clean labels and closes the children. */
  shutdownNexus(opts: { uuid: string }): Promise<void>;
  /** Shares the nexus over NVMe/TCP to one frontend host NQN (which must authenticate when a secret is given). */
  publishNexus(opts: { uuid: string; frontend_host_nqn: string; frontend_dhchap_secret?: string; frontend_dhchap_ctrl_secret?: string }): Promise<{ nqn: string }>;
  /** Refused (FAILED_PRECONDITION) for a frontend other than the one it is published to. */
  unpublishNexus(opts: { uuid: string; frontend_host_nqn: string }): Promise<void>;
  listNexus(): Promise<NexusInfo[]>;
  nexusChild(opts: { uuid: string; child_uri: string; action: "add" | "remove" | "fault" | "online" }): Promise<void>;
  nexusRebuild(opts: { uuid: string; child_uri: string; action: "start" | "pause" | "resume" | "stop" }): Promise<void>;
  /** The child's running rebuild, or its latest finished one. */
  rebuildStats(opts: { uuid: string; child_uri: string }): Promise<RebuildInfo>;
  rebuildHistory(opts: { uuid: string }): Promise<RebuildInfo[]>;
  /** Tests only (start with fault_injection): fail or delay a child's I/O; `clear` removes all rules. */
  injectFault(
    opts:
      | { uuid: string; child_uri: string; clear: true }
      /** Ends an nvmf:// child's TCP connections as a network failure would. */
      | { uuid: string; child_uri: string; drop_connection: true }
      | {
          uuid: string;
          child_uri: string;
          clear?: false;
          op: "read" | "write" | "any";
          error: "none" | "eio" | "enospc";
          delay_ms: number;
          /** Nexus offsets; 0 and 0 = the whole child. */
          offset_bytes: number;
          length_bytes: number;
          /** Matching I/Os to fault; 0 = until cleared. */
          count: number;
        },
  ): Promise<void>;
}

export interface NvmfControllerInfo {
  readonly uri: string;
  /** connecting, live, reconnecting, failed or closed. */
  readonly state: "connecting" | "live" | "reconnecting" | "failed" | "closed";
  readonly cntlid: number;
  /** I/O queues (the admin queue not counted). */
  readonly queues: number;
  readonly reconnects: number;
  readonly last_error: string | null;
}

function addonPath(): string {
  const base = join(__dirname, "..", "..", "native", "build");
  // Resolved from dist/native/index.js (compiled) or native/index.ts (ts-node).
  for (const candidate of [
    process.env.STRATA_NATIVE_ADDON,
    join(base, "Release", "strata_native.node"),
    join(base, "Debug", "strata_native.node"),
    join(__dirname, "build", "Release", "strata_native.node"),
  ]) {
    if (candidate && existsSync(candidate)) return candidate;
  }
  throw new Error("the native addon is not built: run `npm run build:native`");
}

let loaded: NativeStorage | null = null;

/** Loads the addon once per process. */
export function loadNative(): NativeStorage {
  if (loaded === null) {
    const require = createRequire(__filename);
    loaded = require(addonPath()) as NativeStorage;
  }
  return loaded;
}

export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).code === "string";
}
