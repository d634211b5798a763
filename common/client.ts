// The typed gRPC client of the engine API, used by the provider, the strata CLI and the tests.
// It is the only way anything outside engine/ talks to an engine.
//
// Every call has a deadline (dynamic providers ignore Pulumi's customTimeouts, so we set our
// own) and carries the node's token. Errors name the node and the endpoint, because an
// operator with ten nodes needs to know which one to look at.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ProtoGrpcType } from "../engine/generated/engine";
import type { EngineClient } from "../engine/generated/strata/engine/v1/Engine";

export const DEFAULT_DEADLINE_MS = 15_000;
/** How long a first connection may take before an engine counts as down. */
export const CONNECT_TIMEOUT_MS = 3_000;

export interface EngineTarget {
  readonly node: string;
  /** host:port of the engine's gRPC listener. */
  readonly endpoint: string;
  readonly token: string;
}

/**
 * A failed engine call. A plain Error with fields, not a subclass: Pulumi serializes the
 * provider's code, and a serialized `class … extends Error` loses its message.
 */
export interface EngineCallError extends Error {
  readonly name: "EngineCallError";
  readonly node: string;
  readonly endpoint: string;
  readonly method: string;
  readonly code: grpc.status;
  readonly details: string;
}

export function engineCallError(node: string, endpoint: string, method: string, code: grpc.status, details: string): EngineCallError {
  return Object.assign(new Error(describeCallError(node, endpoint, method, code, details)), {
    name: "EngineCallError" as const,
    node,
    endpoint,
    method,
    code,
    details,
  });
}

export function isEngineCallError(err: unknown): err is EngineCallError {
  return err instanceof Error && err.name === "EngineCallError";
}

function describeCallError(node: string, endpoint: string, method: string, code: grpc.status, details: string): string {
  const where = `engine on node "${node}" at ${endpoint}`;
  switch (code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
      return `${where} is unreachable (${method}: ${details}); is it running? Check \`npx strata cluster status\``;
    case grpc.status.UNAUTHENTICATED:
      return `${where} rejected the token (${method}); set the node's token with \`pulumi config set --secret strata:token\``;
    default:
      return `${where}: ${method} failed: ${details}`;
  }
}

/** Finds engine/proto from either the compiled tree (dist/common) or the sources (common/). */
export function protoRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, "engine", "proto");
    if (existsSync(join(candidate, "strata", "engine", "v1", "engine.proto"))) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`cannot find engine/proto above ${__dirname}`);
}

/**
 * The engine API as a plain JSON descriptor, read once when this module loads. The dynamic
 * provider is serialized into Pulumi state and runs where no file path of ours is meaningful,
 * so it carries the API definition with it as data instead of reading the .proto at call time.
 */
const ENGINE_API_DESCRIPTOR: protobuf.INamespace = (() => {
  const root = protoRoot();
  const parsed = new protobuf.Root();
  parsed.resolvePath = (_origin, target) => join(root, target);
  parsed.loadSync("strata/engine/v1/engine.proto", { keepCase: true });
  return parsed.toJSON();
})();

/**
 * Builds the gRPC service definition (about a millisecond). Deliberately not cached in a module
 * variable: a cache holding live classes would be captured when Pulumi serializes the provider.
 */
export function engineDefinition(): ProtoGrpcType {
  const packageDefinition = protoLoader.fromJSON(ENGINE_API_DESCRIPTOR, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(packageDefinition) as unknown as ProtoGrpcType;
}

type UnaryMethods = {
  [K in keyof EngineClient as K extends `${Uppercase<string>}${string}` ? K : never]: EngineClient[K];
};
type RequestOf<M> = M extends (arg: infer A, callback: grpc.requestCallback<infer _R>) => grpc.ClientUnaryCall ? A : never;
type ResponseOf<M> = M extends (arg: infer _A, callback: grpc.requestCallback<infer R>) => grpc.ClientUnaryCall ? R : never;
export type EngineMethod = keyof UnaryMethods & string;
export type EngineRequest<M extends EngineMethod> = RequestOf<UnaryMethods[M]>;
export type EngineResponse<M extends EngineMethod> = NonNullable<ResponseOf<UnaryMethods[M]>>;

export interface EngineConnection {
  readonly target: EngineTarget;
  call<M extends EngineMethod>(method: M, request: EngineRequest<M>, deadline_ms?: number): Promise<EngineResponse<M>>;
  close(): void;
}

export function connectEngine(target: EngineTarget): EngineConnection {
  const definition = engineDefinition();
  const client = new definition.strata.engine.v1.Engine(target.endpoint, grpc.credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 1000,
  });
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${target.token}`);
  return {
    target,
    call(method, request, deadline_ms = DEFAULT_DEADLINE_MS) {
      return new Promise((resolve, reject) => {
        const deadline = new Date(Date.now() + deadline_ms);
        const fn = (client as unknown as Record<string, Function>)[method];
        fn.call(client, request, metadata, { deadline }, (err: grpc.ServiceError | null, response: unknown) => {
          if (err) reject(engineCallError(target.node, target.endpoint, method, err.code, err.details || err.message));
          else resolve(response as never);
        });
      });
    },
    close() {
      client.close();
    },
  };
}

/** Runs `fn` with a fresh connection and always closes it. */
export async function withEngine<T>(target: EngineTarget, fn: (engine: EngineConnection) => Promise<T>): Promise<T> {
  const engine = connectEngine(target);
  try {
    return await fn(engine);
  } finally {
    engine.close();
  }
}

/** True when the error says the engine could not be reached at all. */
export function isUnreachable(err: unknown): boolean {
  return (
    isEngineCallError(err) &&
    (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED)
  );
}
