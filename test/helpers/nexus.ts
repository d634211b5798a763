// A 3-node nexus setup with real engine processes on loopback, the way the nexus runs in
// production: node-a holds the nexus and one replica (a local child), node-b and node-c each
// share a replica over NVMe/TCP to node-a's host NQN. The nexus is published to a frontend NQN
// that the verifying load connects as. Engines serve fault injection and keep their NVMe/TCP
// ports across restarts, so children reconnect to the same address after a SIGKILL.
import type { ExecutionContext } from "ava";
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { engineDefinition, EngineConnection } from "../../common/client";
import { NEXUS_LABEL_REGION_BYTES, remoteChildUri } from "../../common/nexus-rules";
import type { Nexus__Output as Nexus } from "../../engine/generated/strata/engine/v1/Nexus";
import type { NexusChild__Output as NexusChild } from "../../engine/generated/strata/engine/v1/NexusChild";
import { startEngine, TestEngine } from "./engine";
import { VerifyingLoad, VolumeModel } from "./load";

export const MiB = 1024 * 1024;
/** The nexus label region at the start of every child (one home: common/nexus-rules.ts). */
export const LABEL_REGION_BYTES = NEXUS_LABEL_REGION_BYTES;
export const FRONTEND_NQN = "nqn.2014-08.org.nvmexpress:uuid:f0f0f0f0-0000-4000-8000-00000000000f";
/** Reads replicas directly to compare children byte for byte. */
export const INSPECTOR_NQN = "nqn.2014-08.org.nvmexpress:uuid:1e1e1e1e-0000-4000-8000-0000000000e1";

export interface FaultSpec {
  op?: "read" | "write" | "any";
  error?: "none" | "eio" | "enospc";
  delay_ms?: number;
  offset_bytes?: number;
  length_bytes?: number;
  count?: number;
  drop_connection?: boolean;
}

export class NexusCluster {
  readonly conns: EngineConnection[];
  private constructor(
    readonly engines: TestEngine[],
    readonly nexus: string,
    readonly replicas: string[],
    readonly children: string[],
    readonly sizeBytes: number,
  ) {
    this.conns = engines.map((e) => e.connect());
  }

