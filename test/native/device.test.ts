// Devices: probing reports what the engine would open, and the engine lists what pools use.
import test from "ava";
import { randomUUID } from "node:crypto";
import { native, tempDisk, tempPool, MiB } from "./helpers";

test("probeDevice describes a file without creating or claiming it", async (t) => {
  const n = native();
  const disk = tempDisk(t, 24);
  const d = await n.probeDevice({ uri: disk.uri });
  t.like(d, { uri: disk.uri, kind: "file", path: disk.path, size_bytes: 24 * MiB, block_size_bytes: 512, in_use_by: null });
  t.regex(d.major_minor!, /^\d+:\d+$/);
  t.is(typeof d.direct_io, "boolean");
});

test("listDevices shows the devices pools use, with in_use_by", async (t) => {
  const n = native();
  const { pool, uri } = await tempPool(t);
  const listed = (await n.listDevices()).find((d) => d.uri === uri);
  t.is(listed?.in_use_by, pool.uuid);
  t.is((await n.probeDevice({ uri })).in_use_by, pool.uuid);
});

test("a malloc device is the same device for the same name within a process", async (t) => {
  const n = native();
  const name = `m${randomUUID().slice(0, 8)}`;
  const a = await n.createPool({ uuid: randomUUID(), name, device_uri: `malloc:///${name}?size_mib=16`, cluster_size_bytes: MiB, force: false });
  await n.exportPool({ uuid: a.uuid });
  const probed = await n.probeDevice({ uri: `malloc:///${name}` });
  t.like(probed, { kind: "malloc", size_bytes: 16 * MiB, in_use_by: null, direct_io: false });
  t.is((await n.importPool({ device_uri: `malloc:///${name}` })).uuid, a.uuid);
  await n.destroyPool({ uuid: a.uuid });
});
