// `strata preview`'s placement diff: from the steps of one real preview to the rows a reviewer
// reads (where each replica of each volume is before and after, why, and what must be copied).
// Pure: no Pulumi, no I/O. The steps come either from the Automation API's engine events
// (`stepsFromEvents`, what `strata preview` uses, so the diff and Pulumi's own output are the
// same run) or from `pulumi preview --json` (`stepsFromPreviewJson`).
import { placedFromState } from "../provider/volume-spec";
import type { PlacedReplica } from "../provider/placement";

export const VOLUME_TYPE = "pulumi-nodejs:dynamic/strata:Volume";

/** One resource step of a preview, in the shape both sources share. */
export interface PreviewStep {
  readonly op: string;
  readonly urn: string;
  readonly type: string;
  readonly old?: { readonly inputs?: Record<string, unknown>; readonly outputs?: Record<string, unknown> } | null;
  readonly new?: { readonly inputs?: Record<string, unknown>; readonly outputs?: Record<string, unknown> } | null;
}

export type ReplicaChange = "new" | "leaving" | "moved" | "same";

export interface Location {
  readonly node: string;
  readonly pool: string;
}

export interface ReplicaRow {
  readonly replicaUuid: string;
  /** For a move: the replica that leaves (a move places a new replica, then retires the old one). */
  readonly previousReplicaUuid?: string;
  readonly before: Location | null;
  readonly after: Location | null;
  readonly reason: string;
  /** Bytes the replica must receive from the others: the volume's size for a new or moved one, else 0. */
  readonly copyBytes: number;
  readonly change: ReplicaChange;
}

export interface VolumeDiff {
  readonly name: string;
  readonly uuid: string;
  readonly replicas: ReplicaRow[];
}

export interface DiffSummary {
  readonly placed: number;
  readonly moving: number;
  readonly leaving: number;
  readonly unchanged: number;
  readonly copyBytes: number;
}

export interface PlacementDiff {
  readonly volumes: VolumeDiff[];
  readonly summary: DiffSummary;
}

type Loose = Record<string, unknown>;

/** Steps from the Automation API's engine events (`resourcePreEvent.metadata`), one per URN. */
export function stepsFromEvents(events: readonly unknown[]): PreviewStep[] {
  const steps: PreviewStep[] = [];
  for (const e of events) {
    const m = ((e as Loose)?.resourcePreEvent as Loose | undefined)?.metadata as Loose | undefined;
    if (!m || typeof m.urn !== "string") continue;
    steps.push({ op: String(m.op ?? ""), urn: m.urn, type: String(m.type ?? ""), old: (m.old as PreviewStep["old"]) ?? null, new: (m.new as PreviewStep["new"]) ?? null });
  }
  return steps;
}

/** Steps from `pulumi preview --json` (`steps[]` with `oldState` / `newState`). */
export function stepsFromPreviewJson(json: unknown): PreviewStep[] {
  const raw = ((json as Loose)?.steps ?? []) as Loose[];
  return raw.map((s) => {
    const oldState = s.oldState as Loose | undefined;
    const newState = s.newState as Loose | undefined;
    return {
      op: String(s.op ?? ""),
      urn: String(s.urn ?? ""),
      type: String(newState?.type ?? oldState?.type ?? ""),
      old: (oldState as PreviewStep["old"]) ?? null,
      new: (newState as PreviewStep["new"]) ?? null,
    };
  });
}

const placedList = (raw: unknown): PlacedReplica[] => (Array.isArray(raw) ? raw.map(placedFromState) : []);
const at = (r: PlacedReplica): Location => ({ node: r.node, pool: r.pool });

/** One volume's rows. A replacement (a replace is several steps) is merged: old state from the first step that has one, new from the last. */
function volumeDiff(name: string, steps: PreviewStep[]): VolumeDiff {
  const old = steps.find((s) => s.old)?.old ?? null;
  const next = [...steps].reverse().find((s) => s.new && s.op !== "delete" && s.op !== "delete-replaced")?.new ?? null;
  const deleted = next === null;
  const before = placedList(old?.outputs?.placement ?? old?.inputs?.placement);
  const after = deleted ? [] : placedList(next.inputs?.placement);
  const declaredLeaving = deleted ? [] : placedList(next.inputs?.leaving);
  const sizeBytes = Number(next?.inputs?.sizeBytes ?? old?.outputs?.sizeBytes ?? 0);
  const uuid = String(next?.inputs?.uuid ?? old?.outputs?.uuid ?? "");

  const beforeById = new Map(before.map((r) => [r.replicaUuid, r]));
  const afterIds = new Set(after.map((r) => r.replicaUuid));
  // Everything that was there and is not in the new placement goes: the provider lists moves and
  // surplus in `leaving`; a deleted or replaced volume's replicas all go.
  const leaving = [...declaredLeaving];
  const leavingIds = new Set(leaving.map((r) => r.replicaUuid));
  for (const r of before) if (!afterIds.has(r.replicaUuid) && !leavingIds.has(r.replicaUuid)) leaving.push({ ...r, reason: deleted ? "volume deleted" : "volume replaced" });

  const rows: ReplicaRow[] = [];
  const fresh: PlacedReplica[] = [];
  for (const r of after) {
    const was = beforeById.get(r.replicaUuid);
    if (!was) fresh.push(r);
    else if (was.node === r.node && was.pool === r.pool) rows.push({ replicaUuid: r.replicaUuid, before: at(was), after: at(r), reason: r.reason, copyBytes: 0, change: "same" });
    else rows.push({ replicaUuid: r.replicaUuid, before: at(was), after: at(r), reason: r.reason, copyBytes: sizeBytes, change: "moved" });
  }
  // A move places a new replica and retires the old one: pair them, in order, into one "moved" row.
  const pairs = Math.min(fresh.length, leaving.length);
  for (let i = 0; i < fresh.length; i++) {
    const r = fresh[i];
    if (i < pairs) {
      const gone = leaving[i];
      rows.push({
        replicaUuid: r.replicaUuid,
        previousReplicaUuid: gone.replicaUuid,
        before: at(gone),
        after: at(r),
        reason: gone.reason && r.reason ? `${gone.reason}; now ${r.reason}` : gone.reason || r.reason,
        copyBytes: sizeBytes,
        change: "moved",
      });
    } else rows.push({ replicaUuid: r.replicaUuid, before: null, after: at(r), reason: r.reason, copyBytes: sizeBytes, change: "new" });
  }
  for (const gone of leaving.slice(pairs)) rows.push({ replicaUuid: gone.replicaUuid, before: at(gone), after: null, reason: gone.reason, copyBytes: 0, change: "leaving" });
  return { name, uuid, replicas: rows };
}