  static async start(
    t: ExecutionContext,
    opts: { sizeBytes?: number; childIoTimeoutMs?: number; thin?: boolean; poolMiB?: number; clusterBytes?: number } = {},
  ): Promise<NexusCluster> {
    const sizeBytes = opts.sizeBytes ?? 32 * MiB;
    const started = await Promise.allSettled(
      ["node-a", "node-b", "node-c"].map((node) => startEngine({ node, faultInjection: true, fixedNvmfPort: true })),
    );
    const engines = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      // Never leave the engines that did start running.
      for (const e of engines) await e.kill();
      throw failed.reason;
    }
    t.teardown(async () => {
      if (!t.passed) for (const e of engines) t.log(`--- ${e.target.node} (exit ${e.process.exitCode ?? e.process.signalCode}) ---\n${e.logs.slice(-3000)}`);
      for (const e of engines) await e.kill();
      for (const e of engines) rmSync(e.dir, { recursive: true, force: true });
    });
    const replicas: string[] = [];
    const infos = [];
    for (const e of engines) {
      const c = e.connect();
      try {
        await c.call("CreatePool", {
          uuid: randomUUID(),
          name: `pool-${e.target.node}`,
          device_uri: `file://${join(e.dir, "disk.img")}?size_mib=${opts.poolMiB ?? 128}`,
          cluster_size_bytes: opts.clusterBytes ?? MiB,
        });
        const uuid = randomUUID();
        await c.call("CreateReplica", { uuid, name: `vol-${e.target.node}`, pool: `pool-${e.target.node}`, size_bytes: sizeBytes + LABEL_REGION_BYTES, thin: opts.thin ?? true });
        replicas.push(uuid);
        infos.push(await c.call("GetInfo", {}));
      } finally {
        c.close();
      }
    }
    const hostA = infos[0].host_nqn;
    const children = [`replica:///${replicas[0]}`];
    for (const i of [1, 2]) {
      const c = engines[i].connect();
      try {
        const sub = await c.call("ShareReplica", { uuid: replicas[i], allowed_host_nqns: [hostA, INSPECTOR_NQN] });
        children.push(remoteChildUri(sub.address, sub.nqn));
      } finally {
        c.close();
      }
    }
    const a = engines[0].connect();
    try {
      const nexus = randomUUID();
      await a.call("CreateNexus", { uuid: nexus, size_bytes: sizeBytes, children, child_io_timeout_ms: opts.childIoTimeoutMs ?? 2000 }, 60_000);
      await a.call("PublishNexus", { uuid: nexus, frontend_host_nqn: FRONTEND_NQN });
      const cluster = new NexusCluster(engines, nexus, replicas, children, sizeBytes);
      t.teardown(() => cluster.conns.forEach((c) => c.close()));
      return cluster;
    } finally {
      a.close();
    }
  }

  /** The nexus node's engine API. */
  get a(): EngineConnection {
    return this.conns[0];
  }

  async info(): Promise<Nexus> {
    const { nexuses } = await this.a.call("ListNexus", {});
    const n = nexuses.find((x) => x.uuid === this.nexus);
    if (!n) throw new Error(`nexus ${this.nexus} is not on node-a`);
    return n;
  }

  async child(i: number): Promise<NexusChild> {
    const c = (await this.info()).children.find((x) => x.uri === this.children[i]);
    if (!c) throw new Error(`child ${this.children[i]} is not in the nexus`);
    return c;
  }

  /** Polls until `predicate` holds for the nexus (or throws with the last state). */
  async waitFor(what: string, predicate: (n: Nexus) => boolean, timeout_ms = 30_000): Promise<Nexus> {
    const deadline = Date.now() + timeout_ms;
    let last: Nexus | null = null;
    while (Date.now() < deadline) {
      last = await this.info();
      if (predicate(last)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; nexus: ${JSON.stringify(last?.children.map((c) => [c.uri, c.state, c.reason, c.last_error]))}`);
  }

  async nexusEndpoint(): Promise<{ port: number; nqn: string }> {
    const n = await this.info();
    return { port: Number(n.address.split(":").pop()), nqn: n.nqn };
  }

  /** A raw I/O queue connected as the frontend to the published nexus, closed at teardown. */
  async frontendQueue(t: ExecutionContext) {
    const { adminQueue, ioQueue } = await import("../native/nvmf/host");
    const { port, nqn } = await this.nexusEndpoint();
    const { host, cntlid } = await adminQueue(port, nqn, FRONTEND_NQN);
    const io = await ioQueue(port, nqn, FRONTEND_NQN, cntlid);
    t.teardown(() => {
      io.socket.destroy();
      host.socket.destroy();
    });
    return io;
  }

  /** A verifying load connected as the frontend to the published nexus. */
  async load(model = new VolumeModel(this.sizeBytes)): Promise<VerifyingLoad> {
    const { port, nqn } = await this.nexusEndpoint();
    return VerifyingLoad.connect(port, nqn, FRONTEND_NQN, model);
  }

  async fault(childIndex: number, spec: FaultSpec): Promise<void> {
    await this.faultCall("InjectFault", {
      uuid: this.nexus,
      child_uri: this.children[childIndex],
      op: spec.op ?? "any",
      error: spec.error ?? "eio",
      delay_ms: spec.delay_ms ?? 0,
      offset_bytes: spec.offset_bytes ?? 0,
      length_bytes: spec.length_bytes ?? 0,
      count: spec.count ?? 0,
      drop_connection: spec.drop_connection ?? false,
    });
  }

  async clearFaults(childIndex: number): Promise<void> {
    await this.faultCall("ClearFaults", { uuid: this.nexus, child_uri: this.children[childIndex] });
  }

  private faultCall(method: "InjectFault" | "ClearFaults", request: object): Promise<void> {
    const definition = engineDefinition();
    const target = this.engines[0].target;
    const client = new definition.strata.engine.v1.FaultInjection(target.endpoint, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${target.token}`);
    return new Promise<void>((resolve, reject) => {
      (client as unknown as Record<string, Function>)[method].call(client, request, metadata, (err: grpc.ServiceError | null) => {
        client.close();
        if (err) reject(new Error(`${method}: ${err.details}`));
        else resolve();
      });
    });
  }

  /**
   * Every child's data region, read over NVMe/TCP straight from the replicas (node-a's replica
   * is shared to the inspector for this), as SHA-256 digests of 1 MiB segments.
   */
  async childDigests(sizeBytes = this.sizeBytes): Promise<string[][]> {
    const { createHash } = await import("node:crypto");
    const { adminQueue, ioQueue } = await import("../native/nvmf/host");
    const out: string[][] = [];
    for (let i = 0; i < 3; i++) {
      const c = this.conns[i];
      const sub = await c.call("ShareReplica", {
        uuid: this.replicas[i],
        allowed_host_nqns: i === 0 ? [INSPECTOR_NQN] : [(await this.a.call("GetInfo", {})).host_nqn, INSPECTOR_NQN],
      });
      const port = Number(sub.address.split(":").pop());
      const { host, cntlid } = await adminQueue(port, sub.nqn, INSPECTOR_NQN);
      const io = await ioQueue(port, sub.nqn, INSPECTOR_NQN, cntlid);
      const digests: string[] = [];
      try {
        const perRead = 32; // 128 KiB
        for (let off = LABEL_REGION_BYTES; off < LABEL_REGION_BYTES + sizeBytes; off += MiB) {
          const h = createHash("sha256");
          for (let b = off / 4096; b < (off + MiB) / 4096; b += perRead) {
            const r = await io.read(b, perRead);
            if (r.status !== 0 || !r.data) throw new Error(`inspector read of child ${i} failed: 0x${r.status.toString(16)}`);
            h.update(r.data);
          }
          digests.push(h.digest("hex"));
        }
      } finally {
        io.socket.destroy();
        host.socket.destroy();
      }
      if (i === 0) await c.call("UnshareReplica", { uuid: this.replicas[0] });
      out.push(digests);
    }
    return out;
  }

  /** Asserts all three children hold the same bytes; returns the differing segment indexes otherwise. */
  async differingSegments(sizeBytes = this.sizeBytes): Promise<number[][]> {
    const d = await this.childDigests(sizeBytes);
    return [1, 2].map((i) => d[0].map((h, s) => (h === d[i][s] ? -1 : s)).filter((s) => s >= 0));
  }
}
