// probeRdma (native/src/nvmf/rdma_probe.h): whether NVMe over RDMA can be served on an
// interface, and why not, in words an operator can act on. This machine has no RDMA device, so
// the reasons are what is checked; the VM's soft-RoCE checks the usable case.
import test from "ava";
import { native } from "../helpers";

test("an interface that does not exist is named", (t) => {
  const p = native().probeRdma({ interface: "nosuch0" });
  t.false(p.usable);
  t.is(p.reason, "network interface 'nosuch0' does not exist");
});

test("loopback has an address but no RDMA device behind it: the reason says what is missing", (t) => {
  const p = native().probeRdma({ interface: "lo" });
  t.is(p.address, "127.0.0.1");
  t.false(p.usable);
  t.is(p.device, "");
  t.regex(p.reason, /no RDMA connection manager on this host|no RDMA device serves lo's address 127\.0\.0\.1/);
});
