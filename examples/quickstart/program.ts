// The quickstart: a pool on each node of the local cluster, one thin volume placed on one of
// them, and one volume replicated on three nodes (a nexus), published over NVMe/TCP to a
// frontend host NQN. The nodes and their disks come from stack config written by
// `npx strata cluster up`.
import * as pulumi from "@pulumi/pulumi";
import * as strata from "../../sdk/index";

export function quickstart() {
  const config = new pulumi.Config("strata");
  const endpoints = config.requireObject<Record<string, string>>("endpoints");
  const disks = config.requireObject<Record<string, string>>("disks");

  const pools = Object.keys(endpoints)
    .sort()
    .map(
      (node) =>
        new strata.Pool(`pool-${node}`, {
          node,
          disk: disks[node],
          labels: { class: "file" },
        }),
    );

  // `pulumi config set volumeSizeBytes <bytes>` grows the volume in place.
  const sizeBytes = new pulumi.Config().getNumber("volumeSizeBytes") ?? 1 * strata.GIB;
  const volume = new strata.Volume("quickstart", {
    sizeBytes,
    thin: true,
    pools,
  });

  // Three replicas, one per zone; the nexus lives on the first replica's node. Any host allowed
  // as the frontend connects with the command in the `replicatedConnect` output.
  const frontendHostNqn = new pulumi.Config().get("frontendHostNqn") ?? "nqn.2026-11.io.strata:frontend:quickstart";
  const replicated = new strata.Volume("replicated", {
    sizeBytes: 256 * strata.MIB,
    replicas: Object.keys(endpoints).length >= 3 ? 3 : Object.keys(endpoints).length,
    pools,
    frontendHostNqn: Object.keys(endpoints).length >= 2 ? frontendHostNqn : undefined,
  });

  // A CSAL tiered device on the first node (`strata:csal`, written by `cluster up`): every write
  // lands on the fast cache file; the base file receives only whole sequential bands. A pool
  // on it, and a volume on that pool.
  const csal = config.getObject<{ node: string; cacheDevice: string; baseDevice: string }>("csal");
  let tiered: strata.Volume | undefined;
  let tier: strata.CsalDevice | undefined;
  if (csal) {
    // A 1 MiB map limit: the map of this ~700 MiB device (1.4 MiB) pages through the cache.
    tier = new strata.CsalDevice("tier", { node: csal.node, cacheDevice: csal.cacheDevice, baseDevice: csal.baseDevice, bandMib: 16, mapMemoryLimitMib: 1 });
    const tierPool = new strata.Pool("pool-tier", { node: csal.node, disk: tier.uri, labels: { class: "csal" } });
    // `pulumi config set tieredFrontendHostNqn <host NQN>` publishes it to that host.
    const tieredFrontend = new pulumi.Config().get("tieredFrontendHostNqn");
    tiered = new strata.Volume("tiered", { sizeBytes: 256 * strata.MIB, pools: [tierPool], frontendHostNqn: tieredFrontend });
  }

  return {
    tieredUuid: tiered?.uuid,
    tieredConnect: tiered?.nexus.apply((n) => (n && n.nqn ? `-a ${n.host} -s ${n.port} -n ${n.nqn}` : "")),
    tieredDhchapSecret: tiered?.frontendDhchapSecret,
    tierUri: tier?.uri,
    tierSizeBytes: tier?.sizeBytes,
    tierWriteAmplification: tier?.stats.writeAmplification,
    volumeUuid: volume.uuid,
    volumeNode: volume.node,
    volumePool: volume.pool,
    volumePlacement: volume.placement,
    replicatedUuid: replicated.uuid,
    replicatedHealth: replicated.health,
    replicatedNodes: replicated.placement.apply((p) => p.map((r) => r.node)),
    replicatedConnect: replicated.nexus.apply((n) => {
      if (!n || !n.nqn) return "";
      // The frontend authenticates (DH-HMAC-CHAP); its secret is the secret output below.
      return `nvme connect -t tcp -a ${n.host} -s ${n.port} -n ${n.nqn} --hostnqn ${frontendHostNqn} --dhchap-secret "$(npx strata output replicatedDhchapSecret)"`;
    }),
    replicatedDhchapSecret: replicated.frontendDhchapSecret,
  };
}
