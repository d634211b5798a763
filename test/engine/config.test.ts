import test from "ava";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, parseFlags } from "../../engine/config";

const dir = mkdtempSync(join(tmpdir(), "strata-config-"));
const tokenFile = join(dir, "token");
writeFileSync(tokenFile, "0123456789abcdef0123\n");
const base = ["--node", "node-a", "--data-dir", dir, "--token-file", tokenFile];

test("flags parse into a config with defaults", (t) => {
  const config = parseFlags([...base, "--labels", "zone=zone-a,rack=r1", "--cores=2"]);
  t.is(config.node, "node-a");
  t.is(config.grpc_listen, "127.0.0.1:10124");
  t.deepEqual(config.labels, { zone: "zone-a", rack: "r1" });
  t.is(config.cores, 2);
  t.is(config.token, "0123456789abcdef0123");
});

test("bad flags are refused with the flag's name", (t) => {
  t.throws(() => parseFlags(["--node", "a"]), { instanceOf: ConfigError, message: /--data-dir is required/ });
  t.throws(() => parseFlags([...base, "--cores", "0"]), { message: /--cores must be a whole number/ });
  t.throws(() => parseFlags([...base, "--labels", "zone"]), { message: /--labels entries must be key=value/ });
  t.throws(() => parseFlags([...base, "--grpc-listen", "nohostport"]), { message: /--grpc-listen must be HOST:PORT/ });
  t.throws(() => parseFlags([...base, "--frobnicate", "1"]), { message: /unknown flag --frobnicate/ });
  t.throws(() => parseFlags(["--node", "a", "--data-dir", dir]), { message: /--token-file is required/ });
  t.throws(() => parseFlags(["--node", "a", "--data-dir", dir, "--token-file", join(dir, "nope")]), { message: /cannot be read/ });
});

test("--device-dir defaults to the data dir and repeats", (t) => {
  t.deepEqual(parseFlags(base).device_dirs, [dir]);
  const other = mkdtempSync(join(tmpdir(), "strata-config-devices-"));
  t.deepEqual(parseFlags([...base, "--device-dir", other, `--device-dir=${dir}`]).device_dirs, [other, dir]);
  t.throws(() => parseFlags([...base, "--device-dir", "relative/dir"]), { instanceOf: ConfigError, message: /--device-dir relative\/dir must be an absolute path to an existing directory/ });
  t.throws(() => parseFlags([...base, "--device-dir", join(dir, "missing")]), { message: /--device-dir .*missing must be an absolute path to an existing directory/ });
});

test("--dhchap-secret-file: a DHHC-1 secret is loaded; a bad one is refused without echoing it", (t) => {
  // 32 bytes of 0x11 with their CRC-32: a fixed, valid secret.
  const key = Buffer.alloc(32, 0x11);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(require("node:zlib").crc32(key));
  const secret = `DHHC-1:00:${Buffer.concat([key, crc]).toString("base64")}:`;
  const good = join(dir, "dhchap");
  writeFileSync(good, secret + "\n", { mode: 0o600 });
  t.is(parseFlags([...base, "--dhchap-secret-file", good]).dhchap_secret, secret);
  t.is(parseFlags(base).dhchap_secret, "");
  const bad = join(dir, "dhchap-bad");
  const wrong = secret.replace("ERER", "ERES");
  writeFileSync(bad, wrong);
  const err = t.throws(() => parseFlags([...base, "--dhchap-secret-file", bad]), { message: /--dhchap-secret-file .*CRC-32/ });
  t.false(err!.message.includes(wrong.slice(10, 40)));
});

test("a wildcard --nvmf-listen needs --nvmf-advertise: shares and child URIs never carry 0.0.0.0 (a nexus would connect to itself)", (t) => {
  t.is(parseFlags(base).nvmf_advertise_host, "127.0.0.1");
  t.is(parseFlags([...base, "--nvmf-listen", "10.0.0.5:4420"]).nvmf_advertise_host, "10.0.0.5");
  t.throws(() => parseFlags([...base, "--nvmf-listen", "0.0.0.0:4420"]), { instanceOf: ConfigError, message: /--nvmf-listen 0\.0\.0\.0 .*give --nvmf-advertise HOST/ });
  t.throws(() => parseFlags([...base, "--nvmf-listen", "[::]:4420"]), { message: /give --nvmf-advertise/ });
  t.is(parseFlags([...base, "--nvmf-listen", "0.0.0.0:4420", "--nvmf-advertise", "node-a.storage"]).nvmf_advertise_host, "node-a.storage");
  t.is(parseFlags([...base, "--nvmf-listen", "[::]:4420", "--nvmf-advertise", "[fd00::5]"]).nvmf_advertise_host, "fd00::5");
  t.throws(() => parseFlags([...base, "--nvmf-listen", "0.0.0.0:4420", "--nvmf-advertise", "0.0.0.0"]), { message: /--nvmf-advertise 0\.0\.0\.0 is a wildcard/ });
  t.throws(() => parseFlags([...base, "--nvmf-advertise", "a b"]), { message: /--nvmf-advertise must be a host name or address/ });
});
