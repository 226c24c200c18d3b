#!/usr/bin/env bash
# Issue 15's object-storage figures (bytes fetched / size, GETs per checkpoint, requests on an
# unchanged re-catalog, inspect's requests, wall time for many small objects), counted by a
# local S3 server (scripts/s3_server.py, moto) and printed as one table with the targets:
#
#   scripts/bench_s3.sh [--count 20] [--size-mb 500] [--small 1000] [--dir DIR]
#   scripts/bench_s3.sh --count 3 --size-mb 20 --small 50     # a quick check
#
# The server's venv is the one scripts/test makes (made here when missing). Needs about
# COUNT x SIZE_MB of space in $TMPDIR (moto keeps objects there).
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/s3-requirements.txt
hash=$(sha256sum "$req" | cut -c1-12)
venv=${CKPT_S3_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ckpt/venv-s3-$hash}
if [ ! -f "$venv/.ckpt-requirements-$hash" ]; then
  echo "== python venv $venv (requirements $hash)"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$req"
  touch "$venv/.ckpt-requirements-$hash"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
echo "== cargo build --release (ckpt, make_checkpoint, make_tree)"
# Two builds: naming examples would build only them, not the ckpt binary.
cargo build --release -q -p ckpt --bin ckpt
cargo build --release -q -p ckpt-test-support --example make_checkpoint --example make_tree
exec "$venv/bin/python" scripts/bench_s3.py \
  --ckpt "$CARGO_TARGET_DIR/release/ckpt" --examples "$CARGO_TARGET_DIR/release/examples" "$@"
