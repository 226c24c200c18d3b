#!/usr/bin/env bash
# Whole-process figures for `ckpt convert` on an FSDP-style GPT-2-medium checkpoint (1.4 GB of
# float32, written by ckpt's own torch-zip writer: no torch needed), against `cp` of the same
# file, with peak RSS. Commands run interleaved, round by round, after the same preparation
# (scripts/interleave.py): this machine's disk and page allocator stall at random for seconds,
# and interleaving makes every command meet the same weather. Reported: median and minimum and
# their ratios to `cp`, from one run.
#
#   ckpt            the default: temp folder + rename, no flush (like cp, save_file,
#                   save_pretrained)
#   ckpt --sync     flushed to disk before the rename (compare with cp + sync)
#   ckpt --dtype bf16   a cast, through a bounded buffer
#   ckpt 2 shards   --max-shard-size 750MB: two files, written in parallel
#   ckpt (DCP)      the same tensors as a DCP directory saved by 4 ranks (row shards), against
#                   `cp -r` of that directory
#
# With --python VENV/bin/python, also the Python way (../shared/bench/py_convert.py).
#
#   scripts/bench_convert_hf.sh [--dir DIR] [--size medium|small] [--rounds N] [--python PY]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=""; SIZE=medium; PY=""; ROUNDS=8
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2;;
    --size) SIZE=$2; shift 2;;
    --rounds) ROUNDS=$2; shift 2;;
    --python) PY=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
DIR=${DIR:-$(mktemp -d)}
cargo build --release -q -p ckpt -p ckpt-test-support --example make_fsdp_checkpoint
src=$DIR/gpt2-$SIZE-fsdp.pth
[ -f "$src" ] || target/release/examples/make_fsdp_checkpoint "$src" "$SIZE"
dcp=$DIR/gpt2-$SIZE-dcp4
[ -d "$dcp" ] || target/release/examples/make_fsdp_checkpoint "$dcp" "$SIZE" 4
ls -l "$src"; du -sh "$dcp"
cat "$src" "$dcp"/* >/dev/null # in the page cache for everyone
bin=$PWD/target/release/ckpt
out=$DIR/out
conv="$bin convert $src --to safetensors --output-dir $out"
names=(--name cp --name "cp + sync" --name ckpt --name "ckpt --sync" --name "ckpt --dtype bf16"
  --name "ckpt 2 shards" --name "cp -r (DCP)" --name "ckpt (DCP)")
cmds=("cp $src $DIR/copy.pth" "cp $src $DIR/copy.pth && sync $DIR/copy.pth" "$conv" "$conv --sync" "$conv --dtype bf16"
  "$conv --max-shard-size 750MB" "cp -r $dcp $DIR/copy.pth" "$bin convert $dcp --to safetensors --output-dir $out")
if [ -n "$PY" ]; then
  names+=(--name "python torch.load(mmap) + save_file")
  cmds+=("$PY ../shared/bench/py_convert.py $src $DIR/py.safetensors --mmap")
fi
python3 scripts/interleave.py --rounds "$ROUNDS" \
  --prepare "rm -rf $out $DIR/copy.pth $DIR/py.safetensors; sync; sleep 1" \
  "${names[@]}" "${cmds[@]}"
rm -rf "$out" "$DIR/copy.pth" "$DIR/py.safetensors"
