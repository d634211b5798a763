#!/usr/bin/env bash
# `npm test`: setup, then the unit and component tests, then the end-to-end suite that drives
# the real Pulumi CLI against real engines on loopback.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
npx --no-install ava --config ava.unit.config.mjs
npx --no-install ava --config ava.e2e.config.mjs
