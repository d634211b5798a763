// Protocol check with a third-party decoder: Wireshark's NVMe/TCP dissector (tshark) decodes a
// capture of our target talking to the test host. Our own host and our own target could agree
// on the same misreading of the spec; an independent decoder that finds every PDU well-formed,
// digests correct and opcodes where they belong would not share it. A last capture sends a
// CapsuleCmd with a corrupted header digest: the dissector must flag it and decode our
// C2HTermReq, so the clean results are not vacuous. Needs tshark (Debian's
// package, installed by scripts/setup.sh): without it the test fails and says how to install it.
import test from "ava";
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MiB, native, pattern, tempPool } from "../helpers";
import { adminQueue, DISCOVERY_NQN, ioQueue, NvmeTcpHost, ok } from "./host";

const HOST = "nqn.2014-08.org.nvmexpress:uuid:5a5a5a5a-0000-4000-8000-00000000c0de";
const INSTALL =
  'echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections && ' +
  "DEBIAN_FRONTEND=noninteractive apt-get install -y tshark";

/**
 * tshark's environment: ours without the sanitizer preload (`npm run test:native-asan` runs node
 * with LD_PRELOAD=libasan; inherited, it makes tshark and dumpcap abort or hang).
 */
function toolEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.LD_PRELOAD;
  delete env.ASAN_OPTIONS;
  delete env.UBSAN_OPTIONS;
  return env;
}

const PDU_NAMES: Record<number, string> = {
  0x00: "ICReq", 0x01: "ICResp", 0x02: "H2CTermReq", 0x03: "C2HTermReq", 0x04: "CapsuleCmd",
  0x05: "CapsuleResp", 0x06: "H2CData", 0x07: "C2HData", 0x09: "R2T",
};

