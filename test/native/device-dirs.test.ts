// The device directory rule: with device_dirs set (strata-engine always sets it), a file:// device
// must resolve, symlinks followed, into one of them. Its own file: the list is process-wide.
import test from "ava";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadNative } from "../../native";
import { expectCode, MiB } from "./helpers";

const root = mkdtempSync(join(tmpdir(), "strata-dirs-"));
const allowed = join(root, "allowed");
const outside = join(root, "outside");
mkdirSync(allowed);
mkdirSync(outside);
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const n = loadNative();
n.start({ cores: 1, device_dirs: [allowed] });

const req = () => ({ uuid: randomUUID(), name: `d-${randomUUID().slice(0, 8)}`, cluster_size_bytes: MiB, force: false });
const rule = /is outside the engine's device directories \(.*allowed\).*--device-dir/;

test("a file inside a device dir may hold a pool", async (t) => {
  const pool = await n.createPool({ ...req(), device_uri: `file://${join(allowed, "ok.img")}?size_mib=32` });
  await n.destroyPool({ uuid: pool.uuid });
  t.pass();
});

test("a file outside the device dirs is refused, and neither created nor touched", async (t) => {
  const fresh = join(outside, "new.img");
  await expectCode(t, n.createPool({ ...req(), device_uri: `file://${fresh}?size_mib=32` }), "INVALID_ARGUMENT", rule);
  t.false(existsSync(fresh), "the file was not created");
  const existing = join(outside, "data.img");
  writeFileSync(existing, Buffer.alloc(32 * MiB, 7));
  await expectCode(t, n.createPool({ ...req(), device_uri: `file://${existing}`, force: true }), "INVALID_ARGUMENT", rule);
  await expectCode(t, n.importPool({ device_uri: `file://${existing}` }), "INVALID_ARGUMENT", rule);
  await expectCode(t, n.probeDevice({ uri: `file://${existing}` }), "INVALID_ARGUMENT", rule);
  t.true(readFileSync(existing).equals(Buffer.alloc(32 * MiB, 7)));
});

test("symlinks are resolved before the rule: a link inside pointing outside is refused", async (t) => {
  const target = join(outside, "target.img");
  writeFileSync(target, Buffer.alloc(32 * MiB));
  const link = join(allowed, `link-${randomUUID().slice(0, 8)}.img`);
  symlinkSync(target, link);
  await expectCode(t, n.createPool({ ...req(), device_uri: `file://${link}` }), "INVALID_ARGUMENT", /resolves to .*outside\/target\.img\) is outside/);
  // A not-yet-existing file under a linked directory is judged by where the directory really is.
  const linkedDir = join(allowed, `dir-${randomUUID().slice(0, 8)}`);
  symlinkSync(outside, linkedDir);
  await expectCode(t, n.createPool({ ...req(), device_uri: `file://${join(linkedDir, "x.img")}?size_mib=32` }), "INVALID_ARGUMENT", rule);
  t.false(existsSync(join(outside, "x.img")));
  // ../ out of the directory is the same as any other path outside.
  await expectCode(t, n.createPool({ ...req(), device_uri: `file://${allowed}/../outside/y.img?size_mib=32` }), "INVALID_ARGUMENT", rule);
  t.false(existsSync(join(outside, "y.img")));
});

test("device_dirs must name existing directories", (t) => {
  const err = t.throws(() => n.start({ cores: 1, device_dirs: [join(root, "nope")] }));
  t.regex(err!.message, /device directory .*nope is not a directory that exists/);
  t.is((err as { code?: string }).code, "INVALID_ARGUMENT");
});
