// Strata on Kubernetes as a user declares it: one program with the engines' DaemonSet
// (StrataNodes on @pulumi/kubernetes, through the real pulumi-resource-kubernetes plugin built by
// scripts/install-k8s-plugin.sh) rendered to YAML, and pools and a volume on the engines' nodes.
// `pulumi preview` plans both; `pulumi up` writes the manifests, which must pass k8s-validate
// (strict decoding into k8s.io/api types of a named Kubernetes version), and the pools and the
// volume exist on the engines afterwards. There is no Kubernetes cluster on this machine, so the
// engines serving the pools are the test's local ones, at the addresses given to StrataNodes.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "kubernetes");
const VALIDATOR = join(REPO_ROOT, "test", "k8s-validate");

let cluster: TestCluster;
let stack: Stack;
let renderDir: string;

test.before(async () => {
  const selftest = spawnSync("bash", [join(VALIDATOR, "run-selftest.sh")], { encoding: "utf8" });
  if (selftest.status !== 0) throw new Error(`k8s-validate self-test failed:\n${selftest.stdout}${selftest.stderr}`);
  cluster = await startCluster({ nodes: 2, diskMib: 256 });
  renderDir = mkdtempSync(join(tmpdir(), "strata-k8s-render-"));
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  await stack.setAllConfig(stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), renderDir: renderDir }), true);
});
test.after.always(async () => {
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
  if (renderDir) rmSync(renderDir, { recursive: true, force: true });
});

test.serial("rdma enabled without an interface fails at preview, naming the field", async (t) => {
  await stack.setConfig("rdma", { value: "true" });
  const err = await t.throwsAsync(stack.preview());
  t.regex(err!.message, /StrataNodes "strata": rdma\.interface must be a network interface name/);
  await stack.removeConfig("rdma");
});

test.serial("preview plans the engines' Kubernetes objects and the pools on their nodes, with the real plugin", async (t) => {
  const events: any[] = [];
  const result = await stack.preview({ onEvent: (e) => events.push(e) });
  const planned = events.filter((e) => e.resourcePreEvent).map((e) => `${e.resourcePreEvent.metadata.op} ${e.resourcePreEvent.metadata.type}`);
  for (const type of ["kubernetes:apps/v1:DaemonSet", "kubernetes:core/v1:Secret", "kubernetes:core/v1:Service", "kubernetes:core/v1:Namespace", "pulumi-nodejs:dynamic/strata:Pool", "pulumi-nodejs:dynamic/strata:Volume"])
    t.true(planned.includes(`create ${type}`), `${type} planned: ${planned.join(", ")}`);
  t.true((result.changeSummary.create ?? 0) >= 9);
});

test.serial("up renders manifests Kubernetes accepts, and the pools and volume land on the engines", async (t) => {
  const up = await stack.up();
  t.is(up.summary.result, "succeeded");
  const files = readdirSync(renderDir, { recursive: true }).map(String).filter((f) => f.endsWith(".yaml"));
  t.true(files.some((f) => f.includes("daemonset")), `rendered: ${files.join(", ")}`);
  const check = spawnSync(join(VALIDATOR, "bin", "k8s-validate"), [renderDir], { encoding: "utf8" });
  t.is(check.status, 0, check.stdout + check.stderr);
  t.regex(check.stdout, /^kubernetes v1\.\d+/);
  t.regex(check.stdout, /ok .* DaemonSet\/strata-engine/);
  t.regex(check.stdout, /ok .* Secret\/strata-token/);
  t.regex(check.stdout, /ok .* Service\/strata-engines/);

  const daemonSet = readFileSync(join(renderDir, files.find((f) => f.includes("daemonset"))!), "utf8");
  for (const expected of ["hostNetwork: true", "privileged: true", "--metrics-listen=0.0.0.0:9502", "/readyz", "hugepages-2Mi: 512Mi", "pulumi.com/skipAwait"])
    t.true(daemonSet.includes(expected), `the DaemonSet carries ${expected}`);

  const out = await stack.outputs();
  t.deepEqual(
    out.engineEndpoints.value,
    Object.fromEntries(cluster.nodes.map((n) => [n.node, `${n.endpoint.split(":")[0]}:10124`])),
    "endpoints name every engine's node address at the engine API port",
  );
  const placement = out.placement.value as { node: string }[];
  t.deepEqual(placement.map((p) => p.node).sort(), ["node-a", "node-b"]);
  const pools = await cluster.eachNode((e) => e.call("ListPools", {}));
  t.deepEqual(pools.map((p) => p.pools.length), [1, 1], "a pool on each engine");
  t.true(existsSync(renderDir));
});
