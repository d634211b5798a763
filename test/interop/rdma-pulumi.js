#!/usr/bin/env node
// Inside the interop VM, after rdma.sh set up soft-RoCE: a Volume with transport "rdma" and
// replicaTransport "rdma" deployed the way a user does it: `strata cluster up --rdma-interface`,
// then the real Pulumi CLI (local file backend) on a program (test/e2e/fixtures/transport).
// Its outputs must say RDMA on both legs, and data written through the nexus over NVMe/RDMA
// (our initiator, authenticated as the frontend: Debian 6.1's kernel host has no DH-HMAC-CHAP,
// which every published volume requires) reads back byte for byte.
// argv: IFACE ADDR. Prints PASS/FAIL per step; exits non-zero if any step failed.
const { execFileSync } = require("node:child_process");
const { mkdtempSync, rmSync } = require("node:fs");
const { join } = require("node:path");
const { openStack } = require("../../dist/cli/pulumi");
const { loadNative } = require("../../dist/native");

const [iface, addr] = process.argv.slice(2);
const ROOT = join(__dirname, "..", "..");
const FIXTURE = join(ROOT, "test", "e2e", "fixtures", "transport");
const FRONTEND = "nqn.2014-08.org.nvmexpress:uuid:fe000000-0000-4000-8000-00000000d0a1";
const MiB = 1024 * 1024;
const home = mkdtempSync("/tmp/strata-rdma-pulumi-");
const env = { ...process.env, STRATA_HOME: home };
let failed = 0;

function pattern(bytes, seed) {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += 4) b.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ seed) >>> 0, i);
  return b;
}
async function step(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    console.log(`PASS rdma pulumi: ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${detail ? `: ${detail}` : ""}`);
    return true;
  } catch (err) {
    failed = 1;
    console.log(`FAIL rdma pulumi: ${name}\n    ${String(err && err.stack ? err.stack : err).split("\n").join("\n    ")}`);
    return false;
  }
}
const strata = (...args) => execFileSync(process.execPath, [join(ROOT, "bin", "strata.js"), ...args], { env, encoding: "utf8", timeout: 300_000 });

(async () => {
  const ok = await step(`strata cluster up --nodes 2 --rdma-interface ${iface}`, async () => {
    strata("cluster", "up", "--nodes", "2", "--base-port", "21000", "--disk-mib", "256", "--no-config", "--rdma-interface", iface);
    const status = strata("cluster", "status");
    for (const port of [22000, 22001]) if (!status.includes(`${addr}:${port} (rxe0)`)) throw new Error(`cluster status does not show RDMA at ${addr}:${port}:\n${status}`);
    return status.split("\n")[1];
  });
  let stack;
  let nexus;
  let secret = "";
  if (ok) {
    await step('pulumi up: a two-replica Volume with transport "rdma" and replicaTransport "rdma"', async () => {
      stack = await openStack({ workDir: FIXTURE, home, stackName: "vm-rdma" });
      const token = require("node:fs").readFileSync(join(home, "cluster", "token"), "utf8").trim();
      await stack.setAllConfig(
        {
          "strata:token": { value: token, secret: true },
          "strata:endpoints.node-a": { value: "127.0.0.1:21000" },
          "strata:endpoints.node-b": { value: "127.0.0.1:21001" },
          diskDir: { value: join(home, "cluster") },
          frontend: { value: FRONTEND },
          transport: { value: "rdma" },
          replicaTransport: { value: "rdma" },
        },
        true,
      );
      const up = await stack.up();
      if (up.summary.result !== "succeeded") throw new Error(`up: ${up.summary.result}`);
      const out = await stack.outputs();
      nexus = out.nexus.value;
      secret = out.frontendDhchapSecret.value;
      if (nexus.transport !== "rdma") throw new Error(`nexus.transport is ${nexus.transport}`);
      if (!nexus.connectCommand.startsWith(`nvme connect -t rdma -a ${addr} -s `)) throw new Error(`connectCommand: ${nexus.connectCommand}`);
      const legs = nexus.children.map((c) => c.transport).sort().join(",");
      if (legs !== "local,rdma") throw new Error(`children transports: ${legs}`);
      return nexus.connectCommand;
    });
  }
  if (nexus) {
    await step("data written through the nexus over NVMe/RDMA reads back byte for byte", async () => {
      const n = loadNative();
      n.start({ cores: 1 });
      try {
        await n.setHostSecret({ host_nqn: FRONTEND, dhchap_secret: secret, dhchap_ctrl_secret: "" });
        const uri = `nvmf+rdma://${nexus.address}/${nexus.nqn}?hostnqn=${FRONTEND}`;
        const io = (kind, offset_bytes, length_bytes, data = null) => n.deviceIo({ uri, kind, offset_bytes, length_bytes, data });
        const cases = [[0, 4096, 1], [MiB + 4096, 128 * 1024, 2], [8 * MiB, MiB, 3], [32 * MiB - 4096, 4096, 4]];
        for (const [off, len, seed] of cases) await io("write", off, len, pattern(len, seed));
        for (const [off, len, seed] of cases) {
          const got = await io("read", off, len);
          if (!got.equals(pattern(len, seed))) throw new Error(`data at ${off}+${len} differs`);
        }
        return `${cases.length} ranges via ${uri.split("?")[0]}`;
      } finally {
        await n.shutdown();
      }
    });
  }
  if (stack) await step("pulumi destroy", async () => void (await stack.destroy()));
  try {
    strata("cluster", "down", "--purge");
  } catch {}
  rmSync(home, { recursive: true, force: true });
  process.exit(failed);
})().catch((e) => {
  console.log(`FAIL rdma pulumi: script: ${e.stack || e}`);
  process.exit(1);
});
