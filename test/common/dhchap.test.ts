// The secrets the control plane derives: valid DHHC-1 secrets (as the engine's and Linux's
// parsers take them), stable for one purpose, different across nodes, volumes and tokens.
import test from "ava";
import { formatDhchapSecret, frontendDhchapSecret, nodeDhchapSecret } from "../../common/dhchap";
import { checkDhchapSecret } from "../../common/validate";
import { parseSecret } from "../native/nvmf/host";

test("derived secrets are valid DHHC-1 secrets with a 32-byte key and no transform", (t) => {
  for (const s of [nodeDhchapSecret("tok", "node-a"), frontendDhchapSecret("tok", "2f6c0a57-6b5b-4d58-9a4e-7a3e2f1b0c11")]) {
    t.is(checkDhchapSecret(s), null);
    const parsed = parseSecret(s); // the independent TypeScript host's parser checks the CRC too
    t.is(parsed.hash, 0);
    t.is(parsed.key.length, 32);
  }
});

test("one secret per purpose: stable, and different for another node, volume or token", (t) => {
  t.is(nodeDhchapSecret("tok", "node-a"), nodeDhchapSecret("tok", "node-a"));
  t.not(nodeDhchapSecret("tok", "node-a"), nodeDhchapSecret("tok", "node-b"));
  t.not(nodeDhchapSecret("tok", "node-a"), nodeDhchapSecret("other", "node-a"));
  t.not(frontendDhchapSecret("tok", "a"), frontendDhchapSecret("tok", "b"));
  t.not(nodeDhchapSecret("tok", "x"), frontendDhchapSecret("tok", "x"), "a node and a volume never share one");
});

test("keys of other lengths are refused", (t) => {
  t.throws(() => formatDhchapSecret(Buffer.alloc(16)), { message: /32, 48 or 64 bytes/ });
  t.is(checkDhchapSecret(formatDhchapSecret(Buffer.alloc(64, 1))), null);
});
