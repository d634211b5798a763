// Which NVMe-oF transport each leg of a volume uses. Two legs: the frontend (the application
// host to the nexus) and the replicas (the nexus to each remote replica). Each is declared
// "tcp", "rdma" or "auto" on the Volume; a node serves RDMA when its engine runs with
// --rdma-interface and found an RDMA device there (GetInfo.transports says so, or why not).
//   tcp   always NVMe/TCP
//   rdma  NVMe/RDMA, or preview fails naming the node that cannot serve it
//   auto  RDMA where every Strata end of the leg serves it, else TCP
// The frontend host is not a Strata node: its leg resolves on the nexus node alone. The nexus
// subsystem is reachable over every transport its node serves; the outputs name the one chosen
// (address and `nvme connect` command).
import type { NvmfTransport__Output as NvmfTransport } from "../engine/generated/strata/engine/v1/NvmfTransport";
import { CALL_DEADLINE_MS, onNode } from "./cluster";
import type { ClusterConfig } from "./connection";

export const TRANSPORT_MODES = ["tcp", "rdma", "auto"] as const;
export type TransportMode = (typeof TRANSPORT_MODES)[number];
export type Transport = "tcp" | "rdma";

/** What a node's engine serves (GetInfo.transports). */
export interface NodeTransports {
  readonly node: string;
  /** HOST:PORT of NVMe/TCP. */
  readonly tcpAddress: string;
  /** HOST:PORT of NVMe/RDMA; "" when not served. */
  readonly rdmaAddress: string;
  /** Why RDMA is not served ("" when it is). */
  readonly rdmaReason: string;
}

export function checkTransportMode(value: unknown): string | null {
  return (TRANSPORT_MODES as readonly unknown[]).includes(value) ? null : `must be "tcp", "rdma" or "auto", got ${JSON.stringify(value)}`;
}

export function transportsOf(node: string, reported: readonly NvmfTransport[] | undefined): NodeTransports {
  const tcp = reported?.find((t) => t.trtype === "tcp");
  const rdma = reported?.find((t) => t.trtype === "rdma");
  return {
    node,
    tcpAddress: tcp?.address ?? "",
    rdmaAddress: rdma?.available ? rdma.address : "",
    rdmaReason: rdma ? (rdma.available ? "" : rdma.reason) : "its engine runs without --rdma-interface",
  };
}

export async function nodeTransports(cluster: ClusterConfig, node: string): Promise<NodeTransports> {
  const info = await onNode(cluster, node, (e) => e.call("GetInfo", {}, CALL_DEADLINE_MS));
  return transportsOf(node, info.transports);
}

/**
 * The transport of a leg whose Strata ends are `ends`: RDMA only where every end serves it. A
 * leg declared "rdma" that an end cannot serve is an error naming that node and why.
 */
export function resolveLeg(mode: TransportMode, ends: readonly NodeTransports[]): { transport: Transport } | { error: string } {
  if (mode === "tcp") return { transport: "tcp" };
  const without = ends.filter((e) => e.rdmaAddress === "");
  if (without.length === 0) return { transport: "rdma" };
  if (mode === "auto") return { transport: "tcp" };
  return { error: without.map((e) => `node ${e.node} does not serve NVMe over RDMA (${e.rdmaReason})`).join("; ") };
}

/** The command a Linux host connects with (nvme-cli). */
export function nvmeConnectCommand(transport: Transport, address: string, nqn: string, hostNqn: string): string {
  const m = /^\[?(.*?)\]?:([0-9]+)$/.exec(address);
  if (!m || !nqn) return "";
  return `nvme connect -t ${transport} -a ${m[1]} -s ${m[2]} -n ${nqn}${hostNqn ? ` --hostnqn ${hostNqn}` : ""}`;
}
