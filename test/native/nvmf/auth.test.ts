// NVMe in-band authentication (DH-HMAC-CHAP) on our target, judged by the test host's own
// implementation (host.ts, node:crypto): the right secret connects and does I/O on every queue,
// a wrong secret or none is refused and the connection ends; and our initiator against our
// target with a secret from its keyring (the nexus-child path).
import test from "ava";
import { randomUUID } from "node:crypto";
import { MiB, native, pattern, tempPool } from "../helpers";
import { makeSecret, NvmeTcpHost, ok, STATUS } from "./host";
import type { ExecutionContext } from "ava";

const HOST = "nqn.2014-08.org.nvmexpress:uuid:eeeeeeee-0000-4000-8000-000000000005";
const OPEN_HOST = "nqn.2014-08.org.nvmexpress:uuid:ffffffff-0000-4000-8000-000000000006";
const ATR = 1 << 17;

let ports: Promise<{ listen_port: number; discovery_port: number }> | null = null;
function target(): Promise<{ listen_port: number; discovery_port: number }> {
  ports ??= native().startNvmf({ listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0 });
  return ports;
}

/** A replica shared to HOST (who must authenticate with `secret`) and OPEN_HOST (NQN only). */
async function sharedWithSecret(t: ExecutionContext, secret: string, ctrlSecret?: string) {
  const { listen_port } = await target();
  const n = native();
  const { pool } = await tempPool(t, 128);
  const uuid = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: `a-${uuid.slice(0, 8)}`, size_bytes: 64 * MiB, thin: true });
  const { nqn } = await n.shareReplica({
    uuid,
    allowed_host_nqns: [HOST, OPEN_HOST],
    host_secrets: [{ host_nqn: HOST, dhchap_secret: secret, ...(ctrlSecret ? { dhchap_ctrl_secret: ctrlSecret } : {}) }],
  });
  t.teardown(() => n.unshareReplica({ uuid }));
  return { uuid, nqn, port: listen_port };
}

async function queue(port: number, subnqn: string, qid = 0, cntlid = 0xffff, hostnqn = HOST) {
  const h = await NvmeTcpHost.open(port);
  await h.initialize();
  const c = await h.connect({ subnqn, hostnqn, qid, cntlid, sqsize: qid === 0 ? 31 : 127 });
  return { h, c };
}

test.serial("the right secret: admin and I/O queues authenticate, then I/O works", async (t) => {
  const secret = makeSecret(0);
  const s = await sharedWithSecret(t, secret);
  const admin = await queue(s.port, s.nqn);
  t.teardown(() => admin.h.close());
  ok(admin.c);
  t.is(admin.c.dw0 & ATR, ATR, "Connect asks for authentication (ATR)");
  const cntlid = admin.c.dw0 & 0xffff;
  const a = await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret });
  t.true(a.ok);
  t.is(a.hashId, 1, "SHA-256: the host's first choice");
  t.is(a.group, 0, "the NULL DH group: the host's first choice");
  t.is((await admin.h.enable()) & 1, 1);
  ok(await admin.h.identify(0x01));
  const io = await queue(s.port, s.nqn, 1, cntlid);
  t.teardown(() => io.h.close());
  ok(io.c);
  t.is(io.c.dw0 & ATR, ATR, "I/O queue Connect asks for authentication too");
  t.true((await io.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret })).ok);
  const data = pattern(64 * 1024, 41);
  ok(await io.h.write(16, data));
  const back = ok(await io.h.read(16, data.length / 4096)).data!;
  t.true(back.equals(data));
  t.true((await native().replicaRead({ uuid: s.uuid, offset_bytes: 16 * 4096, length_bytes: data.length })).equals(data));
  // Secrets are never listed.
  const listed = (await native().listSubsystems()).find((x) => x.nqn === s.nqn)!;
  t.deepEqual([...listed.dhchap_host_nqns], [HOST]);
  t.false(JSON.stringify(await native().listSubsystems()).includes(secret.split(":")[2]));
});

test.serial("transformed secrets (SHA-256/384/512), every hash, and the ffdhe2048 group", async (t) => {
  for (const [transform, hash, group] of [
    [1, 1, 0],
    [2, 2, 1],
    [3, 3, 0],
    [0, 3, 1],
  ] as const) {
    const secret = makeSecret(transform);
    const s = await sharedWithSecret(t, secret);
    const admin = await queue(s.port, s.nqn);
    ok(admin.c);
    const a = await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret, hashes: [hash], groups: [group] });
    t.true(a.ok, `transform ${transform} hash ${hash} group ${group}`);
    t.is(a.hashId, hash);
    t.is(a.group, group);
    t.is((await admin.h.enable()) & 1, 1);
    admin.h.close();
  }
});

