// A small NVMe/TCP host for tests, written from the spec with node:net: ICReq (optionally
// with digests), Fabrics Connect and properties, admin and NVM commands, R2T/H2CData for
// writes, C2HData for reads. Test-only: the product never speaks NVMe/TCP from JavaScript.
import { createDiffieHellman, createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Socket, connect as netConnect } from "node:net";
import { crc32 } from "node:zlib";
import { crc32c as crc32cOf } from "../helpers";

function crc32c(b: Buffer): number {
  return crc32cOf(b as Parameters<typeof crc32cOf>[0]);
}

export const DISCOVERY_NQN = "nqn.2014-08.org.nvmexpress.discovery";
export const BLOCK_BYTES = 4096;

export interface Completion {
  readonly status: number; // the CQE status field >> 1 (SCT << 8 | SC), 0 = success
  readonly dnr: boolean;
  readonly dw0: number;
  readonly dw1: number;
  readonly sqhd: number;
  readonly data: Buffer | null;
}

export interface TermReq {
  readonly fes: number;
  readonly fei: number;
}

interface Pending {
  resolve(c: Completion): void;
  reject(e: Error): void;
  readData: Buffer | null; // C2H buffer
  writeData: Buffer | null; // H2C data sent via R2T
}

export class NvmeTcpHost {
  private buffer = Buffer.alloc(0);
  private nextCid = 1;
  private readonly pending = new Map<number, Pending>();
  private icResolve: ((b: Buffer) => void) | null = null;
  hdgst = false;
  ddgst = false;
  maxH2cData = 0;
  qid = 0;
  termReq: TermReq | null = null;
  /** R2T PDUs received. */
  r2ts = 0;
  readonly unexpected: string[] = [];
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (d: Buffer) => this.onData(d));
    socket.on("error", () => undefined);
    socket.once("close", () => {
      for (const p of this.pending.values()) p.reject(new Error("connection closed"));
      this.pending.clear();
    });
  }

  static async open(port: number, host = "127.0.0.1"): Promise<NvmeTcpHost> {
    const socket = netConnect({ port, host });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new NvmeTcpHost(socket);
  }

  /** ICReq/ICResp. Returns the ICResp PDU. */
  async initialize(opts: { hdgst?: boolean; ddgst?: boolean } = {}): Promise<Buffer> {
    const req = Buffer.alloc(128);
    req[0] = 0x00;
    req[2] = 128;
    req.writeUInt32LE(128, 4);
    req.writeUInt16LE(0, 8); // PFV
    req[10] = 0; // HPDA
    req[11] = (opts.hdgst ? 1 : 0) | (opts.ddgst ? 2 : 0);
    req.writeUInt32LE(0, 12); // MAXR2T: one
    const resp = new Promise<Buffer>((resolve) => (this.icResolve = resolve));
    this.socket.write(req);
    const r = await resp;
    this.hdgst = (r[11] & 1) !== 0;
    this.ddgst = (r[11] & 2) !== 0;
    this.maxH2cData = r.readUInt32LE(12);
    return r;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }

  /** Stops reading the socket (a host that never reads its responses); resumeReading() undoes it. */
  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  /**
   * A complete CapsuleCmd for `sqe` with a controller-to-host SGL (transport data block 0x5A)
   * of `readBytes`, sent with no completion tracked: for floods that never read a response.
   */
  forgeRead(sqe: Buffer, cid: number, readBytes: number): Buffer {
    sqe.writeUInt16LE(cid, 2);
    sqe[1] = 0x40; // PSDT 01b
    sqe.writeUInt32LE(readBytes, 24 + 8);
    sqe[24 + 15] = 0x5a;
    return this.capsule(sqe, null);
  }

  /** Builds a CapsuleCmd PDU (with in-capsule data when given). */
  capsule(sqe: Buffer, inCapsule: Buffer | null): Buffer {
    const hd = this.hdgst ? 4 : 0;
    const dd = this.ddgst && inCapsule ? 4 : 0;
    const header = Buffer.alloc(72);
    header[0] = 0x04;
    header[1] = (this.hdgst ? 1 : 0) | (dd ? 2 : 0);
    header[2] = 72;
    const pdo = inCapsule ? 72 + hd : 0;
    header[3] = pdo;
    header.writeUInt32LE(72 + hd + (inCapsule ? inCapsule.length + dd : 0), 4);
    sqe.copy(header, 8);
    const parts: Buffer[] = [header];
    if (hd) parts.push(u32(crc32c(header)));
    if (inCapsule) {
      parts.push(inCapsule);
      if (dd) parts.push(u32(crc32c(inCapsule)));
    }
    return Buffer.concat(parts);
  }

  /**
   * Submits one command. `write` data goes in-capsule when `inCapsule` (and small enough), else
   * through R2T; `readBytes` sizes a controller-to-host transfer.
   */
  submit(sqe: Buffer, opts: { write?: Buffer; inCapsule?: boolean; readBytes?: number; psdt?: number } = {}): Promise<Completion> {
    // 16-bit command ids that wrap and skip 0 (a long-running load sends more than 65535).
    const cid = this.nextCid++ & 0xffff || this.nextCid++ & 0xffff;
    sqe.writeUInt16LE(cid, 2);
    sqe[1] = (opts.psdt ?? 1) << 6; // PSDT 01b: SGL (tests pass 0 to send a PRP command)
    const sgl = Buffer.alloc(16);
    let inCapsule: Buffer | null = null;
    if (opts.write) {
      sgl.writeUInt32LE(opts.write.length, 8);
      if (opts.inCapsule) {
        sgl[15] = 0x01;
        inCapsule = opts.write;
      } else {
        sgl[15] = 0x5a;
      }
    } else {
      sgl.writeUInt32LE(opts.readBytes ?? 0, 8);
      sgl[15] = 0x5a;
    }
    sgl.copy(sqe, 24);
    return new Promise<Completion>((resolve, reject) => {
      this.pending.set(cid, {
        resolve,
        reject,
        readData: opts.readBytes ? Buffer.alloc(opts.readBytes) : null,
        writeData: opts.write && !opts.inCapsule ? opts.write : null,
      });
      this.socket.write(this.capsule(sqe, inCapsule));
    });
  }

  // ---- Fabrics ----
  async connect(opts: { subnqn: string; hostnqn: string; qid?: number; cntlid?: number; sqsize?: number; kato_ms?: number }): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x7f;
    sqe[4] = 0x01;
    const qid = opts.qid ?? 0;
    sqe.writeUInt16LE(0, 40);
    sqe.writeUInt16LE(qid, 42);
    sqe.writeUInt16LE(opts.sqsize ?? 31, 44);
    sqe.writeUInt32LE(opts.kato_ms ?? 0, 48);
    const data = Buffer.alloc(1024);
    Buffer.from("0123456789abcdef").copy(data, 0);
    data.writeUInt16LE(opts.cntlid ?? 0xffff, 16);
    data.write(opts.subnqn, 256, "ascii");
    data.write(opts.hostnqn, 512, "ascii");
    this.qid = qid;
    return this.submit(sqe, { write: data, inCapsule: true });
  }

  propertyGet(offset: number, eightBytes: boolean): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x7f;
    sqe[4] = 0x04;
    sqe[40] = eightBytes ? 1 : 0;
    sqe.writeUInt32LE(offset, 44);
    return this.submit(sqe);
  }

  propertySet(offset: number, value: number): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x7f;
    sqe[4] = 0x00;
    sqe.writeUInt32LE(offset, 44);
    sqe.writeUInt32LE(value, 48);
    return this.submit(sqe);
  }

  /** CC.EN = 1 with IOSQES 6 / IOCQES 4, then CSTS.RDY. */
  async enable(): Promise<number> {
    ok(await this.propertySet(0x14, (6 << 16) | (4 << 20) | 1));
    return (await this.propertyGet(0x1c, false)).dw0;
  }

  // ---- admin ----
  identify(cns: number, nsid = 0): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x06;
    sqe.writeUInt32LE(nsid, 4);
    sqe.writeUInt32LE(cns, 40);
    return this.submit(sqe, { readBytes: 4096 });
  }

  getLogPage(lid: number, bytes: number, offset = 0): Promise<Completion> {
    return this.submit(getLogPageSqe(lid, bytes, offset), { readBytes: bytes });
  }

  getFeatures(fid: number): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x0a;
    sqe.writeUInt32LE(fid, 40);
    return this.submit(sqe);
  }

  setFeatures(fid: number, value: number): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x09;
    sqe.writeUInt32LE(fid, 40);
    sqe.writeUInt32LE(value >>> 0, 44);
    return this.submit(sqe);
  }

  // ---- in-band authentication (DH-HMAC-CHAP), written here from the spec with node:crypto so
  // the target is checked against an independent implementation ----
  authSend(message: Buffer, opts: { secp?: number } = {}): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x7f;
    sqe[4] = 0x05;
    sqe[41] = 0x01; // SPSP0
    sqe[42] = 0x01; // SPSP1
    sqe[43] = opts.secp ?? 0xe9; // SECP: DH-HMAC-CHAP
    sqe.writeUInt32LE(message.length, 44); // TL
    return this.submit(sqe, { write: message, inCapsule: true });
  }

  authReceive(al = 4096): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x7f;
    sqe[4] = 0x06;
    sqe[41] = 0x01;
    sqe[42] = 0x01;
    sqe[43] = 0xe9;
    sqe.writeUInt32LE(al, 44); // AL
    return this.submit(sqe, { readBytes: al });
  }

  /**
   * Runs the host side of DH-HMAC-CHAP on this queue. Resolves with what happened; throws only
   * on transport errors. `tamper` flips a bit of the response (a wrong secret seen on the wire).
   */
  async authenticate(opts: {
    hostnqn: string;
    subnqn: string;
    secret: string;
    ctrlSecret?: string;
    hashes?: number[];
    groups?: number[];
  }): Promise<AuthOutcome> {
    const tid = 0x1234 + this.qid;
    const hashes = opts.hashes ?? [1, 2, 3];
    const groups = opts.groups ?? [0, 1];
    const neg = Buffer.alloc(8 + 64);
    neg[0] = 0x00; // common messages
    neg[1] = 0x00; // Negotiate
    neg.writeUInt16LE(tid, 4);
    neg[6] = 0; // SC_C
    neg[7] = 1; // NAPD
    neg[8] = 0x01; // AUTHID: DH-HMAC-CHAP
    neg[10] = hashes.length;
    neg[11] = groups.length;
    hashes.forEach((h, i) => (neg[12 + i] = h));
    groups.forEach((g, i) => (neg[42 + i] = g));
    ok(await this.authSend(neg));
    const ch = ok(await this.authReceive()).data!;
    if (ch[0] === 0x00 && ch[1] === 0xf1) return { ok: false, failure: ch[7], step: "challenge" };
    if (ch[0] !== 0x01 || ch[1] !== 0x01) throw new Error(`expected a Challenge, got ${ch[0]}/${ch[1]}`);
    if (ch.readUInt16LE(4) !== tid) throw new Error("Challenge for another transaction");
    const hl = ch[6];
    const hashId = ch[8];
    const group = ch[9];
    const dhvlen = ch.readUInt16LE(10);
    const s1 = ch.readUInt32LE(12);
    if (hl !== HASH_BYTES[hashId]) throw new Error(`Challenge hash ${hashId} with hl ${hl}`);
    let c1: Buffer = ch.subarray(16, 16 + hl);
    let ourPublic: Buffer = Buffer.alloc(0);
    let sessionKey: Buffer | null = null;
    if (group !== 0) {
      const prime = FFDHE_PRIME[group];
      if (!prime) throw new Error(`the test host has no prime for DH group ${group}`);
      const dh = createDiffieHellman(Buffer.from(prime, "hex"), Buffer.from([2]));
      dh.generateKeys();
      ourPublic = pad(dh.getPublicKey(), dhvlen);
      sessionKey = pad(dh.computeSecret(ch.subarray(16 + hl, 16 + hl + dhvlen)), dhvlen);
      c1 = augment(hashId, sessionKey, c1);
    } else if (dhvlen !== 0) {
      throw new Error("NULL DH group with a DH value");
    }
    const kh = transform(parseSecret(opts.secret), opts.hostnqn);
    const r1 = chapResponse(hashId, kh, c1, s1, tid, "HostHost", opts.hostnqn, opts.subnqn);
    const reply = Buffer.alloc(16 + 2 * hl + ourPublic.length);
    reply[0] = 0x01;
    reply[1] = 0x02;
    reply.writeUInt16LE(tid, 4);
    reply[6] = hl;
    reply.writeUInt16LE(ourPublic.length, 10);
    r1.copy(reply, 16);
    let c2: Buffer | null = null;
    let s2 = 0;
    if (opts.ctrlSecret) {
      c2 = randomBytes(hl);
      s2 = randomBytes(4).readUInt32LE(0) || 1;
      reply[8] = 1; // CVALID
      reply.writeUInt32LE(s2, 12);
      c2.copy(reply, 16 + hl);
    }
    ourPublic.copy(reply, 16 + 2 * hl);
    ok(await this.authSend(reply));
    const s = ok(await this.authReceive()).data!;
    if (s[0] === 0x00 && s[1] === 0xf1) return { ok: false, failure: s[7], step: "success1" };
    if (s[0] !== 0x01 || s[1] !== 0x03) throw new Error(`expected Success1, got ${s[0]}/${s[1]}`);
    if (opts.ctrlSecret && c2) {
      const kc = transform(parseSecret(opts.ctrlSecret), opts.subnqn);
      const ca2 = sessionKey ? augment(hashId, sessionKey, c2) : c2;
      const r2 = chapResponse(hashId, kc, ca2, s2, tid, "Controller", opts.subnqn, opts.hostnqn);
      const verified = (s[8] & 1) === 1 && timingSafeEqual(s.subarray(16, 16 + hl), r2);
      const s2msg = Buffer.alloc(16);
      s2msg[0] = verified ? 0x01 : 0x00;
      s2msg[1] = verified ? 0x04 : 0xf0;
      s2msg.writeUInt16LE(tid, 4);
      if (!verified) {
        s2msg[6] = 1;
        s2msg[7] = 1;
      }
      ok(await this.authSend(verified ? s2msg : s2msg.subarray(0, 8)));
      return { ok: verified, failure: verified ? 0 : -1, step: "controller", hashId, group };
    }
    return { ok: true, failure: 0, step: "done", hashId, group };
  }

  keepAlive(): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x18;
    return this.submit(sqe);
  }

  // ---- NVM ----
  private rw(opcode: number, slba: number, blocks: number): Buffer {
    const sqe = Buffer.alloc(64);
    sqe[0] = opcode;
    sqe.writeUInt32LE(1, 4);
    sqe.writeBigUInt64LE(BigInt(slba), 40);
    sqe.writeUInt32LE(blocks - 1, 48);
    return sqe;
  }

  write(slba: number, data: Buffer, inCapsule = data.length <= 8192): Promise<Completion> {
    return this.submit(this.rw(0x01, slba, data.length / BLOCK_BYTES), { write: data, inCapsule });
  }

  read(slba: number, blocks: number): Promise<Completion> {
    return this.submit(this.rw(0x02, slba, blocks), { readBytes: blocks * BLOCK_BYTES });
  }

  flush(): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x00;
    sqe.writeUInt32LE(1, 4);
    return this.submit(sqe);
  }

  writeZeroes(slba: number, blocks: number): Promise<Completion> {
    return this.submit(this.rw(0x08, slba, blocks));
  }

  deallocate(ranges: { slba: number; blocks: number }[]): Promise<Completion> {
    const sqe = Buffer.alloc(64);
    sqe[0] = 0x09;
    sqe.writeUInt32LE(1, 4);
    sqe.writeUInt32LE(ranges.length - 1, 40);
    sqe.writeUInt32LE(0x4, 44); // AD
    const data = Buffer.alloc(16 * ranges.length);
    ranges.forEach((r, i) => {
      data.writeUInt32LE(r.blocks, 16 * i + 4);
      data.writeBigUInt64LE(BigInt(r.slba), 16 * i + 8);
    });
    return this.submit(sqe, { write: data, inCapsule: true });
  }

  // ---- receive ----
  private onData(d: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, d]);
    while (this.buffer.length >= 8) {
      const plen = this.buffer.readUInt32LE(4);
      if (this.buffer.length < plen) return;
      const pdu = this.buffer.subarray(0, plen);
      this.buffer = this.buffer.subarray(plen);
      this.onPdu(Buffer.from(pdu));
    }
  }

  private onPdu(pdu: Buffer): void {
    const type = pdu[0];
    const hlen = pdu[2];
    const hd = this.hdgst && type !== 0x01 && type !== 0x03 ? 4 : 0;
    if (hd && crc32c(pdu.subarray(0, hlen)) !== pdu.readUInt32LE(hlen)) throw new Error(`bad header digest on PDU type ${type}`);
    switch (type) {
      case 0x01:
        this.icResolve?.(pdu);
        return;
      case 0x03:
        this.termReq = { fes: pdu.readUInt16LE(8), fei: pdu.readUInt32LE(10) };
        return;
      case 0x05: {
        const cid = pdu.readUInt16LE(20);
        const p = this.pending.get(cid);
        if (!p) throw new Error(`completion for unknown cid ${cid}`);
        this.pending.delete(cid);
        const raw = pdu.readUInt16LE(22);
        p.resolve({ status: (raw >> 1) & 0x7ff, dnr: (raw & 0x8000) !== 0, dw0: pdu.readUInt32LE(8), dw1: pdu.readUInt32LE(12), sqhd: pdu.readUInt16LE(16), data: p.readData });
        return;
      }
      case 0x07: {
        const cid = pdu.readUInt16LE(8);
        const datao = pdu.readUInt32LE(12);
        const datal = pdu.readUInt32LE(16);
        const pdo = pdu[3];
        const data = pdu.subarray(pdo, pdo + datal);
        if (this.ddgst && crc32c(data) !== pdu.readUInt32LE(pdo + datal)) throw new Error("bad data digest on C2HData");
        const p = this.pending.get(cid);
        if (!p || !p.readData) throw new Error(`C2HData for unknown cid ${cid}`);
        data.copy(p.readData, datao);
        if (pdu[1] & 0x08) {
          this.pending.delete(cid);
          p.resolve({ status: 0, dnr: false, dw0: 0, dw1: 0, sqhd: 0, data: p.readData });
        }
        return;
      }
      case 0x09: {
        this.r2ts++;
        const cid = pdu.readUInt16LE(8);
        const ttag = pdu.readUInt16LE(10);
        const r2to = pdu.readUInt32LE(12);
        const r2tl = pdu.readUInt32LE(16);
        const p = this.pending.get(cid);
        if (!p || !p.writeData) {
          this.unexpected.push(`R2T for unknown cid ${cid}`); // tests that forge commands answer R2Ts themselves
          return;
        }
        for (let off = r2to; off < r2to + r2tl; off += this.maxH2cData) {
          const chunk = p.writeData.subarray(off, Math.min(off + this.maxH2cData, r2to + r2tl));
          this.socket.write(this.h2cData(cid, ttag, off, chunk, off + chunk.length === r2to + r2tl));
        }
        return;
      }
      default:
        throw new Error(`unexpected PDU type ${type}`);
    }
  }

  h2cData(cid: number, ttag: number, offset: number, chunk: Buffer, last: boolean): Buffer {
    const hd = this.hdgst ? 4 : 0;
    const dd = this.ddgst ? 4 : 0;
    const h = Buffer.alloc(24);
    h[0] = 0x06;
    h[1] = (last ? 0x04 : 0) | (hd ? 1 : 0) | (dd ? 2 : 0);
    h[2] = 24;
    h[3] = 24 + hd;
    h.writeUInt32LE(24 + hd + chunk.length + dd, 4);
    h.writeUInt16LE(cid, 8);
    h.writeUInt16LE(ttag, 10);
    h.writeUInt32LE(offset, 12);
    h.writeUInt32LE(chunk.length, 16);
    const parts: Buffer[] = [h];
    if (hd) parts.push(u32(crc32c(h)));
    parts.push(chunk);
    if (dd) parts.push(u32(crc32c(chunk)));
    return Buffer.concat(parts);
  }
}

