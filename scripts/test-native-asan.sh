#!/usr/bin/env bash
# Runs the native addon's tests under AddressSanitizer + UndefinedBehaviorSanitizer.
# Builds the addon with STRATA_SANITIZE=1, runs dist/test/native with libasan preloaded into
# node (node itself is not instrumented, so leak checking is off: node leaks by design at exit),
# and always rebuilds the normal addon afterwards so the tree is left as it was.
# Arguments: the compiled test files or folders to run (default dist/test/native/); e.g.
# `npm run test:native-asan -- dist/test/engine/nexus/` runs the nexus fault suite with every
# engine process it starts on the sanitized addon (they inherit LD_PRELOAD).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

rebuild_normal() {
  echo "[asan] rebuilding the normal addon"
  node scripts/build-native.mjs >/dev/null
}
trap rebuild_normal EXIT

echo "[asan] building the addon with -fsanitize=address,undefined"
node scripts/build-native.mjs --asan >/dev/null
npx tsc -p tsconfig.json

libasan="$(gcc -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "[asan] libasan.so not found (gcc -print-file-name=libasan.so gave '$libasan'); install libasan" >&2; exit 1; }

export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# The crash test spawns and kills workers; a few iterations are enough under the sanitizers.
export STRATA_CRASH_ITERATIONS="${STRATA_CRASH_ITERATIONS:-5}"
npx ava --config ava.unit.config.mjs --timeout 5m "${@:-dist/test/native/}"
echo "[asan] clean"
