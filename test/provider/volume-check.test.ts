// What `pulumi preview` refuses for a Volume: whatever `up` would refuse later, so a bad program
// fails before anything is created (ARCHITECTURE: Validation).
import test from "ava";
import { NEXUS_MAX_CHILDREN } from "../../common/nexus-rules";
import { UNKNOWN } from "../../provider/unknown";
import { MAX_REPLICAS, VolumeInputs, VolumeProvider } from "../../provider/volume";

const MiB = 1024 * 1024;

/** Pools still unknown (as at a first preview), so check validates without placing. */
async function check(news: Partial<VolumeInputs>) {
  return new VolumeProvider().check({}, { pools: [UNKNOWN], ...news });
}

test("a replicated volume whose size is a multiple of 512 but not of 4096 fails at check, naming sizeBytes and the rule", async (t) => {
  const { failures } = await check({ sizeBytes: 64 * MiB + 512, replicas: 3 });
  t.is(failures?.length, 1);
  t.is(failures![0].property, "sizeBytes");
  t.regex(failures![0].reason, /multiple of 4096 bytes for a replicated volume/);
});

test("the same size is fine for a one-replica volume (a plain replica takes 512-byte multiples)", async (t) => {
  t.deepEqual((await check({ sizeBytes: 64 * MiB + 512, replicas: 1 })).failures, []);
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
