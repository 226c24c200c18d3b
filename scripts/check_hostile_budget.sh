#!/usr/bin/env bash
# The goal of issue 10: every command on any input of <= 10 MB exits within 1 s with a peak
# RSS <= 100 MB and never panics. This runs each file-taking command on each hostile file
# (fixtures/bad, fixtures/budget, the large crafted files of make_budget_fixtures.py --big,
# the valid memory-heavy files of make_memory_inputs.py, a FIFO, and pickles of millions of
# one-byte opcodes) under /usr/bin/time and prints one
# row per run (seconds, peak RSS in MB, exit code), then the worst of each and every row
# over the goal. Exit status: 0 when every run is within the goal, 1 otherwise.
#
#   scripts/check_hostile_budget.sh [path/to/ckpt]     # default: target/release/ckpt (built)
#   ONLY='pickle_*' scripts/check_hostile_budget.sh     # only the files whose name matches
#
# Run from the repository root. Needs python3 (no torch) and /usr/bin/time.
set -u
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ckpt}
if [ $# -eq 0 ]; then
    cargo build --release -q -p ckpt || exit 2
fi
MAX_S=${MAX_S:-1.0}
MAX_MB=${MAX_MB:-100}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

python3 scripts/make_budget_fixtures.py --big "$TMP/big" >/dev/null
python3 scripts/make_memory_inputs.py "$TMP/big" >/dev/null
python3 - "$TMP/big" <<'PY'
import sys
d = sys.argv[1]
# ~10 MB pickles of one-byte opcodes: values, stack and memo as far as the VM lets them grow.
open(f"{d}/pickle_many_ints.pt", "wb").write(b"\x80\x02(" + b"K\x01" * 4_900_000 + b"l.")
open(f"{d}/pickle_many_none.pt", "wb").write(b"\x80\x02(" + b"N" * 9_900_000 + b"l.")
open(f"{d}/pickle_many_lists.pt", "wb").write(b"\x80\x02(" + b"]" * 9_900_000 + b"l.")
PY
mkfifo "$TMP/pipe.ckpt"

files=()
for f in fixtures/bad/* fixtures/budget/* "$TMP"/big/* "$TMP/pipe.ckpt"; do
    # shellcheck disable=SC2053
    [[ -n "${ONLY:-}" && $(basename "$f") != $ONLY ]] && continue
    files+=("$f")
done

rows="$TMP/rows"
: >"$rows"
i=0
for f in "${files[@]}"; do
    i=$((i + 1))
    copy="$TMP/copy$i"
    mkdir -p "$copy"
    # convert-legacy and validate take --checkpoint FILE (a copy: a sidecar may be written)
    # or --exp-dir DIR.
    if [ -f "$f" ]; then cp "$f" "$copy/"; c="--checkpoint $copy/$(basename "$f")"
    elif [ -d "$f" ]; then cp -r "$f" "$copy/"; c="--exp-dir $copy/$(basename "$f")"
    else c="--checkpoint $f"; fi
    while IFS= read -r cmd; do
        # shellcheck disable=SC2086
        /usr/bin/time -f '%e %M' -o "$TMP/t" timeout 60 "$BIN" $cmd >/dev/null 2>"$TMP/err"
        rc=$?
        read -r secs kb <"$TMP/t" 2>/dev/null || { secs=NA; kb=0; }
        case "$secs" in Command*) read -r secs kb < <(tail -1 "$TMP/t");; esac
        panic=""
        grep -q panicked "$TMP/err" && panic=" PANIC"
        name=${cmd%% *}
        printf '%-15s %-60s %6s s %7.1f MB  exit %s%s\n' "$name" "${f#"$TMP"/}" "$secs" "$(echo "$kb / 1024" | bc -l)" "$rc" "$panic" >>"$rows"
    done <<EOF2
inspect $f
dump $f
scan $f
hash $f
diff $f $f
convert $f --to safetensors --output-dir $TMP/out$i
convert-legacy $c
validate $c
catalog $f --no-cache
EOF2
done

cat "$rows"
echo
awk -v maxs="$MAX_S" -v maxmb="$MAX_MB" '
    { s = $3; mb = $5; rc = $8
      if (s + 0 > worst_s) { worst_s = s + 0; ws = $1 " " $2 }
      if (mb + 0 > worst_mb) { worst_mb = mb + 0; wm = $1 " " $2 }
      if (s + 0 > maxs || mb + 0 > maxmb || rc > 2 || /PANIC/) { over[++n] = $0 }
      runs++ }
    END {
      printf "%d runs; max time %.2f s (%s); max RSS %.1f MB (%s)\n", runs, worst_s, ws, worst_mb, wm
      printf "%d over the goal (%s s, %s MB, exit <= 2, no panic)\n", n, maxs, maxmb
      for (i = 1; i <= n; i++) print "  " over[i]
      exit n > 0 }' "$rows"
