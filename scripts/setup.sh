#!/usr/bin/env bash
# Installs everything Strata needs on a fresh Debian machine, idempotently: Debian packages
# (liburing-dev for the native data path, a C++ toolchain), node modules (which builds the
# native addon through the package's install script), the TypeScript build, and the Pulumi CLI
# (built from the Go module proxy when none is on PATH). Prints how long each step took.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }
step_started=0
step() { step_started=$(date +%s); log "$*"; }
done_step() { log "  done in $(( $(date +%s) - step_started )) s"; }

# Debian packages the build needs. Only root can install them; others get the exact command.
missing=()
# tshark: the third-party NVMe/TCP decoder of test/native/nvmf/tshark.test.ts; clang and
# libclang-rt-14-dev: libFuzzer and the sanitizer runtimes of scripts/test-fuzz.sh; libssl-dev:
# OpenSSL (HMAC, SHA-2, FFDHE) for DH-HMAC-CHAP in the fuzzers (the addon uses Node's own);
# rdma-core (librdmacm, libibverbs and their providers, rxe among them): NVMe over RDMA;
# prometheus: promtool, which checks the engine's metrics exposition (test/engine/metrics.test.ts).
for pkg in liburing-dev g++ make python3 pkg-config fio tshark clang libclang-rt-14-dev libssl-dev librdmacm-dev libibverbs-dev rdma-core ibverbs-providers prometheus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    # wireshark-common otherwise asks whether non-root users may capture; answer no up front.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "run as root: apt-get install -y ${missing[*]}"; exit 1
  fi
  done_step
fi

# node-gyp cannot download Node's headers here; point it at the ones Node ships.
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node_api.h" ]; then
  export npm_config_nodedir="$node_prefix"
fi

stamp="node_modules/.strata-install-stamp"
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  step "installing node modules and building the native addon"
  # The exit status is npm's, not grep's (a failed install must stop here, not later).
  status=0
  npm ci --no-fund --no-audit --loglevel=error > .npm-ci.log 2>&1 || status=$?
  grep -v 'Unknown user config' .npm-ci.log || true
  rm -f .npm-ci.log
  [ "$status" -eq 0 ] && [ -d node_modules/@pulumi/pulumi ] || { log "npm ci failed (exit $status)"; exit 1; }
  touch "$stamp"
  done_step
fi
if [ ! -f native/build/Release/strata_native.node ] || [ -n "$(find native/src native/binding.gyp -newer native/build/Release/strata_native.node 2>/dev/null | head -1)" ]; then
  step "building the native addon"
  node scripts/build-native.mjs >/dev/null
  done_step
fi

step "compiling TypeScript"
# A type error fails setup (and so `npm test` and `npm start`); compiled tests of deleted test
# files must not linger and run.
rm -rf dist/test
status=0
npm run --silent build > .tsc.log 2>&1 || status=$?
grep -v 'Unknown user config' .tsc.log || true
rm -f .tsc.log
[ "$status" -eq 0 ] && [ -f dist/engine/main.js ] || { log "TypeScript build failed (exit $status): fix the errors above"; exit 1; }
done_step

step "building the SDK package (sdk/dist)"
# What a Pulumi program outside this repository installs (`npm install --install-links sdk`);
# a build that fails, or a package that cannot load, fails setup.
status=0
npm run --silent build:sdk > .sdk.log 2>&1 || status=$?
grep -v 'Unknown user config' .sdk.log || true
rm -f .sdk.log
[ "$status" -eq 0 ] && [ -f sdk/dist/sdk/index.js ] || { log "SDK build failed (exit $status): fix the errors above"; exit 1; }
done_step

step "Pulumi CLI"
bash scripts/install-pulumi.sh
done_step

# @pulumi/kubernetes (sdk/kubernetes.ts) needs its provider plugin, which cannot be downloaded
# here either: built from the Go module proxy like the CLI, into the same bin directory.
step "Pulumi Kubernetes provider plugin"
bash scripts/install-k8s-plugin.sh
done_step
