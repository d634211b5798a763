#!/usr/bin/env node
// Builds the installable @strata/sdk package in sdk/ (`npm run build:sdk`): compiles
// sdk/index.ts and what it imports (provider/, common/, the generated engine API types) to
// sdk/dist with declarations, keeping the repository's layout (dist/sdk, dist/provider,
// dist/common, dist/engine), and copies engine/proto to sdk/dist/engine/proto, where
// common/client.ts's protoRoot() finds it from dist/common exactly as it finds engine/proto
// from common/. Then loads the built package once the way a program would, so a package that
// cannot load fails the build rather than a user's `pulumi preview`.
//
// sdk/package.json's fields are chosen for both users of sdk/: a project that installed the
// package imports "@strata/sdk", which Node resolves through `exports` (dist/sdk/index.js; and
// `./dist/*`, since Pulumi's closure serializer captures the providers as
// require("@strata/sdk/dist/provider/…")); the repository's own programs import the directory
// ("../../sdk"), which Node resolves through `main` ("index": sdk/index.ts under ts-node, as
// before the package existed). So `main` must stay "index" and sdk/ must hold no index.js.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const sdk = join(root, "sdk");
const dist = join(sdk, "dist");
const fail = (msg) => {
  console.error(`build-sdk: ${msg}`);
  process.exit(1);
};

// One version for the whole repository: the SDK is released with the engine it talks to.
const rootVersion = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
const pkg = JSON.parse(readFileSync(join(sdk, "package.json"), "utf8"));
if (pkg.version !== rootVersion) fail(`sdk/package.json has version ${pkg.version}, the root package.json ${rootVersion}: make them equal`);

if (pkg.main !== "index" || existsSync(join(sdk, "index.js")))
  fail('sdk/package.json "main" must be "index" and sdk/index.js must not exist: the repo\'s programs import sdk/ as a directory and must get sdk/index.ts');
if (!existsSync(join(root, "engine", "generated", "engine.ts"))) fail("engine/generated is missing: run `npm run build:proto` first");

rmSync(dist, { recursive: true, force: true });
try {
  execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(sdk, "tsconfig.json")], { stdio: "inherit" });
} catch {
  fail("tsc failed (see above)");
}
cpSync(join(root, "engine", "proto"), join(dist, "engine", "proto"), { recursive: true, filter: (src) => !/\.(?!proto$)[^/]+$/.test(src) });

for (const file of [pkg.exports["."].default, pkg.types, "dist/engine/proto/strata/engine/v1/engine.proto"]) {
  if (!existsSync(join(sdk, file))) fail(`sdk/${file} was not built`);
}
// Load it: the module graph resolves, and the engine API descriptor is read from dist/engine/proto.
const require = createRequire(join(sdk, "package.json"));
const client = require(join(dist, "common", "client.js"));
if (!client.protoRoot().startsWith(dist)) fail(`the built client reads its proto from ${client.protoRoot()}, not from sdk/dist`);
client.engineDefinition();
const index = require(join(sdk, pkg.exports["."].default));
for (const name of ["Pool", "Volume", "MIB", "GIB", "CONFIG_KEYS"]) if (!(name in index)) fail(`the package does not export ${name}`);
// "@strata/sdk/kubernetes" (StrataNodes) loads only with @pulumi/kubernetes, an optional peer.
const kubernetes = require(join(sdk, pkg.exports["./kubernetes"].default));
if (!("StrataNodes" in kubernetes)) fail("the package's ./kubernetes entry does not export StrataNodes");
console.log(`build-sdk: @strata/sdk ${pkg.version} built in sdk/dist`);
