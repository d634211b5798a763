// One rule, two languages: the nexus rules the control plane checks (common/nexus-rules.ts)
// must be the ones the C++ data path enforces (native/src/nexus/rules.h, nvmf/protocol.h).
// The addon exports its constants; this test fails when one side changes without the other.
import test from "ava";
import { randomUUID } from "node:crypto";
import * as rules from "../../common/nexus-rules";
import { expectCode, native } from "./helpers";

test("the TypeScript nexus rules equal the ones compiled into the addon", (t) => {
  t.deepEqual(native().nexusRules(), {
    label_region_bytes: rules.NEXUS_LABEL_REGION_BYTES,
    max_children: rules.NEXUS_MAX_CHILDREN,
    size_alignment_bytes: rules.NEXUS_SIZE_ALIGNMENT_BYTES,
    child_io_timeout_ms_min: rules.CHILD_IO_TIMEOUT_MS_MIN,
    child_io_timeout_ms_max: rules.CHILD_IO_TIMEOUT_MS_MAX,
    child_io_timeout_ms_default: rules.CHILD_IO_TIMEOUT_MS_DEFAULT,
    local_child_uri_prefix: rules.LOCAL_CHILD_URI_PREFIX,
    remote_child_uri_prefix: rules.REMOTE_CHILD_URI_PREFIX,
    remote_rdma_child_uri_prefix: rules.REMOTE_RDMA_CHILD_URI_PREFIX,
    replica_nqn_prefix: rules.REPLICA_NQN_PREFIX,
    nexus_nqn_prefix: rules.NEXUS_NQN_PREFIX,
    node_nqn_prefix: rules.NODE_NQN_PREFIX,
  });
});

test("the addon refuses exactly past the exported limits (the constants are the ones enforced)", async (t) => {
  const n = native();
  const child = rules.localChildUri(randomUUID());
  const create = (over: { size_bytes?: number; children?: string[]; child_io_timeout_ms?: number }) =>
    n.createNexus({ uuid: randomUUID(), size_bytes: 64 * rules.NEXUS_SIZE_ALIGNMENT_BYTES, children: [child], child_io_timeout_ms: rules.CHILD_IO_TIMEOUT_MS_DEFAULT, ...over });
  await expectCode(t, create({ size_bytes: 64 * rules.NEXUS_SIZE_ALIGNMENT_BYTES + 512 }), "INVALID_ARGUMENT", /multiple of 4096/);
  await expectCode(t, create({ child_io_timeout_ms: rules.CHILD_IO_TIMEOUT_MS_MIN - 1 }), "INVALID_ARGUMENT", /child_io_timeout_ms must be 100 to 600000/);
  await expectCode(t, create({ child_io_timeout_ms: rules.CHILD_IO_TIMEOUT_MS_MAX + 1 }), "INVALID_ARGUMENT", /child_io_timeout_ms/);
  const tooMany = Array.from({ length: rules.NEXUS_MAX_CHILDREN + 1 }, () => rules.localChildUri(randomUUID()));
  await expectCode(t, create({ children: tooMany }), "INVALID_ARGUMENT", /1 to 32 children/);
  await expectCode(t, create({ children: ["file:///tmp/x"] }), "INVALID_ARGUMENT", /replica:\/\/\/<uuid>/);
});
