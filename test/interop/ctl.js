#!/usr/bin/env node
// One engine API call from a shell script: ctl.js METHOD 'JSON request' -> JSON response on
// stdout. Reads STRATA_ENDPOINT and STRATA_TOKEN. Uses the built client (npm run build).
const { connectEngine } = require("../../dist/common/client");
const [method, body] = process.argv.slice(2);
const c = connectEngine({ node: "vm", endpoint: process.env.STRATA_ENDPOINT, token: process.env.STRATA_TOKEN });
c.call(method, JSON.parse(body || "{}"), 60000).then(
  (r) => { process.stdout.write(JSON.stringify(r) + "\n"); c.close(); },
  (e) => { process.stderr.write(`${method} failed: ${e.message}\n`); c.close(); process.exit(1); },
);
