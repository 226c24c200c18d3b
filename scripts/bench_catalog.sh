#!/usr/bin/env bash
# Whole-process figures for `ckpt catalog`, no torch needed:
#  A. 20 Lightning-shaped checkpoints x 500 MB, no sidecars, uncached (--no-cache);
#  B. 10,000 small checkpoints (100 experiments), uncached (fresh cache) and cached (unchanged);
#  peak RSS for each. With --python VENV/bin/python, also the Python way on tree A
#  (shared/bench/py_catalog.py --mmap), for ratios measured in the same run.
#
#   scripts/bench_catalog.sh [--dir DIR] [--big-mb 500] [--n-big 20] [--n-small 10000] [--python PY]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=""; MB=500; NBIG=20; NSMALL=10000; PY=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2;;
    --big-mb) MB=$2; shift 2;;
    --n-big) NBIG=$2; shift 2;;
    --n-small) NSMALL=$2; shift 2;;
    --python) PY=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
DIR=${DIR:-$(mktemp -d)}
cargo build --release -q -p ckpt -p ckpt-test-support --example make_checkpoint --example make_tree
bin=$(pwd)/target/release/ckpt
big=$DIR/big/outputs/exp_bench/checkpoints
small=$DIR/small
mkdir -p "$big"
first=$big/epoch=00-step=100.ckpt
[ -f "$first" ] || target/release/examples/make_checkpoint "$first" "$MB"
for i in $(seq 1 $((NBIG - 1))); do
  f=$big/epoch=$(printf %02d "$i")-step=$(( (i + 1) * 100 )).ckpt
  [ -f "$f" ] || cp "$first" "$f"
done
find "$big" -name '*.metadata.*' -delete
[ -d "$small" ] || target/release/examples/make_tree "$small" "$NSMALL" 32
cache=$DIR/cache.sqlite3
du -sh "$DIR/big" "$small"

echo "== A: catalog of $NBIG x $MB MB, uncached"
hyperfine -N --style basic --warmup 3 --runs 20 "$bin catalog --no-cache --format json $DIR/big" 2>/dev/null | grep -E "Time|Range" || true
/usr/bin/time -f "   peak RSS %M KB" "$bin" catalog --no-cache --format json "$DIR/big" 2>&1 >/dev/null | tail -1

echo "== B: catalog of $NSMALL small checkpoints"
hyperfine -N --style basic --warmup 1 --runs 5 --prepare "rm -f $cache $cache-wal $cache-shm" \
  "$bin catalog --cache-file $cache --format json $small" 2>/dev/null | grep -E "Time|Range" || true | sed 's/^/uncached /'
"$bin" catalog --cache-file "$cache" --format json "$small" >/dev/null
hyperfine -N --style basic --warmup 2 --runs 10 "$bin catalog --cache-file $cache --format json $small" 2>/dev/null \
  | grep -E "Time|Range" || true | sed 's/^/cached   /'
/usr/bin/time -f "   peak RSS %M KB (cached run)" "$bin" catalog --cache-file "$cache" --format json "$small" 2>&1 >/dev/null | tail -1
/usr/bin/time -f "   peak RSS %M KB (tree A: memory flat in tree size?)" "$bin" catalog --no-cache --format json "$DIR/big" 2>&1 >/dev/null | tail -1

if [ -n "$PY" ]; then
  echo "== the Python way on tree A (torch.load(mmap=True) of each file)"
  /usr/bin/time -f "   %e s, peak RSS %M KB" "$PY" ../shared/bench/py_catalog.py "$DIR/big" --mmap 2>&1 >/dev/null | tail -2
  echo "== the seeds' way on tree A (full torch.load)"
  /usr/bin/time -f "   %e s, peak RSS %M KB" "$PY" ../shared/bench/py_catalog.py "$DIR/big" 2>&1 >/dev/null | tail -2
fi
