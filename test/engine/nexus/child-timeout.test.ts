// A child that OnlineChild or AddChild reopens keeps the nexus's configured child I/O timeout
// (code-shape review 2026-11-27, nexus rules drift (b): these calls once reopened children with
// a hard-coded 5000 ms). A write held far past the timeout must fault the child after the
// configured 1000 ms, not after the 5000 ms default.
import test from "ava";
import { CHILD_IO_TIMEOUT_MS_DEFAULT } from "../../../common/nexus-rules";
import { expectClean } from "../../helpers/load";
import { NexusCluster } from "../../helpers/nexus";

const TIMEOUT_MS = 1000;

/** Holds every write to child 2 for a minute; resolves with how long until the nexus faulted it. */
async function msUntilTimedOut(c: NexusCluster): Promise<{ ms: number; reason: string }> {
  const started = Date.now();
  await c.fault(2, { op: "write", error: "none", delay_ms: 60_000 });
  const n = await c.waitFor("child 2 to time out", (x) => x.children[2].state === "faulted", 30_000);
  const ms = Date.now() - started;
  await c.clearFaults(2);
  return { ms, reason: n.children[2].reason };
}

test.serial("children reopened by OnlineChild and by AddChild time out after the nexus's child_io_timeout_ms, not the default", async (t) => {
  t.true(TIMEOUT_MS * 3 < CHILD_IO_TIMEOUT_MS_DEFAULT, "the test tells the two apart");
  const c = await NexusCluster.start(t, { childIoTimeoutMs: TIMEOUT_MS });
  const load = (await c.load()).start();
  t.teardown(() => load.close());
  await load.progress(20);

  // Opened by CreateNexus.
  let r = await msUntilTimedOut(c);
  t.is(r.reason, "timed_out");
  t.log(`CreateNexus's child: timed out after ${r.ms} ms`);
  t.true(r.ms < 3 * TIMEOUT_MS, `CreateNexus's child: ${r.ms} ms`);

  // Reopened by OnlineChild.
  await c.a.call("OnlineChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("child 2 online", (x) => x.children[2].state === "online", 60_000);
  await load.progress(20);
  r = await msUntilTimedOut(c);
  t.is(r.reason, "timed_out");
  t.log(`OnlineChild's child: timed out after ${r.ms} ms`);
  t.true(r.ms < 3 * TIMEOUT_MS, `OnlineChild's child: ${r.ms} ms`);

  // Reopened by AddChild.
  await c.a.call("RemoveChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.a.call("AddChild", { uuid: c.nexus, child_uri: c.children[2] }, 30_000);
  await c.waitFor("child 2 online", (x) => x.children[2].state === "online", 60_000);
  await load.progress(20);
  r = await msUntilTimedOut(c);
  t.is(r.reason, "timed_out");
  t.log(`AddChild's child: timed out after ${r.ms} ms`);
  t.true(r.ms < 3 * TIMEOUT_MS, `AddChild's child: ${r.ms} ms`);

  expectClean(t, await load.stop());
});
