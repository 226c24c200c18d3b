#!/usr/bin/env bash
# Replace corpus/TARGET by at most 200 inputs chosen from it and the scratch corpus of run.sh:
#
#   fuzz/minimize.sh TARGET [MAX_LEN]
#
# libFuzzer merges both into a control file that lists each input's coverage features, then
# select_corpus.py keeps every `seed-*` input and greedily adds the input with the most
# uncovered features per size, up to 200. Run it after `cargo +nightly fuzz build`.
set -euo pipefail
cd "$(dirname "$0")"
t=${1:?usage: fuzz/minimize.sh TARGET [MAX_LEN]}
max_len=${2:-65536}
bin=target/x86_64-unknown-linux-gnu/release/$t
work=/tmp/ckpt-fuzz/minimize/$t
rm -rf "$work"
mkdir -p "$work/empty" /tmp/ckpt-fuzz/tmp /tmp/ckpt-fuzz/corpus/$t
# cargo fuzz sets detect_odr_violation=0 too (the bundled SQLite trips it).
export TMPDIR=/tmp/ckpt-fuzz/tmp ASAN_OPTIONS=detect_odr_violation=0
nice -n 19 "$bin" -merge=1 -merge_control_file="$work/control" -max_len="$max_len" \
  -timeout=10 -rss_limit_mb=2048 "$work/empty" "corpus/$t" "/tmp/ckpt-fuzz/corpus/$t" \
  >"$work/merge.log" 2>&1
python3 select_corpus.py "$work/control" "$work/selected" 200
rm -rf "corpus/$t"
cp -r "$work/selected" "corpus/$t"
