// provider/transport.ts: which transport a leg resolves to, and the errors that name the node.
import test from "ava";
import { checkTransportMode, nvmeConnectCommand, resolveLeg, transportsOf } from "../../provider/transport";

const rdmaNode = transportsOf("node-a", [
  { trtype: "tcp", address: "10.0.0.1:4420", available: true, reason: "", interface: "", device: "" },
  { trtype: "rdma", address: "10.0.0.1:4420", available: true, reason: "", interface: "eth1", device: "mlx5_0" },
]);
const refused = transportsOf("node-b", [
  { trtype: "tcp", address: "10.0.0.2:4420", available: true, reason: "", interface: "", device: "" },
  { trtype: "rdma", address: "", available: false, reason: "no RDMA device serves eth1's address 10.0.0.2", interface: "eth1", device: "" },
]);
const tcpOnly = transportsOf("node-c", [{ trtype: "tcp", address: "10.0.0.3:4420", available: true, reason: "", interface: "", device: "" }]);

test("rdma resolves only when every end serves it; the error names each node that does not, and why", (t) => {
  t.deepEqual(resolveLeg("rdma", [rdmaNode]), { transport: "rdma" });
  t.deepEqual(resolveLeg("rdma", [rdmaNode, refused, tcpOnly]), {
    error:
      "node node-b does not serve NVMe over RDMA (no RDMA device serves eth1's address 10.0.0.2); " +
      "node node-c does not serve NVMe over RDMA (its engine runs without --rdma-interface)",
  });
});

test("auto prefers RDMA where both ends have it and falls back to TCP; tcp is always TCP", (t) => {
  t.deepEqual(resolveLeg("auto", [rdmaNode, rdmaNode]), { transport: "rdma" });
  t.deepEqual(resolveLeg("auto", [rdmaNode, refused]), { transport: "tcp" });
  t.deepEqual(resolveLeg("tcp", [rdmaNode]), { transport: "tcp" });
});

test("the nvme connect command a frontend host runs", (t) => {
  t.is(nvmeConnectCommand("rdma", "10.0.0.1:4420", "nqn.x:nexus:1", "nqn.h"), "nvme connect -t rdma -a 10.0.0.1 -s 4420 -n nqn.x:nexus:1 --hostnqn nqn.h");
  t.is(nvmeConnectCommand("tcp", "[::1]:4420", "nqn.x", ""), "nvme connect -t tcp -a ::1 -s 4420 -n nqn.x");
  t.is(nvmeConnectCommand("tcp", "", "nqn.x", "nqn.h"), "", "unpublished: no command");
});

test("transport modes", (t) => {
  for (const m of ["tcp", "rdma", "auto"]) t.is(checkTransportMode(m), null);
  t.is(checkTransportMode("roce"), 'must be "tcp", "rdma" or "auto", got "roce"');
  t.is(checkTransportMode(undefined), 'must be "tcp", "rdma" or "auto", got undefined');
});
