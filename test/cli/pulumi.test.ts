// What `strata up|preview|refresh|destroy` repairs before it runs after a killed Pulumi CLI:
// the dead process's lock and an unreadable checkpoint sidecar, and nothing a live one holds.
// The end-to-end proof with real kills is test/e2e/interrupted-deploy.test.ts.
import test from "ava";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { recoverInterruptedUpdate } from "../../cli/pulumi";

function backend(t: { teardown: (fn: () => void) => void }) {
  const home = mkdtempSync(join(tmpdir(), "strata-locks-"));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  const locks = join(home, "pulumi-state", ".pulumi", "locks", "organization", "proj", "dev");
  const stacks = join(home, "pulumi-state", ".pulumi", "stacks", "proj");
  mkdirSync(locks, { recursive: true });
  mkdirSync(stacks, { recursive: true });
  const lock = (name: string, pid: number, host = hostname()) =>
    writeFileSync(join(locks, `${name}.json`), JSON.stringify({ pid, username: "root", hostname: host, timestamp: "2026-11-28T00:00:00Z" }));
  return { home, locks, stacks, lock };
}

/** A pid that is certainly not running: a child that has exited and been reaped. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]).stdout.toString());
}

test("a lock whose process is gone is removed; a live process's lock and another host's are kept", (t) => {
  const b = backend(t);
  const dead = deadPid();
  b.lock("dead", dead);
  writeFileSync(join(b.locks, "dead.json.attrs"), "{}");
  b.lock("live", process.pid);
  b.lock("elsewhere", dead, `${hostname()}-other`);
  const repairs = recoverInterruptedUpdate(b.home, "proj", "dev");
  t.is(repairs.length, 1);
  t.regex(repairs[0], new RegExp(`pid ${dead}.*no longer runs`));
  t.deepEqual(readdirSync(b.locks).sort(), ["elsewhere.json", "live.json"]);
});

test("an unreadable checkpoint sidecar and the killed write's temp file are removed once no live lock remains", (t) => {
  const b = backend(t);
  writeFileSync(join(b.stacks, "dev.json"), '{"version":3}');
  writeFileSync(join(b.stacks, "dev.json.attrs"), "");
  writeFileSync(join(b.stacks, "dev.json.bak.attrs"), '{"md5":"x"}');
  writeFileSync(join(b.stacks, "dev.json.18ec0dc71e01e492.tmp"), '{"vers');
  writeFileSync(join(b.stacks, "other.json.attrs"), "");
  b.lock("dead", deadPid());
  const repairs = recoverInterruptedUpdate(b.home, "proj", "dev");
  t.is(repairs.length, 3, repairs.join("\n"));
  t.true(repairs.some((r) => /dev\.json\.attrs, left unreadable .*dev\.json is the last complete checkpoint/.test(r)));
  t.deepEqual(readdirSync(b.stacks).sort(), ["dev.json", "dev.json.bak.attrs", "other.json.attrs"], "another stack's files are not touched");
});

test("nothing of the checkpoint is touched while a live process holds the lock", (t) => {
  const b = backend(t);
  writeFileSync(join(b.stacks, "dev.json.attrs"), "");
  b.lock("live", process.pid);
  t.deepEqual(recoverInterruptedUpdate(b.home, "proj", "dev"), []);
  t.true(existsSync(join(b.stacks, "dev.json.attrs")));
});
