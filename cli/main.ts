// `strata`: the operator's tool. `cluster up|status|down` manages a local cluster;
// `up|preview|refresh|destroy` run the root project's program against it with the real
// Pulumi CLI and a local file backend.
import { clusterDown, clusterStatus, clusterUp, DEFAULT_BASE_PORT, DEFAULT_DISK_MIB, formatBytes, formatTable } from "./cluster";
import { strataHome } from "./paths";
import { openStack } from "./pulumi";

const USAGE = `usage: strata <command>

  cluster up [--nodes N] [--base-port P] [--disk-mib M] [--dir DIR]
                          start N local engines (default 3) and write the stack config
  cluster status [--dir DIR]
                          one line per node: endpoint, state, pools, capacity, replicas
  cluster down [--purge] [--dir DIR]
                          stop the engines (--purge also deletes their data and the local state)
  up | preview | refresh | destroy
                          run the root project (Pulumi.yaml) on the local cluster
  output NAME             print one stack output, secrets included (like
                          \`pulumi stack output NAME --show-secrets\`)`;

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith("--")) throw new UsageError(`${name} needs a value`);
  return value;
}

function intFlag(args: string[], name: string, fallback: number): number {
  const text = flag(args, name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new UsageError(`${name} must be a positive whole number, got "${text}"`);
  return value;
}

class UsageError extends Error {}

const print = (line: string) => process.stdout.write(line + "\n");

async function stackCommand(command: "up" | "preview" | "refresh" | "destroy"): Promise<number> {
  // The project directory program (Pulumi.yaml's main), run by the language host like `pulumi up`.
  const stack = await openStack();
  const onOutput = (text: string) => process.stdout.write(text);
  switch (command) {
    case "preview": {
      const result = await stack.preview({ onOutput, diff: true });
      const changed = Object.entries(result.changeSummary).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
      print(changed.length === 0 ? "No changes: the cluster already matches the program." : "");
      return 0;
    }
    case "up": {
      const result = await stack.up({ onOutput });
      const changes = Object.entries(result.summary.resourceChanges ?? {}).filter(([op, n]) => op !== "same" && n > 0);
      print("");
      if (changes.length === 0) print("No changes: the cluster already matches the program.");
      // Secret outputs stay hidden, as pulumi prints them; `strata output NAME` shows one.
      for (const [key, out] of Object.entries(result.outputs)) print(`${key}: ${out.secret ? "[secret]" : JSON.stringify(out.value)}`);
      return 0;
    }
    case "refresh":
      await stack.refresh({ onOutput });
      return 0;
    case "destroy":
      await stack.destroy({ onOutput });
      return 0;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  try {
    if (command === "cluster") {
      const home = flag(rest, "--dir") ?? strataHome();
      switch (sub) {
        case "up":
          await clusterUp({
            nodes: intFlag(rest, "--nodes", 3),
            basePort: intFlag(rest, "--base-port", DEFAULT_BASE_PORT),
            diskMib: intFlag(rest, "--disk-mib", DEFAULT_DISK_MIB),
            home,
            stack: rest.includes("--no-config") ? null : { home },
            log: print,
          });
          return 0;
        case "status": {
          const rows = await clusterStatus(home);
          if (rows.length === 0) {
            print("no local cluster: start one with `npx strata cluster up`");
            return 1;
          }
          print(
            formatTable([
              ["NODE", "ENDPOINT", "NVMF", "STATE", "POOLS", "USED/CAPACITY", "REPLICAS"],
              ...rows.map((r) => [
                r.node,
                r.endpoint,
                r.nvmf_endpoint || "-",
                r.state,
                String(r.pools),
                `${formatBytes(r.used_bytes)}/${formatBytes(r.capacity_bytes)}`,
                String(r.replicas),
              ]),
            ]),
          );
          return rows.every((r) => r.state === "running") ? 0 : 1;
        }
        case "down":
          await clusterDown({ home, purge: rest.includes("--purge"), log: print });
          return 0;
        default:
          throw new UsageError(`unknown cluster command "${sub ?? ""}"`);
      }
    }
    if (command === "up" || command === "preview" || command === "refresh" || command === "destroy") return await stackCommand(command);
    if (command === "output") {
      if (sub === undefined) throw new UsageError("output needs the name of a stack output");
      const outputs = await (await openStack()).outputs();
      if (!(sub in outputs)) throw new Error(`the stack has no output "${sub}" (it has: ${Object.keys(outputs).sort().join(", ")})`);
      const value = outputs[sub].value;
      print(typeof value === "string" ? value : JSON.stringify(value));
      return 0;
    }
    if (command === undefined || command === "help" || command === "--help") {
      print(USAGE);
      return command === undefined ? 2 : 0;
    }
    throw new UsageError(`unknown command "${command}"`);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`strata: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`strata: ${(err as Error).message}\n`);
    return 1;
  }
}
