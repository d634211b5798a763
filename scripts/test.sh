#!/usr/bin/env bash
# `npm test`: setup, then the unit and component tests, then the end-to-end suite that drives
# the real Pulumi CLI against real engines on loopback.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
npx --no-install ava --config ava.unit.config.mjs
# The NVMe/TCP fuzzers, briefly (12 s each): catches regressions against the checked-in and
# accumulated corpus; longer campaigns: `npm run test:fuzz -- 600`.
bash scripts/test-fuzz.sh "${STRATA_FUZZ_SECONDS:-12}"
npx --no-install ava --config ava.e2e.config.mjs
