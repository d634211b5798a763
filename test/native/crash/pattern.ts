// Deterministic block contents for crash tests: every 4 KiB block written is a function of
// (replica, block, version), so a verifier can tell exactly which write a block holds.
import { createHash } from "node:crypto";

export const BLOCK_BYTES = 4096;

export function blockContent(replica: string, block: number, version: number): Buffer {
  const out = Buffer.alloc(BLOCK_BYTES);
  const seed = createHash("sha256").update(`${replica}/${block}/${version}`).digest();
  for (let i = 0; i < BLOCK_BYTES; i += seed.length) seed.copy(out, i);
  // The header makes a mismatch readable in a failure message.
  out.writeUInt32LE(block, 0);
  out.writeUInt32LE(version, 4);
  return out;
}

/** One line of the worker's journal on stdout: what it is about to do, or what was acknowledged. */
export type CrashEvent =
  | { readonly kind: "ready"; readonly replicas: { uuid: string; size_bytes: number }[] }
  | { readonly kind: "issue" | "ack"; readonly op: "create"; readonly uuid: string; readonly size_bytes: number; readonly thin: boolean }
  | { readonly kind: "issue" | "ack"; readonly op: "destroy"; readonly uuid: string }
  | { readonly kind: "issue" | "ack"; readonly op: "resize"; readonly uuid: string; readonly size_bytes: number }
  | { readonly kind: "issue" | "ack"; readonly op: "write"; readonly uuid: string; readonly block: number; readonly version: number }
  | { readonly kind: "issue" | "ack"; readonly op: "grow"; readonly device_bytes: number };
