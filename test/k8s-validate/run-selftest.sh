#!/usr/bin/env bash
# Builds k8s-validate and proves it can fail: the good fixtures pass, each bad one fails with the
# message its first line expects.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
GOFLAGS=-mod=mod go build -o bin/k8s-validate .
bin/k8s-validate testdata/good
for f in testdata/bad/*.yaml; do
  expect="$(head -1 "$f" | sed 's/^# expect: //')"
  set +e
  out="$(bin/k8s-validate "$f")"
  rc=$?
  set -e
  [ $rc -eq 1 ] || { echo "selftest: $f: exit $rc, expected 1"; echo "$out"; exit 1; }
  grep -qF -- "$expect" <<<"$out" || { echo "selftest: $f: output lacks \"$expect\""; echo "$out"; exit 1; }
  echo "refused as expected: $f"
done
