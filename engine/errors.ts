// The one place where errors become gRPC statuses on the engine's boundary. Services throw
// EngineError (or let native errors through); the server maps both here.
import { status as Status } from "@grpc/grpc-js";
import { isNativeError, NativeErrorCode } from "../native";

export class EngineError extends Error {
  constructor(
    readonly code: Status,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}

export const invalidArgument = (msg: string) => new EngineError(Status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new EngineError(Status.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new EngineError(Status.ALREADY_EXISTS, msg);
export const failedPrecondition = (msg: string) => new EngineError(Status.FAILED_PRECONDITION, msg);

const nativeToStatus: Record<NativeErrorCode, Status> = {
  INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
  NOT_FOUND: Status.NOT_FOUND,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  PERMISSION_DENIED: Status.PERMISSION_DENIED,
  FAILED_PRECONDITION: Status.FAILED_PRECONDITION,
  NO_SPACE: Status.RESOURCE_EXHAUSTED,
  OUT_OF_RANGE: Status.OUT_OF_RANGE,
  DATA_LOSS: Status.DATA_LOSS,
  UNIMPLEMENTED: Status.UNIMPLEMENTED,
  IO_ERROR: Status.INTERNAL,
};

/** Maps anything thrown by a handler to a gRPC status and a message for the caller. */
export function toGrpcError(err: unknown): { code: Status; details: string } {
  if (err instanceof EngineError) return { code: err.code, details: err.message };
  if (isNativeError(err)) return { code: nativeToStatus[err.code] ?? Status.INTERNAL, details: err.message };
  const message = err instanceof Error ? err.message : String(err);
  return { code: Status.INTERNAL, details: `internal error: ${message}` };
}
