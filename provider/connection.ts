// Where the provider finds the engines: the stack config `strata:endpoints` (node name ->
// host:port) and the secret `strata:token`. The dynamic provider receives the stack config in
// `configure`, so neither ends up in resource state.
import type * as dynamic from "@pulumi/pulumi/dynamic";
import type { EngineTarget } from "../common/client";

export const ENDPOINTS_KEY = "strata:endpoints";
export const TOKEN_KEY = "strata:token";

export interface ClusterConfig {
  /** node name -> "host:port" */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly token: string;
}

/** The stack config lacks what the provider needs; a plain Error (see placementError). */
function configError(message: string): Error {
  return Object.assign(new Error(message), { name: "ConfigError" });
}

/** Reads the cluster config from raw stack config values (strings, JSON for objects). */
export function clusterConfigFrom(get: (key: string) => string | undefined): ClusterConfig {
  const rawEndpoints = get(ENDPOINTS_KEY);
  if (rawEndpoints === undefined || rawEndpoints === "")
    throw configError(
      `${ENDPOINTS_KEY} is not set: run \`npx strata cluster up\`, or set each engine with ` +
        "`pulumi config set --path 'strata:endpoints.<node>' <host:port>`",
    );
  let endpoints: unknown;
  try {
    endpoints = JSON.parse(rawEndpoints);
  } catch {
    throw configError(`${ENDPOINTS_KEY} must be a map of node name to host:port, got ${rawEndpoints}`);
  }
  if (typeof endpoints !== "object" || endpoints === null || Array.isArray(endpoints) || Object.keys(endpoints).length === 0)
    throw configError(`${ENDPOINTS_KEY} must be a non-empty map of node name to host:port`);
  for (const [node, endpoint] of Object.entries(endpoints as Record<string, unknown>)) {
    if (typeof endpoint !== "string" || !/^[^\s]+:[0-9]{1,5}$/.test(endpoint))
      throw configError(`${ENDPOINTS_KEY}.${node} must be host:port, got ${JSON.stringify(endpoint)}`);
  }
  const token = get(TOKEN_KEY);
  if (token === undefined || token === "")
    throw configError(`${TOKEN_KEY} is not set: run \`pulumi config set --secret strata:token <token>\``);
  return { endpoints: endpoints as Record<string, string>, token };
}

export function targetFor(config: ClusterConfig, node: string): EngineTarget {
  const endpoint = config.endpoints[node];
  if (endpoint === undefined)
    throw configError(
      `node "${node}" is not in ${ENDPOINTS_KEY} (known nodes: ${Object.keys(config.endpoints).sort().join(", ")})`,
    );
  return { node, endpoint, token: config.token };
}

/**
 * What every Strata provider does with the stack config Pulumi passes to `configure`: keep the
 * cluster, or the reason there is none, which the first call that needs the engines reports
 * (`check` reports it as a failure of the resource, so `preview` names it).
 */
export abstract class ConfiguredProvider {
  protected cluster: ClusterConfig | null = null;
  protected configError: string | null = null;

  async configure(req: dynamic.ConfigureRequest): Promise<void> {
    try {
      this.cluster = clusterConfigFrom((key) => req.config.get(key));
    } catch (err) {
      this.configError = (err as Error).message;
    }
  }

  protected clusterOrThrow(): ClusterConfig {
    if (this.cluster === null) throw new Error(this.configError ?? "the Strata provider was not configured");
    return this.cluster;
  }
}
