#!/usr/bin/env node
// A Node.js language host for the Pulumi CLI, used when the Go module proxy does not serve
// github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs (it is untagged; the proxy
// answers 403). It lets `pulumi up` run a TypeScript project directory (the repository root's
// Pulumi.yaml) the way users expect.
//
// What it does: serves Pulumi's LanguageRuntime gRPC service on a loopback port, prints the
// port (the plugin protocol), and for Run starts @pulumi/pulumi's own program runner
// (cmd/run) with the arguments and environment the Go host would give it. It knows nothing of
// Strata.
"use strict";
const { spawn } = require("node:child_process");
const path = require("node:path");

const strataRoot = path.resolve(__dirname, "..", "..", "..");
function sdkRequire(id, from) {
  return require(require.resolve(id, { paths: [from || process.cwd(), strataRoot] }));
}
const grpc = sdkRequire("@grpc/grpc-js");
const langrpc = sdkRequire("@pulumi/pulumi/proto/language_grpc_pb");
const langproto = sdkRequire("@pulumi/pulumi/proto/language_pb");
const plugproto = sdkRequire("@pulumi/pulumi/proto/plugin_pb");
const emptyproto = sdkRequire("google-protobuf/google/protobuf/empty_pb");

// The CLI starts the plugin as `pulumi-language-nodejs [-flags] <engine address>`.
const engineAddress = process.argv.slice(2).filter((a) => !a.startsWith("-")).pop() || "";

function optionsOf(info) {
  const options = info && info.getOptions() ? info.getOptions().toJavaScript() : {};
  return options || {};
}

function run(call, callback) {
  const req = call.request;
  const info = req.getInfo();
  const programDir = (info && info.getProgramDirectory()) || req.getPwd();
  const entry = (info && info.getEntryPoint()) || req.getProgram() || ".";
  const options = optionsOf(info);
  let runner;
  try {
    runner = require.resolve("@pulumi/pulumi/cmd/run/index.js", { paths: [programDir, strataRoot] });
  } catch (err) {
    callback(null, new langproto.RunResponse().setError(`cannot find @pulumi/pulumi from ${programDir}: run npm install`));
    return;
  }
  const config = {};
  for (const [k, v] of req.getConfigMap().entries()) config[k] = v;
  const args = [
    ...(options.nodeargs ? String(options.nodeargs).split(/\s+/).filter(Boolean) : []),
    runner,
    `--monitor=${req.getMonitorAddress()}`,
    `--engine=${engineAddress}`,
    `--project=${req.getProject()}`,
    `--stack=${req.getStack()}`,
    `--pwd=${req.getPwd()}`,
    `--parallel=${req.getParallel()}`,
    `--organization=${req.getOrganization()}`,
    `--root-directory=${(info && info.getRootDirectory()) || req.getPwd()}`,
  ];
  if (req.getDryrun()) args.push("--dry-run");
  args.push(path.isAbsolute(entry) ? entry : path.join(programDir, entry), ...req.getArgsList());
  const env = {
    ...process.env,
    PULUMI_CONFIG: JSON.stringify(config),
    PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(req.getConfigsecretkeysList()),
    PULUMI_NODEJS_TYPESCRIPT: String(options.typescript !== false),
    // Type checking is `npm run build`'s job; the program run only transpiles.
    PULUMI_NODEJS_TRANSPILE_ONLY: process.env.PULUMI_NODEJS_TRANSPILE_ONLY || "true",
  };
  if (options.tsconfig) env.PULUMI_NODEJS_TSCONFIG_PATH = String(options.tsconfig);
  const child = spawn(process.execPath, args, { cwd: req.getPwd() || programDir, env, stdio: ["ignore", "inherit", "inherit"] });
  child.on("error", (err) => callback(null, new langproto.RunResponse().setError(err.message)));
  child.on("exit", (code, signal) => {
    const resp = new langproto.RunResponse();
    // Exit code 32 means the program already reported its error to the engine.
    if (code === 32) resp.setBail(true);
    else if (code !== 0) resp.setError(signal ? `program killed by ${signal}` : `program exited with code ${code}`);
    callback(null, resp);
  });
}

const server = new grpc.Server({ "grpc.max_receive_message_length": 400 * 1024 * 1024 });
server.addService(langrpc.LanguageRuntimeService, {
  handshake: (_call, cb) => cb(null, new langproto.LanguageHandshakeResponse()),
  getRequiredPlugins: (_call, cb) => cb(null, new langproto.GetRequiredPluginsResponse().setPluginsList([])),
  getRequiredPackages: (_call, cb) => cb(null, new langproto.GetRequiredPackagesResponse().setPackagesList([])),
  getPluginInfo: (_call, cb) => cb(null, new plugproto.PluginInfo().setVersion("3.259.0")),
  run,
  installDependencies: (call) => call.end(),
  runtimeOptionsPrompts: (_call, cb) => cb(null, new langproto.RuntimeOptionsResponse()),
  about: (_call, cb) => cb(null, new langproto.AboutResponse().setExecutable(process.execPath).setVersion(process.version)),
  getProgramDependencies: (_call, cb) => cb(null, new langproto.GetProgramDependenciesResponse()),
  cancel: (_call, cb) => cb(null, new emptyproto.Empty()),
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`pulumi-language-nodejs: cannot listen: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${port}\n`);
});
// The CLI kills the plugin when it is done; exit promptly on SIGTERM too.
process.on("SIGTERM", () => server.forceShutdown() || process.exit(0));
