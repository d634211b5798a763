// `strata`: the operator's tool. `cluster up|status|down` manages a local cluster;
// `up|preview|refresh|destroy` run the root project's program against it with the real
// Pulumi CLI and a local file backend; `top` and `volume connect` are the operator's view of
// what runs on it.
import { clusterDown, clusterStatus, clusterUp, DEFAULT_BASE_PORT, DEFAULT_DISK_MIB, formatBytes, formatTable, NodeStatus, otherLabels } from "./cluster";
import { resolve } from "node:path";
import { strataHome } from "./paths";
import { placementDiff, renderJson, renderMarkdown, renderTable, stepsFromEvents } from "./placement-diff";
import { rebuildProgressLine } from "./progress";
import { recoverInterruptedUpdate, DEFAULT_STACK, openStack } from "./pulumi";
import { DEFAULT_INTERVAL_MS, runTop } from "./top";
import { DeploymentResource, localHostNqn, planVolumeConnect, runNvme } from "./volume";

const USAGE = `usage: strata <command>

  cluster up [--nodes N] [--base-port P] [--disk-mib M] [--dir DIR] [--rdma-interface IFACE]
                          start N local engines (default 3) and write the stack config;
                          with --rdma-interface they also serve NVMe over RDMA on that
                          interface's address (\`strata cluster status\` says whether they do)
  cluster status [--dir DIR]
                          one line per node: endpoint, zone, labels, state, pools, capacity,
                          replicas; then every nexus (health, children online/total) with a
                          progress bar and ETA for each child being rebuilt
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
                          \`pulumi stack output NAME --show-secrets\`)
  top [--interval-ms N] [--iterations N] [--dir DIR]
                          live I/O of every nexus and shared replica of the running nodes:
                          read/write IOPS and MiB/s, average and p99 latency over each interval
                          (default ${DEFAULT_INTERVAL_MS} ms); redraws in a terminal, appends otherwise;
                          --iterations stops after N refreshes
  volume connect NAME [--run] [--show-secrets]
                          print the \`nvme connect\` command of the stack's Volume NAME (its
                          DH-HMAC-CHAP secret as \`strata output ...\` unless --show-secrets);
                          --run runs it and exits with nvme's status`;

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

/** What `strata cluster status` prints: the node table, then CSAL devices and nexuses when there are any. */
export function renderClusterStatus(rows: readonly NodeStatus[], now_ms: number): string {
  const sections = [
    formatTable([
      ["NODE", "ENDPOINT", "NVMF", "RDMA", "ZONE", "LABELS", "STATE", "POOLS", "USED/CAPACITY", "REPLICAS"],
      ...rows.map((r) => [
        r.node,
        r.endpoint,
        r.nvmf_endpoint || "-",
        r.rdma || "-",
        r.zone,
        otherLabels(r.labels),
        r.state,
        String(r.pools),
        `${formatBytes(r.used_bytes)}/${formatBytes(r.capacity_bytes)}`,
        String(r.replicas),
      ]),
    ]),
  ];
  const csal = rows.flatMap((r) => r.csal);
  if (csal.length > 0) {
    sections.push(
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
  const nexuses = rows.flatMap((r) => r.nexuses);
  if (nexuses.length > 0) {
    const table = formatTable([
      ["NEXUS", "NODE", "SIZE", "HEALTH", "CHILDREN", "PUBLISHED AT"],
      ...nexuses.map((n) => [
        n.uuid,
        n.node,
        formatBytes(n.size_bytes),
        // A nexus that is shutting down or shut down serves nothing, whatever its children say.
        n.state === "open" ? n.health : `${n.health} (${n.state})`,
        `${n.children_online}/${n.children_total}`,
        n.address || "-",
      ]),
    ]).split("\n");
    // Each nexus's row, then one indented line per child being rebuilt into it.
    const lines = [table[0]];
    nexuses.forEach((n, i) => {
      lines.push(table[i + 1]);
      for (const c of n.rebuilding) {
        const kind = c.partial ? "partial rebuild" : "rebuild";
        lines.push(`  ${c.uri}  ${kind} ${c.state}  ${rebuildProgressLine(c, now_ms)}`);
      }
    });
    sections.push(lines.join("\n"));
  }
  return sections.join("\n\n");
}

/** `strata top`'s flags. */
export function topOptions(args: readonly string[]): { interval_ms: number; iterations: number; home: string } {
  let interval_ms = DEFAULT_INTERVAL_MS;
  let iterations = Infinity;
  let home = strataHome();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    const positive = (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${arg} must be a positive whole number, got "${v}"`);
      return n;
    };
    if (arg === "--interval-ms") interval_ms = positive(value());
    else if (arg === "--iterations") iterations = positive(value());
    else if (arg === "--dir") home = value();
    else throw new UsageError(`unknown argument "${arg}" for top`);
  }
  // Below this, counters move by a handful of commands per refresh and the rates are noise.
  if (interval_ms < 100) throw new UsageError(`--interval-ms must be at least 100, got ${interval_ms}`);
  return { interval_ms, iterations, home };
}

async function topCommand(args: string[]): Promise<number> {
  const opts = topOptions(args);
  await runTop({ ...opts, write: (text) => process.stdout.write(text), redraw: process.stdout.isTTY === true });
  return 0;
}

/** `strata volume connect NAME [--run] [--show-secrets]`'s arguments. */
export function volumeConnectOptions(args: readonly string[]): { name: string; run: boolean; showSecrets: boolean } {
  const [sub, ...rest] = args;
  if (sub !== "connect") throw new UsageError(sub === undefined ? "volume needs a command: connect" : `unknown volume command "${sub}"`);
  let name: string | undefined;
  let run = false;
  let showSecrets = false;
  for (const arg of rest) {
    if (arg === "--run") run = true;
    else if (arg === "--show-secrets") showSecrets = true;
    else if (arg.startsWith("--")) throw new UsageError(`unknown flag "${arg}" for volume connect`);
    else if (name === undefined) name = arg;
    else throw new UsageError(`volume connect takes one volume name, got "${name}" and "${arg}"`);
  }
  if (name === undefined) throw new UsageError("volume connect needs the name of a Volume of the stack");
  return { name, run, showSecrets };
}

async function volumeCommand(args: string[]): Promise<number> {
  const opts = volumeConnectOptions(args);
  const stack = await openStack();
  const deployment = (await stack.exportStack()).deployment as { resources?: DeploymentResource[] } | undefined;
  const plan = planVolumeConnect(deployment?.resources ?? [], opts.name, { localHostNqn: localHostNqn(), showSecrets: opts.showSecrets });
  for (const note of plan.notes) process.stderr.write(`strata: ${note}\n`);
  if (!opts.run) {
    print(plan.command);
    return 0;
  }
  if (plan.secretMissing) throw new Error(`the stack state holds volume "${opts.name}"'s DH-HMAC-CHAP secret encrypted only: cannot run the command without it`);
  // The secret goes to nvme only; what is printed is the command as shown above.
  process.stderr.write(`strata: running ${plan.command}\n`);
  return runNvme(plan.nvmeArgs);
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
          print(renderClusterStatus(rows, Date.now()));
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
    if (command === "top") return await topCommand(argv.slice(1));
    if (command === "volume") return await volumeCommand(argv.slice(1));
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
