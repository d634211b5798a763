// `strata`: the operator's tool. `cluster up|status|down` manages a local cluster;
// `up|preview|refresh|destroy` run the root project's program against it with the real
// Pulumi CLI and a local file backend.
import { clusterDown, clusterStatus, clusterUp, DEFAULT_BASE_PORT, DEFAULT_DISK_MIB, formatBytes, formatTable } from "./cluster";
import { resolve } from "node:path";
import { strataHome } from "./paths";
import { placementDiff, renderJson, renderMarkdown, renderTable, stepsFromEvents } from "./placement-diff";
import { recoverInterruptedUpdate, DEFAULT_STACK, openStack } from "./pulumi";

const USAGE = `usage: strata <command>

  cluster up [--nodes N] [--base-port P] [--disk-mib M] [--dir DIR] [--rdma-interface IFACE]
                          start N local engines (default 3) and write the stack config;
                          with --rdma-interface they also serve NVMe over RDMA on that
                          interface's address (\`strata cluster status\` says whether they do)
  cluster status [--dir DIR]
                          one line per node: endpoint, state, pools, capacity, replicas
  cluster down [--purge] [--dir DIR]
                          stop the engines (--purge also deletes their data and the local state)
  up | preview | refresh | destroy
                          run the root project (Pulumi.yaml) on the local cluster
  preview [--format table|markdown] [--json] [--all] [--save-plan FILE]
                          after Pulumi's preview, one row per replica that is placed, moves or
                          leaves (--all: unchanged ones too); markdown is a pull-request comment,
                          --json one object (with markdown or --json, Pulumi's output goes to stderr);
                          --save-plan writes the reviewed plan (Pulumi's update plan) to FILE
  up [--plan FILE]        with a saved plan: carry out exactly that plan, or fail naming each
                          resource and property that differs (say a pool filled up since the review)
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

type PreviewFormat = "table" | "markdown" | "json";

interface PreviewOptions {
  readonly format: PreviewFormat;
  readonly all: boolean;
  /** Where to save Pulumi's update plan of this preview (`up --plan` carries out exactly that). */
  readonly savePlan?: string;
}

/** `strata preview`'s flags; anything else is a usage error naming it. */
function previewOptions(args: string[]): PreviewOptions {
  let format: PreviewFormat = "table";
  let all = false;
  let savePlan: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--all") all = true;
    else if (arg === "--save-plan") {
      savePlan = args[++i];
      if (savePlan === undefined || savePlan.startsWith("--")) throw new UsageError("--save-plan needs a file to write the plan to");
    }
    else if (arg === "--json") format = "json";
    else if (arg === "--format" || arg.startsWith("--format=")) {
      const value = arg === "--format" ? args[++i] : arg.slice("--format=".length);
      if (value === undefined || value.startsWith("--")) throw new UsageError("--format needs a value: table or markdown");
      if (value !== "table" && value !== "markdown") throw new UsageError(`unknown format "${value}" for preview (use table or markdown, or --json)`);
      if (format !== "json") format = value;
    } else throw new UsageError(`unknown flag "${arg}" for preview`);
  }
  return { format, all, savePlan };
}

/** `strata up`'s flags: `--plan FILE` (a plan saved by `strata preview --save-plan`). */
function upPlan(args: string[]): string | undefined {
  if (args.length === 0) return undefined;
  if (args[0] !== "--plan") throw new UsageError(`unknown argument "${args[0]}" for up`);
  if (args[1] === undefined || args[1].startsWith("--")) throw new UsageError("--plan needs the file `strata preview --save-plan` wrote");
  if (args.length > 2) throw new UsageError(`unknown argument "${args[2]}" for up`);
  return resolve(args[1]);
}

async function stackCommand(command: "up" | "preview" | "refresh" | "destroy", args: string[] = []): Promise<number> {
  if (command !== "preview" && command !== "up" && args.length > 0) throw new UsageError(`unknown argument "${args[0]}" for ${command}`);
  const options: PreviewOptions = command === "preview" ? previewOptions(args) : { format: "table", all: false };
  const plan = command === "up" ? upPlan(args) : undefined;
  // The project directory program (Pulumi.yaml's main), run by the language host like `pulumi up`.
  const stack = await openStack();
  // An update killed before (SIGKILL, OOM, a crash) left its lock, maybe a broken checkpoint sidecar: repair both.
  const project = (await stack.workspace.projectSettings()).name;
  for (const line of recoverInterruptedUpdate(strataHome(), project, DEFAULT_STACK)) process.stderr.write(`strata: ${line}\n`);
  // Markdown and JSON are documents on stdout (a PR comment, a pipe): Pulumi's own output goes to stderr then.
  const out = options.format === "table" ? process.stdout : process.stderr;
  const onOutput = (text: string) => out.write(text);
  switch (command) {
    case "preview": {
      // The engine events of the same run carry each step's old and new state (placement, leaving).
      const events: unknown[] = [];
      const result = await stack.preview({ onOutput, diff: true, onEvent: (e) => events.push(e), plan: options.savePlan && resolve(options.savePlan) });
      const changed = Object.entries(result.changeSummary).filter(([op, n]) => op !== "same" && (n ?? 0) > 0);
      const diff = placementDiff(stepsFromEvents(events));
      if (options.format === "json") {
        print(renderJson(diff, options.all));
        return 0;
      }
      out.write((changed.length === 0 ? "No changes: the cluster already matches the program." : "") + "\n");
      print(options.format === "markdown" ? renderMarkdown(diff, options.all) : "Replica placement:\n\n" + renderTable(diff, options.all));
      return 0;
    }
    case "up": {
      const result = await stack.up({ onOutput, plan });
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
            rdmaInterface: flag(rest, "--rdma-interface") ?? "",
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
              ["NODE", "ENDPOINT", "NVMF", "RDMA", "STATE", "POOLS", "USED/CAPACITY", "REPLICAS"],
              ...rows.map((r) => [
                r.node,
                r.endpoint,
                r.nvmf_endpoint || "-",
                r.rdma || "-",
                r.state,
                String(r.pools),
                `${formatBytes(r.used_bytes)}/${formatBytes(r.capacity_bytes)}`,
                String(r.replicas),
              ]),
            ]),
          );
          const csal = rows.flatMap((r) => r.csal);
          if (csal.length > 0) {
            print("");
            print(
              formatTable([
                ["CSAL DEVICE", "NODE", "SIZE", "POOL", "HOST WRITTEN", "WAF", "CACHE FILL", "FREE BANDS", "GC MOVED", "THROTTLED", "MAP RESIDENT"],
                ...csal.map((c) => [
                  c.name,
                  c.node,
                  formatBytes(c.size_bytes),
                  c.pool || "-",
                  formatBytes(c.host_write_bytes),
                  c.host_write_bytes > 0 ? c.write_amplification.toFixed(2) : "-",
                  `${Math.round(c.cache_fill * 100)}%`,
                  `${c.free_bands}/${c.band_count}`,
                  formatBytes(c.gc_relocated_blocks * 4096),
                  String(c.throttle_events),
                  // e.g. "1.0 MiB/1.4 MiB (limit 1.0 MiB)": how much of the map is in memory.
                  c.map_bytes > 0 ? `${formatBytes(c.map_resident_bytes)}/${formatBytes(c.map_bytes)}${c.map_limit_bytes > 0 ? ` (limit ${formatBytes(c.map_limit_bytes)})` : ""}` : "-",
                ]),
              ]),
            );
          }
          return rows.every((r) => r.state === "running") ? 0 : 1;
        }
        case "down":
          await clusterDown({ home, purge: rest.includes("--purge"), log: print });
          return 0;
        default:
          throw new UsageError(`unknown cluster command "${sub ?? ""}"`);
      }
    }
    if (command === "up" || command === "preview" || command === "refresh" || command === "destroy")
      return await stackCommand(command, argv.slice(1));
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