export function getLogPageSqe(lid: number, bytes: number, offset = 0): Buffer {
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x02;
  const numd = bytes / 4 - 1;
  sqe.writeUInt32LE((lid | ((numd & 0xffff) << 16)) >>> 0, 40);
  sqe.writeUInt32LE(numd >>> 16, 44);
  sqe.writeBigUInt64LE(BigInt(offset), 48);
  return sqe;
}

export interface AuthOutcome {
  readonly ok: boolean;
  /** The Failure1 reason code explanation (0 on success; -1: the controller's response was wrong). */
  readonly failure: number;
  readonly step: "challenge" | "success1" | "controller" | "done";
  readonly hashId?: number;
  readonly group?: number;
}

const HASH_BYTES: Record<number, number> = { 1: 32, 2: 48, 3: 64 };
const HASH_NAME: Record<number, string> = { 1: "sha256", 2: "sha384", 3: "sha512" };
const FFDHE_PRIME: Record<number, string> = {
  // RFC 7919 ffdhe2048: 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1
  1:
    "ffffffffffffffffadf85458a2bb4a9aafdc5620273d3cf1d8b9c583ce2d3695a9e13641146433fbcc939dce249b3ef97d2fe363630c75d8f681b202aec4617a" +
    "d3df1ed5d5fd65612433f51f5f066ed0856365553ded1af3b557135e7f57c935984f0c70e0e68b77e2a689daf3efe8721df158a136ade73530acca4f483a797a" +
    "bc0ab182b324fb61d108a94bb2c8e3fbb96adab760d7f4681d4f42a3de394df4ae56ede76372bb190b07a7c8ee0a6d709e02fce1cdf7e2ecc03404cd28342f61" +
    "9172fe9ce98583ff8e4f1232eef28183c3fe3b1b4c6fad733bb5fcbc2ec22005c58ef1837d1683b2c6f34a26c1b2effa886b423861285c97ffffffffffffffff",
};

