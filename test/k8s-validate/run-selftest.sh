#!/usr/bin/env bash
# Builds k8s-validate and checks it against its own fixtures:
#   testdata/good/      must validate cleanly (exit 0);
#   testdata/bad/*.yaml must each fail (exit 1) with the substring given on
#                       the file's first line as "# expect: <substring>".
# Usage: test/k8s-validate/run-selftest.sh   (from any directory)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
bin="$here/bin/k8s-validate"

# -mod=readonly: the build must be reproducible from go.mod/go.sum alone,
# never silently re-resolving dependencies. nice: CI boxes are small and
# often build something else at the same time.
start=$(date +%s)
nice -n 10 go build -mod=readonly -o "$bin" .
nice -n 10 go vet -mod=readonly ./...
echo "built $bin in $(( $(date +%s) - start ))s"

fail=0
failed() { echo "FAIL: $*"; fail=1; }

# Good fixtures: every object must be ok.
set +e
out="$("$bin" testdata/good)"; rc=$?
set -e
echo "$out"
[[ $rc -eq 0 ]] || failed "testdata/good: exit $rc, want 0"
[[ "$(head -n1 <<<"$out")" =~ ^kubernetes\ v1\.[0-9]+\ \(k8s\.io/api\ v0\.[0-9]+\.[0-9]+\)$ ]] \
  || failed "first line is not the version line"

# Bad fixtures: each file on its own, so one fixture cannot mask another.
shopt -s nullglob
bad=(testdata/bad/*.yaml testdata/bad/*.yml)
[[ ${#bad[@]} -gt 0 ]] || failed "no bad fixtures"
for f in "${bad[@]}"; do
  expect="$(sed -n '1s/^# expect: //p' "$f")"
  if [[ -z "$expect" ]]; then failed "$f: first line has no '# expect: ' comment"; continue; fi
  set +e
  out="$("$bin" "$f")"; rc=$?
  set -e
  if [[ $rc -ne 1 ]]; then failed "$f: exit $rc, want 1"; echo "$out"; continue; fi
  if ! grep -qF -- "$expect" <<<"$out"; then failed "$f: output lacks: $expect"; echo "$out"; continue; fi
  echo "pass $f"
done

# Usage and I/O errors are exit 2, distinct from "invalid manifest".
set +e
"$bin" >/dev/null 2>&1; rc=$?
[[ $rc -eq 2 ]] || failed "no arguments: exit $rc, want 2"
"$bin" testdata/does-not-exist >/dev/null 2>&1; rc=$?
[[ $rc -eq 2 ]] || failed "missing path: exit $rc, want 2"
set -e

if [[ $fail -ne 0 ]]; then echo "k8s-validate selftest: FAILED"; exit 1; fi
echo "k8s-validate selftest: ok (${#bad[@]} bad fixtures)"
