#!/usr/bin/env bash
# Whole-process comparison: `ckpt inspect` on a 3 MB and a 500 MB Lightning-shaped checkpoint
# (same tensors, same pickle; only tensor sizes differ), plus peak RSS, and optionally
# torch.load on the same files.
#
#   scripts/bench_inspect.sh [--big-mb 500] [--python /path/to/venv/bin/python] [--dir DIR]
#
# Needs no torch. With --python (a venv that has torch), also times torch.load (full and mmap)
# on the same two files. Reports ratios from one run, as the project's benchmarks do.
set -euo pipefail
cd "$(dirname "$0")/.."
BIG_MB=500; PY=""; DIR=""
while [ $# -gt 0 ]; do
  case $1 in
    --big-mb) BIG_MB=$2; shift 2;;
    --python) PY=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
DIR=${DIR:-$(mktemp -d)}
cargo build --release -q -p ckpt -p ckpt-test-support --example make_checkpoint
small=$DIR/small.ckpt; big=$DIR/big.ckpt
[ -f "$small" ] || target/release/examples/make_checkpoint "$small" 3
[ -f "$big" ] || target/release/examples/make_checkpoint "$big" "$BIG_MB"
ls -l "$small" "$big"
bin=target/release/ckpt

# mean wall time of N runs, in milliseconds (hyperfine when present)
time_ms() {
  local n=$1; shift
  local start end
  start=$(date +%s%N)
  for _ in $(seq "$n"); do "$@" >/dev/null; done
  end=$(date +%s%N)
  echo "scale=3; ($end - $start) / 1000000 / $n" | bc
}
rss_kb() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }

echo
echo "== ckpt inspect (warm page cache, mean of 50 runs)"
s=$(time_ms 50 $bin inspect "$small"); b=$(time_ms 50 $bin inspect "$big")
echo "3 MB: ${s} ms   ${BIG_MB} MB: ${b} ms   ratio big/small: $(echo "scale=2; $b / $s" | bc)"
echo "peak RSS: 3 MB file $(rss_kb $bin inspect "$small") KB, ${BIG_MB} MB file $(rss_kb $bin inspect "$big") KB"
if [ -w /proc/sys/vm/drop_caches ]; then
  sync; echo 3 > /proc/sys/vm/drop_caches; cs=$(time_ms 1 $bin inspect "$small")
  sync; echo 3 > /proc/sys/vm/drop_caches; cb=$(time_ms 1 $bin inspect "$big")
  echo "cold cache (one run each): 3 MB ${cs} ms, ${BIG_MB} MB ${cb} ms"
fi
if command -v hyperfine >/dev/null; then
  hyperfine -N --style basic --warmup 5 "$bin inspect $small" "$bin inspect $big"
fi
if [ -n "$PY" ]; then
  echo
  echo "== torch.load on the same files (one run each; includes import torch)"
  for f in "$small" "$big"; do
    for mode in full mmap; do
      t=$( { /usr/bin/time -f "%e s, peak RSS %M KB" "$PY" -c "
import sys, torch
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False, mmap=sys.argv[2] == 'mmap')
cb = next(v for k, v in ck['callbacks'].items() if k.startswith('ModelCheckpoint'))
print(ck['epoch'], ck['global_step'], float(cb['best_model_score']))" "$f" "$mode" >/dev/null; } 2>&1 | tail -1)
      echo "$(basename "$f") torch.load ($mode): $t"
    done
  done
fi
