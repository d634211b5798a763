// Every engine call carries `authorization: Bearer <token>`. The comparison is constant-time
// so the token cannot be guessed byte by byte from response timing.
import { Metadata } from "@grpc/grpc-js";
import { createHash, timingSafeEqual } from "node:crypto";

export const AUTH_METADATA_KEY = "authorization";

export function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set(AUTH_METADATA_KEY, `Bearer ${token}`);
  return md;
}

export function tokenMatches(metadata: Metadata, expectedToken: string): boolean {
  const values = metadata.get(AUTH_METADATA_KEY);
  if (values.length !== 1 || typeof values[0] !== "string") return false;
  const presented = values[0].startsWith("Bearer ") ? values[0].slice("Bearer ".length) : "";
  // Hash both sides so lengths match and timingSafeEqual never throws.
  const a = createHash("sha256").update(presented).digest();
  const b = createHash("sha256").update(expectedToken).digest();
  return presented.length > 0 && timingSafeEqual(a, b);
}
