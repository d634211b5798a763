// StrataNodes' checks and the pod it asks Kubernetes to run (the pure parts of sdk/kubernetes.ts;
// the rendered manifests are validated against Kubernetes's API types by the e2e suite).
import test from "ava";
import { engineArgs, enginePodSpec, engineSpec } from "../../sdk/kubernetes";
import { parseFlags } from "../../engine/config";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = { image: "registry.example/strata-engine:0.1.0", token: "t" };

test("defaults: Guaranteed QoS, host network, probes on the engine's own health endpoints, scrape annotations", (t) => {
  const spec = engineSpec("strata", base);
  const pod = enginePodSpec(spec, "strata-token") as any;
  const c = pod.spec.containers[0];
  t.deepEqual(c.resources.requests, c.resources.limits, "requests equal limits");
  t.deepEqual(c.resources.limits, { cpu: "2", memory: "1Gi" });
  t.true(pod.spec.hostNetwork);
  t.true(c.securityContext.privileged);
  t.is(c.livenessProbe.httpGet.path, "/livez");
  t.is(c.readinessProbe.httpGet.path, "/readyz");
  t.is(pod.metadata.annotations["prometheus.io/scrape"], "true");
  t.is(pod.metadata.annotations["prometheus.io/port"], "9502");
  t.deepEqual(pod.spec.nodeSelector, { "strata.io/engine": "true" });
  const mounts = Object.fromEntries(c.volumeMounts.map((m: any) => [m.name, m.mountPath]));
  t.deepEqual(mounts, { dev: "/dev", data: "/var/lib/strata", token: "/etc/strata" });
});

test("hugepages and RDMA mirror Mayastor's chart values", (t) => {
  const spec = engineSpec("strata", { ...base, cores: 4, memory: "4Gi", hugepages2Mi: "2Gi", rdma: { enabled: true, interface: "eth1" } });
  const c = (enginePodSpec(spec, "s") as any).spec.containers[0];
  t.is(c.resources.limits["hugepages-2Mi"], "2Gi");
  t.is(c.resources.requests["hugepages-2Mi"], "2Gi");
  t.true(engineArgs(spec).includes("--rdma-interface=eth1"));
  t.true(engineArgs(spec).includes("--cores=4"));
});

test("the engine accepts exactly the flags the DaemonSet passes (after the kubelet expands $(VAR))", (t) => {
  const spec = engineSpec("strata", { ...base, engineLabels: { "topology.kubernetes.io/zone": "zone-a" }, rdma: { enabled: true, interface: "eth1" } });
  const expanded = engineArgs(spec).map((a) => a.replace("$(NODE_NAME)", "worker-1").replace("$(HOST_IP)", "10.0.0.5"));
  // The token file and the mounted directories must exist for the engine's parser: stand-ins.
  const dir = mkdtempSync(join(tmpdir(), "strata-k8s-flags-"));
  writeFileSync(join(dir, "token"), "0123456789abcdef0123\n");
  const config = parseFlags(expanded.map((a) => a.replace("/etc/strata/token", join(dir, "token")).replace("/var/lib/strata", dir)));
  t.is(config.node, "worker-1");
  t.is(config.cores, 2);
  t.is(config.rdma_interface, "eth1");
  t.deepEqual(config.metrics_listen, { host: "0.0.0.0", port: 9502 });
  t.is(config.labels["topology.kubernetes.io/zone"], "zone-a");
});

test("bad inputs fail at construction, every wrong field named", (t) => {
  const err = t.throws(() =>
    engineSpec("strata", {
      ...base,
      image: "",
      cores: 0,
      memory: "lots",
      rdma: { enabled: true },
      ports: { grpc: 4420 },
      dataDir: "relative/dir",
    }),
  )!;
  for (const field of ["image", "cores", "memory", "rdma.interface", "ports must all differ", "dataDir"]) t.true(err.message.includes(field), `${field}: ${err.message}`);
  t.throws(() => engineSpec("Strata_Bad", base), { message: /name must be a DNS label/ });
  t.throws(() => engineSpec("strata", { ...base, nodes: [{ name: "w1", address: "10.0.0.1:10124" }] }), { message: /address must be a host name or IP address/ });
});
