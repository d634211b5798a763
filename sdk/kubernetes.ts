// `StrataNodes`: the Strata engine on Kubernetes, built on @pulumi/kubernetes. One DaemonSet
// runs one engine per storage node (host network, privileged, the node's /dev and a data
// directory from the host), beside the Secret holding the engines' token and a headless
// Service naming the engines' ports. Import it from "@strata/sdk/kubernetes" (or the
// repository's sdk/kubernetes), so programs without Kubernetes never load @pulumi/kubernetes.
//
//   const nodes = new StrataNodes("strata", { image: "registry.example/strata-engine:0.1.0", token, cores: 2, memory: "2Gi" });
//   const pool = new strata.Pool("pool-a", { node: nodes.nodeName("worker-1"), disk: "uring:///dev/nvme1n1" }, { dependsOn: nodes });
//
// The values mirror the knobs of Mayastor's Helm chart (io-engine: `rdmaEnabled`,
// `rdmaInterface`, `resources.ioEngine.cpu`, `hugepages`) so an operator moving from it finds
// the same choices. Everything is checked at construction, so a bad value fails `pulumi preview`
// with the field named, before anything reaches the cluster.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { checkInterfaceName, checkLabels } from "../common/validate";

/** The ports an engine listens on (host network: on the node's own addresses). */
export interface StrataPorts {
  /** The engine API (gRPC). Default 10124. */
  readonly grpc?: number;
  /** NVMe/TCP (and NVMe/RDMA, same number) I/O. Default 4420. */
  readonly nvmf?: number;
  /** The NVMe-oF discovery controller. Default 8009. */
  readonly discovery?: number;
  /** Prometheus metrics and the health probes (/metrics, /livez, /readyz). Default 9502. */
  readonly metrics?: number;
}

export interface StrataNodesArgs {
  /** The engine's container image (it must run `strata-engine`, see `command`). */
  readonly image: string;
  /** The token every engine API call carries (a Pulumi secret is best); kept in a Secret. */
  readonly token: pulumi.Input<string>;
  /** Namespace of every object (created unless `createNamespace` is false). Default "strata". */
  readonly namespace?: string;
  readonly createNamespace?: boolean;
  /** Reactor threads per engine, and the CPU request = limit (Guaranteed QoS). Default 2. */
  readonly cores?: number;
  /** Memory request = limit, a Kubernetes quantity. Default "1Gi". */
  readonly memory?: string;
  /** 2 MiB huge pages to reserve per engine (request = limit, e.g. "1Gi"); none by default. */
  readonly hugepages2Mi?: string;
  /** Only nodes with these labels run an engine. Default { "strata.io/engine": "true" }. */
  readonly nodeSelector?: Record<string, string>;
  readonly tolerations?: k8s.types.input.core.v1.Toleration[];
  /** NVMe over RDMA on a RoCE interface of every node, as Mayastor's rdmaEnabled/rdmaInterface. */
  readonly rdma?: { readonly enabled: boolean; readonly interface?: string };
  /** Where each engine keeps its state on its node (a hostPath). Default /var/lib/strata. */
  readonly dataDir?: string;
  readonly ports?: StrataPorts;
  /** The container command that starts the engine. Default ["strata-engine"]. */
  readonly command?: string[];
  /** Labels every engine reports (placement spreads by them), e.g. { "topology.kubernetes.io/zone": "a" }. */
  readonly engineLabels?: Record<string, string>;
  /**
   * Wait for the DaemonSet's rollout in `pulumi up`. Default false: a DaemonSet on nodes that
   * are not there yet (or a storage node drained for maintenance) would otherwise keep `up`
   * waiting for its timeout; the engines' readiness is what the Strata resources wait for.
   */
  readonly waitForRollout?: boolean;
  /** The storage nodes' Kubernetes names and addresses, when known: they become `endpoints`. */
  readonly nodes?: { readonly name: string; readonly address: string }[];
  /** A priority class for the engines (e.g. "system-node-critical"); none by default. */
  readonly priorityClassName?: string;
}

const DEFAULT_PORTS: Required<StrataPorts> = { grpc: 10124, nvmf: 4420, discovery: 8009, metrics: 9502 };
// A Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource), binary or decimal suffix.
const QUANTITY_RE = /^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DEFAULT_DATA_DIR = "/var/lib/strata";

