// Child process for the conversion crash test: imports the pool, prints "ready", converts the
// replica to thick, prints "done", then idles until the parent kills it (mid-conversion or after).
// Run: node thin-kill-worker.js <device-uri> <replica-uuid>
import { loadNative } from "../../native";

const [uri, replica] = process.argv.slice(2);

async function main(): Promise<void> {
  const n = loadNative();
  n.start({ cores: 1 });
  await n.importPool({ device_uri: uri });
  process.stdout.write("ready\n");
  await n.setReplicaThin({ uuid: replica, thin: false });
  process.stdout.write("done\n");
  setInterval(() => undefined, 1000);
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err));
  process.exit(1);
});
