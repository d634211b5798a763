// Entry point for running the quickstart as a project directory (`pulumi up` in the root).
import { quickstart } from "./program";

const outputs = quickstart();
export const volumeUuid = outputs.volumeUuid;
export const volumeNode = outputs.volumeNode;
export const volumePool = outputs.volumePool;
export const volumePlacement = outputs.volumePlacement;
