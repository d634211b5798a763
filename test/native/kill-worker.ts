// Child process for the SIGKILL test: imports the pool, then writes blocks one after another,
// printing each block number once its write is acknowledged, until the parent kills it.
// Run: node kill-worker.js <device-uri> <replica-uuid>
import { loadNative } from "../../native";
import { pattern } from "./helpers";

const [uri, replica] = process.argv.slice(2);

async function main(): Promise<void> {
  const n = loadNative();
  n.start({ cores: 1 });
  await n.importPool({ device_uri: uri });
  process.stdout.write("ready\n");
  for (let block = 0; ; block = (block + 1) % 2048) {
    await n.replicaWrite({ uuid: replica, offset_bytes: block * 4096, data: pattern(4096, block) });
    process.stdout.write(`${block}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err));
  process.exit(1);
});
