// The transports of a volume's two legs as a user declares them (`transport` for the frontend,
// `replicaTransport` for nexus-to-replica), with the real Pulumi CLI. These engines serve NVMe
// over TCP only (this machine has no RDMA device; the VM's soft-RoCE suite serves RDMA), so:
// "rdma" fails at preview naming the node and why, "auto" falls back to TCP and the outputs say
// which transport each leg uses and the `nvme connect` command, which really connects and
// reads back what it wrote; a changed replicaTransport is refused rather than half-applied.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openStack } from "../../cli/pulumi";
import { stackConfig, startCluster, TestCluster } from "../helpers/cluster";
import { REPO_ROOT } from "../helpers/engine";
import { VerifyingLoad, VolumeModel } from "../helpers/load";

const FIXTURE = join(REPO_ROOT, "test", "e2e", "fixtures", "transport");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000fb";
const MiB = 1024 * 1024;

interface NexusOut {
  node: string;
  nqn: string;
  transport: string;
  address: string;
  host: string;
  port: number;
  connectCommand: string;
  children: { node: string; state: string; transport: string }[];
}

let cluster: TestCluster;
let stack: Stack;

async function legs(transport: string, replicaTransport: string): Promise<void> {
  await stack.setAllConfig({ transport: { value: transport }, replicaTransport: { value: replicaTransport } });
}

test.before(async () => {
  cluster = await startCluster({ nodes: 2, diskMib: 256 });
  stack = await openStack({ workDir: FIXTURE, home: cluster.home, stackName: cluster.stack });
  await stack.setAllConfig(stackConfig(cluster, { diskDir: join(cluster.home, "cluster"), frontend: FRONTEND }), true);
});
test.after.always(async () => {
  await cluster?.down();
  rmSync(join(FIXTURE, `Pulumi.${cluster?.stack}.yaml`), { force: true });
});

test.serial("a transport that is not tcp, rdma or auto fails at preview", async (t) => {
  await legs("roce", "tcp");
  const err = await t.throwsAsync(stack.preview());
  t.regex(err!.message, /transport.*must be "tcp", "rdma" or "auto", got "roce"/);
});

test.serial("transport rdma on a nexus node without RDMA fails at preview naming the node and why", async (t) => {
  await legs("rdma", "tcp");
  const err = await t.throwsAsync(stack.preview());
  t.regex(err!.message, /transport.*the frontend leg cannot use RDMA: node node-[ab] does not serve NVMe over RDMA \(its engine runs without --rdma-interface\)/);
});

test.serial("replicaTransport rdma fails at preview naming the nodes that cannot serve it; nothing was made", async (t) => {
  await legs("tcp", "rdma");
  const err = await t.throwsAsync(stack.preview());
  t.regex(err!.message, /replicaTransport.*the replica leg cannot use RDMA: node node-[ab] does not serve NVMe over RDMA .*; node node-[ab] does not serve/);
  const pools = await cluster.eachNode((e) => e.call("ListPools", {}));
  t.deepEqual(pools.map((p) => p.pools.length), [0, 0], "preview made nothing");
});

test.serial("auto on both legs falls back to TCP: the outputs say so, and the connect command's address serves the data", async (t) => {
  await legs("auto", "auto");
  const up = await stack.up();
  t.is(up.summary.result, "succeeded");
  const out = await stack.outputs();
  const nexus = out.nexus.value as NexusOut;
  t.is(nexus.transport, "tcp");
  t.is(nexus.connectCommand, `nvme connect -t tcp -a ${nexus.host} -s ${nexus.port} -n ${nexus.nqn} --hostnqn ${FRONTEND}`);
  t.deepEqual(nexus.children.map((c) => [c.node === nexus.node ? "nexus node" : "other", c.transport]), [["nexus node", "local"], ["other", "tcp"]]);
  const engine = cluster.connect(nexus.node);
  const uris = (await engine.call("ListNexus", {})).nexuses[0].children.map((c) => c.uri);
  engine.close();
  t.true(uris.some((u) => u.startsWith("nvmf://")), `the remote child is NVMe/TCP: ${uris.join(", ")}`);

  // The frontend connects where connectCommand says and reads back every byte it wrote.
  const [, host, port] = / -a (\S+) -s (\d+) /.exec(nexus.connectCommand)!;
  t.is(host, "127.0.0.1");
  const load = await VerifyingLoad.connect(Number(port), nexus.nqn, FRONTEND, new VolumeModel(32 * MiB), out.frontendDhchapSecret.value as string);
  t.teardown(() => load.close());
  load.start(4);
  await load.progress(100);
  const counters = await load.stop();
  t.deepEqual(counters.mismatches, []);
  t.is(counters.writesFailed, 0);
  t.deepEqual(await load.verifyAll(), []);
});

test.serial("replicaTransport cannot change in place: preview refuses and names why; the volume is untouched", async (t) => {
  await legs("auto", "tcp");
  const err = await t.throwsAsync(stack.preview());
  t.regex(err!.message, /replicaTransport.*cannot change from "auto" to "tcp" in place: existing children keep the transport they were added with/);
  await legs("tcp", "auto");
  const preview = await stack.preview();
  t.deepEqual(preview.changeSummary, { same: 3, update: 1 }, "the frontend leg's transport changes only what the outputs report");
  const up = await stack.up();
  t.is(up.summary.result, "succeeded");
  t.is(((await stack.outputs()).nexus.value as NexusOut).transport, "tcp");
});

test.serial("destroy leaves every engine empty", async (t) => {
  await stack.destroy();
  const pools = await cluster.eachNode((e) => e.call("ListPools", {}));
  t.deepEqual(pools.map((p) => p.pools.length), [0, 0]);
});
