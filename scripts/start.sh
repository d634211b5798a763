#!/usr/bin/env bash
# `npm start`: set up whatever is missing, start the local cluster if it is not running, run
# `pulumi up` on the root project, and print the outputs. Running it again changes nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
node bin/strata.js cluster up
node bin/strata.js up
