// A verifying I/O load for volumes, driven over a real NVMe/TCP connection (the TypeScript test
// host) the way a frontend node would. Every 4 KiB block written carries its block number and a
// seed, so a read proves not just the length but which write it returned. The model remembers
// what each block must hold; a failed write leaves both the old and the new content possible
// (NVMe gives no guarantee either way), and nothing else is ever accepted.
import { adminQueue, BLOCK_BYTES, ioQueue, NvmeTcpHost } from "../native/nvmf/host";

export const BLOCK = BLOCK_BYTES;

/** The content of `block` written with `seed` (seed 0 = never written: zeros). */
export function blockContent(block: number, seed: number): Buffer {
  const out = Buffer.alloc(BLOCK);
  if (seed === 0) return out;
  out.writeUInt32LE(block >>> 0, 0);
  out.writeUInt32LE(seed >>> 0, 4);
  let x = (block * 2654435761 + seed * 40503) >>> 0;
  for (let i = 8; i < BLOCK; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out.writeUInt32LE(x, i);
  }
  return out;
}

/** Which seed a block read back holds, or null when it is neither zeros nor a block we wrote there. */
export function seedOf(block: number, data: Buffer): number | null {
  if (data.every((b) => b === 0)) return 0;
  const seed = data.readUInt32LE(4);
  if (data.readUInt32LE(0) !== block >>> 0 || seed === 0) return null;
  return blockContent(block, seed).equals(data) ? seed : null;
}

/** What each block of the volume must hold. Shared by loads that come and go (reconnects). */
export class VolumeModel {
  readonly blocks: number;
  private readonly seeds: Uint32Array;
  private readonly uncertain = new Map<number, Set<number>>();
  private readonly busy: Uint8Array;
  private nextSeed = 1;

  constructor(readonly sizeBytes: number) {
    this.blocks = Math.floor(sizeBytes / BLOCK);
    this.seeds = new Uint32Array(this.blocks);
    this.busy = new Uint8Array(this.blocks);
  }

  /** The same volume grown to `sizeBytes`: what was written stays, the grown blocks read as zeros. */
  grown(sizeBytes: number): VolumeModel {
    if (sizeBytes < this.sizeBytes) throw new Error(`a volume model only grows (${this.sizeBytes} -> ${sizeBytes})`);
    const m = new VolumeModel(sizeBytes);
    m.seeds.set(this.seeds);
    for (const [b, set] of this.uncertain) m.uncertain.set(b, new Set(set));
    m.nextSeed = this.nextSeed;
    return m;
  }

  newSeed(): number {
    return this.nextSeed++;
  }

  /** Claims [first, first+count) for one writer; false when part of it is in flight. */
  claim(first: number, count: number): boolean {
    for (let b = first; b < first + count; b++) if (this.busy[b]) return false;
    this.busy.fill(1, first, first + count);
    return true;
  }

  release(first: number, count: number): void {
    this.busy.fill(0, first, first + count);
  }

  written(first: number, count: number, seed: number): void {
    for (let b = first; b < first + count; b++) {
      this.seeds[b] = seed;
      this.uncertain.delete(b);
    }
  }

  /** The write's outcome is unknown: its blocks may hold the old or the new content. */
  maybeWritten(first: number, count: number, seed: number): void {
    for (let b = first; b < first + count; b++) {
      const set = this.uncertain.get(b) ?? new Set([this.seeds[b]]);
      set.add(seed);
      this.uncertain.set(b, set);
    }
  }

  /** Problems with `data` read from `first`: empty when every block holds an allowed content. */
  check(first: number, data: Buffer): string[] {
    const problems: string[] = [];
    for (let i = 0; i * BLOCK < data.length; i++) {
      const block = first + i;
      const got = seedOf(block, data.subarray(i * BLOCK, (i + 1) * BLOCK));
      const allowed = this.uncertain.get(block) ?? new Set([this.seeds[block]]);
      if (got === null || !allowed.has(got)) {
        problems.push(`block ${block}: read ${got === null ? "garbage" : `seed ${got}`}, expected ${[...allowed].join(" or ")}`);
        if (problems.length >= 5) break;
      }
    }
    return problems;
  }
}