/** The labels that select one StrataNodes' engine pods (DaemonSet selector, Service, every object). */
function engineSelector(name: string): Record<string, string> {
  return { "app.kubernetes.io/name": "strata-engine", "app.kubernetes.io/instance": name };
}
// Inside the container the data directory is always here, wherever it lives on the host.
const DATA_MOUNT = DEFAULT_DATA_DIR;
const TOKEN_MOUNT = "/etc/strata";

/** The component's inputs, checked and with defaults filled: what the manifests are built from. */
export interface EngineSpec {
  readonly name: string;
  readonly image: string;
  readonly namespace: string;
  readonly cores: number;
  readonly memory: string;
  readonly hugepages2Mi: string | null;
  readonly nodeSelector: Record<string, string>;
  readonly rdmaInterface: string | null;
  readonly dataDir: string;
  readonly ports: Required<StrataPorts>;
  readonly command: string[];
  readonly engineLabels: Record<string, string>;
  readonly waitForRollout: boolean;
  readonly priorityClassName: string | null;
  readonly tolerations: k8s.types.input.core.v1.Toleration[];
}

/** Checks every input; throws one Error naming each field that is wrong and why. */
export function engineSpec(name: string, args: StrataNodesArgs): EngineSpec {
  const problems: string[] = [];
  const bad = (field: string, why: string) => problems.push(`${field} ${why}`);
  if (!DNS_LABEL_RE.test(name) || name.length > 40) bad("name", `must be a DNS label of at most 40 characters (objects are named after it), got "${name}"`);
  if (typeof args.image !== "string" || args.image.trim() === "" || /\s/.test(args.image)) bad("image", `must be a container image reference, got ${JSON.stringify(args.image)}`);
  const namespace = args.namespace ?? "strata";
  if (!DNS_LABEL_RE.test(namespace)) bad("namespace", `must be a DNS label (lower-case letters, digits, '-'), got "${namespace}"`);
  const cores = args.cores ?? 2;
  if (!Number.isInteger(cores) || cores < 1 || cores > 64) bad("cores", `must be a whole number from 1 to 64, got ${cores}`);
  const memory = args.memory ?? "1Gi";
  if (!QUANTITY_RE.test(memory)) bad("memory", `must be a Kubernetes quantity like "1Gi", got "${memory}"`);
  const hugepages = args.hugepages2Mi ?? null;
  if (hugepages !== null && !QUANTITY_RE.test(hugepages)) bad("hugepages2Mi", `must be a Kubernetes quantity like "1Gi", got "${hugepages}"`);
  const nodeSelector = args.nodeSelector ?? { "strata.io/engine": "true" };
  const selectorProblem = checkLabels(nodeSelector);
  if (selectorProblem) bad("nodeSelector", selectorProblem);
  let rdmaInterface: string | null = null;
  if (args.rdma?.enabled) {
    const problem = checkInterfaceName(args.rdma.interface);
    if (problem) bad("rdma.interface", `${problem} (rdma.enabled needs the RoCE interface every node serves on)`);
    else rdmaInterface = args.rdma.interface!;
  }
  const dataDir = args.dataDir ?? DEFAULT_DATA_DIR;
  if (!dataDir.startsWith("/") || dataDir === "/") bad("dataDir", `must be an absolute host path other than /, got "${dataDir}"`);
  const ports = { ...DEFAULT_PORTS, ...(args.ports ?? {}) };
  for (const [key, port] of Object.entries(ports))
    if (!Number.isInteger(port) || port < 1 || port > 65535) bad(`ports.${key}`, `must be a port from 1 to 65535, got ${port}`);
  if (new Set(Object.values(ports)).size !== Object.keys(ports).length) bad("ports", `must all differ, got ${JSON.stringify(ports)}`);
  const command = args.command ?? ["strata-engine"];
  if (command.length === 0 || command.some((c) => typeof c !== "string" || c === "")) bad("command", "must be a non-empty list of non-empty strings");
  const engineLabels = args.engineLabels ?? {};
  const labelProblem = checkLabels(engineLabels);
  if (labelProblem) bad("engineLabels", labelProblem);
  for (const n of args.nodes ?? []) {
    if (typeof n.name !== "string" || n.name === "") bad("nodes", `each needs a name, got ${JSON.stringify(n)}`);
    if (typeof n.address !== "string" || !/^[^\s:]+$|^\[[0-9a-fA-F:]+\]$/.test(n.address)) bad("nodes", `${n.name}: address must be a host name or IP address, got ${JSON.stringify(n.address)}`);
  }
  if (problems.length > 0) throw new Error(`StrataNodes "${name}": ${problems.join("; ")}`);
  return {
    name,
    image: args.image,
    namespace,
    cores,
    memory,
    hugepages2Mi: hugepages,
    nodeSelector,
    rdmaInterface,
    dataDir,
    ports,
    command,
    engineLabels,
    waitForRollout: args.waitForRollout ?? false,
    priorityClassName: args.priorityClassName ?? null,
    tolerations: args.tolerations ?? [],
  };
}

