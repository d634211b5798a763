// `strata preview`'s placement diff, fed with the engine events of real previews.
//
// The fixtures were captured from real runs: a 3-node cluster (`startCluster({ nodes: 3,
// diskMib: 4096 })`), the root program (examples/quickstart), `stack.preview({ diff: true,
// onEvent })` exactly as cli/main.ts runs it, every event written out. preview-create: the
// fresh stack (everything created). preview-resize: after `up`, with config volumeSizeBytes
// set to 2 GiB (quickstart updated in place, the rest same). Kept: the resourcePreEvents only,
// with the dynamic provider's serialized code (`__provider`, ~0.5 MB per step) removed.
import test from "ava";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  humanBytes,
  markdownCell,
  placementDiff,
  PreviewStep,
  renderJson,
  renderMarkdown,
  renderTable,
  stepsFromEvents,
  stepsFromPreviewJson,
} from "../../cli/placement-diff";
import { REPO_ROOT } from "../helpers/engine";

const fixture = (name: string): unknown[] => JSON.parse(readFileSync(join(REPO_ROOT, "test", "cli", "fixtures", name), "utf8")) as unknown[];
const createSteps = () => stepsFromEvents(fixture("preview-create.events.json"));
const resizeSteps = () => stepsFromEvents(fixture("preview-resize.events.json"));
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

test("a fresh stack: every replica of every volume is new, with node, pool, reason and the volume's size to copy", (t) => {
  const diff = placementDiff(createSteps());
  t.deepEqual(
    diff.volumes.map((v) => [v.name, v.replicas.length]),
    [
      ["quickstart", 1],
      ["replicated", 3],
    ],
  );
  for (const v of diff.volumes) {
    t.regex(v.uuid, /^[0-9a-f-]{36}$/);
    for (const r of v.replicas) {
      t.is(r.change, "new");
      t.is(r.before, null);
      t.truthy(r.after?.node && r.after.pool, `${v.name} ${r.replicaUuid} names node and pool`);
      t.true(r.reason.length > 0);
      t.is(r.copyBytes, v.name === "quickstart" ? GiB : 256 * MiB);
    }
  }
  t.deepEqual(new Set(diff.volumes[1].replicas.map((r) => r.after!.node)).size, 3, "the replicated volume spans three nodes");
  t.deepEqual(diff.summary, { placed: 4, moving: 0, leaving: 0, unchanged: 0, copyBytes: GiB + 3 * 256 * MiB });
});

test("the table: aligned columns under the header, short uuids, and the summary line", (t) => {
  const text = renderTable(placementDiff(createSteps()));
  const lines = text.split("\n");
  t.regex(lines[0], /^VOLUME\s+REPLICA\s+BEFORE\s+AFTER\s+REASON\s+COPY$/);
  const rows = lines.slice(1, 5);
  for (const row of rows) t.regex(row, /^(quickstart|replicated)\s+[0-9a-f]{8}\s+-\s+node-[abc]\/pool-node-[abc]\s+\S.*\s(1 GiB|256 MiB)$/);
  for (const header of ["REPLICA", "BEFORE", "AFTER", "REASON", "COPY"]) {
    const col = lines[0].indexOf(header);
    t.true(rows.every((r) => r[col - 1] === " " && r[col] !== " "), `${header} column is aligned`);
  }
  t.is(lines[5], "");
  t.is(lines[6], "4 replicas placed, 0 moving, 0 leaving, 1.8 GiB to copy");
});

