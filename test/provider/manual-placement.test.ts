// The Replica and Nexus providers' pure parts: what `pulumi preview` says for each change (in
// place or replace, and which property), the checks that need no engine, and the child URIs a
// nexus reports mapped back to replica uuids.
import test from "ava";
import type * as dynamic from "@pulumi/pulumi/dynamic";
import { localChildUri, remoteChildUri, replicaNqn } from "../../common/nexus-rules";
import { NexusInputs, NexusOutputs, NexusResourceProvider, replicaUuidOfChildUri } from "../../provider/nexus-resource";
import { checkReplicaSizeBytes, poolRefOf, ReplicaInputs, ReplicaOutputs, ReplicaProvider } from "../../provider/replica";

const MiB = 1024 * 1024;
const R1 = "4f0c1d2e-0000-4000-8000-0000000000a1";
const R2 = "4f0c1d2e-0000-4000-8000-0000000000a2";
const R3 = "4f0c1d2e-0000-4000-8000-0000000000a3";

const replica: ReplicaOutputs = {
  pool: { uuid: "", node: "node-a", name: "pool-a" },
  sizeBytes: 33 * MiB,
  thin: true,
  uuid: R1,
  defaultUuid: R1,
  uuidGiven: false,
  importId: "",
  node: "node-a",
  poolUuid: "4f0c1d2e-0000-4000-8000-0000000000f1",
  poolName: "pool-a",
  allocatedBytes: 0,
  state: "online",
};
const replicaIn: ReplicaInputs = { ...replica };

test("replica: grow and thin <-> thick update in place; shrink and another pool replace, naming the property, new one first", async (t) => {
  const p = new ReplicaProvider();
  t.deepEqual(await p.diff(R1, replica, replicaIn), { changes: false, replaces: [], deleteBeforeReplace: false });
  t.deepEqual(await p.diff(R1, replica, { ...replicaIn, sizeBytes: 65 * MiB }), { changes: true, replaces: [], deleteBeforeReplace: false });
  t.deepEqual(await p.diff(R1, replica, { ...replicaIn, thin: false }), { changes: true, replaces: [], deleteBeforeReplace: false });
  t.deepEqual(await p.diff(R1, replica, { ...replicaIn, sizeBytes: 17 * MiB }), { changes: true, replaces: ["sizeBytes"], deleteBeforeReplace: false });
  t.deepEqual(await p.diff(R1, replica, { ...replicaIn, pool: { uuid: "", node: "node-b", name: "pool-b" } }), {
    changes: true,
    replaces: ["pool"],
    deleteBeforeReplace: false,
  });
  // The same pool named by its uuid is no change; another uuid is.
  t.false((await p.diff(R1, replica, { ...replicaIn, pool: { uuid: replica.poolUuid, node: "", name: "" } })).changes);
  t.deepEqual((await p.diff(R1, replica, { ...replicaIn, pool: { uuid: R3, node: "", name: "" } })).replaces, ["pool"]);
  // Dropping the import option after the adoption is no change.
  t.false((await p.diff(R1, { ...replica, importId: R1 }, replicaIn)).changes);
  // A faulted pool shows as a change (the next up looks again).
  t.true((await p.diff(R1, { ...replica, state: "faulted" }, replicaIn)).changes);
});

test("replica: sizes are whole 4 KiB blocks; check names the property without an engine", async (t) => {
  t.is(checkReplicaSizeBytes(8 * MiB), null);
  t.regex(checkReplicaSizeBytes(8 * MiB + 512)!, /must be a multiple of 4096 bytes.*got 8389120/);
  t.regex(checkReplicaSizeBytes(-4096)!, /must be positive/);
  const p = new ReplicaProvider();
  await p.configure({ config: { get: (k: string) => ({ "strata:endpoints": '{"node-a":"127.0.0.1:1"}', "strata:token": "t" })[k] } } as unknown as dynamic.ConfigureRequest);
  const bad = await p.check({}, { ...replicaIn, sizeBytes: 4097, uuid: "" });
  t.deepEqual(bad.failures?.map((f) => f.property), ["sizeBytes"]);
  const far = await p.check({}, { ...replicaIn, pool: { uuid: "", node: "node-z", name: "pool-z" }, uuid: "" });
  t.deepEqual(far.failures, [{ property: "pool", reason: 'pool "pool-z" is on node "node-z", which is not a configured node (strata:endpoints has: node-a)' }]);
  const badUuid = await p.check({}, { ...replicaIn, uuid: "not-a-uuid" });
  t.deepEqual(badUuid.failures?.map((f) => f.property), ["uuid"]);
});

