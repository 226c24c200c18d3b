#!/usr/bin/env bash
# Run one fuzz target the way the runs in README.md were made:
#
#   fuzz/run.sh TARGET SECONDS [MAX_LEN]
#
# niced, into a scratch corpus (/tmp/ckpt-fuzz/corpus/TARGET) that starts from the committed
# one (read, never written), in fork mode with one job so a crash, timeout or OOM is saved to
# fuzz/artifacts/TARGET/ and the run goes on. The log lands in /tmp/ckpt-fuzz/logs/; the last
# status line and the peak RSS (of the whole process tree, from GNU time) are printed at the end.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET SECONDS [MAX_LEN]}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS [MAX_LEN]}
max_len=${3:-65536}
scratch=/tmp/ckpt-fuzz
mkdir -p "$scratch/corpus/$target" "$scratch/logs" "$scratch/tmp" "artifacts/$target"
log="$scratch/logs/$target-$(date -u +%Y%m%dT%H%M%S).log"
# The targets write their scratch files under TMPDIR; a job killed by a timeout leaves its
# folder behind, so they go somewhere this script can empty.
export TMPDIR="$scratch/tmp"
echo "$(date -u +%FT%TZ) $target ${seconds}s max_len=$max_len log=$log"
/usr/bin/time -v nice -n 19 cargo +nightly fuzz run "$target" \
  "$scratch/corpus/$target" "corpus/$target" -- \
  -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
  -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || true
rm -rf "${scratch:?}/tmp/"*
grep -E '^#[0-9]+' "$log" | tail -1
grep -E 'Maximum resident set size|Elapsed \(wall' "$log"
ls "artifacts/$target" | head
