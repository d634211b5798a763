// The nexus under faults, with three real engines on loopback: node-a holds the nexus and a
// local replica, node-b and node-c serve replicas over NVMe/TCP. Every test runs a verifying
// load through the published nexus (a frontend over NVMe/TCP): each block read back must be the
// last acknowledged write of that block, and at the end all children hold the same bytes.
import test from "ava";
import { expectClean } from "../../helpers/load";
import { MiB, NexusCluster } from "../../helpers/nexus";

async function lastPartial(c: NexusCluster, child: number): Promise<boolean | undefined> {
  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  return records.filter((r) => r.child_uri === c.children[child] && !r.resync).pop()?.partial;
}


test.serial("SIGKILL of a replica's engine: writes go on, the child faults, the engine returns, a partial rebuild makes every child identical", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(50);

  await c.engines[1].kill();
  const degraded = await c.waitFor("node-b's child to fault", (n) => n.children[1].state === "faulted");
  t.true(["timed_out", "io_failure"].includes(degraded.children[1].reason), `reason ${degraded.children[1].reason}`);
  t.is(degraded.health, "degraded");
  await load.progress(100); // the other two children carry the volume

  await c.engines[1].restart();
  const away = await c.child(1);
  t.true(away.missed_bytes > 0, "writes made while it was away are recorded");
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[1] }, 30_000);
  await c.waitFor("every child online", (n) => n.children.every((ch) => ch.state === "online"));
  await load.progress(50);
  expectClean(t, await load.stop());

  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  const last = records[records.length - 1];
  t.is(last.state, "completed");
  t.true(last.partial, "only what it missed was copied");
  t.true(last.bytes_done < last.volume_bytes, `partial rebuild copied ${last.bytes_done} of ${last.volume_bytes} bytes`);
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []], "all children byte-identical");
});

test.serial("write errors injected into one child: it faults (io_failure), writes continue, and it comes back identical", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(30);

  await c.fault(2, { op: "write", error: "eio" });
  const n = await c.waitFor("node-c's child to fault", (x) => x.children[2].state === "faulted");
  t.is(n.children[2].reason, "io_failure");
  // A flush is write-class: under a whole-child write rule it may be the first command to fail.
  t.regex(n.children[2].last_error, /(write|flush) failed/);
  await load.progress(100);

  await c.clearFaults(2);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"));
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("read errors injected into one child: every read still returns the right data (retried on another child)", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start(6, 0.6);
  t.teardown(() => load.close());
  await load.progress(50);

  await c.fault(1, { op: "read", error: "eio" });
  const n = await c.waitFor("node-b's child to fault", (x) => x.children[1].state === "faulted");
  t.is(n.children[1].reason, "io_failure");
  t.regex(n.children[1].last_error, /read failed/);
  const readsBefore = load.counters.readsOk;
  await load.progress(100);
  t.true(load.counters.readsOk > readsBefore);

  await c.clearFaults(1);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[1] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"));
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("split I/O: a write across a segment boundary whose second part fails on one child succeeds from the others; failing on every child fails the whole write", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(30);

  // 128 KiB from 1 MiB - 64 KiB: two parts, one per segment. Only the second part fails, on node-c.
  const first = (MiB - 64 * 1024) / 4096;
  await c.fault(2, { op: "write", error: "eio", offset_bytes: MiB, length_bytes: 64 * 1024, count: 1 });
  t.is(await load.writeOnce(first, 32), 0, "the write succeeds: both parts are on the healthy children");
  const n = await c.waitFor("node-c's child to fault", (x) => x.children[2].state === "faulted");
  t.is(n.children[2].reason, "io_failure");
  t.true(n.children[2].missed_bytes >= 64 * 1024, "the failed part is recorded as missed");
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"));
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);

  // Now the second part fails on every child: the host must see an error, never a partial success.
  for (const i of [0, 1, 2]) await c.fault(i, { op: "write", error: "eio", offset_bytes: MiB, length_bytes: 64 * 1024, count: 1 });
  t.not(await load.writeOnce(first, 32), 0, "the split write fails as a whole");
  const dead = await c.info();
  t.is(dead.health, "faulted");
  const read = await load.readOnce(first, 32);
  t.not(read.status, 0, "with no healthy child a read fails instead of returning stale data");
});

