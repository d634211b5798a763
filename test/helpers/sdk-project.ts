// A Pulumi project the way a user outside this repository has one: `npm pack` of sdk/ (built by
// `npm run build:sdk`), `npm install` of that tarball into a fresh folder with `pulumi new
// typescript`'s tsconfig, and a program that imports "@strata/sdk". Used by the SDK package test
// and by the preview benchmark, which must measure what users run.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "./engine";

/** npm as a user runs it: none of the npm_* variables of an `npm test` around us. */
export async function npm(cwd: string, ...args: string[]): Promise<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")));
  const { stdout } = await promisify(execFile)("npm", args, { cwd, env, timeout: 240_000, maxBuffer: 16 << 20 });
  return stdout;
}

/** Builds and packs the SDK into `dir`; returns the tarball's path. */
export async function packSdk(dir: string): Promise<string> {
  await promisify(execFile)(process.execPath, [join(REPO_ROOT, "scripts", "build-sdk.mjs")], { cwd: REPO_ROOT, timeout: 240_000 });
  const packed = JSON.parse(await npm(join(REPO_ROOT, "sdk"), "pack", "--json", "--pack-destination", dir)) as { filename: string }[];
  return join(dir, packed[0].filename);
}

/** A fresh project folder (under the system temp dir) with the packed SDK installed and `program` as index.ts. */
export async function userProject(opts: { tarball: string; name: string; program: string; target?: string }): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `${opts.name}-`));
  writeFileSync(join(dir, "Pulumi.yaml"), `name: ${opts.name}\nruntime:\n  name: nodejs\n  options:\n    typescript: true\n`);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: opts.name, private: true }, null, 2));
  // `pulumi new typescript`'s tsconfig with the target under test; useDefineForClassFields is
  // left to the target's default.
  writeFileSync(
    join(dir, "tsconfig.json"),
    JSON.stringify(
      {
        compilerOptions: {
          strict: true,
          outDir: "bin",
          target: opts.target ?? "ES2020",
          module: "commonjs",
          moduleResolution: "node",
          sourceMap: true,
          experimentalDecorators: true,
          pretty: true,
          noFallthroughCasesInSwitch: true,
          noImplicitReturns: true,
          forceConsistentCasingInFileNames: true,
        },
        files: ["index.ts"],
      },
      null,
      2,
    ),
  );
  writeFileSync(join(dir, "index.ts"), opts.program);
  // A real install of the packed SDK and its dependencies. @pulumi/pulumi is the SDK's peer: a
  // user's project has it already; here it is the repository's, linked in after the install so
  // npm never sees (or prunes) it and nothing is downloaded for it.
  await npm(dir, "install", "--no-audit", "--no-fund", "--prefer-offline", "--legacy-peer-deps", opts.tarball);
  mkdirSync(join(dir, "node_modules"), { recursive: true });
  symlinkSync(join(REPO_ROOT, "node_modules", "@pulumi"), join(dir, "node_modules", "@pulumi"), "dir");
  return dir;
}
