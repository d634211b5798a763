// Unit and component tests: native addon, engine over gRPC, provider logic. Compiled first.
export default {
  files: ["dist/test/**/*.test.js", "!dist/test/e2e/**"],
  timeout: "120s",
  concurrency: 2,
  workerThreads: false,
};
