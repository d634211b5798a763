// Who the nexus trusts, with three real engines on loopback: a child comes back only on the
// evidence of its own label (a recreated or rolled-back replica is rebuilt in full), what a
// child acknowledged but never flushed counts as missed, a child in sync at an unclean shutdown
// but absent at restart returns in full, and a rebuild step that gives up on a range lock never
// leaks it. Every test ends by comparing bytes: through the nexus against the load's model, and
// the children against each other.
import test from "ava";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { expectClean } from "../../helpers/load";
import { INSPECTOR_NQN, MiB, NexusCluster } from "../../helpers/nexus";


async function lastRebuildOf(c: NexusCluster, child: number) {
  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  const mine = records.filter((r) => r.child_uri === c.children[child] && !r.resync);
  return mine[mine.length - 1];
}

/** Faults every child but `keep` (so reads can only come from it) and verifies the whole volume. */
async function verifyFromOnly(c: NexusCluster, keep: number, verify: () => Promise<string[]>): Promise<string[]> {
  for (let i = 0; i < 3; i++) if (i !== keep) await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[i] });
  const n = await c.info();
  if (n.children.filter((ch) => ch.state === "online").length !== 1) throw new Error(`expected only child ${keep} online: ${JSON.stringify(n.children.map((ch) => ch.state))}`);
  return verify();
}

test.serial("a replica destroyed and recreated behind the nexus's back: the child faults, OnlineChild rebuilds it in full, and it alone serves every byte", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(200);
  expectClean(t, await load.stop());

  // What a lost disk or an operator slip looks like on node-c.
  const nodeC = c.conns[2];
  const hostA = (await c.a.call("GetInfo", {})).host_nqn;
  await nodeC.call("UnshareReplica", { uuid: c.replicas[2] });
  await nodeC.call("DestroyReplica", { uuid: c.replicas[2] });
  await nodeC.call("CreateReplica", { uuid: c.replicas[2], name: "vol-node-c", pool: "pool-node-c", size_bytes: c.sizeBytes + MiB, thin: true });
  await nodeC.call("ShareReplica", { uuid: c.replicas[2], allowed_host_nqns: [hostA, INSPECTOR_NQN] });

  // The association ended when it was unshared: the child leaves at once, never read again.
  const n = await c.waitFor("node-c's child to fault", (x) => x.children[2].state === "faulted", 10_000);
  t.is(n.children[2].reason, "io_failure");
  t.regex(n.children[2].last_error, /connection lost/);
  t.is(n.health, "degraded");

  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"), 60_000);
  const rebuild = await lastRebuildOf(c, 2);
  t.is(rebuild.state, "completed");
  t.false(rebuild.partial, "no label of this nexus: a full rebuild");
  t.deepEqual(await c.differingSegments(), [[], []]);
  t.deepEqual(await verifyFromOnly(c, 2, () => load.verifyAll()), [], "the healed replica alone holds every byte");
});

test.serial("a replica rolled back to an older copy (older label): OnlineChild rebuilds it in full", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(100);

  // Keep a copy of node-c's pool as it is now (the engine is stopped for a consistent copy).
  await c.engines[2].kill();
  await c.waitFor("node-c's child to fault", (x) => x.children[2].state === "faulted");
  const disk = join(c.engines[2].dir, "disk.img");
  copyFileSync(disk, `${disk}.old`);
  await c.engines[2].restart();
  c.conns[2] = c.engines[2].connect();
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"));
  await load.progress(150); // newer data and newer labels on every child

  // Node-c goes away again and comes back with the old copy of its disk.
  await c.engines[2].kill();
  await c.waitFor("node-c's child to fault", (x) => x.children[2].state === "faulted");
  await load.progress(50);
  copyFileSync(`${disk}.old`, disk);
  await c.engines[2].restart();
  c.conns[2] = c.engines[2].connect();
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"), 60_000);
  const rebuild = await lastRebuildOf(c, 2);
  t.false(rebuild.partial, "its label is older than the one it left in: a full rebuild");
  expectClean(t, await load.stop());
  t.deepEqual(await c.differingSegments(), [[], []]);
  t.deepEqual(await verifyFromOnly(c, 2, () => load.verifyAll()), []);
});

