// The nexus rules, in one place on the TypeScript side: the provider (so `pulumi preview`
// refuses what CreateNexus would refuse), the engine (which checks again: the network is not
// trusted) and the test helpers import them from here. The C++ side has them in
// native/src/nexus/rules.h and native/src/nvmf/protocol.h; the addon exports those values
// (`nexusRules()`), and test/native/nexus-rules.test.ts asserts that both sides agree.
// Like validate.ts: pure, and each check returns null or a reason ("must be ..."), never throws.
import { checkNvmfUri, checkUuid, describe } from "./validate";

/** The first MiB of every child replica holds the nexus label (native/src/nexus/LABEL.md): a child needs the volume size plus this. */
export const NEXUS_LABEL_REGION_BYTES = 1024 * 1024;
/** The label has room for 32 children (the provider's MAX_REPLICAS is a separate, smaller product limit). */
export const NEXUS_MAX_CHILDREN = 32;
/** A nexus's size is a positive multiple of the 4 KiB block size the target serves it with. */
export const NEXUS_SIZE_ALIGNMENT_BYTES = 4096;
/** How long one child I/O may take before the nexus faults the child, and the range a nexus accepts. */
export const CHILD_IO_TIMEOUT_MS_DEFAULT = 5000;
export const CHILD_IO_TIMEOUT_MS_MIN = 100;
export const CHILD_IO_TIMEOUT_MS_MAX = 600_000;

/** Child URI of a replica on the nexus's own node: replica:///<uuid>. */
export const LOCAL_CHILD_URI_PREFIX = "replica:///";
/** Child URI of a shared replica on another node: nvmf://HOST:PORT/NQN[?hostnqn=…&io_timeout_ms=…&io_queues=…]. */
export const REMOTE_CHILD_URI_PREFIX = "nvmf://";
/** The same over NVMe/RDMA: nvmf+rdma://HOST:PORT/NQN[?…] (the replica's node serves RDMA). */
export const REMOTE_RDMA_CHILD_URI_PREFIX = "nvmf+rdma://";
/** Whether a child URI names a remote replica, over either transport. */
export function isRemoteChildUri(uri: string): boolean {
  return uri.startsWith(REMOTE_CHILD_URI_PREFIX) || uri.startsWith(REMOTE_RDMA_CHILD_URI_PREFIX);
}

/** The NQNs Strata names things with (the date is the naming authority's, never a version). */
export const REPLICA_NQN_PREFIX = "nqn.2026-11.io.strata:replica:";
export const NEXUS_NQN_PREFIX = "nqn.2026-11.io.strata:nexus:";
export const NODE_NQN_PREFIX = "nqn.2026-11.io.strata:node:";

/** The subsystem a shared replica is served as. */
export function replicaNqn(replicaUuid: string): string {
  return REPLICA_NQN_PREFIX + replicaUuid;
}

/** The subsystem a published nexus is served as. */
export function nexusNqn(nexusUuid: string): string {
  return NEXUS_NQN_PREFIX + nexusUuid;
}

/** The host NQN an engine connects to other nodes' replicas with. */
export function nodeNqn(node: string): string {
  return NODE_NQN_PREFIX + node;
}

export function localChildUri(replicaUuid: string): string {
  return LOCAL_CHILD_URI_PREFIX + replicaUuid;
}

/** `address` is HOST:PORT as ShareReplica reports it (or the node's RDMA address); `nqn` the shared replica's subsystem. */
export function remoteChildUri(address: string, nqn: string, transport: "tcp" | "rdma" = "tcp"): string {
  return `${transport === "rdma" ? REMOTE_RDMA_CHILD_URI_PREFIX : REMOTE_CHILD_URI_PREFIX}${address}/${nqn}`;
}

/** Whether a child URI (as a nexus reports it) is this replica: local, or remote through its subsystem. */
export function childUriIsReplica(uri: string, replicaUuid: string): boolean {
  if (uri === localChildUri(replicaUuid)) return true;
  if (!isRemoteChildUri(uri)) return false;
  const path = uri.slice(uri.indexOf("/", uri.indexOf("://") + 3) + 1).split("?")[0];
  return decodeURIComponent(path) === replicaNqn(replicaUuid);
}

/** Volume (nexus) sizes: whole bytes, positive, a multiple of 4096. */
export function checkNexusSizeBytes(value: unknown): string | null {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) return `must be a whole number of bytes, got ${describe(value)}`;
  if (value <= 0 || value % NEXUS_SIZE_ALIGNMENT_BYTES !== 0)
    return `must be a positive multiple of ${NEXUS_SIZE_ALIGNMENT_BYTES} bytes (a volume is served by a nexus, which serves ${NEXUS_SIZE_ALIGNMENT_BYTES}-byte blocks), got ${value}`;
  return null;
}

/** A nexus's child I/O timeout, once the default has been applied. */
export function checkChildIoTimeoutMs(value: unknown): string | null {
  if (typeof value !== "number" || !Number.isInteger(value) || value < CHILD_IO_TIMEOUT_MS_MIN || value > CHILD_IO_TIMEOUT_MS_MAX)
    return `must be ${CHILD_IO_TIMEOUT_MS_MIN} to ${CHILD_IO_TIMEOUT_MS_MAX} ms, got ${describe(value)}`;
  return null;
}

/** A child URI: replica:///<uuid> (a replica on this node) or nvmf://HOST:PORT/NQN[?params] (a shared replica elsewhere). */
export function checkChildUri(value: unknown): string | null {
  const form = `must be ${LOCAL_CHILD_URI_PREFIX}<uuid> (a replica on this node) or ${REMOTE_CHILD_URI_PREFIX}HOST:PORT/NQN[?params] (a shared replica elsewhere)`;
  if (typeof value !== "string") return `${form}, got ${describe(value)}`;
  if (value.startsWith(LOCAL_CHILD_URI_PREFIX))
    return checkUuid(value.slice(LOCAL_CHILD_URI_PREFIX.length)) === null ? null : `"${value}" must name a replica uuid: ${LOCAL_CHILD_URI_PREFIX}<uuid>`;
  if (isRemoteChildUri(value)) {
    const reason = checkNvmfUri(value);
    return reason === null ? null : `"${value}" ${reason}`;
  }
  return `"${value}" ${form}`;
}
