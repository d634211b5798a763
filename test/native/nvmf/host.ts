// A small NVMe/TCP host for tests, written from the spec with node:net: ICReq (optionally
// with digests), Fabrics Connect and properties, admin and NVM commands, R2T/H2CData for
// writes, C2HData for reads. Test-only: the product never speaks NVMe/TCP from JavaScript.
import { Socket, connect as netConnect } from "node:net";
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
    const cid = this.nextCid++ & 0xffff || this.nextCid++;
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
  lbaOutOfRange: 0x080,
} as const;

/** Opens a connection, ICReq, admin Connect, CC.EN; returns the host and its controller id. */
export async function adminQueue(port: number, subnqn: string, hostnqn: string, digests = false): Promise<{ host: NvmeTcpHost; cntlid: number }> {
  const host = await NvmeTcpHost.open(port);
  await host.initialize({ hdgst: digests, ddgst: digests });
  const c = ok(await host.connect({ subnqn, hostnqn }));
  await host.enable();
  return { host, cntlid: c.dw0 & 0xffff };
}

export async function ioQueue(port: number, subnqn: string, hostnqn: string, cntlid: number, qid = 1, digests = false): Promise<NvmeTcpHost> {
  const host = await NvmeTcpHost.open(port);
  await host.initialize({ hdgst: digests, ddgst: digests });
  ok(await host.connect({ subnqn, hostnqn, qid, cntlid, sqsize: 127 }));
  return host;
}