/** The engine's command-line flags; $(VAR) is expanded by the kubelet from the container's env. */
export function engineArgs(spec: EngineSpec): string[] {
  const args = [
    "--node=$(NODE_NAME)",
    `--data-dir=${DATA_MOUNT}`,
    `--token-file=${TOKEN_MOUNT}/token`,
    `--grpc-listen=0.0.0.0:${spec.ports.grpc}`,
    `--nvmf-listen=0.0.0.0:${spec.ports.nvmf}`,
    "--nvmf-advertise=$(HOST_IP)",
    `--nvmf-discovery-listen=0.0.0.0:${spec.ports.discovery}`,
    `--metrics-listen=0.0.0.0:${spec.ports.metrics}`,
    `--cores=${spec.cores}`,
    "--device-dir=/dev",
    `--device-dir=${DATA_MOUNT}`,
  ];
  const labels = Object.entries(spec.engineLabels).map(([k, v]) => `${k}=${v}`);
  if (labels.length > 0) args.push(`--labels=${labels.join(",")}`);
  if (spec.rdmaInterface) args.push(`--rdma-interface=${spec.rdmaInterface}`);
  return args;
}

/** The DaemonSet's pod template: everything Kubernetes runs, as plain data (tests read it). */
export function enginePodSpec(spec: EngineSpec, secretName: pulumi.Input<string>): k8s.types.input.core.v1.PodTemplateSpec {
  const selector = engineSelector(spec.name);
  const limits: Record<string, string> = { cpu: String(spec.cores), memory: spec.memory };
  if (spec.hugepages2Mi) limits["hugepages-2Mi"] = spec.hugepages2Mi;
  const volumes: k8s.types.input.core.v1.Volume[] = [
    { name: "dev", hostPath: { path: "/dev", type: "Directory" } },
    { name: "data", hostPath: { path: spec.dataDir, type: "DirectoryOrCreate" } },
    { name: "token", secret: { secretName, defaultMode: 0o400 } },
  ];
  const mounts: k8s.types.input.core.v1.VolumeMount[] = [
    { name: "dev", mountPath: "/dev" },
    { name: "data", mountPath: DATA_MOUNT },
    { name: "token", mountPath: TOKEN_MOUNT, readOnly: true },
  ];
  if (spec.hugepages2Mi) {
    volumes.push({ name: "hugepages", emptyDir: { medium: "HugePages-2Mi" } });
    mounts.push({ name: "hugepages", mountPath: "/dev/hugepages-2Mi" });
  }
  const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({
    httpGet: { path, port: "metrics" },
    periodSeconds,
    timeoutSeconds: 3,
    failureThreshold,
  });
  return {
    metadata: {
      labels: selector,
      annotations: { "prometheus.io/scrape": "true", "prometheus.io/port": String(spec.ports.metrics), "prometheus.io/path": "/metrics" },
    },
    spec: {
      hostNetwork: true,
      dnsPolicy: "ClusterFirstWithHostNet",
      nodeSelector: spec.nodeSelector,
      // A clean stop writes every pool's clean-shutdown state; give it time before SIGKILL.
      terminationGracePeriodSeconds: 60,
      ...(spec.priorityClassName ? { priorityClassName: spec.priorityClassName } : {}),
      containers: [
        {
          name: "engine",
          image: spec.image,
          command: spec.command,
          args: engineArgs(spec),
          env: [
            { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
            { name: "HOST_IP", valueFrom: { fieldRef: { fieldPath: "status.hostIP" } } },
          ],
          ports: [
            { name: "grpc", containerPort: spec.ports.grpc, protocol: "TCP" },
            { name: "nvmf", containerPort: spec.ports.nvmf, protocol: "TCP" },
            { name: "discovery", containerPort: spec.ports.discovery, protocol: "TCP" },
            { name: "metrics", containerPort: spec.ports.metrics, protocol: "TCP" },
          ],
          // Requests equal to limits: Guaranteed QoS, so the kubelet never throttles or evicts
          // the data path first under node pressure.
          resources: { requests: limits, limits },
          securityContext: { privileged: true },
          volumeMounts: mounts,
          // Liveness asks only whether the process answers; readiness is a round trip through
          // every pool's reactor (engine/metrics.ts), so a wedged data path leaves the Service.
          livenessProbe: probe("/livez", 10, 6),
          readinessProbe: probe("/readyz", 5, 3),
          // Importing pools (an FTL's recovery scan) can take minutes after a crash.
          startupProbe: probe("/livez", 5, 120),
        },
      ],
      volumes,
      tolerations: spec.tolerations,
    },
  };
}

export class StrataNodes extends pulumi.ComponentResource {
  declare readonly namespace: pulumi.Output<string>;
  declare readonly daemonSetName: pulumi.Output<string>;
  declare readonly serviceName: pulumi.Output<string>;
  declare readonly secretName: pulumi.Output<string>;
  /** node name -> "address:grpcPort" for each of `args.nodes`: the values of `strata:endpoints`. */
  declare readonly endpoints: pulumi.Output<Record<string, string>>;
  private readonly daemonSet: k8s.apps.v1.DaemonSet;

  constructor(name: string, args: StrataNodesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("strata:kubernetes:StrataNodes", name, {}, opts);
    const spec = engineSpec(name, args);
    const child = { parent: this };
    const ns =
      args.createNamespace === false
        ? undefined
        : new k8s.core.v1.Namespace(`${name}-ns`, { metadata: { name: spec.namespace, labels: { "pod-security.kubernetes.io/enforce": "privileged" } } }, child);
    const inNs = ns ? { ...child, dependsOn: [ns] } : child;
    const labels = engineSelector(name);
    const secret = new k8s.core.v1.Secret(
      `${name}-token`,
      { metadata: { name: `${name}-token`, namespace: spec.namespace, labels }, type: "Opaque", stringData: { token: pulumi.secret(args.token) } },
      inNs,
    );
    const template = enginePodSpec(spec, secret.metadata.name);
    this.daemonSet = new k8s.apps.v1.DaemonSet(
      `${name}-engine`,
      {
        metadata: {
          name: `${name}-engine`,
          namespace: spec.namespace,
          labels,
          annotations: spec.waitForRollout ? {} : { "pulumi.com/skipAwait": "true" },
        },
        spec: {
          selector: { matchLabels: labels },
          // One storage node at a time: replicas elsewhere keep every volume online meanwhile.
          updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
          minReadySeconds: 10,
          template,
        },
      },
      inNs,
    );
    const service = new k8s.core.v1.Service(
      `${name}-engines`,
      {
        metadata: { name: `${name}-engines`, namespace: spec.namespace, labels },
        spec: {
          clusterIP: "None",
          selector: labels,
          // Engines publish volumes before they are ready to serve all of them; clients of the
          // Service (monitoring, tools) must see every engine that is up.
          publishNotReadyAddresses: true,
          ports: [
            { name: "grpc", port: spec.ports.grpc, targetPort: "grpc" },
            { name: "nvmf", port: spec.ports.nvmf, targetPort: "nvmf" },
            { name: "metrics", port: spec.ports.metrics, targetPort: "metrics" },
          ],
        },
      },
      inNs,
    );
    const endpoints = Object.fromEntries((args.nodes ?? []).map((n) => [n.name, `${n.address}:${spec.ports.grpc}`]));
    this.namespace = pulumi.output(spec.namespace);
    this.daemonSetName = this.daemonSet.metadata.name;
    this.serviceName = service.metadata.name;
    this.secretName = secret.metadata.name;
    this.endpoints = pulumi.output(endpoints);
    this.registerOutputs({ namespace: this.namespace, daemonSetName: this.daemonSetName, serviceName: this.serviceName, secretName: this.secretName, endpoints: this.endpoints });
  }

  /**
   * A Strata node name that resolves only once the engines' DaemonSet exists: pass it as a
   * Pool's or CsalDevice's `node` and Pulumi creates the pool after the engines are deployed.
   */
  nodeName(node: string): pulumi.Output<string> {
    return this.daemonSet.metadata.name.apply(() => node);
  }
}