test.serial("unclean shutdown of the nexus node while a child was stale: the restarted nexus uses only the in-sync children and rebuilds the stale one", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(30);

  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[2] });
  t.is((await c.child(2)).reason, "by_client");
  await load.progress(150); // node-c's replica misses these

  await c.engines[0].kill(); // no clean label, writes in flight
  await load.stop();
  load.close();
  await c.engines[0].restart();
  c.conns[0] = c.engines[0].connect();

  const n = await c.info();
  t.true(n.opened_after_unclean_shutdown);
  t.is(n.children[0].state, "online");
  t.is(n.children[1].state, "online");
  // At restore the stale child came back out of sync and went straight into a rebuild.
  const restored = c.engines[0].logs.split("\n").filter((l) => l.includes('"nexus restored"')).pop() ?? "";
  t.regex(restored, new RegExp(`${c.children[2].replace(/[.?*+^$[\]\\(){}|-]/g, "\\$&")} (rebuilding|faulted \\(out_of_sync\\))`), restored);

  const again = await c.load(load.model);
  t.teardown(() => again.close());
  t.deepEqual(await again.verifyAll(), [], "every acknowledged write survived, none read from the stale child");
  again.start();
  await c.waitFor("the stale child rebuilt and the in-sync ones resynchronised", (x) => x.children.every((ch) => ch.state === "online" && !ch.rebuild));
  await again.progress(30);
  expectClean(t, await again.stop());
  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  const stale = records.filter((r) => r.child_uri === c.children[2] && !r.resync);
  t.true(stale.length > 0 && stale.every((r) => !r.partial && r.state === "completed"), "what it missed before the crash is unknown: a full rebuild");
  // Writes cut short by the crash may have reached one in-sync child and not the other: the
  // in-sync node-b child was given the local child's copy, so every block reads the same everywhere.
  const resync = records.filter((r) => r.resync);
  t.true(resync.some((r) => r.child_uri === c.children[1] && r.state === "completed" && r.source_uri === c.children[0]), JSON.stringify(records));
  t.deepEqual(await again.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("a full rebuild concurrent with writes, paused and resumed, ends with identical children", async (t) => {
  const c = await NexusCluster.start(t, { sizeBytes: 64 * MiB });
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(100);

  await c.a.call("RemoveChild", { uuid: c.nexus, child_uri: c.children[2] });
  t.is((await c.info()).children.length, 2);
  await c.a.call("AddChild", { uuid: c.nexus, child_uri: c.children[2] });
  // Slow the new child's writes so the rebuild is long enough to pause.
  await c.fault(2, { op: "write", error: "none", delay_ms: 40 });
  const paused = await c.a.call("PauseRebuild", { uuid: c.nexus, child_uri: c.children[2] });
  t.is(paused.state, "paused");
  t.false(paused.partial);
  await new Promise((r) => setTimeout(r, 300));
  const still = await c.a.call("GetRebuildStats", { uuid: c.nexus, child_uri: c.children[2] });
  t.is(still.state, "paused");
  await new Promise((r) => setTimeout(r, 300));
  const later = await c.a.call("GetRebuildStats", { uuid: c.nexus, child_uri: c.children[2] });
  t.is(later.bytes_done, still.bytes_done, "a paused rebuild copies nothing");
  await load.progress(20);
  await c.clearFaults(2);
  await c.a.call("ResumeRebuild", { uuid: c.nexus, child_uri: c.children[2] });
  await c.waitFor("the new child rebuilt", (x) => x.children.every((ch) => ch.state === "online"), 60_000);
  await load.progress(30);
  expectClean(t, await load.stop());
  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  const last = records[records.length - 1];
  t.is(last.state, "completed");
  t.is(last.bytes_done, 64 * MiB);
  t.true(last.mib_per_s > 0);
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("losing the last healthy child: the host gets errors, never silently wrong data", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(30);

  await Promise.all([c.engines[1].kill(), c.engines[2].kill()]);
  await c.waitFor("both remote children faulted", (n) => n.children[1].state === "faulted" && n.children[2].state === "faulted");
  await load.progress(30); // the local child alone still serves
  await c.fault(0, { op: "any", error: "eio" });
  await c.waitFor("the nexus faulted", (n) => n.health === "faulted");
  const counters = await load.stop();
  t.deepEqual(counters.mismatches, []);
  t.deepEqual(counters.errors, []);
  t.true(counters.writesFailed > 0 || (await load.writeOnce(0, 1)) !== 0, "writes fail at the host");
  const read = await load.readOnce(0, 8);
  t.not(read.status, 0, "reads fail at the host");
  t.deepEqual(read.problems, []);
  t.is((await c.child(0)).reason, "io_failure");
});

test.serial("a rebuild whose source fails ends as rebuild_failed; one whose destination hangs times out; neither hangs and writes go on", async (t) => {
  const c = await NexusCluster.start(t, { sizeBytes: 64 * MiB });
  const load = (await c.load()).start(4, 0); // writes only: reads would fault the source first
  t.teardown(() => load.close());
  await load.progress(100);

  // Source failure: node-c's child rebuilds from the local child, whose reads then fail.
  await c.a.call("RemoveChild", { uuid: c.nexus, child_uri: c.children[2] });
  await c.a.call("AddChild", { uuid: c.nexus, child_uri: c.children[2] });
  await c.fault(2, { op: "write", error: "none", delay_ms: 30 }); // keep the rebuild running a while
  await c.fault(0, { op: "read", error: "eio" });
  let n = await c.waitFor("the rebuild to fail", (x) => x.children[2].state === "faulted");
  t.is(n.children[2].reason, "rebuild_failed");
  t.is(n.children[0].reason, "io_failure", "the failed source is faulted too");
  let { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  t.is(records[records.length - 1].state, "failed");
  t.regex(records[records.length - 1].error, /source .* rebuild read failed/);
  await load.progress(30); // node-b alone carries the volume

  // Destination hang: every write to node-c's child is held past the 2 s child timeout.
  await c.clearFaults(0);
  await c.clearFaults(2);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[0] }, 30_000);
  await c.waitFor("the local child back", (x) => x.children[0].state === "online", 60_000);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.fault(2, { op: "write", error: "none", delay_ms: 60_000 });
  n = await c.waitFor("the hung rebuild to time out", (x) => x.children[2].state === "faulted", 30_000);
  t.is(n.children[2].reason, "timed_out");
  ({ records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus }));
  t.is(records[records.length - 1].state, "failed");
  await load.progress(30);

  await c.clearFaults(2);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"), 60_000);
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("a dropped NVMe/TCP connection to a child: the child faults at once (never re-sent on a new association), the host sees no error, OnlineChild brings it back identical", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(50);
  await c.fault(1, { drop_connection: true });
  const n = await c.waitFor("node-b's child to fault", (x) => x.children[1].state === "faulted", 5_000);
  t.is(n.children[1].reason, "io_failure");
  t.regex(n.children[1].last_error, /connection lost/);
  await load.progress(150);
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[1] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"));
  t.true((await lastPartial(c, 1)) === true, "its label proves what it missed: a partial rebuild");
  const { controllers } = await c.a.call("ListControllers", {});
  t.true(controllers.some((ctl) => ctl.uri.includes(c.replicas[1]) && ctl.state === "live"));
  expectClean(t, await load.stop());
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});
