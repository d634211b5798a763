// The nexus in one process (so the sanitizer run covers it): a local child and two children
// reached through our own NVMe/TCP initiator and target over loopback. I/O through the nexus as
// a device (nexus:///<uuid>), faults, partial and full rebuilds, labels across re-creation.
import test from "ava";
import { randomUUID } from "node:crypto";
import type { ExecutionContext } from "ava";
import { loadNative } from "../../native";
import { expectCode, MiB, native, pattern, tempPool } from "./helpers";

// First start in this worker wins: with fault injection, before any helper starts the engine.
loadNative().start({ cores: 2, fault_injection: true });

const HOST = "nqn.2026-11.io.strata:node:native-nexus-test";
const SIZE = 16 * MiB;

let ports: Promise<{ listen_port: number }> | null = null;
function target(): Promise<{ listen_port: number }> {
  const n = native();
  ports ??= n.startNvmf({ listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0 });
  return ports;
}

async function threeChildren(t: ExecutionContext): Promise<{ replicas: string[]; children: string[] }> {
  const { listen_port } = await target();
  const n = native();
  const replicas: string[] = [];
  const children: string[] = [];
  for (let i = 0; i < 3; i++) {
    const { pool } = await tempPool(t, 64);
    const uuid = randomUUID();
    await n.createReplica({ pool_uuid: pool.uuid, uuid, name: `c-${uuid.slice(0, 8)}`, size_bytes: SIZE + MiB, thin: true });
    replicas.push(uuid);
    if (i === 0) children.push(`replica:///${uuid}`);
    else {
      const { nqn } = await n.shareReplica({ uuid, allowed_host_nqns: [HOST] });
      t.teardown(() => n.unshareReplica({ uuid }));
      children.push(`nvmf://127.0.0.1:${listen_port}/${nqn}?hostnqn=${HOST}`);
    }
  }
  return { replicas, children };
}

async function nexusOf(t: ExecutionContext, children: string[]): Promise<string> {
  const n = native();
  const uuid = randomUUID();
  await n.createNexus({ uuid, size_bytes: SIZE, children, child_io_timeout_ms: 2000 });
  t.teardown(() => n.destroyNexus({ uuid }));
  return uuid;
}

async function waitOnline(uuid: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const x = (await native().listNexus()).find((y) => y.uuid === uuid)!;
    if (x.children.every((c) => c.state === "online")) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("children did not come online");
}

async function dataOf(replica: string): Promise<Buffer> {
  return native().replicaRead({ uuid: replica, offset_bytes: MiB, length_bytes: SIZE });
}

test.serial("writes reach every child after the label region; reads come back; a split write spans segments", async (t) => {
  const n = native();
  const { replicas, children } = await threeChildren(t);
  const uuid = await nexusOf(t, children);
  const uri = `nexus:///${uuid}`;
  const data = pattern(3 * MiB, 7);
  await n.deviceIo({ uri, kind: "write", offset_bytes: MiB / 2, length_bytes: data.length, data });
  t.true((await n.deviceIo({ uri, kind: "read", offset_bytes: MiB / 2, length_bytes: data.length, data: null }))!.equals(data));
  for (const r of replicas) t.true((await n.replicaRead({ uuid: r, offset_bytes: MiB + MiB / 2, length_bytes: data.length })).equals(data));
  await n.deviceIo({ uri, kind: "deallocate", offset_bytes: MiB, length_bytes: MiB, data: null });
  for (const r of replicas) t.true((await n.replicaRead({ uuid: r, offset_bytes: 2 * MiB, length_bytes: MiB })).equals(Buffer.alloc(MiB)));
  const info = (await n.listNexus()).find((x) => x.uuid === uuid)!;
  t.is(info.health, "online");
  t.true(info.generation >= 2, "the first write recorded the membership");
  await expectCode(t, n.deviceIo({ uri, kind: "read", offset_bytes: SIZE, length_bytes: 4096, data: null }), "IO_ERROR");
});

