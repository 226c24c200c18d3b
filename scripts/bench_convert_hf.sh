#!/usr/bin/env bash
# Whole-process figures for `ckpt convert` on an FSDP-style GPT-2-medium checkpoint (1.4 GB of
# float32, written by ckpt's own torch-zip writer: no torch needed), against `cp` of the same
# file (and `cp` + `sync`, since ckpt fsyncs before renaming its output into place), with peak
# RSS. With --python VENV/bin/python, also the Python way (../shared/bench/py_convert.py).
#
#   scripts/bench_convert_hf.sh [--dir DIR] [--size medium|small] [--python PY]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=""; SIZE=medium; PY=""
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --python) PY=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
DIR=${DIR:-$(mktemp -d)}
cargo build --release -q -p ckpt -p ckpt-torch --example make_fsdp_checkpoint
src=$DIR/gpt2-$SIZE-fsdp.pth
[ -f "$src" ] || target/release/examples/make_fsdp_checkpoint "$src" "$SIZE"
ls -l "$src"
bin=target/release/ckpt
for i in 1 2 3; do
  rm -f "$DIR/copy.pth"; /usr/bin/time -f "cp:            %e s, peak RSS %M KB" cp "$src" "$DIR/copy.pth"
  rm -f "$DIR/copy.pth"; /usr/bin/time -f "cp + sync:     %e s" bash -c "cp '$src' '$DIR/copy.pth' && sync '$DIR/copy.pth'"
  rm -rf "$DIR/out"; /usr/bin/time -f "ckpt convert:  %e s, peak RSS %M KB" "$bin" convert "$src" --to safetensors --output-dir "$DIR/out" >/dev/null
done
if [ -n "$PY" ]; then
  for mode in "" --mmap; do
    /usr/bin/time -f "python torch.load${mode:+ $mode} + save_file: %e s, peak RSS %M KB" \
      "$PY" ../shared/bench/py_convert.py "$src" "$DIR/py.safetensors" $mode 2>&1 | tail -1
  done
fi
rm -rf "$DIR/out" "$DIR/copy.pth" "$DIR/py.safetensors"