/** Starts a capture on loopback and resolves once dumpcap says it is capturing. */
async function startCapture(filter: string, pcap: string): Promise<{ stop: () => Promise<string> }> {
  const child = spawn("tshark", ["-i", "lo", "-f", filter, "-w", pcap], { stdio: ["ignore", "ignore", "pipe"], env: toolEnv() });
  let stderr = "";
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tshark did not start capturing within 15 s: ${stderr}`)), 15_000);
    let fallback: NodeJS.Timeout | undefined;
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      // "Capturing on 'lo'" comes before dumpcap has its filter attached; tshark 4.x then logs
      // "Capture started", after which packets are really recorded. Older builds may not log
      // it, so "Capturing on" plus a grace period is the fallback.
      if (/Capture started/.test(stderr)) {
        clearTimeout(timer);
        clearTimeout(fallback);
        resolve();
      } else if (/Capturing on/.test(stderr) && !fallback) {
        fallback = setTimeout(() => {
          clearTimeout(timer);
          resolve();
        }, 2000);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`tshark exited (${code}) before capturing: ${stderr}`));
    });
  });
  return {
    stop: async () => {
      // Let the last segments reach the capture before asking dumpcap to flush and exit.
      await new Promise((r) => setTimeout(r, 500));
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGINT");
      await exited;
      return stderr;
    },
  };
}

interface Field { proto: string; name: string; show: string; showname: string }

/** Every <field> of a PDML document, flat, each with the protocol layer it was found in. */
function pdmlFields(pdml: string): Field[] {
  const out: Field[] = [];
  const re = /<(proto|field) name="([^"]*)"([^>]*)>/g;
  let proto = "";
  for (let m = re.exec(pdml); m; m = re.exec(pdml)) {
    const attrs = m[3];
    if (m[1] === "proto") {
      proto = m[2];
      continue;
    }
    out.push({
      proto,
      name: m[2],
      show: /\bshow="([^"]*)"/.exec(attrs)?.[1] ?? "",
      showname: /\bshowname="([^"]*)"/.exec(attrs)?.[1] ?? "",
    });
  }
  return out;
}

function decode(pcap: string, port: number, discoveryPort: number) {
  return spawnSync(
    "tshark",
    ["-r", pcap, "-d", `tcp.port==${port},nvme-tcp`, "-d", `tcp.port==${discoveryPort},nvme-tcp`,
      "-o", "nvme-tcp.check_hdgst:TRUE", "-o", "nvme-tcp.check_ddgst:TRUE", "-T", "pdml"],
    { encoding: "utf8", maxBuffer: 512 * MiB, env: toolEnv() },
  );
}

async function drive(port: number, discoveryPort: number, nqn: string, digests: boolean): Promise<void> {
  const d = await NvmeTcpHost.open(discoveryPort);
  await d.initialize({ hdgst: digests, ddgst: digests });
  ok(await d.connect({ subnqn: DISCOVERY_NQN, hostnqn: HOST }));
  const log = ok(await d.getLogPage(0x70, 2048)).data!;
  if (Number(log.readBigUInt64LE(8)) < 1) throw new Error("discovery log lists no subsystem");
  d.close();

  const admin = await adminQueue(port, nqn, HOST, digests);
  ok(await admin.host.identify(0x01));
  const io = await ioQueue(port, nqn, HOST, admin.cntlid, 1, digests);
  const small = pattern(4096, 3);
  ok(await io.write(16, small, true));
  const big = pattern(128 * 1024, 5);
  ok(await io.write(64, big, false));
  if (!ok(await io.read(64, 32)).data!.equals(big)) throw new Error("128 KiB read back differs");
  if (!ok(await io.read(16, 1)).data!.equals(small)) throw new Error("4 KiB read back differs");
  ok(await io.flush());
  io.close();
  admin.host.close();
  await Promise.all([io.closed, admin.host.closed]);
}

test("tshark's NVMe/TCP dissector decodes a whole session cleanly, with and without digests", async (t) => {
  const probe = spawnSync("tshark", ["--version"], { encoding: "utf8", env: toolEnv() });
  if (probe.error || probe.status !== 0) {
    t.fail(`tshark is not installed (needed for this protocol check). Install it with:\n  ${INSTALL}\n(or run scripts/setup.sh)`);
    return;
  }
  const n = native();
  const { listen_port: port, discovery_port: discoveryPort } = await n.startNvmf({
    listen_host: "127.0.0.1", listen_port: 0, discovery_host: "127.0.0.1", discovery_port: 0,
  });
  const { pool } = await tempPool(t, 64);
  const uuid = randomUUID();
  await n.createReplica({ pool_uuid: pool.uuid, uuid, name: `ts-${uuid.slice(0, 8)}`, size_bytes: 16 * MiB, thin: true });
  const { nqn } = await n.shareReplica({ uuid, allowed_host_nqns: [HOST] });
  t.teardown(() => n.unshareReplica({ uuid }));

  const dir = mkdtempSync(join(tmpdir(), "strata-tshark-"));
  t.teardown(() => { if (!process.env.STRATA_KEEP_PCAP) rmSync(dir, { recursive: true, force: true }); });
  for (const digests of [false, true]) {
    const pcap = join(dir, `nvme-tcp-${digests ? "digests" : "plain"}.pcapng`);
    const capture = await startCapture(`tcp port ${port} or tcp port ${discoveryPort}`, pcap);
    try {
      await drive(port, discoveryPort, nqn, digests);
    } finally {
      await capture.stop();
    }
    t.true(statSync(pcap).size > 0, "capture written");
    const decoded = decode(pcap, port, discoveryPort);
    t.is(decoded.status, 0, decoded.stderr);
    const fields = pdmlFields(decoded.stdout);
    const label = digests ? "with digests" : "without digests";

    const counts: Record<string, number> = {};
    for (const f of fields.filter((x) => x.name === "nvme-tcp.type")) {
      const name = PDU_NAMES[Number(f.show)] ?? `unknown(${f.show})`;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    t.log(`${label}: PDUs decoded ${JSON.stringify(counts)}`);
    for (const want of ["ICReq", "ICResp", "CapsuleCmd", "CapsuleResp", "R2T", "H2CData", "C2HData"]) {
      t.true((counts[want] ?? 0) > 0, `${label}: the dissector saw no ${want}`);
    }
    t.false(Object.keys(counts).some((k) => k.startsWith("unknown") || k.endsWith("TermReq")), `${label}: unexpected PDU types ${JSON.stringify(counts)}`);

    // Nothing malformed, nothing the dissector could not place, no expert error or warning.
    t.false(/<proto name="_ws\.malformed"/.test(decoded.stdout), `${label}: the dissector reports a malformed packet`);
    t.deepEqual(fields.filter((f) => f.name === "nvme-tcp.unknown_data").map((f) => f.showname), [], `${label}: unknown data`);
    // Expert info of the NVMe layers only: TCP's own notes (SYN/FIN, zero window on a busy
    // loopback) say nothing about our PDUs.
    const nvme = (f: Field) => f.proto.startsWith("nvme");
    const expert = fields.filter((f) => nvme(f) && f.name === "_ws.expert.severity" && Number(f.show) >= 0x00600000);
    const expertText = fields.filter((f) => nvme(f) && f.name === "_ws.expert.message").map((f) => f.show);
    t.deepEqual(expert.map((f) => f.showname), [], `${label}: NVMe expert warnings/errors: ${[...new Set(expertText)].join("; ")}`);
    const tcpNotes = [...new Set(fields.filter((f) => !nvme(f) && f.name === "_ws.expert.message").map((f) => f.show))];
    if (tcpNotes.length > 0) t.log(`${label}: TCP-level expert notes (not NVMe): ${tcpNotes.join("; ")}`);
    t.false(/showname="[^"]*Unknown PDU/i.test(decoded.stdout), `${label}: an Unknown PDU`);

    // Digests: present and verified by the dissector exactly when negotiated.
    const hd = fields.filter((f) => f.name === "nvme-tcp.hdgst.status");
    const dd = fields.filter((f) => f.name === "nvme-tcp.ddgst.status");
    if (digests) {
      t.true(hd.length > 0 && dd.length > 0, `${label}: the dissector checked no digests`);
      const bad = [...hd, ...dd].filter((f) => !/good/i.test(f.showname));
      t.deepEqual(bad.map((f) => f.showname), [], `${label}: digest status not good`);
      t.log(`${label}: ${hd.length} header digests and ${dd.length} data digests verified`);
    } else {
      t.is(fields.filter((f) => f.name === "nvme-tcp.hdgst" || f.name === "nvme-tcp.ddgst").length, 0, `${label}: digests without negotiation`);
    }

    // Opcodes decode to the names we sent.
    const opcodes = new Set(fields.filter((f) => /^nvme\.(cmd\.opc|fabrics\.cmd\.fctype)$/.test(f.name)).map((f) => f.showname));
    t.log(`${label}: opcodes ${[...opcodes].join(" | ")}`);
    const all = [...opcodes].join("\n");
    for (const name of [/Connect/, /Identify/, /Write/, /Read/, /Flush/, /Get Log Page/]) {
      t.regex(all, name, `${label}: no command decoded as ${name}`);
    }
  }

  // Negative control: the same decoder must notice a bad header digest (and our C2HTermReq),
  // or the clean results above would prove nothing.
  const pcap = join(dir, "nvme-tcp-corrupt.pcapng");
  const capture = await startCapture(`tcp port ${port}`, pcap);
  try {
    const { host } = await adminQueue(port, nqn, HOST, true);
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x18; // Keep Alive
    sqe.writeUInt16LE(0x7777, 2);
    const pdu = host.capsule(sqe, null);
    pdu[72] ^= 0xff; // header digest
    host.send(pdu);
    await host.closed;
  } finally {
    await capture.stop();
  }
  const decoded = decode(pcap, port, discoveryPort);
  const fields = pdmlFields(decoded.stdout);
  const statuses = fields.filter((f) => f.name === "nvme-tcp.hdgst.status").map((f) => f.showname);
  t.true(statuses.some((x) => !/good/i.test(x)), `corrupted header digest not flagged: ${JSON.stringify([...new Set(statuses)])}`);
  t.true(fields.some((f) => f.name === "nvme-tcp.type" && Number(f.show) === 0x03), "our C2HTermReq decoded");
});
