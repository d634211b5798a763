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