export interface LoadCounters {
  writesOk: number;
  writesFailed: number;
  readsOk: number;
  readsFailed: number;
  flushesOk: number;
  flushesFailed: number;
  mismatches: string[];
  errors: string[];
}

/** Workers writing and reading random ranges (4 KiB to 128 KiB) over one NVMe/TCP I/O queue. */
export class VerifyingLoad {
  readonly counters: LoadCounters = { writesOk: 0, writesFailed: 0, readsOk: 0, readsFailed: 0, flushesOk: 0, flushesFailed: 0, mismatches: [], errors: [] };
  private running = true;
  private readonly workers: Promise<void>[] = [];

  private constructor(
    private current: VolumeModel,
    /** The admin queue of the load's controller (Identify, Get Log Page, Asynchronous Event Requests). */
    readonly admin: NvmeTcpHost,
    private readonly io: NvmeTcpHost,
  ) {}

  get model(): VolumeModel {
    return this.current;
  }

  /** The volume grew: later workers, verifyAll and readOnce cover `sizeBytes` (only while stopped). */
  grow(sizeBytes: number): void {
    if (this.running && this.workers.length > 0) throw new Error("stop the load before growing its model");
    this.current = this.current.grown(sizeBytes);
  }

  /** `secret`: the host's DH-HMAC-CHAP secret, when the subsystem requires it. */
  static async connect(port: number, subnqn: string, hostnqn: string, model: VolumeModel, secret?: string): Promise<VerifyingLoad> {
    const { host, cntlid } = await adminQueue(port, subnqn, hostnqn, false, secret);
    const io = await ioQueue(port, subnqn, hostnqn, cntlid, 1, false, secret);
    return new VerifyingLoad(model, host, io);
  }

  /**
   * Starts `workers` concurrent workers; `readFraction` of their operations are verifying reads.
   * A flusher sends a Flush every `flushEveryMs` as a filesystem's journal commits do (0: never),
   * so a child's unflushed window stays small the way it does under real hosts.
   */
  start(workers = 6, readFraction = 0.3, maxBlocks = 32, flushEveryMs = 100): this {
    // Restartable after stop(): a stopped load's workers have all returned.
    this.running = true;
    this.workers.length = 0;
    for (let i = 0; i < workers; i++) this.workers.push(this.worker(readFraction, maxBlocks));
    if (flushEveryMs > 0) this.workers.push(this.flusher(flushEveryMs));
    return this;
  }

  private async flusher(everyMs: number): Promise<void> {
    while (this.running) {
      await new Promise((r) => setTimeout(r, everyMs));
      if (!this.running) break;
      try {
        const c = await this.io.flush();
        if (c.status === 0) this.counters.flushesOk++;
        else this.counters.flushesFailed++;
      } catch (err) {
        this.counters.errors.push(`flush: ${(err as Error).message}`);
        this.running = false;
      }
    }
  }

  private async worker(readFraction: number, maxBlocks: number): Promise<void> {
    const m = this.model;
    while (this.running) {
      const count = 1 + Math.floor(Math.random() * maxBlocks);
      const first = Math.floor(Math.random() * (m.blocks - count));
      if (Math.random() < readFraction) {
        if (!m.claim(first, count)) continue;
        try {
          const c = await this.io.read(first, count);
          if (c.status !== 0 || !c.data) this.counters.readsFailed++;
          else {
            this.counters.readsOk++;
            this.counters.mismatches.push(...m.check(first, c.data));
          }
        } catch (err) {
          this.counters.errors.push(`read: ${(err as Error).message}`);
          this.running = false;
        } finally {
          m.release(first, count);
        }
        continue;
      }
      if (!m.claim(first, count)) continue;
      const seed = m.newSeed();
      const data = Buffer.concat(Array.from({ length: count }, (_, i) => blockContent(first + i, seed)));
      try {
        const c = await this.io.write(first, data);
        if (c.status === 0) {
          m.written(first, count, seed);
          this.counters.writesOk++;
        } else {
          m.maybeWritten(first, count, seed);
          this.counters.writesFailed++;
        }
      } catch (err) {
        // The connection ended with the write in flight: it may or may not have landed.
        m.maybeWritten(first, count, seed);
        this.counters.errors.push(`write: ${(err as Error).message}`);
        this.running = false;
      } finally {
        m.release(first, count);
      }
    }
  }

