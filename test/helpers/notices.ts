// What a host sees of a namespace that changes size: the Asynchronous Event Request the target
// completes with a Namespace Attribute Changed notice, and Identify Namespace's size.
import type { Completion, NvmeTcpHost } from "../native/nvmf/host";

/** AER completion dword 0: type Notice (2), info Namespace Attribute Changed (0), log page 0x04. */
export const NS_ATTR_CHANGED = 0x040002;

/** An Asynchronous Event Request held by the target; `done` is set once it completes. */
export function asyncEventRequest(admin: NvmeTcpHost): { completion: Promise<Completion>; done: () => Completion | null } {
  const sqe = Buffer.alloc(64);
  sqe[0] = 0x0c;
  let result: Completion | null = null;
  const completion = admin.submit(sqe).then((c) => (result = c));
  completion.catch(() => undefined); // the connection may close with it held (teardown)
  return { completion, done: () => result };
}

export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

export async function nsze(admin: NvmeTcpHost): Promise<number> {
  const c = await admin.identify(0, 1);
  if (c.status !== 0 || !c.data) throw new Error(`Identify Namespace failed: 0x${c.status.toString(16)}`);
  return Number(c.data.readBigUInt64LE(0));
}