export interface ParsedSecret {
  readonly hash: number;
  readonly key: Buffer;
}

/** "DHHC-1:XX:<base64(key | crc32(key) LE)>:" */
export function parseSecret(text: string): ParsedSecret {
  const m = /^DHHC-1:0([0-3]):([A-Za-z0-9+/=]+):$/.exec(text);
  if (!m) throw new Error("not a DHHC-1 secret");
  const raw = Buffer.from(m[2], "base64");
  const key = raw.subarray(0, raw.length - 4);
  if (crc32(key) !== raw.readUInt32LE(raw.length - 4)) throw new Error("secret CRC mismatch");
  return { hash: Number(m[1]), key };
}

/** A secret as `nvme gen-dhchap-key --hmac=HASH` prints it (key length per hash unless given). */
export function makeSecret(hash = 0, bytes = hash === 2 ? 48 : hash === 3 ? 64 : 32): string {
  const key = randomBytes(bytes);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(key));
  return `DHHC-1:0${hash}:${Buffer.concat([key, crc]).toString("base64")}:`;
}

function transform(s: ParsedSecret, nqn: string): Buffer {
  if (s.hash === 0) return s.key;
  return createHmac(HASH_NAME[s.hash], s.key).update(nqn).update("NVMe-over-Fabrics").digest();
}

