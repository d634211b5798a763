// The quickstart: a pool on each node of the local cluster and one thin volume placed on one
// of them. The nodes and their disks come from stack config written by `npx strata cluster up`.
import * as pulumi from "@pulumi/pulumi";
import * as strata from "../../sdk";

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

  return {
    volumeUuid: volume.uuid,
    volumeNode: volume.node,
    volumePool: volume.pool,
    volumePlacement: volume.placement,
  };
}
