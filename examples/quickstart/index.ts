// Entry point for running the quickstart as a project directory (`pulumi up` in the root).
import { quickstart } from "./program";

const outputs = quickstart();
export const volumeUuid = outputs.volumeUuid;
export const volumeNode = outputs.volumeNode;
export const volumePool = outputs.volumePool;
export const volumePlacement = outputs.volumePlacement;
export const replicatedUuid = outputs.replicatedUuid;
export const replicatedHealth = outputs.replicatedHealth;
export const replicatedNodes = outputs.replicatedNodes;
export const replicatedConnect = outputs.replicatedConnect;
export const replicatedDhchapSecret = outputs.replicatedDhchapSecret;
export const tieredUuid = outputs.tieredUuid;
export const tieredConnect = outputs.tieredConnect;
export const tieredDhchapSecret = outputs.tieredDhchapSecret;
export const tierUri = outputs.tierUri;
export const tierSizeBytes = outputs.tierSizeBytes;
export const tierWriteAmplification = outputs.tierWriteAmplification;
