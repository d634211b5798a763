// The end-to-end suite: the real Pulumi CLI against a real local cluster. Serial: each test
// file owns a cluster on its own ports, but the machine has two cores.
export default {
  files: ["dist/test/e2e/**/*.test.js"],
  timeout: "600s",
  concurrency: 1,
  serial: true,
  workerThreads: false,
  // Pulumi runs the TypeScript programs transpile-only: `npm run build` (tsc) has type-checked
  // every source already, and type-checking the SDK's sources again at each of the suite's
  // hundreds of Pulumi runs cost 5-10 s each on two cores. (Users get the default, type-checked.)
  environmentVariables: { PULUMI_NODEJS_TRANSPILE_ONLY: "true" },
};
