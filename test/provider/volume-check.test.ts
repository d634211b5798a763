// What `pulumi preview` refuses for a Volume: whatever `up` would refuse later, so a bad program
// fails before anything is created (ARCHITECTURE: Validation).
import test from "ava";
import { NEXUS_MAX_CHILDREN } from "../../common/nexus-rules";
import { UNKNOWN } from "../../provider/unknown";
import { MAX_REPLICAS, PoolRef, VolumeInputs, VolumeProvider } from "../../provider/volume";

const MiB = 1024 * 1024;

/** Pools still unknown (as at a first preview), so check validates without placing. */
async function check(news: Partial<VolumeInputs>) {
  return new VolumeProvider().check({}, { pools: [UNKNOWN as unknown as PoolRef], ...news });
}

test("a volume whose size is a multiple of 512 but not of 4096 fails at check, naming sizeBytes and the rule, whatever its replica count", async (t) => {
  for (const replicas of [1, 3]) {
    const { failures } = await check({ sizeBytes: 64 * MiB + 512, replicas });
    t.is(failures?.length, 1);
    t.is(failures![0].property, "sizeBytes");
    t.regex(failures![0].reason, /multiple of 4096 bytes \(a volume is served by a nexus/);
  }
});

test("a one-replica volume made before every volume had a nexus keeps its 512-byte rule, but cannot gain replicas or a frontend", async (t) => {
  const legacy = { uuid: "4f0c1d2e-0000-4000-8000-000000000003", sizeBytes: 64 * MiB, replicas: 1, nexusUuid: "", pools: [UNKNOWN as unknown as PoolRef] };
  t.deepEqual((await new VolumeProvider().check(legacy, { ...legacy, sizeBytes: 64 * MiB + 512 })).failures, []);
  const more = await new VolumeProvider().check(legacy, { ...legacy, replicas: 2 });
  t.true(more.failures!.some((f) => f.property === "replicas" && /older Strata as a plain replica/.test(f.reason)));
});

test("a replicated volume with a 4096-aligned size passes, and a 512-misaligned size names only the 512 rule", async (t) => {
  t.deepEqual((await check({ sizeBytes: 64 * MiB, replicas: 2 })).failures, []);
  const { failures } = await check({ sizeBytes: 64 * MiB + 100, replicas: 2 });
  t.is(failures?.length, 1);
  t.regex(failures![0].reason, /multiple of 512/);
});

test("the product's replica limit fits in a nexus", (t) => {
  t.true(MAX_REPLICAS <= NEXUS_MAX_CHILDREN);
});

test("check refuses shrinking and bad values, naming the property", async (t) => {
  const v = new VolumeProvider();
  const old = { uuid: "4f0c1d2e-0000-4000-8000-000000000004", sizeBytes: 64 * MiB, replicas: 1, nexusUuid: "4f0c1d2e-0000-4000-8000-0000000000aa", pools: [UNKNOWN as unknown as PoolRef] };
  const shrink = await v.check(old, { ...old, sizeBytes: 32 * MiB });
  t.true(shrink.failures!.some((f) => f.property === "sizeBytes" && /cannot shrink/.test(f.reason)));
  const bad = await check({ sizeBytes: 4096, replicas: 6, thin: "yes" as unknown as boolean, topologySpread: "always" as never });
  const props = bad.failures!.map((f) => f.property);
  for (const p of ["replicas", "thin", "topologySpread"]) t.true(props.includes(p), p);
  const badNqn = await check({ sizeBytes: 4096, replicas: 1, frontendHostNqn: "host-a" });
  t.true(badNqn.failures!.some((f) => f.property === "frontendHostNqn" && /must start with "nqn\."/.test(f.reason)));
});
