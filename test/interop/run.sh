#!/usr/bin/env bash
# `npm run test:interop`: the engine against the Linux kernel's NVMe/TCP host in a QEMU VM.
# Needs root (apt-get, QEMU) and network access to Debian mirrors on the first run only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
[ -f native/build/Release/strata_native.node ] || npm run build:native
npm run build >/dev/null
exec bash test/interop/vm.sh "${1:-test/interop/guest.sh}"
