#!/usr/bin/env node
// Builds the native addon (native/) with node-gyp. node-gyp cannot download Node's headers on
// our machines, so this points it at the headers the local Node installation ships
// (<prefix>/include/node), found from the running node binary rather than hard-coded.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);

export function findNodeDir() {
  const candidates = [process.env.npm_config_nodedir, resolve(dirname(process.execPath), "..")];
  for (const dir of candidates) {
    if (dir && existsSync(join(dir, "include", "node", "node_api.h"))) return dir;
  }
  throw new Error(
    `cannot find Node.js headers (include/node/node_api.h) under ${candidates.filter(Boolean).join(" or ")}; ` +
      "install the nodejs headers (Debian: nodejs / libnode-dev) or set npm_config_nodedir",
  );
}

const args = process.argv.slice(2);
const debug = args.includes("--debug");
const sanitize = args.includes("--asan");
if (!existsSync(join(root, "native", "binding.gyp"))) process.exit(0);

let nodeGyp;
try {
  nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
} catch {
  console.error("[build-native] node-gyp is not installed yet; run `npm install` first");
  process.exit(1);
}
const gypArgs = [nodeGyp, "rebuild", `--nodedir=${findNodeDir()}`, "--directory", join(root, "native"), `-j`, "max"];
if (debug) gypArgs.push("--debug");
const env = { ...process.env, npm_config_nodedir: findNodeDir() };
if (sanitize) env.STRATA_SANITIZE = "1";
const result = spawnSync(process.execPath, gypArgs, { stdio: "inherit", env });
process.exit(result.status ?? 1);
