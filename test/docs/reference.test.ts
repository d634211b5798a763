// docs/REFERENCE.md is generated from the SDK's types; it must match them.
import test from "ava";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "../helpers/engine";

test("docs/REFERENCE.md is what scripts/gen-reference.mjs prints from the SDK's types", (t) => {
  const run = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "gen-reference.mjs"), "--check"], { encoding: "utf8" });
  t.is(run.status, 0, run.stderr);
});
