// strata-engine: one per storage node. Parses flags, starts the native reactors, re-imports
// the node's pools, serves the engine API, and shuts down cleanly on SIGTERM/SIGINT.
import { loadNative } from "../native";
import { ConfigError, parseFlags, USAGE } from "./config";
import { createLogger } from "./log";
import { startServer } from "./server";
import { EngineService } from "./service";
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
  native.start({ cores: config.cores });
  const service = new EngineService(
    native,
    new StateStore(config.data_dir),
    config.node,
    config.labels,
    config.cores,
    config.grpc_listen,
    log,
  );
  await service.importKnownPools();
  let server;
  try {
    server = await startServer(service, config.grpc_listen, config.token, log);
  } catch (err) {
    log.error("cannot listen", { grpc_listen: config.grpc_listen, reason: (err as Error).message });
    await service.shutdown();
    return 1;
  }
  log.info("engine ready", { grpc_listen: config.grpc_listen, port: server.port, cores: config.cores, pid: process.pid });

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info("shutting down", { signal });
      resolve();
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
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