test.serial("bidirectional: the controller proves it holds the controller secret", async (t) => {
  const secret = makeSecret(1);
  const ctrlSecret = makeSecret(1);
  const s = await sharedWithSecret(t, secret, ctrlSecret);
  const admin = await queue(s.port, s.nqn);
  t.teardown(() => admin.h.close());
  const a = await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret, ctrlSecret, groups: [1] });
  t.true(a.ok);
  t.is(a.step, "controller");
  t.is((await admin.h.enable()) & 1, 1);
  // A host expecting another controller secret rejects the controller (Failure2): refused.
  const other = await queue(s.port, s.nqn);
  const b = await other.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret, ctrlSecret: makeSecret(1) });
  t.false(b.ok);
  await other.h.closed;
  t.pass();
});

test.serial("a wrong secret is refused with Failure1 and the connection ends", async (t) => {
  const s = await sharedWithSecret(t, makeSecret(0));
  const admin = await queue(s.port, s.nqn);
  const a = await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret: makeSecret(0) });
  t.false(a.ok);
  t.is(a.step, "success1");
  t.is(a.failure, 0x01, "reason: authentication failed");
  await admin.h.closed;
});

test.serial("skipping authentication: the first other command fails with Authentication Required and the queue ends", async (t) => {
  const s = await sharedWithSecret(t, makeSecret(0));
  const admin = await queue(s.port, s.nqn);
  t.is(admin.c.dw0 & ATR, ATR);
  const c = await admin.h.propertyGet(0x0, true);
  t.is(c.status, STATUS.authRequired);
  await admin.h.closed;
  // The open host (no secret) is admitted without authentication, as before.
  const open = await queue(s.port, s.nqn, 0, 0xffff, OPEN_HOST);
  t.teardown(() => open.h.close());
  ok(open.c);
  t.is(open.c.dw0 & ATR, 0);
  t.is((await open.h.enable()) & 1, 1);
});

test.serial("an I/O queue that does not authenticate is refused, though its admin queue did", async (t) => {
  const secret = makeSecret(0);
  const s = await sharedWithSecret(t, secret);
  const admin = await queue(s.port, s.nqn);
  t.teardown(() => admin.h.close());
  t.true((await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret })).ok);
  await admin.h.enable();
  const io = await queue(s.port, s.nqn, 1, admin.c.dw0 & 0xffff);
  t.is(io.c.dw0 & ATR, ATR);
  const w = await io.h.write(0, pattern(4096, 3));
  t.is(w.status, STATUS.authRequired);
  await io.h.closed;
  t.is((await native().replicaRead({ uuid: s.uuid, offset_bytes: 0, length_bytes: 4096 })).equals(Buffer.alloc(4096)), true, "nothing was written");
});

test.serial("our initiator authenticates from its keyring; wrong or missing secrets are refused", async (t) => {
  const n = native();
  const secret = makeSecret(1);
  const s = await sharedWithSecret(t, secret);
  const uri = `nvmf://127.0.0.1:${s.port}/${s.nqn}?hostnqn=${HOST}`;
  t.teardown(() => n.setHostSecret({ host_nqn: HOST, dhchap_secret: "" }));
  await n.setHostSecret({ host_nqn: HOST, dhchap_secret: "" });
  const none = await t.throwsAsync(n.probeDevice({ uri }));
  t.regex(none!.message, /requires DH-HMAC-CHAP/);
  await n.setHostSecret({ host_nqn: HOST, dhchap_secret: makeSecret(1) });
  const wrong = await t.throwsAsync(n.probeDevice({ uri }));
  t.regex(wrong!.message, /authentication .* failed/);
  t.false(wrong!.message.includes("DHHC-1"), "errors never quote a secret");
  await n.setHostSecret({ host_nqn: HOST, dhchap_secret: secret });
  const data = pattern(MiB, 5);
  await n.deviceIo({ uri, kind: "write", offset_bytes: 4 * MiB, length_bytes: MiB, data });
  t.true((await n.replicaRead({ uuid: s.uuid, offset_bytes: 4 * MiB, length_bytes: MiB })).equals(data));
  const got = await n.deviceIo({ uri, kind: "read", offset_bytes: 4 * MiB, length_bytes: MiB, data: null });
  t.true(got!.equals(data));
  // Bidirectional through the initiator: the target proves the controller secret.
  const ctrlSecret = makeSecret(2);
  await n.shareReplica({ uuid: s.uuid, allowed_host_nqns: [HOST], host_secrets: [{ host_nqn: HOST, dhchap_secret: secret, dhchap_ctrl_secret: ctrlSecret }] });
  await n.setHostSecret({ host_nqn: HOST, dhchap_secret: secret, dhchap_ctrl_secret: ctrlSecret });
  t.true((await n.deviceIo({ uri, kind: "read", offset_bytes: 4 * MiB, length_bytes: 4096, data: null }))!.equals(data.subarray(0, 4096)));
  await n.setHostSecret({ host_nqn: HOST, dhchap_secret: secret, dhchap_ctrl_secret: makeSecret(2) });
  const impostor = await t.throwsAsync(n.probeDevice({ uri }));
  t.regex(impostor!.message, /controller secret/);
});

