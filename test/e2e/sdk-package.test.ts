// The SDK as a package, used the way a user outside this repository uses it: `npm pack` of sdk/
// (built by `npm run build:sdk`), `npm install` of that tarball into a fresh project folder with
// its own tsconfig, `import * as strata from "@strata/sdk"`, then the real Pulumi CLI. Once per
// compile target from ES2020 to ES2023 (ES2022+ define class fields, which would overwrite the
// outputs Pulumi sets if the SDK's classes had any). The dynamic providers come from
// node_modules, so Pulumi's closure serializer captures them by `require("@strata/sdk/…")`,
// which the dynamic-provider host must resolve from the project folder: up proves it does.
import test from "ava";
import type { Stack } from "@pulumi/pulumi/automation";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { openStack } from "../../cli/pulumi";
import { startCluster, TestCluster } from "../helpers/cluster";
import { packSdk, userProject } from "../helpers/sdk-project";
import { REPO_ROOT } from "../helpers/engine";

// Published to a frontend, so the nexus has an NVMe/TCP address (host, port) to check.
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-0000000000fe";
const TARGETS = ["ES2020", "ES2022", "ES2023"] as const;
const POOL_OUTPUTS = ["uuid", "node", "disk", "name", "labels", "clusterSizeBytes", "drain", "state", "capacityBytes", "usedBytes", "committedBytes", "replicaCount"];
const VOLUME_OUTPUTS = ["uuid", "sizeBytes", "thin", "replicas", "placement", "replicaStatus", "health", "nexus", "node", "pool", "frontendDhchapSecret"];

// What a user writes. It exports every output property through the class, so a property that is
// not the Output Pulumi set (a class field overwriting it) shows up as a missing stack output.
const PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import * as strata from "@strata/sdk";

