// strata-engine: one per storage node. Parses flags, starts the native reactors, re-imports
// the node's pools, serves the engine API, and shuts down cleanly on SIGTERM/SIGINT.
import { mkdirSync } from "node:fs";
import { loadNative } from "../native";
import { ConfigError, parseFlags, USAGE } from "./config";
import { startMetricsServer, type MetricsServer } from "./metrics";
import { createLogger } from "./log";
import { CsalService } from "./csal-service";
import { NexusService } from "./nexus-service";
import { startServer } from "./server";
import { EngineService, hostNqnOf } from "./service";
import { StateStore } from "./state";

export async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  let config;
  try {
    config = parseFlags(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`strata-engine: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger({ node: config.node });
  const native = loadNative();
  // The default device dir is the data dir, which must exist before the addon resolves it.
  mkdirSync(config.data_dir, { recursive: true });
  native.start({ cores: config.cores, fault_injection: config.enable_fault_injection, device_dirs: [...config.device_dirs] });
  const { nvmf_listen: io, nvmf_discovery_listen: disc } = config;
  let nvmfPorts;
  try {
    nvmfPorts = await native.startNvmf({
      listen_host: io.host,
      listen_port: io.port,
      discovery_host: disc.host,
      discovery_port: disc.port,
      rdma_interface: config.rdma_interface,
    });
  } catch (err) {
    // Name the flag: the operator fixes a busy port by changing it.
    const message = (err as Error).message;
    const flag = message.includes(`${disc.host}:${disc.port}`) && !(io.host === disc.host && io.port === disc.port) ? "--nvmf-discovery-listen" : "--nvmf-listen";
    log.error("cannot start the NVMe/TCP target", { flag, reason: message });
    process.stderr.write(`strata-engine: ${flag}: ${message}\n`);
    await native.shutdown();
    return 1;
  }
  const service = new EngineService(
    native,
    new StateStore(config.data_dir),
    config.node,
    config.labels,
    config.cores,
    config.grpc_listen,
    log,
  );
  // Shares and nexuses carry the advertised address (never a wildcard listen address).
  const advertised = config.nvmf_advertise_host;
  const nvmfAddress = `${advertised.includes(":") ? `[${advertised}]` : advertised}:${nvmfPorts.listen_port}`;
  service.setNvmfAddress(nvmfAddress);
  const rdma = nvmfPorts.rdma;
  if (rdma) {
    // Never silent: an engine asked for RDMA that cannot serve it says so, and serves TCP.
    if (rdma.available) log.info("serving NVMe over RDMA", { interface: rdma.interface, address: `${rdma.address}:${rdma.port}`, device: rdma.device });
    else log.warn("NVMe over RDMA is not served; TCP only", { interface: rdma.interface, reason: rdma.reason });
    service.setRdmaTransport(rdma);
  }
  const csal = new CsalService(native, new StateStore(config.data_dir), config.node, log, () => service.poolDevices());
  const nexus = new NexusService(native, new StateStore(config.data_dir), config.node, config.enable_fault_injection, log);
  nexus.setNvmfAddress(nvmfAddress);
  if (config.dhchap_secret) {
    // Before nexuses come back: their remote children may require authentication.
    await native.setHostSecret({ host_nqn: hostNqnOf(config.node), dhchap_secret: config.dhchap_secret });
    service.setHostDhchap(true);
    log.info("DH-HMAC-CHAP host secret loaded", { host_nqn: hostNqnOf(config.node) });
  }
  await service.importKnownPools();
  await service.restoreShares();
  await nexus.restore();
  let server;
  try {
    server = await startServer(service, nexus, csal, config.grpc_listen, config.token, log, config.enable_fault_injection);
  } catch (err) {
    log.error("cannot listen", { grpc_listen: config.grpc_listen, reason: (err as Error).message });
    await service.shutdown();
    return 1;
  }
  let metrics: MetricsServer | null = null;
  if (config.metrics_listen) {
    const { host, port } = config.metrics_listen;
    try {
      metrics = await startMetricsServer(host, port, async () => ({
        node: config.node,
        pools: await service.listPools(),
        replicas: await Promise.all(
          (await service.listReplicas("")).map(async (replica) => ({ replica, stats: await service.getStats(replica.uuid ?? "").catch(() => null) })),
        ),
        nexuses: await nexus.listNexus(),
        subsystems: await service.listSubsystems(),
        controllers: await service.listControllers(),
        csal: await csal.listCsalDevices(),
      }), async () => {
        // Listing pools crosses into every pool's reactor: a wedged reactor fails readiness.
        await service.listPools();
      });
    } catch (err) {
      log.error("cannot serve metrics", { flag: "--metrics-listen", reason: (err as Error).message });
      process.stderr.write(`strata-engine: --metrics-listen: ${(err as Error).message}\n`);
      await server.stop();
      await service.shutdown();
      return 1;
    }
  }
  log.info("engine ready", {
    grpc_listen: config.grpc_listen,
    port: server.port,
    metrics_port: metrics?.port ?? 0,
    cores: config.cores,
    pid: process.pid,
    nvmf_port: nvmfPorts.listen_port,
    nvmf_discovery_port: nvmfPorts.discovery_port,
  });

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info("shutting down", { signal });
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  await metrics?.stop();
  await server.stop();
  await service.shutdown();
  log.info("engine stopped");
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level: "error", msg: "engine failed", reason: String((err as Error)?.stack ?? err) }) + "\n");
      process.exit(1);
    },
  );
}