/** The placement diff of every Volume step, volumes in the order the preview reached them. */
export function placementDiff(steps: readonly PreviewStep[]): PlacementDiff {
  const byUrn = new Map<string, PreviewStep[]>();
  for (const s of steps) {
    if (s.type !== VOLUME_TYPE) continue;
    byUrn.set(s.urn, [...(byUrn.get(s.urn) ?? []), s]);
  }
  const volumes = [...byUrn].map(([urn, group]) => volumeDiff(urn.split("::").pop() ?? urn, group));
  const all = volumes.flatMap((v) => v.replicas);
  const count = (c: ReplicaChange) => all.filter((r) => r.change === c).length;
  return {
    volumes,
    summary: {
      placed: count("new"),
      moving: count("moved"),
      leaving: count("leaving"),
      unchanged: count("same"),
      copyBytes: all.reduce((sum, r) => sum + r.copyBytes, 0),
    },
  };
}

/** Only the rows that change, unless `all`; volumes left without rows are dropped. */
export function visible(diff: PlacementDiff, all: boolean): PlacementDiff {
  if (all) return diff;
  const volumes = diff.volumes.map((v) => ({ ...v, replicas: v.replicas.filter((r) => r.change !== "same") })).filter((v) => v.replicas.length > 0);
  return { volumes, summary: diff.summary };
}

/** Bytes for people: "64 MiB", "1.5 GiB", "512 B". */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

export const HEADER = ["VOLUME", "REPLICA", "BEFORE", "AFTER", "REASON", "COPY"] as const;

const where = (l: Location | null) => (l ? `${l.node}/${l.pool}` : "-");
const shortUuid = (uuid: string) => uuid.slice(0, 8);

/** The cells of each row, in HEADER's order. */
export function rowCells(diff: PlacementDiff): string[][] {
  return diff.volumes.flatMap((v) =>
    v.replicas.map((r) => [v.name, shortUuid(r.replicaUuid), where(r.before), where(r.after), r.reason || "-", r.copyBytes > 0 ? humanBytes(r.copyBytes) : "-"]),
  );
}

export function summaryLine(s: DiffSummary): string {
  const n = (count: number, one: string, many = one + "s") => `${count} ${count === 1 ? one : many}`;
  return `${n(s.placed, "replica")} placed, ${s.moving} moving, ${s.leaving} leaving, ${humanBytes(s.copyBytes)} to copy`;
}

/** Aligned columns, like `strata cluster status`. */
export function renderTable(diff: PlacementDiff, all = false): string {
  const shown = visible(diff, all);
  const rows = [[...HEADER], ...rowCells(shown)];
  const widths = rows[0].map((_, col) => Math.max(...rows.map((r) => r[col].length)));
  const table = shown.volumes.length === 0 ? "No replica changes." : rows.map((r) => r.map((c, col) => c.padEnd(widths[col])).join("  ").trimEnd()).join("\n");
  return `${table}\n\n${summaryLine(diff.summary)}`;
}

/** A cell of a GitHub markdown table: pipes escaped, no line breaks. */
export function markdownCell(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

/** A pull-request comment: a heading, the table, the summary. */
export function renderMarkdown(diff: PlacementDiff, all = false): string {
  const shown = visible(diff, all);
  const lines = ["### Strata placement plan", ""];
  if (shown.volumes.length === 0) lines.push("No replica changes.");
  else {
    lines.push(`| ${HEADER.join(" | ")} |`, `|${HEADER.map(() => " --- ").join("|")}|`);
    for (const cells of rowCells(shown)) lines.push(`| ${cells.map((c, i) => (i === 1 ? `\`${markdownCell(c)}\`` : markdownCell(c))).join(" | ")} |`);
  }
  lines.push("", `**${summaryLine(diff.summary)}**`);
  return lines.join("\n");
}

/** The machine-readable form (`strata preview --json`): every replica with full uuids. */
export function renderJson(diff: PlacementDiff, all = false): string {
  return JSON.stringify(visible(diff, all), null, 2);
}
