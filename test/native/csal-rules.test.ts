// One rule, two languages: the CSAL device limits and size the control plane computes
// (common/csal-rules.ts: `pulumi preview` shows a pool on a CSAL device before it exists) must be
// the ones the C++ FTL enforces and creates (native/src/ftl). This test fails when one changes alone.
import test from "ava";
import * as rules from "../../common/csal-rules";
import { expectCode, MiB, native, tempDisk } from "./helpers";

test("the TypeScript CSAL limits equal the ones compiled into the addon", (t) => {
  t.deepEqual(native().ftlRules(), {
    op_percent_min: rules.CSAL_OP_PERCENT_MIN,
    op_percent_max: rules.CSAL_OP_PERCENT_MAX,
    op_percent_default: rules.CSAL_OP_PERCENT_DEFAULT,
    band_mib_max: rules.CSAL_BAND_MIB_MAX,
    band_mib_default: rules.CSAL_BAND_MIB_DEFAULT,
    chunk_kib_min: rules.CSAL_CHUNK_KIB_MIN,
    chunk_kib_max: rules.CSAL_CHUNK_KIB_MAX,
    chunk_kib_default: rules.CSAL_CHUNK_KIB_DEFAULT,
    map_entries_per_page: rules.CSAL_MAP_ENTRIES_PER_PAGE,
    map_min_resident_bytes: rules.CSAL_MAP_MIN_RESIDENT_BYTES,
    fdp_handles_max: rules.FDP_HANDLES_MAX,
    fdp_ru_mib_default: rules.FDP_RU_MIB_DEFAULT,
    fdp_ru_mib_max: rules.FDP_RU_MIB_MAX,
    fdp_op_percent_default: rules.FDP_OP_PERCENT_DEFAULT,
    fdp_op_percent_max: rules.FDP_OP_PERCENT_MAX,
  });
});

const cases = [
  { baseMiB: 96, bandMib: 2, op: 20, chunkKib: 256 },
  { baseMiB: 200, bandMib: 4, op: 30, chunkKib: 512 },
  { baseMiB: 1100, bandMib: 0, op: 0, chunkKib: 0 },
  { baseMiB: 96, zoneMib: 2, op: 20, chunkKib: 256 },
  { baseMiB: 130, zoneMib: 4, op: 10, chunkKib: 1024 },
  { baseMiB: 96, fdp: true, bandMib: 2, op: 20, chunkKib: 256 },
];

for (const c of cases) {
  test(`csalSizeBytes equals what the FTL creates: ${JSON.stringify(c)}`, async (t) => {
    const n = native();
    const cache = tempDisk(t, 32);
    const base = tempDisk(t, c.baseMiB);
    const baseUri = c.zoneMib
      ? `zoned://?base=${encodeURIComponent(base.uri)}&zone_mib=${c.zoneMib}`
      : c.fdp ? `fdp://?base=${encodeURIComponent(base.uri)}&handles=2&ru_mib=4` : base.uri;
    const g = { overprovisionPercent: c.op, bandMib: c.bandMib ?? 0, chunkKib: c.chunkKib };
    const created = await n.createFtl({ cache_uri: cache.uri, base_uri: baseUri, op_percent: c.op || undefined, band_mib: c.bandMib || undefined, chunk_kib: c.chunkKib || undefined });
    t.is(rules.csalSizeBytes({ bytes: c.baseMiB * MiB, zoneMib: c.zoneMib }, g), created.size_bytes);
    // The URI the control plane builds opens it, and carries the geometry it checks.
    const uri = rules.ftlUri(cache.uri, baseUri, g);
    t.is(rules.checkFtlUri(uri), null);
    const info = await n.probeDevice({ uri });
    t.is(info.size_bytes, created.size_bytes);
    const wrongOp = rules.ftlUri(cache.uri, baseUri, { ...g, overprovisionPercent: (c.op || 20) + 1 });
    await expectCode(t, n.probeDevice({ uri: wrongOp }), "FAILED_PRECONDITION", /was created with op_percent=/);
  });
}

test("checkFtlUri names what is wrong", (t) => {
  t.regex(rules.checkFtlUri("ftl://?cache=file%3A%2F%2F%2Fa") ?? "", /base must be a device URI/);
  t.regex(rules.checkFtlUri("ftl://?cache=x&base=file%3A%2F%2F%2Fb") ?? "", /cache must be a URI like/);
  t.regex(rules.checkFtlUri("ftl://?cache=file%3A%2F%2F%2Fa&base=file%3A%2F%2F%2Fb&op_percent=3") ?? "", /op_percent must be a whole percentage from 5 to 90/);
  t.regex(rules.checkFtlUri("ftl://?cache=file%3A%2F%2F%2Fa&base=file%3A%2F%2F%2Fb&zone=1") ?? "", /unknown parameter "zone"/);
  t.is(rules.checkFtlUri(rules.ftlUri("file:///a", "zoned://?base=file%3A%2F%2F%2Fb&zone_mib=8", { overprovisionPercent: 0, bandMib: 0, chunkKib: 0 })), null);
  t.regex(rules.checkZonedUri("zoned://?base=file%3A%2F%2F%2Fb") ?? "", /zone_mib must be/);
  t.is(rules.checkBaseDeviceUri("fdp://?base=file%3A%2F%2F%2Fb&handles=2&ru_mib=16"), null);
  t.regex(rules.checkBaseDeviceUri("fdp://?base=file%3A%2F%2F%2Fb") ?? "", /needs base and handles/);
  t.regex(rules.checkFdpUri("fdp://?base=file%3A%2F%2F%2Fb&handles=9") ?? "", /handles must be a whole number from 1 to 8, got "9"/);
  t.regex(rules.checkFdpUri("fdp://?base=zoned%3A%2F%2F%3Fbase%3Dx&handles=2") ?? "", /base must be a plain device/);
  t.regex(rules.checkFdpUri("fdp://?base=file%3A%2F%2F%2Fb&handles=2&ruh=3") ?? "", /unknown parameter "ruh"/);
});
