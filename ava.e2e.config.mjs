// The end-to-end suite: the real Pulumi CLI against a real local cluster. Serial: each test
// file owns a cluster on its own ports, but the machine has two cores.
export default {
  files: ["dist/test/e2e/**/*.test.js"],
  timeout: "600s",
  concurrency: 1,
  serial: true,
  workerThreads: false,
};
