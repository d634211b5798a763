#!/usr/bin/env bash
# Builds the NVMe/TCP libFuzzer harnesses (native/fuzz) with clang and ASan/UBSan and runs each
# for a bounded time. Not part of node-gyp: the addon is built with g++ and has no fuzzer
# runtime. Fails on any crash, sanitizer report, leak or oracle abort; prints executions.
#   scripts/test-fuzz.sh [seconds per fuzzer, default 15]
# Needs Debian's clang and libclang-rt-14-dev (scripts/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-15}"
CXX="${FUZZ_CXX:-clang++}"
if ! command -v "$CXX" >/dev/null; then
  echo "test-fuzz: $CXX not found; install with: apt-get install -y clang libclang-rt-14-dev" >&2
  exit 1
fi
# Binaries and the growing corpus live in .strata/ (git-ignored), so each run starts from what
# earlier runs found; the checked-in seeds are copied in every time.
OUT=.strata/fuzz
mkdir -p "$OUT"
# The target links the RDMA listener (rdma.cc), so the harnesses link it and rdma-core too.
SRC=(native/src/nvmf/queue_pair.cc native/src/nvmf/tcp.cc native/src/nvmf/rdma.cc native/src/nvmf/rdma_common.cc native/src/nvmf/auth.cc
     native/src/nvmf/target.cc native/src/reactor/reactor.cc native/src/util/crc32c.cc native/src/util/status.cc native/src/util/uuid.cc)
LIBS=(-luring -lcrypto -lrdmacm -libverbs)
# -fno-sanitize-recover: a UBSan finding must stop the run, not scroll past.
FLAGS=(-std=c++20 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -Wall -Wextra -Werror -Wno-missing-field-initializers -Inative/src -Inative)
for f in pdu dispatch; do
  if [[ ! -x "$OUT/fuzz_$f" || -n "$(find native/fuzz native/src/nvmf native/src/util native/src/reactor -newer "$OUT/fuzz_$f" -name '*.[ch]*' | head -1)" ]]; then
    echo "test-fuzz: building fuzz_$f"
    "$CXX" "${FLAGS[@]}" "native/fuzz/fuzz_$f.cc" "${SRC[@]}" "${LIBS[@]}" -o "$OUT/fuzz_$f"
  fi
done
# Seeds: native/fuzz/corpus/ is checked in; gen_corpus (built from the same PDU builders as the
# harnesses) rewrites it so the seeds always match the harnesses' input formats.
if [[ ! -x "$OUT/gen_corpus" || native/fuzz/gen_corpus.cc -nt "$OUT/gen_corpus" || native/fuzz/harness.h -nt "$OUT/gen_corpus" ]]; then
  "$CXX" -std=c++20 -O1 -Wall -Wextra -Werror -Wno-missing-field-initializers -Inative/src -Inative \
    native/fuzz/gen_corpus.cc "${SRC[@]}" "${LIBS[@]}" -o "$OUT/gen_corpus"
fi
mkdir -p native/fuzz/corpus/pdu native/fuzz/corpus/dispatch
"$OUT/gen_corpus" native/fuzz/corpus
status=0
for f in pdu dispatch; do
  corpus="$OUT/corpus_$f"
  mkdir -p "$corpus"
  cp -n native/fuzz/corpus/$f/* "$corpus/" 2>/dev/null || true
  log="$OUT/fuzz_$f.log"
  echo "test-fuzz: fuzz_$f for ${SECONDS_EACH}s"
  if ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
     "$OUT/fuzz_$f" -max_total_time="$SECONDS_EACH" -max_len=300000 -timeout=10 -rss_limit_mb=4096 \
     -print_final_stats=1 -artifact_prefix="$OUT/crash_${f}_" "$corpus" >"$log" 2>&1; then
    execs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+' || true)
    echo "test-fuzz: fuzz_$f OK: ${execs:-?} executions, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l) inputs"
  else
    status=1
    echo "test-fuzz: fuzz_$f FAILED (log $log):" >&2
    grep -E -A30 'ERROR: |runtime error|fuzz oracle|deadly signal' "$log" | head -60 >&2 || tail -40 "$log" >&2
  fi
done
exit $status