test("replica: pool refs from a uuid string or an object", (t) => {
  t.deepEqual(poolRefOf(R1), { uuid: R1, node: "", name: "" });
  t.deepEqual(poolRefOf({ node: "n", name: "p" }), { uuid: "", node: "n", name: "p" });
});

const nexus: NexusOutputs = {
  node: "node-a",
  sizeBytes: 32 * MiB,
  children: [
    { node: "node-a", replicaUuid: R1, state: "online", reason: "none", rebuildPercent: 100 },
    { node: "node-b", replicaUuid: R2, state: "online", reason: "none", rebuildPercent: 100 },
  ],
  frontendHostNqn: "",
  uuid: "4f0c1d2e-0000-4000-8000-0000000000b1",
  defaultUuid: "4f0c1d2e-0000-4000-8000-0000000000b1",
  uuidGiven: false,
  importId: "",
  state: "online",
  nqn: "",
  host: "",
  port: 0,
  frontendDhchapSecret: "",
};
const nexusIn: NexusInputs = {
  ...nexus,
  children: [
    { replicaUuid: R1, node: "node-a", sizeBytes: 33 * MiB },
    { replicaUuid: R2, node: "node-b", sizeBytes: 33 * MiB },
  ],
};

test("nexus: children, size and frontend change in place; a node change replaces (old one first)", async (t) => {
  const p = new NexusResourceProvider();
  t.deepEqual(await p.diff(nexus.uuid, nexus, nexusIn), { changes: false, replaces: [], deleteBeforeReplace: false });
  const added = { ...nexusIn, children: [...nexusIn.children, { replicaUuid: R3, node: "node-b", sizeBytes: 33 * MiB }] };
  t.deepEqual(await p.diff(nexus.uuid, nexus, added), { changes: true, replaces: [], deleteBeforeReplace: false });
  t.true((await p.diff(nexus.uuid, nexus, { ...nexusIn, children: nexusIn.children.slice(0, 1) })).changes);
  t.true((await p.diff(nexus.uuid, nexus, { ...nexusIn, sizeBytes: 64 * MiB })).changes);
  t.true((await p.diff(nexus.uuid, nexus, { ...nexusIn, frontendHostNqn: "nqn.2014-08.org.nvmexpress:uuid:x" })).changes);
  t.deepEqual(await p.diff(nexus.uuid, nexus, { ...nexusIn, node: "node-b" }), { changes: true, replaces: ["node"], deleteBeforeReplace: true });
  t.true((await p.diff(nexus.uuid, { ...nexus, state: "degraded" }, nexusIn)).changes, "a degraded nexus is healed by the next up");
});

test("nexus: check names the property: size, node, a child on an unconfigured node, a child too small", async (t) => {
  const p = new NexusResourceProvider();
  await p.configure({ config: { get: (k: string) => ({ "strata:endpoints": '{"node-a":"127.0.0.1:1","node-b":"127.0.0.1:2"}', "strata:token": "t" })[k] } } as unknown as dynamic.ConfigureRequest);
  const props = async (news: Partial<NexusInputs>) => ((await p.check({}, { ...nexusIn, uuid: "", ...news })).failures ?? []).map((f) => `${f.property}: ${f.reason}`);
  t.deepEqual(await props({}), []);
  t.regex((await props({ sizeBytes: 32 * MiB + 512 })).join(), /^sizeBytes: must be a positive multiple of 4096 bytes/);
  t.regex((await props({ node: "node-z" })).join(), /^node: "node-z" is not a configured node \(strata:endpoints has: node-a, node-b\)/);
  t.regex(
    (await props({ children: [{ replicaUuid: R1, node: "node-z", sizeBytes: 33 * MiB }] })).join(),
    /^children: children\[0\] \(replica [0-9a-f-]+\) is on node "node-z", which is not a configured node/,
  );
  t.regex((await props({ children: [{ replicaUuid: R1, node: "node-a", sizeBytes: 32 * MiB }] })).join(), /^children: .*holds 33554432 bytes; a nexus of 33554432 bytes needs children of at least 34603008/);
  t.regex((await props({ children: [] })).join(), /^children: must be 1 to 32 Replica resources, got 0/);
  const shrink = await p.check(nexus, { ...nexusIn, sizeBytes: 16 * MiB });
  t.regex(shrink.failures![0].reason, /cannot shrink/);
});

test("nexus: child URIs map back to replica uuids", (t) => {
  t.is(replicaUuidOfChildUri(localChildUri(R1)), R1);
  t.is(replicaUuidOfChildUri(remoteChildUri("127.0.0.1:4420", replicaNqn(R2))), R2);
  t.is(replicaUuidOfChildUri("nvmf://127.0.0.1:4420/nqn.2014-08.org.example:other"), "");
});
