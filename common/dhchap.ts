// DH-HMAC-CHAP secrets the control plane hands out, derived from the cluster's token so that
// nothing new has to be stored: a node's secret (what its initiator authenticates with to other
// nodes' replicas) and a volume's frontend secret (what the frontend host passes to
// `nvme connect --dhchap-secret`). The token already grants everything these secrets grant (it
// is the engine API's credential), so deriving from it widens nobody's access; rotating the
// token rotates every secret. One home: the CLI (node secret files) and the provider (shares
// and publishes) both call this.
import { createHmac } from "node:crypto";
import { crc32 } from "node:zlib";

/** "DHHC-1:00:<base64 of a 32-byte key and its CRC-32>:", as `nvme gen-dhchap-key` prints it. */
export function formatDhchapSecret(key: Buffer): string {
  if (![32, 48, 64].includes(key.length)) throw new Error(`a DH-HMAC-CHAP key is 32, 48 or 64 bytes, got ${key.length}`);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(key) >>> 0);
  return `DHHC-1:00:${Buffer.concat([key, crc]).toString("base64")}:`;
}

function derive(token: string, purpose: string): string {
  return formatDhchapSecret(createHmac("sha256", token).update(`strata dhchap ${purpose}`).digest());
}

/** The secret node `node`'s initiator authenticates with (its nexus children). */
export function nodeDhchapSecret(token: string, node: string): string {
  return derive(token, `node:${node}`);
}

/** The secret the frontend of nexus `nexusUuid` authenticates with. */
export function frontendDhchapSecret(token: string, nexusUuid: string): string {
  return derive(token, `frontend:${nexusUuid}`);
}
