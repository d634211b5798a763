import test from "ava";
import { checkDeviceUri, checkLabels, checkSizeBytes, checkUuid, parseSize } from "../../common/validate";

test("device URIs: the three schemes are accepted", (t) => {
  t.is(checkDeviceUri("file:///var/lib/strata/disk.img?size_mib=1024"), null);
  t.is(checkDeviceUri("uring:///dev/nvme0n1"), null);
  t.is(checkDeviceUri("malloc:///scratch?size_mib=64"), null);
});

test("device URIs: each malformed shape names what is wrong", (t) => {
  t.regex(checkDeviceUri("nbd:///dev/nbd0")!, /unknown scheme "nbd:"; supported: file:\/\/, uring:\/\/, malloc:\/\//);
  t.regex(checkDeviceUri("file://host/disk")!, /empty host/);
  t.regex(checkDeviceUri("malloc:///x")!, /size_mib/);
  t.regex(checkDeviceUri("file:///x?size_mib=-1")!, /positive whole number/);
  t.regex(checkDeviceUri("file:///x?mode=rw")!, /unknown parameter "mode"/);
  t.regex(checkDeviceUri("uring:///tmp/x")!, /under \/dev/);
  t.regex(checkDeviceUri("not a uri")!, /must be a URI/);
  t.regex(checkDeviceUri(42)!, /got number 42/);
});

test("sizes must be positive whole multiples of 512", (t) => {
  t.is(checkSizeBytes(1024 * 1024), null);
  t.regex(checkSizeBytes(-4096)!, /positive/);
  t.regex(checkSizeBytes(1.5)!, /whole number/);
  t.regex(checkSizeBytes(1000)!, /multiple of 512/);
  t.regex(checkSizeBytes("1GiB")!, /number of bytes/);
});

test("uuids and labels", (t) => {
  t.is(checkUuid("4f0c1d2e-0000-4000-8000-000000000001"), null);
  t.regex(checkUuid("not-a-uuid")!, /uuid/);
  t.is(checkLabels({ zone: "zone-a" }), null);
  t.regex(checkLabels({ zone: 3 })!, /value of "zone"/);
  t.regex(checkLabels({ "bad key!": "x" })!, /key "bad key!"/);
});

test("parseSize understands binary units", (t) => {
  t.is(parseSize("1GiB"), 1024 ** 3);
  t.is(parseSize("512 MiB"), 512 * 1024 ** 2);
  t.is(parseSize("1GB"), null);
});