test.serial("writes a child acknowledged but never flushed count as missed when it leaves; after a flush they do not", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start(4, 0, 32, 0); // writes only, never a flush
  t.teardown(() => load.close());
  await load.progress(100);
  expectClean(t, await load.stop());

  // Nothing was written while it was away, yet it may lack everything it never flushed.
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[2] });
  const unflushed = await c.child(2);
  t.true(unflushed.missed_bytes > 0, `missed_bytes ${unflushed.missed_bytes}: unflushed writes must be copied back`);

  // A completed flush makes everything before it durable: node-b leaves with nothing missed.
  t.is((await load.flush()).status, 0);
  await c.a.call("FaultChild", { uuid: c.nexus, child_uri: c.children[1] });
  t.is((await c.child(1)).missed_bytes, 0);

  for (const i of [1, 2]) await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[i] }, 30_000);
  await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online"));
  const rebuild = await lastRebuildOf(c, 2);
  t.true(rebuild.partial);
  t.is(rebuild.bytes_done, unflushed.missed_bytes, "the partial rebuild copied exactly the unflushed units");
  t.deepEqual(await load.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("unclean shutdown while a child in the newest label was away: it returns by a full rebuild, not a partial one", async (t) => {
  const c = await NexusCluster.start(t);
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(100);

  await c.engines[0].kill(); // the nexus node dies with writes in flight; node-c is still in sync
  await load.stop();
  load.close();
  await c.engines[2].kill(); // and node-c is down when the nexus node comes back
  await c.engines[0].restart();
  c.conns[0] = c.engines[0].connect();
  let n = await c.info();
  t.true(n.opened_after_unclean_shutdown);
  t.is(n.children[2].state, "offline");

  await c.engines[2].restart();
  c.conns[2] = c.engines[2].connect();
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  n = await c.waitFor("every child online", (x) => x.children.every((ch) => ch.state === "online" && !ch.rebuild), 60_000);
  const rebuild = await lastRebuildOf(c, 2);
  t.is(rebuild.state, "completed");
  t.false(rebuild.partial, "writes cut short by the crash may differ on it anywhere: a full rebuild");
  const again = await c.load(load.model);
  t.teardown(() => again.close());
  t.deepEqual(await again.verifyAll(), []);
  t.deepEqual(await c.differingSegments(), [[], []]);
});

test.serial("a rebuild step whose range lock is granted after its watchdog fired releases it: writes, DestroyNexus and SIGTERM all complete", async (t) => {
  const c = await NexusCluster.start(t, { childIoTimeoutMs: 60_000 });
  const load = await c.load();
  t.teardown(() => load.close());
  const lastSegmentBlock = (c.sizeBytes - MiB) / 4096;
  // Every segment holds data, so the rebuild copies each one (none is skipped as unallocated).
  for (let seg = 0; seg < c.sizeBytes / MiB; seg++) t.is(await load.writeOnce(seg * (MiB / 4096), 8), 0);

  await c.a.call("RemoveChild", { uuid: c.nexus, child_uri: c.children[2] });
  // A slow rebuild (each read from its local source takes 300 ms) reaches the last segment after
  // a few seconds; one write there is held on node-b for 35 s, longer than the 30 s watchdog of a
  // rebuild step, so that step waits for its lock until the watchdog gives up.
  await c.fault(0, { op: "read", error: "none", delay_ms: 300 });
  await c.fault(1, { op: "write", error: "none", delay_ms: 35_000, offset_bytes: c.sizeBytes - MiB, length_bytes: MiB, count: 1 });
  await c.a.call("AddChild", { uuid: c.nexus, child_uri: c.children[2] });
  const stuck = load.writeOnce(lastSegmentBlock, 8);
  // The rebuild's step for the last segment now waits for its lock behind the held write.
  const n = await c.waitFor("the rebuild step to time out", (x) => x.children[2].state === "faulted", 45_000);
  t.is(n.children[2].reason, "rebuild_failed");
  t.is(await stuck, 0, "the held write completes");

  // The lock granted after the watchdog gave up must not stay held: the segment takes writes.
  const started = Date.now();
  const next = load.writeOnce(lastSegmentBlock, 8);
  const status = await Promise.race([next, new Promise<string>((r) => setTimeout(() => r("hung"), 10_000))]);
  t.is(status, 0, `a write to the segment after the watchdog: ${status}`);
  t.true(Date.now() - started < 5_000, `it took ${Date.now() - started} ms`);
  await c.clearFaults(0);
  t.deepEqual(await load.verifyAll(), []);
  load.close();
  t.is((await c.a.call("ShutdownNexus", { uuid: c.nexus }, 20_000)).state, "shutdown");
  await c.a.call("DestroyNexus", { uuid: c.nexus }, 20_000);
  t.is(await c.engines[0].stop(), 0, "the engine stops on SIGTERM");
});

test.serial("removing the resync primary after an unclean shutdown starts the resync again from another in-sync child", async (t) => {
  const c = await NexusCluster.start(t, { sizeBytes: 64 * MiB, poolMiB: 160 });
  let load = (await c.load()).start();
  t.teardown(() => load.close());
  // Catch the resync while it runs: crash the nexus node, then slow the copies down. A resync
  // that finished before the slowdown took hold is simply tried again.
  let caught = false;
  for (let attempt = 0; attempt < 5 && !caught; attempt++) {
    await load.progress(100);
    await c.engines[0].kill(); // unclean: the restarted nexus resyncs node-b and node-c from its local child
    await load.stop();
    load.close();
    await c.engines[0].restart();
    c.conns[0] = c.engines[0].connect();
    for (const i of [1, 2]) await c.fault(i, { op: "write", error: "none", delay_ms: 150 });
    caught = (await c.info()).children.some((ch) => ch.rebuild?.resync && ch.rebuild.state === "running");
    if (!caught) {
      for (const i of [1, 2]) await c.clearFaults(i);
      load = (await c.load(load.model)).start();
    }
  }
  t.true(caught, "a resync was caught running");
  await c.a.call("RemoveChild", { uuid: c.nexus, child_uri: c.children[0] });
  for (const i of [1, 2]) await c.clearFaults(i);
  await c.waitFor("the resync to finish", (x) => x.children.every((ch) => ch.state === "online" && !ch.rebuild), 60_000);
  const { records } = await c.a.call("GetRebuildHistory", { uuid: c.nexus });
  const resyncs = records.filter((r) => r.resync);
  t.true(
    resyncs.some((r) => r.source_uri === c.children[1] && r.child_uri === c.children[2] && r.state === "completed"),
    `a new resync from node-b onto node-c: ${JSON.stringify(resyncs.map((r) => [r.source_uri.slice(-8), r.child_uri.slice(-8), r.state]))}`,
  );
  const again = await c.load(load.model);
  t.teardown(() => again.close());
  t.deepEqual(await again.verifyAll(), []);
});
