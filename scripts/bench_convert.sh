#!/usr/bin/env bash
# Whole-process figure for `ckpt convert-legacy` on an outputs tree of N Lightning-shaped
# checkpoints of SIZE MB each (default 20 x 500 MB, about 10 GB of disk), none with a sidecar,
# with a Hydra run dir. Optionally compares with torch.load of one of the files.
#
#   scripts/bench_convert.sh [--n 20] [--mb 500] [--dir DIR] [--python VENV/bin/python]
set -euo pipefail
cd "$(dirname "$0")/.."
N=20; MB=500; DIR=""; PY=""
while [ $# -gt 0 ]; do
  case $1 in
    --n) N=$2; shift 2;;
    --mb) MB=$2; shift 2;;
    --dir) DIR=$2; shift 2;;
    --python) PY=$2; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
DIR=${DIR:-$(mktemp -d)}
cargo build --release -q -p ckpt -p ckpt-test-support --example make_checkpoint
out=$DIR/outputs
run=$out/exp_bench
mkdir -p "$run/checkpoints" "$run/.hydra"
cat > "$run/.hydra/config.yaml" <<'YAML'
exp_name: exp_bench
model:
  architecture: dbnet
  component_overrides:
    encoder: {model_name: mobilenetv3_small_050, pretrained: true, frozen: false}
    decoder: {name: pan_decoder, in_channels: [16, 24, 48, 96], inner_channels: 96, output_channels: 128, params: {}}
    head: {name: db_head, in_channels: '${model.component_overrides.decoder.output_channels}', params: {}}
    loss: {name: db_loss, params: {}}
callbacks:
  model_checkpoint: {monitor: val/hmean, mode: max, save_top_k: 3, save_last: true}
YAML
first=$run/checkpoints/epoch=00-step=100.ckpt
[ -f "$first" ] || target/release/examples/make_checkpoint "$first" "$MB"
for i in $(seq 1 $((N - 1))); do
  f=$run/checkpoints/epoch=$(printf %02d "$i")-step=$(( (i + 1) * 100 )).ckpt
  [ -f "$f" ] || cp "$first" "$f"
done
du -sh "$out"
bin=target/release/ckpt
# no shell globbing here: hyperfine -N runs --prepare without a shell
clean="find $run/checkpoints -name *.metadata.yaml -delete"
echo "== ckpt convert-legacy on $N x $MB MB (warm page cache)"
if command -v hyperfine >/dev/null; then
  hyperfine -N --style basic --warmup 2 --runs 20 --prepare "$clean" "$bin convert-legacy --outputs-dir $out"
else
  $clean; start=$(date +%s%N); $bin convert-legacy --outputs-dir "$out" >/dev/null 2>&1; end=$(date +%s%N)
  echo "$(( (end - start) / 1000000 )) ms"
fi
$clean
/usr/bin/time -f "peak RSS %M KB, %e s" $bin convert-legacy --outputs-dir "$out" 2>&1 >/dev/null | tail -1
if [ -n "$PY" ]; then
  echo "== torch.load of one $MB MB file (what a Python converter does per checkpoint)"
  /usr/bin/time -f "%e s, peak RSS %M KB" "$PY" -c "
import sys, torch
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
print(ck['epoch'], ck['global_step'])" "$first" 2>&1 | tail -1
fi
