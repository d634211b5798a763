// benchReplica's skew option (what `npm run bench:csal` drives its 80/20 overwrite with) sends
// hot_write_fraction of random writes into the first hot_space_fraction of the span and the rest
// past it, and max_ops stops a run after that many I/Os. Thin replicas show where writes landed:
// a range never written reads zeros.
import test, { ExecutionContext } from "ava";
import { randomUUID } from "node:crypto";
import { expectCode, MiB, native, tempPool } from "../native/helpers";

const SIZE = 8 * MiB;
const HOT = SIZE / 4;

async function skewedReplica(t: ExecutionContext, hot_write_fraction: number) {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: `skew-${hot_write_fraction}`, size_bytes: SIZE, thin: true });
  const res = await n.benchReplica({
    uuid: r.uuid, pattern: "randwrite", block_size_bytes: 4096, queue_depth: 8, duration_ms: 10_000, span_bytes: SIZE,
    hot_write_fraction, hot_space_fraction: 0.25, max_ops: 4000,
  });
  const read = (offset: number, length: number) => n.replicaRead({ uuid: r.uuid, offset_bytes: offset, length_bytes: length });
  return { res, hot: await read(0, HOT), cold: await read(HOT, SIZE - HOT) };
}

const zero = (b: Buffer) => b.every((x) => x === 0);

test.serial("hot_write_fraction 1 writes only the hot quarter, 0 only the rest; max_ops stops the run", async (t) => {
  const allHot = await skewedReplica(t, 1);
  t.is(allHot.res.ops, 4000);
  t.false(zero(allHot.hot));
  t.true(zero(allHot.cold), "no write past the hot quarter");
  const allCold = await skewedReplica(t, 0);
  t.is(allCold.res.ops, 4000);
  t.true(zero(allCold.hot), "no write in the hot quarter");
  t.false(zero(allCold.cold));
});

test.serial("out-of-range skew fractions are refused", async (t) => {
  const n = native();
  const { pool } = await tempPool(t);
  const r = await n.createReplica({ pool_uuid: pool.uuid, uuid: randomUUID(), name: "bad", size_bytes: SIZE, thin: true });
  const opts = { uuid: r.uuid, pattern: "randwrite" as const, block_size_bytes: 4096, queue_depth: 1, duration_ms: 10, span_bytes: SIZE };
  await expectCode(t, n.benchReplica({ ...opts, hot_write_fraction: 1.5, hot_space_fraction: 0.2 }), "INVALID_ARGUMENT", /hot_write_fraction/);
  await expectCode(t, n.benchReplica({ ...opts, hot_write_fraction: 0.8, hot_space_fraction: 0 }), "INVALID_ARGUMENT", /hot_space_fraction/);
});
