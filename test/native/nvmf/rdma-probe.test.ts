// probeRdma (native/src/nvmf/rdma_probe.h): whether NVMe over RDMA can be served on an
// interface, and why not, in words an operator can act on. This machine has no RDMA device, so
// the reasons are what is checked; the VM's soft-RoCE checks the usable case.
import { networkInterfaces } from "node:os";
import test from "ava";
import { native } from "../helpers";

test("an interface that does not exist is named", (t) => {
  const p = native().probeRdma({ interface: "nosuch0" });
  t.false(p.usable);
  t.is(p.reason, "network interface 'nosuch0' does not exist");
});

test("loopback is refused by name: the RDMA CM would bind it to any device", (t) => {
  const p = native().probeRdma({ interface: "lo" });
  t.is(p.address, "127.0.0.1");
  t.false(p.usable);
  t.is(p.device, "");
  t.regex(p.reason, /^network interface 'lo' is a loopback interface; RDMA needs one with an RDMA device behind it/);
});

test("an interface without an RDMA device behind it: the reason says what is missing", (t) => {
  // A dummy interface needs root and a namespace; any non-loopback interface with an address
  // serves: this host has no RDMA device at all.
  const iface = Object.entries(networkInterfaces()).find(([name, addrs]) => name !== "lo" && (addrs ?? []).some((a) => a.family === "IPv4"));
  if (!iface) return t.pass("no non-loopback IPv4 interface here");
  const p = native().probeRdma({ interface: iface[0] });
  t.false(p.usable);
  t.regex(p.reason, new RegExp(`no RDMA connection manager on this host|no RDMA device serves ${iface[0]}'s address`));
});
