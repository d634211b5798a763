// The nexus rules as the control plane checks them (common/nexus-rules.ts). That C++ enforces
// the same values is test/native/nexus-rules.test.ts.
import test from "ava";
import {
  checkChildIoTimeoutMs,
  checkChildUri,
  checkNexusSizeBytes,
  childUriIsReplica,
  localChildUri,
  nexusNqn,
  nodeNqn,
  remoteChildUri,
  replicaNqn,
} from "../../common/nexus-rules";
import { checkDeviceUri, checkNqn } from "../../common/validate";

const R = "4f0c1d2e-0000-4000-8000-000000000001";

test("child URIs: a local replica by uuid, or a shared replica's subsystem over NVMe/TCP", (t) => {
  t.is(checkChildUri(localChildUri(R)), null);
  t.is(checkChildUri(remoteChildUri("127.0.0.1:4420", replicaNqn(R))), null);
  t.is(checkChildUri(`${remoteChildUri("node-b.example:4420", replicaNqn(R))}?hostnqn=${nodeNqn("node-a")}&io_timeout_ms=2000`), null);
  t.is(checkChildUri(`nvmf://[::1]:4420/${replicaNqn(R)}`), null);
});

test("child URIs: each malformed shape is refused with the two accepted forms", (t) => {
  t.regex(checkChildUri("replica:///not-a-uuid")!, /must name a replica uuid: replica:\/\/\/<uuid>/);
  t.regex(checkChildUri("file:///tmp/x")!, /must be replica:\/\/\/<uuid> .* or nvmf:\/\/HOST:PORT\/NQN/);
  t.regex(checkChildUri(`nvmf://127.0.0.1/${replicaNqn(R)}`)!, /host and port/);
  t.regex(checkChildUri("nvmf://127.0.0.1:4420/not-an-nqn")!, /subsystem NQN/);
  t.regex(checkChildUri(`nvmf://127.0.0.1:4420/${replicaNqn(R)}?mode=rw`)!, /unknown parameter "mode"/);
  t.regex(checkChildUri(42)!, /got number 42/);
});

test("a remote child over NVMe/RDMA: nvmf+rdma:// with the same grammar", (t) => {
  const uri = remoteChildUri("10.99.0.1:4420", replicaNqn(R), "rdma");
  t.is(uri, `nvmf+rdma://10.99.0.1:4420/${replicaNqn(R)}`);
  t.is(checkChildUri(uri), null);
  t.is(checkChildUri(`${uri}?hostnqn=${nodeNqn("a")}&io_timeout_ms=2000`), null);
  t.true(childUriIsReplica(uri, R));
  t.true(childUriIsReplica(`${uri}?hostnqn=${nodeNqn("a")}`, R));
  t.regex(checkChildUri(`nvmf+rdma://10.99.0.1/${replicaNqn(R)}`)!, /host and port/);
  t.regex(checkChildUri(`nvmf+rdma://10.99.0.1:4420/${replicaNqn(R)}?mode=rw`)!, /unknown parameter "mode"; nvmf\+rdma:\/\/ takes/);
  t.regex(checkChildUri(`nvmf+tcp://10.99.0.1:4420/${replicaNqn(R)}`)!, /must be replica:\/\/\/<uuid>/);
});

test("the nvmf:// grammar is one: a pool device and a nexus child accept the same URIs", (t) => {
  for (const uri of [
    remoteChildUri("127.0.0.1:4420", replicaNqn(R)),
    remoteChildUri("127.0.0.1:4420", replicaNqn(R), "rdma"),
    "nvmf://127.0.0.1:4420/nqn.x?io_queues=0",
    "nvmf+rdma://127.0.0.1:4420/nqn.x?io_queues=0",
    "nvmf://h:1/nqn.a/b",
  ]) {
    t.is(checkDeviceUri(uri) === null, checkChildUri(uri) === null, uri);
  }
});

test("a child URI names its replica whether local or remote (with the engine's hostnqn appended)", (t) => {
  t.true(childUriIsReplica(localChildUri(R), R));
  t.true(childUriIsReplica(remoteChildUri("127.0.0.1:4420", replicaNqn(R)), R));
  t.true(childUriIsReplica(`${remoteChildUri("127.0.0.1:4420", replicaNqn(R))}?hostnqn=${nodeNqn("a")}`, R));
  t.false(childUriIsReplica(localChildUri(R), R.replace(/1$/, "2")));
  t.false(childUriIsReplica(remoteChildUri("127.0.0.1:4420", nexusNqn(R)), R), "a nexus subsystem is not the replica");
});

test("NQNs built from the prefixes are valid NQNs", (t) => {
  for (const nqn of [replicaNqn(R), nexusNqn(R), nodeNqn("node-a")]) t.is(checkNqn(nqn), null);
  t.is(replicaNqn(R), `nqn.2026-11.io.strata:replica:${R}`);
});

test("nexus sizes are positive multiples of 4096, not merely of 512", (t) => {
  t.is(checkNexusSizeBytes(64 * 1024 * 1024), null);
  t.is(checkNexusSizeBytes(4096), null);
  t.regex(checkNexusSizeBytes(64 * 1024 * 1024 + 512)!, /positive multiple of 4096 bytes .* got 67109376/);
  t.regex(checkNexusSizeBytes(0)!, /positive multiple of 4096/);
  t.regex(checkNexusSizeBytes(4096.5)!, /whole number/);
});

test("child I/O timeouts: 100 to 600000 ms", (t) => {
  t.is(checkChildIoTimeoutMs(100), null);
  t.is(checkChildIoTimeoutMs(600_000), null);
  t.is(checkChildIoTimeoutMs(5000), null);
  t.regex(checkChildIoTimeoutMs(99)!, /must be 100 to 600000 ms, got number 99/);
  t.regex(checkChildIoTimeoutMs(600_001)!, /must be 100 to 600000 ms/);
  t.regex(checkChildIoTimeoutMs(150.5)!, /must be 100 to 600000 ms/);
});
