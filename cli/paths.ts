// Where the local tooling keeps things. The project root is found from this file, so `npx
// strata` works from any working directory inside the checkout.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, "Pulumi.yaml")) && existsSync(join(dir, "package.json"))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot find the Strata checkout (Pulumi.yaml + package.json) above ${__dirname}`);
}

/** The local state folder: engines' data, disks, the token, the Pulumi backend. */
export function strataHome(): string {
  return resolve(process.env.STRATA_HOME ?? join(projectRoot(), ".strata"));
}

export function pulumiBinDir(): string {
  return join(projectRoot(), "tools", "pulumi", "bin");
}
