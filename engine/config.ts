// Command-line flags of strata-engine. Bad flags stop the engine before it binds anything,
// with a message naming the flag.
import { readFileSync, statSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { checkDhchapSecret, checkInterfaceName, checkLabels, checkName } from "../common/validate";

export interface EngineConfig {
  readonly node: string;
  readonly grpc_listen: string;
  readonly data_dir: string;
  /**
   * Directories regular-file devices (file://) must resolve into; default: the data dir. A
   * typo'd or malicious file:// URI elsewhere (/etc/shadow) is refused instead of formatted.
   */
  readonly device_dirs: readonly string[];
  readonly labels: Record<string, string>;
  readonly cores: number;
  readonly token: string;
  /** Where the NVMe/TCP target listens for hosts (port 0 = any free port). */
  readonly nvmf_listen: HostPort;
  /**
   * The host other nodes and hosts reach the NVMe/TCP target at: what shares, child URIs and
   * nexus addresses carry. The listen host unless that is a wildcard (0.0.0.0, ::), which no
   * one can connect to (a nexus would connect to itself): then --nvmf-advertise is required.
   */
  readonly nvmf_advertise_host: string;
  /** Where the NVMe/TCP discovery controller listens. */
  readonly nvmf_discovery_listen: HostPort;
  /** Tests only: serve the FaultInjection API and wrap nexus children so faults can be injected. */
  readonly enable_fault_injection: boolean;
  /** The DH-HMAC-CHAP secret this node's initiator authenticates with (--dhchap-secret-file); "" = none. */
  readonly dhchap_secret: string;
  /** Serve NVMe over RDMA too, on this network interface (--rdma-interface); "" = TCP only. */
  readonly rdma_interface: string;
  /** Where Prometheus scrapes GET /metrics (--metrics-listen); null = not served. */
  readonly metrics_listen: HostPort | null;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export const USAGE = `usage: strata-engine --node NAME --data-dir DIR --token-file FILE
                     [--grpc-listen HOST:PORT] [--labels k=v,...] [--cores N]
                     [--device-dir DIR]...
                     [--nvmf-listen HOST:PORT] [--nvmf-advertise HOST] [--nvmf-discovery-listen HOST:PORT]
                     [--rdma-interface IFACE] [--metrics-listen HOST:PORT]
                     [--enable-fault-injection] [--dhchap-secret-file FILE]

  --node NAME          this storage node's name (unique in the cluster)
  --grpc-listen H:P    where the engine API listens (default 127.0.0.1:10124)
  --data-dir DIR       the engine's durable state (which pools to import at start)
  --device-dir DIR     a directory whose files may hold pools (file:// URIs); repeat
                       it for several; default: the data dir. Block devices (uring://)
                       are not affected.
  --labels k=v,...     node labels, e.g. zone=zone-a,rack=r1
  --cores N            reactor threads that own all data I/O (default 1)
  --token-file FILE    file holding the token every API call must carry
  --nvmf-listen H:P    where hosts connect over NVMe/TCP (default 127.0.0.1:4420)
  --nvmf-advertise HOST
                       the address other nodes and hosts reach this one's NVMe/TCP target
                       at (default: the listen host; required when that is 0.0.0.0 or ::)
  --nvmf-discovery-listen H:P
                       the NVMe/TCP discovery controller (default 127.0.0.1:8009)
  --rdma-interface IFACE
                       also serve NVMe over RDMA (RoCE) on this network interface's IPv4
                       address, same port as --nvmf-listen; when the interface has no
                       RDMA device the engine serves TCP only and says why (log, GetInfo)
  --metrics-listen H:P serve Prometheus metrics at http://H:P/metrics (pools, replicas,
                       nexuses, NVMe-oF, CSAL); off by default
  --dhchap-secret-file FILE
                       this node's DH-HMAC-CHAP secret ("DHHC-1:…", as nvme gen-dhchap-key
                       prints it): nexus children on targets that require authentication
                       connect with it (keep the file mode 0600)
  --enable-fault-injection
                       tests only: serve the FaultInjection API (errors, delays and
                       dropped connections on nexus children)`;

export class ConfigError extends Error {}

export function parseFlags(argv: readonly string[]): EngineConfig {
  const values = new Map<string, string>();
  const deviceDirs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new ConfigError(`unexpected argument "${arg}"`);
    if (arg === "--enable-fault-injection") {
      values.set("enable-fault-injection", "true");
      continue;
    }
    const eq = arg.indexOf("=");
    const [key, value] = eq > 0 ? [arg.slice(2, eq), arg.slice(eq + 1)] : [arg.slice(2), argv[++i]];
    if (!["node", "grpc-listen", "data-dir", "device-dir", "labels", "cores", "token-file", "nvmf-listen", "nvmf-advertise", "nvmf-discovery-listen", "dhchap-secret-file", "rdma-interface", "metrics-listen"].includes(key))
      throw new ConfigError(`unknown flag --${key}`);
    if (value === undefined) throw new ConfigError(`--${key} needs a value`);
    if (key === "device-dir") deviceDirs.push(value);
    else values.set(key, value);
  }
  const node = values.get("node");
  if (node === undefined) throw new ConfigError("--node is required");
  const nodeProblem = checkName(node);
  if (nodeProblem) throw new ConfigError(`--node ${nodeProblem}`);

  const grpc_listen = values.get("grpc-listen") ?? "127.0.0.1:10124";
  if (!/^[^\s:]+:[0-9]{1,5}$/.test(grpc_listen) && !/^\[[0-9a-f:]+\]:[0-9]{1,5}$/i.test(grpc_listen))
    throw new ConfigError(`--grpc-listen must be HOST:PORT, got "${grpc_listen}"`);

  const data_dir = values.get("data-dir");
  if (data_dir === undefined) throw new ConfigError("--data-dir is required");
  for (const dir of deviceDirs) {
    // The data dir is created at start; a device dir must already hold the operator's files.
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isAbsolute(dir) || !isDir) throw new ConfigError(`--device-dir ${dir} must be an absolute path to an existing directory`);
  }
  const device_dirs = deviceDirs.length > 0 ? deviceDirs : [resolve(data_dir)];

  const labels: Record<string, string> = {};
  for (const pair of (values.get("labels") ?? "").split(",").filter((p) => p.length > 0)) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--labels entries must be key=value, got "${pair}"`);
    labels[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const labelProblem = checkLabels(labels);
  if (labelProblem) throw new ConfigError(`--labels ${labelProblem}`);

  const coresText = values.get("cores") ?? "1";
  const cores = Number(coresText);
  if (!Number.isInteger(cores) || cores < 1 || cores > 64)
    throw new ConfigError(`--cores must be a whole number from 1 to 64, got "${coresText}"`);

  const tokenFile = values.get("token-file");
  if (tokenFile === undefined) throw new ConfigError("--token-file is required: the engine API is never open");
  let token: string;
  try {
    token = readFileSync(tokenFile, "utf8").trim();
  } catch (err) {
    throw new ConfigError(`--token-file ${tokenFile} cannot be read: ${(err as Error).message}`);
  }
  if (token.length < 16) throw new ConfigError(`--token-file ${tokenFile} must hold a token of at least 16 characters`);

  const nvmf_listen = parseHostPort("nvmf-listen", values.get("nvmf-listen") ?? "127.0.0.1:4420");
  const nvmf_advertise_host = advertiseHost(nvmf_listen, values.get("nvmf-advertise"));
  const nvmf_discovery_listen = parseHostPort("nvmf-discovery-listen", values.get("nvmf-discovery-listen") ?? "127.0.0.1:8009");

  const enable_fault_injection = values.get("enable-fault-injection") === "true";

  let dhchap_secret = "";
  const secretFile = values.get("dhchap-secret-file");
  if (secretFile !== undefined) {
    try {
      dhchap_secret = readFileSync(secretFile, "utf8").trim();
    } catch (err) {
      throw new ConfigError(`--dhchap-secret-file ${secretFile} cannot be read: ${(err as Error).message}`);
    }
    const problem = checkDhchapSecret(dhchap_secret);
    if (problem) throw new ConfigError(`--dhchap-secret-file ${secretFile}: the secret ${problem}`);
  }
  const rdma_interface = values.get("rdma-interface") ?? "";
  const interfaceProblem = values.has("rdma-interface") ? checkInterfaceName(rdma_interface) : null;
  if (interfaceProblem) throw new ConfigError(`--rdma-interface ${interfaceProblem}`);
  const metricsText = values.get("metrics-listen");
  const metrics_listen = metricsText === undefined ? null : parseHostPort("metrics-listen", metricsText);
  return {
    node,
    grpc_listen,
    data_dir,
    device_dirs,
    labels,
    cores,
    token,
    nvmf_listen,
    nvmf_advertise_host,
    nvmf_discovery_listen,
    enable_fault_injection,
    dhchap_secret,
    rdma_interface,
    metrics_listen,
  };
}

/** HOST:PORT or [IPv6]:PORT; port 0 asks for any free port. */
const isWildcard = (host: string) => host === "0.0.0.0" || /^[0:]+$/.test(host);

/** What shares and child URIs carry: never a wildcard, which would make a nexus connect to itself. */
function advertiseHost(listen: HostPort, flag: string | undefined): string {
  if (flag === undefined) {
    if (isWildcard(listen.host))
      throw new ConfigError(
        `--nvmf-listen ${listen.host} listens on every address, but no one can connect to it: ` +
          "give --nvmf-advertise HOST, the address other nodes and hosts reach this one at",
      );
    return listen.host;
  }
  const host = flag.replace(/^\[(.*)\]$/, "$1");
  if (!/^[^\s:\[\]]+$/.test(host) && !/^[0-9a-fA-F:]+$/.test(host)) throw new ConfigError(`--nvmf-advertise must be a host name or address, got "${flag}"`);
  if (isWildcard(host)) throw new ConfigError(`--nvmf-advertise ${flag} is a wildcard: give the address other nodes and hosts reach this one at`);
  return host;
}

function parseHostPort(flag: string, text: string): HostPort {
  const m = /^([^\s:\[\]]+):([0-9]{1,5})$/.exec(text) ?? /^\[([0-9a-fA-F:]+)\]:([0-9]{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`--${flag} must be HOST:PORT (port 0-65535), got "${text}"`);
  return { host: m[1], port };
}