test("markdown: a heading, a table row per replica, pipes in cells escaped", (t) => {
  const md = renderMarkdown(placementDiff(createSteps()));
  const lines = md.split("\n");
  t.regex(lines[0], /^#{1,3} /);
  t.is(lines[2], "| VOLUME | REPLICA | BEFORE | AFTER | REASON | COPY |");
  t.is(lines[3], "| --- | --- | --- | --- | --- | --- |");
  t.is(lines.filter((l) => /^\| (quickstart|replicated) \|/.test(l)).length, 4);
  t.regex(md, /\*\*4 replicas placed, 0 moving, 0 leaving, 1\.8 GiB to copy\*\*/);
  t.is(markdownCell("a|b\nc"), "a\\|b c");

  // A reason with a pipe (the provider's reasons could carry one) stays in its cell.
  const steps = createSteps().map((s) => withPlacement(s, (p) => ({ ...p, reason: "x | y" })));
  const row = renderMarkdown(placementDiff(steps)).split("\n").find((l) => l.startsWith("| quickstart"))!;
  t.is(row.split(/(?<!\\)\|/).length, 8, "six cells: the pipe in the reason is escaped");
  t.true(row.includes("x \\| y"));
});

test("json: the full structure, with full uuids and changes", (t) => {
  const parsed = JSON.parse(renderJson(placementDiff(createSteps()))) as {
    volumes: { name: string; uuid: string; replicas: { replicaUuid: string; before: unknown; after: { node: string; pool: string }; change: string; copyBytes: number }[] }[];
    summary: { placed: number; copyBytes: number };
  };
  t.deepEqual(parsed.volumes.map((v) => v.name), ["quickstart", "replicated"]);
  t.regex(parsed.volumes[0].replicas[0].replicaUuid, /^[0-9a-f-]{36}$/);
  t.is(parsed.volumes[0].replicas[0].change, "new");
  t.is(parsed.summary.placed, 4);
});

test("an in-place update that keeps placement: nothing to show but the summary, everything with --all", (t) => {
  const diff = placementDiff(resizeSteps());
  t.deepEqual(diff.summary, { placed: 0, moving: 0, leaving: 0, unchanged: 4, copyBytes: 0 });
  t.is(renderTable(diff).split("\n")[0], "No replica changes.");
  const all = renderTable(diff, true).split("\n");
  t.is(all.length, 1 + 4 + 2);
  for (const row of all.slice(1, 5)) {
    const [, , before, after, , copy] = row.split(/\s{2,}/);
    t.is(before, after, "an unchanged replica is where it was");
    t.is(row.trimEnd().endsWith(" -"), true, `no bytes to copy: ${copy}`);
  }
});

// A move, a scale-down and a deletion, derived from the captured resize preview by editing the
// quickstart volume's new state the way the provider's `check` writes a move (a new replica in
// placement, the old one in leaving): no local cluster can be made to move in a unit test.
test("a move pairs the new replica with the leaving one; a surplus replica is leaving; a deleted volume's replicas all leave", (t) => {
  const steps = resizeSteps();
  const quick = steps.find((s) => s.urn.endsWith("::quickstart"))!;
  const old = (quick.old!.outputs!.placement as Record<string, string>[])[0];
  const moved: PreviewStep = {
    ...quick,
    new: {
      ...quick.new,
      inputs: {
        ...quick.new!.inputs,
        placement: [{ replicaUuid: "11111111-0000-5000-8000-000000000000", node: "node-b", pool: "pool-node-b", poolUuid: "", reason: "pool-node-b has room" }],
        leaving: [{ ...old, reason: "pool is draining" }],
      },
    },
  };
  const replicated = steps.find((s) => s.urn.endsWith("::replicated"))!;
  const deleted: PreviewStep = { ...replicated, op: "delete", new: null };
  const diff = placementDiff([moved, deleted]);
  const q = diff.volumes[0].replicas;
  t.is(q.length, 1);
  t.like(q[0], { change: "moved", before: { node: old.node, pool: old.pool }, after: { node: "node-b", pool: "pool-node-b" }, copyBytes: 2 * GiB });
  t.is(q[0].previousReplicaUuid, old.replicaUuid);
  t.regex(q[0].reason, /pool is draining/);
  t.true(diff.volumes[1].replicas.every((r) => r.change === "leaving" && r.after === null && r.copyBytes === 0 && r.reason === "volume deleted"));
  t.deepEqual(diff.summary, { placed: 0, moving: 1, leaving: 3, unchanged: 0, copyBytes: 2 * GiB });
  t.regex(renderTable(diff), /quickstart\s+11111111\s+node-a\/pool-node-a\s+node-b\/pool-node-b\s+pool is draining.*\s2 GiB\n/);
  t.true(renderTable(diff).endsWith("\n0 replicas placed, 1 moving, 3 leaving, 2 GiB to copy"));
});

test("`pulumi preview --json` steps read the same as engine events", (t) => {
  const json = {
    steps: createSteps().map((s) => ({ op: s.op, urn: s.urn, oldState: s.old ?? undefined, newState: s.new ? { type: s.type, ...s.new } : undefined })),
  };
  t.deepEqual(placementDiff(stepsFromPreviewJson(json)), placementDiff(createSteps()));
});

test("bytes for people", (t) => {
  t.is(humanBytes(64 * MiB), "64 MiB");
  t.is(humanBytes(1.5 * GiB), "1.5 GiB");
  t.is(humanBytes(512), "512 B");
  t.is(humanBytes(0), "0 B");
});

function withPlacement(step: PreviewStep, edit: (p: Record<string, unknown>) => Record<string, unknown>): PreviewStep {
  if (!step.new?.inputs || !Array.isArray(step.new.inputs.placement)) return step;
  return { ...step, new: { ...step.new, inputs: { ...step.new.inputs, placement: (step.new.inputs.placement as Record<string, unknown>[]).map(edit) } } };
}