  /** Resolves once `n` more writes have succeeded (the volume is making progress). */
  async progress(n: number, timeout_ms = 20_000): Promise<void> {
    const target = this.counters.writesOk + n;
    const deadline = Date.now() + timeout_ms;
    while (this.counters.writesOk < target) {
      if (!this.running) throw new Error(`load stopped: ${this.counters.errors.join("; ")}`);
      if (Date.now() > deadline) throw new Error(`only ${this.counters.writesOk - target + n} of ${n} writes in ${timeout_ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Stops the workers (in-flight operations finish). */
  async stop(): Promise<LoadCounters> {
    this.running = false;
    await Promise.all(this.workers);
    this.workers.length = 0;
    return this.counters;
  }

  /** Reads the whole volume and checks every block against the model. */
  async verifyAll(): Promise<string[]> {
    const problems: string[] = [];
    const chunk = 32;
    for (let first = 0; first < this.model.blocks && problems.length < 5; first += chunk) {
      const n = Math.min(chunk, this.model.blocks - first);
      const c = await this.io.read(first, n);
      if (c.status !== 0 || !c.data) problems.push(`read of blocks ${first}+${n} failed with status 0x${c.status.toString(16)}`);
      else problems.push(...this.model.check(first, c.data));
    }
    return problems;
  }

  /** One write outside the workers (e.g. a split I/O); returns the completion status. */
  async writeOnce(first: number, count: number): Promise<number> {
    while (!this.model.claim(first, count)) await new Promise((r) => setTimeout(r, 5));
    const seed = this.model.newSeed();
    const data = Buffer.concat(Array.from({ length: count }, (_, i) => blockContent(first + i, seed)));
    try {
      const c = await this.io.write(first, data);
      if (c.status === 0) this.model.written(first, count, seed);
      else this.model.maybeWritten(first, count, seed);
      return c.status;
    } finally {
      this.model.release(first, count);
    }
  }

  /** One Flush outside the workers: everything acknowledged before it is durable after it. */
  flush(): Promise<{ status: number }> {
    return this.io.flush();
  }

  /** One verifying read outside the workers; returns its status and any mismatch. */
  async readOnce(first: number, count: number): Promise<{ status: number; problems: string[] }> {
    const c = await this.io.read(first, count);
    return { status: c.status, problems: c.status === 0 && c.data ? this.model.check(first, c.data) : [] };
  }

  /** Resolves when the target has closed the I/O queue's connection (unpublish, shutdown). */
  async socketClosed(timeout_ms = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.io.closed,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`the target kept the connection open for ${timeout_ms} ms`)), timeout_ms))),
    ]).finally(() => clearTimeout(timer));
  }

  close(): void {
    this.io.socket.destroy();
    this.admin.socket.destroy();
  }
}

/** What a clean run of the load looks like: asserted by the fault tests after each fault. */
export function expectClean(
  t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void },
  c: LoadCounters,
): void {
  t.deepEqual(c.mismatches, [], "every block read back is the last acknowledged write");
  t.deepEqual(c.errors, [], "the frontend's connection stayed up");
  t.is(c.writesFailed, 0, "no write failed at the host");
  t.is(c.readsFailed, 0, "no read failed at the host");
}