test.serial("malformed secrets are refused without echoing them", async (t) => {
  const n = native();
  const { pool } = await tempPool(t, 64);
  const uuid = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: "m", size_bytes: 8 * MiB, thin: true });
  const good = makeSecret(0);
  const badCrc = good.replace(/:([A-Za-z0-9+/])/, (_m, c: string) => `:${c === "A" ? "B" : "A"}`);
  for (const bad of ["secret", "DHHC-1:07:AAAA:", badCrc]) {
    const err = await t.throwsAsync(n.shareReplica({ uuid, allowed_host_nqns: [HOST], host_secrets: [{ host_nqn: HOST, dhchap_secret: bad }] }));
    t.regex(err!.message, /DH-HMAC-CHAP secret is invalid/);
    if (bad.length > 20) t.false(err!.message.includes(bad.slice(10, 30)), "the secret is not echoed");
  }
  const notAllowed = await t.throwsAsync(n.shareReplica({ uuid, allowed_host_nqns: [OPEN_HOST], host_secrets: [{ host_nqn: HOST, dhchap_secret: good }] }));
  t.regex(notAllowed!.message, /not allowed/);
});

test.serial("an unauthenticated write that needs an R2T gets no R2T, only the refusal", async (t) => {
  const s = await sharedWithSecret(t, makeSecret(0));
  const admin = await queue(s.port, s.nqn);
  const w = await admin.h.write(0, pattern(64 * 1024, 8), false);
  t.is(w.status, STATUS.authRequired);
  t.is(admin.h.r2ts, 0, "no R2T was sent");
  await admin.h.closed;
});

test.serial("a nexus published to a frontend that must authenticate", async (t) => {
  const n = native();
  const { listen_port } = await target();
  const { pool } = await tempPool(t, 128);
  const replica = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid: replica, name: `nx-${replica.slice(0, 8)}`, size_bytes: 33 * MiB, thin: true });
  const uuid = randomUUID();
  await n.createNexus({ uuid, size_bytes: 32 * MiB, children: [`replica:///${replica}`] });
  t.teardown(() => n.destroyNexus({ uuid }));
  const secret = makeSecret(3);
  const { nqn } = await n.publishNexus({ uuid, frontend_host_nqn: HOST, frontend_dhchap_secret: secret });
  t.teardown(() => n.unpublishNexus({ uuid, frontend_host_nqn: HOST }));
  const thief = await queue(listen_port, nqn);
  t.is(thief.c.dw0 & ATR, ATR);
  t.false((await thief.h.authenticate({ hostnqn: HOST, subnqn: nqn, secret: makeSecret(3) })).ok);
  await thief.h.closed;
  const admin = await queue(listen_port, nqn);
  t.teardown(() => admin.h.close());
  t.true((await admin.h.authenticate({ hostnqn: HOST, subnqn: nqn, secret })).ok);
  await admin.h.enable();
  const io = await queue(listen_port, nqn, 1, admin.c.dw0 & 0xffff);
  t.teardown(() => io.h.close());
  t.true((await io.h.authenticate({ hostnqn: HOST, subnqn: nqn, secret, groups: [1] })).ok);
  const data = pattern(128 * 1024, 12);
  ok(await io.h.write(100, data, false));
  t.true(ok(await io.h.read(100, data.length / 4096)).data!.equals(data));
});

test.serial("re-authentication on a live queue: the right secret keeps it, a wrong one ends it", async (t) => {
  const secret = makeSecret(2);
  const s = await sharedWithSecret(t, secret);
  const admin = await queue(s.port, s.nqn);
  t.true((await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret })).ok);
  await admin.h.enable();
  t.true((await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret, groups: [1] })).ok, "a second transaction succeeds");
  ok(await admin.h.identify(0x01));
  t.false((await admin.h.authenticate({ hostnqn: HOST, subnqn: s.nqn, secret: makeSecret(2) })).ok);
  await admin.h.closed;
  t.pass();
});