function augment(hashId: number, sessionKey: Buffer, challenge: Buffer): Buffer {
  const hashed = createHash(HASH_NAME[hashId]).update(sessionKey).digest();
  return createHmac(HASH_NAME[hashId], hashed).update(challenge).digest();
}

function chapResponse(hashId: number, key: Buffer, challenge: Buffer, seq: number, tid: number, role: string, nqn1: string, nqn2: string): Buffer {
  const b = Buffer.alloc(7);
  b.writeUInt32LE(seq >>> 0, 0);
  b.writeUInt16LE(tid, 4);
  b[6] = 0; // SC_C
  return createHmac(HASH_NAME[hashId], key)
    .update(challenge)
    .update(b)
    .update(role)
    .update(nqn1)
    .update(Buffer.from([0]))
    .update(nqn2)
    .digest();
}

function pad(b: Buffer, n: number): Buffer {
  return b.length >= n ? b : Buffer.concat([Buffer.alloc(n - b.length), b]);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

export function ok(c: Completion): Completion {
  if (c.status !== 0) throw new Error(`command failed with status 0x${c.status.toString(16)}`);
  return c;
}

/** SCT/SC pairs as the host sees them (status >> 1 without DNR). */
export const STATUS = {
  invalidOpcode: 0x001,
  connectControllerBusy: 0x181,
  connectInvalidParameters: 0x182,
  connectInvalidHost: 0x184,
  authRequired: 0x191,
  lbaOutOfRange: 0x080,
} as const;

/** Authenticates a queue with `secret` (DH-HMAC-CHAP) when one is given; throws if refused. */
async function authenticated(host: NvmeTcpHost, subnqn: string, hostnqn: string, secret: string | undefined): Promise<void> {
  if (secret === undefined) return;
  const outcome = await host.authenticate({ hostnqn, subnqn, secret });
  if (!outcome.ok) throw new Error(`DH-HMAC-CHAP failed at ${outcome.step} (reason ${outcome.failure})`);
}

/**
 * Opens a connection, ICReq, admin Connect, DH-HMAC-CHAP when `secret` is given, CC.EN; returns
 * the host and its controller id.
 */
export async function adminQueue(port: number, subnqn: string, hostnqn: string, digests = false, secret?: string): Promise<{ host: NvmeTcpHost; cntlid: number }> {
  const host = await NvmeTcpHost.open(port);
  await host.initialize({ hdgst: digests, ddgst: digests });
  const c = ok(await host.connect({ subnqn, hostnqn }));
  await authenticated(host, subnqn, hostnqn, secret);
  await host.enable();
  return { host, cntlid: c.dw0 & 0xffff };
}

export async function ioQueue(port: number, subnqn: string, hostnqn: string, cntlid: number, qid = 1, digests = false, secret?: string): Promise<NvmeTcpHost> {
  const host = await NvmeTcpHost.open(port);
  await host.initialize({ hdgst: digests, ddgst: digests });
  ok(await host.connect({ subnqn, hostnqn, qid, cntlid, sqsize: 127 }));
  await authenticated(host, subnqn, hostnqn, secret);
  return host;
}