test.serial("write errors fault one child; online brings it back by a partial rebuild; remove + add is a full rebuild", async (t) => {
  const n = native();
  const { replicas, children } = await threeChildren(t);
  const uuid = await nexusOf(t, children);
  const uri = `nexus:///${uuid}`;
  await n.deviceIo({ uri, kind: "write", offset_bytes: 0, length_bytes: 4 * MiB, data: pattern(4 * MiB, 1) });
  // Flushed, as a host does: unflushed writes would count as missed too (LABEL.md).
  await n.deviceIo({ uri, kind: "flush", offset_bytes: 0, length_bytes: 0, data: null });
  await n.injectFault({ uuid, child_uri: children[1], op: "write", error: "eio", delay_ms: 0, offset_bytes: 0, length_bytes: 0, count: 0 });
  await n.deviceIo({ uri, kind: "write", offset_bytes: 0, length_bytes: 4096, data: pattern(4096, 2) });
  let info = (await n.listNexus()).find((x) => x.uuid === uuid)!;
  t.deepEqual(info.children.map((c) => [c.state, c.reason]), [["online", "none"], ["faulted", "io_failure"], ["online", "none"]]);
  await n.deviceIo({ uri, kind: "write", offset_bytes: 8 * MiB, length_bytes: 4096, data: pattern(4096, 3) });
  info = (await n.listNexus()).find((x) => x.uuid === uuid)!;
  t.is(info.children[1].missed_bytes, 128 * 1024, "two 64 KiB units were written while it was away");
  await n.injectFault({ uuid, child_uri: children[1], clear: true });
  await n.nexusChild({ uuid, child_uri: children[1], action: "online" });
  await waitOnline(uuid);
  const partial = await n.rebuildStats({ uuid, child_uri: children[1] });
  t.true(partial.partial);
  t.is(partial.bytes_done, 128 * 1024);
  t.true((await dataOf(replicas[1])).equals(await dataOf(replicas[0])));

  await n.nexusChild({ uuid, child_uri: children[2], action: "remove" });
  await n.nexusChild({ uuid, child_uri: children[2], action: "add" });
  await waitOnline(uuid);
  const full = await n.rebuildStats({ uuid, child_uri: children[2] });
  t.false(full.partial);
  t.is(full.bytes_total, SIZE);
  t.true(full.segments_skipped > 0, "clusters the thin source never wrote are zeroed, not copied");
  t.true((await dataOf(replicas[2])).equals(await dataOf(replicas[0])));
  t.is((await n.rebuildHistory({ uuid })).length, 2);
});

test.serial("labels: re-created on the same replicas the nexus trusts only its in-sync children; another nexus cannot take them", async (t) => {
  const n = native();
  const { children } = await threeChildren(t);
  const uuid = randomUUID();
  await n.createNexus({ uuid, size_bytes: SIZE, children });
  await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "write", offset_bytes: 0, length_bytes: MiB, data: pattern(MiB, 4) });
  await n.nexusChild({ uuid, child_uri: children[2], action: "fault" });
  await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "write", offset_bytes: 0, length_bytes: MiB, data: pattern(MiB, 5) });
  await n.destroyNexus({ uuid });

  await expectCode(t, n.createNexus({ uuid: randomUUID(), size_bytes: SIZE, children: [children[1]] }), "FAILED_PRECONDITION", /carries the label of nexus/);
  await expectCode(t, n.createNexus({ uuid, size_bytes: SIZE - MiB, children }), "FAILED_PRECONDITION", /labelled for a/);
  const again = await n.createNexus({ uuid, size_bytes: SIZE, children });
  t.teardown(() => n.destroyNexus({ uuid }));
  t.false(again.opened_after_unclean_shutdown, "destroy wrote a clean label");
  t.not(again.children[2].state, "online", "the child faulted before stays out of sync");
  await waitOnline(uuid);
  t.true((await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "read", offset_bytes: 0, length_bytes: MiB, data: null }))!.equals(pattern(MiB, 5)));
});