const config = new pulumi.Config();
const pools = ["node-a", "node-b", "node-c"].map(
  (node) => new strata.Pool(\`pool-\${node}\`, { node, disk: \`file://\${config.require("diskDir")}/\${node}/disk.img\` }),
);
const volume = new strata.Volume("data", { sizeBytes: 64 * strata.MIB, replicas: 2, pools, frontendHostNqn: "${FRONTEND}" });

function outputsOf(resource: object, keys: string[]): Record<string, pulumi.Output<unknown>> {
  const out: Record<string, pulumi.Output<unknown>> = {};
  for (const key of keys) {
    const value = (resource as Record<string, unknown>)[key];
    if (!pulumi.Output.isInstance(value)) throw new Error(\`\${key} is \${String(value)}, not an Output\`);
    out[key] = value;
  }
  return out;
}
export const poolOutputs = pools.map((p) => outputsOf(p, ${JSON.stringify(POOL_OUTPUTS)}));
export const volumeOutputs = outputsOf(volume, ${JSON.stringify(VOLUME_OUTPUTS)});
export const frontendDhchapSecret = volume.frontendDhchapSecret;
`;

interface Placed {
  node: string;
  pool: string;
}

let cluster: TestCluster;
let tarball: string;
const scratch: string[] = [];

test.before(async () => {
  const packDir = mkdtempSync(join(tmpdir(), "strata-sdk-pack-"));
  scratch.push(packDir);
  tarball = await packSdk(packDir);
  cluster = await startCluster({ nodes: 3, diskMib: 256 });
});
test.after.always(async () => {
  await cluster?.down();
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/** A project folder outside the repository with the SDK installed from the packed tarball. */
async function projectFor(target: string): Promise<string> {
  const dir = await userProject({ tarball, name: `strata-sdk-user-${target.toLowerCase()}`, program: PROGRAM, target });
  scratch.push(dir);
  return dir;
}

function placementOf(steps: { op: string; urn: string; newState?: { inputs?: Record<string, unknown>; outputs?: Record<string, unknown> } }[]) {
  const step = steps.find((s) => s.urn.endsWith("::data") && s.urn.includes("strata:Volume"));
  const inputs = step?.newState?.inputs ?? {};
  const placement = (inputs.placement ?? step?.newState?.outputs?.placement ?? []) as Placed[];
  return { step, inputs, placement };
}

for (const target of TARGETS) {
  test.serial(`target ${target}: a project outside the repo installs @strata/sdk; preview places both replicas, up makes them there with every output set`, async (t) => {
    const dir = await projectFor(target);
    t.truthy(readdirSync(join(dir, "node_modules", "@strata", "sdk", "dist", "engine", "proto", "strata", "engine", "v1")).includes("engine.proto"));

    // The package's declarations type-check under the user's settings (what ts-node does at run).
    await promisify(execFile)(process.execPath, [join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc"), "--noEmit", "-p", dir], { cwd: dir }).catch((err) => {
      t.fail(`tsc under ${target}:\n${err.stdout}${err.stderr}`);
    });

    const stackName = `${cluster.stack}-${target.toLowerCase()}`;
    const stack: Stack = await openStack({ workDir: dir, home: cluster.home, stackName });
    const config: Record<string, { value: string; secret?: boolean }> = {
      "strata:token": { value: cluster.nodes[0].token, secret: true },
      diskDir: { value: join(cluster.home, "cluster") },
    };
    for (const n of cluster.nodes) config[`strata:endpoints.${n.node}`] = { value: n.endpoint };
    await stack.setAllConfig(config, true);
    try {
      // The first preview: nothing exists yet, and the plan already names node and pool of both replicas.
      const preview = await cluster.pulumiIn({ cwd: dir, stack: stackName }, "preview", "--json");
      t.is(preview.code, 0, `${preview.stdout}\n${preview.stderr}`);
      const plan = JSON.parse(preview.stdout) as { steps: Parameters<typeof placementOf>[0] };
      const previewed = placementOf(plan.steps);
      t.truthy(previewed.step, "the plan has the volume");
      t.is(previewed.step?.op, "create");
      t.log(`${target} preview placement: ${JSON.stringify(previewed.placement.map((r) => `${r.node}/${r.pool}`))}`);
      if (previewed.placement.length !== 2) t.log(`${target}: the Volume's check received ${JSON.stringify(previewed.inputs, null, 2)}`);
      t.is(previewed.placement.length, 2, "the first preview shows both replicas' placement");
      for (const r of previewed.placement) {
        t.regex(r.node, /^node-[abc]$/);
        t.is(r.pool, `pool-${r.node}`);
      }
      t.is(new Set(previewed.placement.map((r) => r.node)).size, 2, "two replicas, two nodes");

      const up = await stack.up();
      t.is(up.summary.result, "succeeded");
      const pools = up.outputs.poolOutputs?.value as Record<string, unknown>[];
      const volume = up.outputs.volumeOutputs?.value as Record<string, unknown>;
      t.is(pools?.length, 3);
      for (const [i, pool] of (pools ?? []).entries())
        for (const key of POOL_OUTPUTS) t.not(pool[key], undefined, `pool ${i}: ${key} is undefined`);
      for (const key of VOLUME_OUTPUTS) t.not(volume?.[key], undefined, `volume: ${key} is undefined`);
      t.regex(String(volume.uuid), /^[0-9a-f-]{36}$/);
      t.is(volume.health, "online");
      const nexus = volume.nexus as { host?: string; port?: number; health?: string; nqn?: string } | null;
      t.is(nexus?.health, "online");
      t.regex(nexus?.nqn ?? "", /:nexus:/);
      t.truthy(nexus?.host, "nexus.host");
      t.true(typeof nexus?.port === "number" && nexus.port > 0, "nexus.port");
      t.truthy(volume.frontendDhchapSecret, "the frontend's DH-HMAC-CHAP secret");
      t.true(up.outputs.frontendDhchapSecret?.secret, "the frontend's secret is a secret output");
      t.true((pools ?? []).every((p) => typeof p.uuid === "string" && (p.uuid as string).length === 36));
      // What up made is what the first preview showed.
      const made = (volume.placement as Placed[]).map((r) => ({ node: r.node, pool: r.pool }));
      t.deepEqual(made, previewed.placement.map((r) => ({ node: r.node, pool: r.pool })));
      const replicas = (await cluster.eachNode((e) => e.call("ListReplicas", { pool: "" }))).flatMap((r) => r.replicas);
      t.is(replicas.length, 2);

      // The provider in state requires the installed package's modules by name (the host resolves
      // them from the project's node_modules) and holds no path of this checkout.
      const state = await cluster.pulumiIn({ cwd: dir, stack: stackName }, "stack", "export", "--show-secrets");
      t.is(state.code, 0, state.stderr);
      const resources = (JSON.parse(state.stdout) as { deployment: { resources: { type: string; inputs?: { __provider?: unknown } }[] } }).deployment.resources;
      const provider = String(resources.find((r) => r.type === "pulumi-nodejs:dynamic/strata:Volume")?.inputs?.__provider ?? "");
      t.regex(provider, /require\("@strata\/sdk\/dist\/provider\//);
      t.false(provider.includes(REPO_ROOT), "the serialized provider names a path of the checkout");
    } finally {
      const destroyed = await stack.destroy();
      t.is(destroyed.summary.result, "succeeded");
      await stack.workspace.removeStack(stackName);
    }
    const left = await cluster.eachNode(async (e) => ({
      pools: (await e.call("ListPools", {})).pools.length,
      replicas: (await e.call("ListReplicas", { pool: "" })).replicas.length,
      nexuses: (await e.call("ListNexus", {})).nexuses.length,
    }));
    t.deepEqual(left, cluster.nodes.map(() => ({ pools: 0, replicas: 0, nexuses: 0 })), "destroy leaves every engine empty");
  });
}
