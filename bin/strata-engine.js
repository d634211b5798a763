#!/usr/bin/env node
"use strict";
require("../dist/engine/main.js").main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), level: "error", msg: "engine failed", reason: String((err && err.stack) || err) }) + "\n");
    process.exit(1);
  },
);