test.serial("shutdown refuses I/O and keeps data; destroy keeps the replicas; a nexus over too-small children is refused", async (t) => {
  const n = native();
  const { replicas, children } = await threeChildren(t);
  const uuid = await nexusOf(t, children);
  await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "write", offset_bytes: 0, length_bytes: MiB, data: pattern(MiB, 9) });
  await n.shutdownNexus({ uuid });
  await expectCode(t, n.deviceIo({ uri: `nexus:///${uuid}`, kind: "read", offset_bytes: 0, length_bytes: 4096, data: null }), "IO_ERROR");
  await n.destroyNexus({ uuid });
  const left = (await n.listReplicas()).map((r) => r.uuid);
  for (const r of replicas) t.true(left.includes(r));
  t.true((await n.replicaRead({ uuid: replicas[0], offset_bytes: MiB, length_bytes: MiB })).equals(pattern(MiB, 9)));
  await expectCode(t, n.createNexus({ uuid: randomUUID(), size_bytes: 2 * SIZE, children: [children[0]] }), "INVALID_ARGUMENT", /for its label/);
});

test.serial("grown nexus: its labels record the size; re-creating it with the old size is refused, a restart (restore) takes the labels' size; a child too small at restore leaves it degraded", async (t) => {
  const n = native();
  const { replicas, children } = await threeChildren(t);
  const uuid = await nexusOf(t, children);
  await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "write", offset_bytes: 0, length_bytes: MiB, data: pattern(MiB, 3) });
  await expectCode(t, n.resizeNexus({ uuid, size_bytes: 2 * SIZE }), "FAILED_PRECONDITION", /has 17825792 bytes.*grow its replica first/);
  await expectCode(t, n.resizeNexus({ uuid, size_bytes: SIZE / 2 }), "INVALID_ARGUMENT", new RegExp(`has ${SIZE} bytes; shrinking it to ${SIZE / 2}`));
  for (const r of replicas) await n.resizeReplica({ uuid: r, size_bytes: 2 * SIZE + MiB });
  t.is((await n.resizeNexus({ uuid, size_bytes: 2 * SIZE })).size_bytes, 2 * SIZE);
  await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "write", offset_bytes: 2 * SIZE - MiB, length_bytes: MiB, data: pattern(MiB, 4) });
  await n.destroyNexus({ uuid });

  // The state file still saying the old size (the engine stopped before it took the new one).
  await expectCode(t, n.createNexus({ uuid, size_bytes: SIZE, children }), "FAILED_PRECONDITION", /labelled for a 33554432-byte nexus/);
  const restored = await n.createNexus({ uuid, size_bytes: SIZE, children, restore: true });
  t.is(restored.size_bytes, 2 * SIZE, "the newest label's size wins at restore");
  t.is(restored.health, "online");
  const read = await n.deviceIo({ uri: `nexus:///${uuid}`, kind: "read", offset_bytes: 2 * SIZE - MiB, length_bytes: MiB, data: null });
  t.true(read!.equals(pattern(MiB, 4)));
  await n.destroyNexus({ uuid });

  // A child too small for the nexus (its replica replaced by a smaller one) at restore: degraded, not lost.
  const small = randomUUID();
  const { pool } = await tempPool(t, 64);
  await n.createReplica({ pool_uuid: pool.uuid, uuid: small, name: `s-${small.slice(0, 8)}`, size_bytes: SIZE + MiB, thin: true });
  const withSmall = [children[0], children[1], `replica:///${small}`];
  await expectCode(t, n.createNexus({ uuid, size_bytes: 2 * SIZE, children: withSmall }), "INVALID_ARGUMENT", /for its label/);
  const degraded = await n.createNexus({ uuid, size_bytes: 2 * SIZE, children: withSmall, restore: true });
  t.is(degraded.health, "degraded");
  t.is(degraded.children[2].state, "offline");
  t.regex(degraded.children[2].last_error ?? "", /has 17825792 bytes/);
});
