// The gRPC server: authentication, request logging and error mapping wrap every handler here,
// so services only express what the call does.
import * as grpc from "@grpc/grpc-js";
import { engineDefinition } from "../common/client";
import { tokenMatches } from "./auth";
import { toGrpcError } from "./errors";
import type { Logger } from "./log";
import type { CsalService } from "./csal-service";
import type { NexusService } from "./nexus-service";
import type { EngineService } from "./service";

type ChildReq = { uuid: string; child_uri: string };
type Handler<Req, Res> = (request: Req) => Promise<Res> | Res;

export interface EngineServer {
  readonly port: number;
  stop(): Promise<void>;
}

export async function startServer(
  service: EngineService,
  nexus: NexusService,
  csal: CsalService,
  listen: string,
  token: string,
  log: Logger,
  faultInjection = false,
): Promise<EngineServer> {
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });

  function unary<Req, Res>(method: string, handler: Handler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const started = process.hrtime.bigint();
      if (!tokenMatches(call.metadata, token)) {
        log.warn("rejected call without a valid token", { method, peer: call.getPeer() });
        callback({ code: grpc.status.UNAUTHENTICATED, details: "missing or wrong token: send `authorization: Bearer <node token>`" });
        return;
      }
      Promise.resolve()
        .then(() => handler(call.request))
        .then(
          (response) => {
            log.debug("call", { method, ms: Number(process.hrtime.bigint() - started) / 1e6 });
            callback(null, response);
          },
          (err: unknown) => {
            const { code, details } = toGrpcError(err);
            const level = code === grpc.status.INTERNAL ? "error" : "info";
            log[level]("call failed", { method, code: grpc.status[code], details });
            callback({ code, details });
          },
        );
    };
  }

  const definition = engineDefinition();
  server.addService(definition.strata.engine.v1.Engine.service, {
    GetInfo: unary("GetInfo", () => service.getInfo()),
    ListDevices: unary("ListDevices", async (r: { probe_uris: string[] }) => ({ devices: await service.listDevices(r.probe_uris ?? []) })),
    CreatePool: unary("CreatePool", (r: Parameters<EngineService["createPool"]>[0]) => service.createPool(r)),
    ImportPool: unary("ImportPool", (r: Parameters<EngineService["importPool"]>[0]) => service.importPool(r)),
    ExportPool: unary("ExportPool", async (r: { uuid: string }) => (await service.exportPool(r.uuid), {})),
    DestroyPool: unary("DestroyPool", async (r: { uuid: string }) => (await service.destroyPool(r.uuid), {})),
    GrowPool: unary("GrowPool", (r: { uuid: string }) => service.growPool(r.uuid)),
    ListPools: unary("ListPools", async () => ({ pools: await service.listPools() })),
    CreateReplica: unary("CreateReplica", (r: Parameters<EngineService["createReplica"]>[0]) => service.createReplica(r)),
    ResizeReplica: unary("ResizeReplica", (r: { uuid: string; size_bytes: number }) => service.resizeReplica(r)),
    SetReplicaThin: unary("SetReplicaThin", (r: { uuid: string; thin: boolean }) => service.setReplicaThin(r)),
    DestroyReplica: unary("DestroyReplica", async (r: { uuid: string }) => (await service.destroyReplica(r.uuid), {})),
    ListReplicas: unary("ListReplicas", async (r: { pool: string }) => ({ replicas: await service.listReplicas(r.pool) })),
    GetStats: unary("GetStats", async (r: { uuid: string }) => {
      const csalStats = await csal.statsOf(r.uuid);
      return csalStats ? { uuid: r.uuid, csal: csalStats } : service.getStats(r.uuid);
    }),
    CreateCsalDevice: unary("CreateCsalDevice", (r: Parameters<CsalService["createCsalDevice"]>[0]) => csal.createCsalDevice(r)),
    DestroyCsalDevice: unary("DestroyCsalDevice", async (r: { uuid: string }) => (await csal.destroyCsalDevice(r.uuid), {})),
    ListCsalDevices: unary("ListCsalDevices", async () => ({ devices: await csal.listCsalDevices() })),
    ShareReplica: unary("ShareReplica", (r: Parameters<EngineService["shareReplica"]>[0]) => service.shareReplica(r)),
    UnshareReplica: unary("UnshareReplica", async (r: { uuid: string }) => (await service.unshareReplica(r.uuid), {})),
    ListSubsystems: unary("ListSubsystems", async () => ({ subsystems: await service.listSubsystems() })),
    ListControllers: unary("ListControllers", async () => ({ controllers: await service.listControllers() })),
    CreateNexus: unary("CreateNexus", (r: Parameters<NexusService["createNexus"]>[0]) => nexus.createNexus(r)),
    DestroyNexus: unary("DestroyNexus", async (r: { uuid: string }) => (await nexus.destroyNexus(r.uuid), {})),
    ShutdownNexus: unary("ShutdownNexus", (r: { uuid: string }) => nexus.shutdownNexus(r.uuid)),
    PublishNexus: unary("PublishNexus", (r: Parameters<NexusService["publishNexus"]>[0]) => nexus.publishNexus(r)),
    UnpublishNexus: unary("UnpublishNexus", (r: { uuid: string; frontend_host_nqn: string }) => nexus.unpublishNexus(r)),
    ResizeNexus: unary("ResizeNexus", (r: { uuid: string; size_bytes: number }) => nexus.resizeNexus(r)),
    ListNexus: unary("ListNexus", async () => ({ nexuses: await nexus.listNexus() })),
    AddChild: unary("AddChild", (r: ChildReq) => nexus.childOp(r, "add")),
    RemoveChild: unary("RemoveChild", (r: ChildReq) => nexus.childOp(r, "remove")),
    FaultChild: unary("FaultChild", (r: ChildReq) => nexus.childOp(r, "fault")),
    OnlineChild: unary("OnlineChild", (r: ChildReq) => nexus.childOp(r, "online")),
    StartRebuild: unary("StartRebuild", (r: ChildReq) => nexus.rebuildOp(r, "start")),
    PauseRebuild: unary("PauseRebuild", (r: ChildReq) => nexus.rebuildOp(r, "pause")),
    ResumeRebuild: unary("ResumeRebuild", (r: ChildReq) => nexus.rebuildOp(r, "resume")),
    StopRebuild: unary("StopRebuild", (r: ChildReq) => nexus.rebuildOp(r, "stop")),
    GetRebuildStats: unary("GetRebuildStats", (r: ChildReq) => nexus.rebuildOp(r, "stats")),
    GetRebuildHistory: unary("GetRebuildHistory", async (r: { uuid: string }) => ({ records: await nexus.rebuildHistory(r.uuid) })),
  } as grpc.UntypedServiceImplementation);
  // Only a test engine serves fault injection; elsewhere the service does not exist (UNIMPLEMENTED).
  if (faultInjection) {
    server.addService(definition.strata.engine.v1.FaultInjection.service, {
      InjectFault: unary("InjectFault", async (r: Parameters<NexusService["injectFault"]>[0]) => (await nexus.injectFault(r), {})),
      ClearFaults: unary("ClearFaults", async (r: ChildReq) => (await nexus.clearFaults(r), {})),
    } as grpc.UntypedServiceImplementation);
  }

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort)));
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        // Finish calls in flight, but do not wait forever for a client that never hangs up.
        const force = setTimeout(() => server.forceShutdown(), 5_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}
