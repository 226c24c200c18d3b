#!/usr/bin/env python3
"""Whole-process figures for `ckpt catalog` against the limits of issue 11, in ONE run so the
ratios compare like with like (same machine, same page cache, same load):

  S. 10,000 entries: 100 folders x 100 hard links of one small Lightning checkpoint
     (examples/lightning), catalogued --format json to /dev/null:
       - a `find S -printf '%s %T@\\n'` stat walk of the same tree (the floor);
       - cached (nothing changed)          target <= 4x the stat walk;
       - uncached (a fresh cache each run) target <= 1 s;
  A. 20 Lightning-shaped checkpoints x 500 MB, no sidecars, --no-cache   target <= 15 ms;
  peak RSS of each (flat in tree size).

Medians of several runs; wall time and CPU time (user+sys) both, since a loaded machine
inflates wall time. No dependencies beyond Python 3 and the release binary.

    scripts/bench_catalog.py [--dir DIR] [--big-mb 500] [--n-big 20] [--runs 7] [--quick]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Figures measured on main before issue 11 (its text): 2 cores, warm cache, medians.
PREVIOUS = {
    "A uncached (20 x 500 MB)": 0.019,
    "S cached (10,000)": 0.39,
    "S uncached (10,000)": 2.2,
}


def run(cmd, prepare=None):
    """Wall seconds, CPU seconds (user+sys) and peak RSS (KB) of one run, as GNU time
    reports them for that process alone."""
    if prepare:
        prepare()
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "@@ %U %S %M"] + cmd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    err = p.stderr.decode(errors="replace")
    if p.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)}: exit {p.returncode}: {err}")
    line = [x for x in err.splitlines() if x.startswith("@@ ")][-1].split()
    return wall, float(line[1]) + float(line[2]), int(line[3])


def bench(name, cmd, runs, prepare=None, warmup=1):
    for _ in range(warmup):
        run(cmd, prepare)
    walls, cpus, rss = [], [], 0
    for _ in range(runs):
        w, c, r = run(cmd, prepare)
        walls.append(w)
        cpus.append(c)
        rss = max(rss, r)
    return {"name": name, "wall": statistics.median(walls), "cpu": statistics.median(cpus),
            "min": min(walls), "rss_kb": rss}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir")
    ap.add_argument("--big-mb", type=int, default=500)
    ap.add_argument("--n-big", type=int, default=20)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 runs, 50 MB files")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.big_mb = 3, 50
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ckpt", "-p", "ckpt-test-support",
                    "--example", "make_checkpoint"], cwd=ROOT, check=True)
    ckpt = os.path.join(ROOT, "target/release/ckpt")
    base = a.dir or tempfile.mkdtemp(prefix="ckpt-bench-")
    os.makedirs(base, exist_ok=True)
    # S: 100 x 100 hard links of one small Lightning checkpoint.
    small = os.path.join(base, "S")
    one = os.path.join(base, "one.ckpt")
    if not os.path.exists(small):
        src = os.path.join(ROOT, "examples/lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt")
        shutil.copyfile(src, one)
        for i in range(100):
            d = os.path.join(small, f"exp{i:02d}", "checkpoints")
            os.makedirs(d)
            for j in range(100):
                os.link(one, os.path.join(d, f"epoch={j:02d}-step={j}.ckpt"))
    # A: 20 x 500 MB Lightning-shaped checkpoints.
    big = os.path.join(base, f"A{a.big_mb}", "outputs", "exp_bench", "checkpoints")
    if not os.path.exists(big):
        os.makedirs(big)
        first = os.path.join(big, "epoch=00-step=100.ckpt")
        subprocess.run([os.path.join(ROOT, "target/release/examples/make_checkpoint"), first,
                        str(a.big_mb)], check=True, stdout=subprocess.DEVNULL)
        for i in range(1, a.n_big):
            os.link(first, os.path.join(big, f"epoch={i:02d}-step={(i + 1) * 100}.ckpt"))
    big_root = os.path.join(base, f"A{a.big_mb}")
    cache = os.path.join(base, "cache.sqlite3")

    def fresh_cache():
        for s in ("", "-wal", "-shm"):
            if os.path.exists(cache + s):
                os.remove(cache + s)

    r = []
    r.append(bench("find stat walk of S", ["find", small, "-printf", "%s %T@\n"], a.runs))
    fresh_cache()
    run([ckpt, "catalog", "--cache-file", cache, "--format", "json", small])
    r.append(bench("S cached (10,000)",
                   [ckpt, "catalog", "--cache-file", cache, "--format", "json", small], a.runs))
    r.append(bench("S uncached (10,000)",
                   [ckpt, "catalog", "--cache-file", cache, "--format", "json", small],
                   max(3, a.runs // 2), prepare=fresh_cache, warmup=1))
    r.append(bench(f"A uncached ({a.n_big} x {a.big_mb} MB)",
                   [ckpt, "catalog", "--no-cache", "--format", "json", big_root], a.runs))
    print(f"{'':34} {'wall (median)':>14} {'cpu':>9} {'min':>9} {'peak RSS':>10}  previous")
    for x in r:
        prev = PREVIOUS.get(x["name"])
        prev = f"{prev * 1000:.0f} ms" if prev else ""
        print(f"{x['name']:34} {x['wall'] * 1000:11.1f} ms {x['cpu'] * 1000:6.0f} ms "
              f"{x['min'] * 1000:6.1f} ms {x['rss_kb'] / 1024:7.1f} MB  {prev}")
    stat = r[0]
    cached, uncached, big_r = r[1], r[2], r[3]
    print()
    print(f"cached / stat walk      = {cached['wall'] / stat['wall']:.1f}x wall "
          f"(target <= 4x)  [{cached['cpu'] / max(stat['cpu'], 1e-9):.1f}x cpu]")
    print(f"uncached 10,000         = {uncached['wall']:.2f} s (target <= 1 s)  "
          f"[{uncached['cpu']:.2f} s cpu]")
    print(f"20 x 500 MB uncached    = {big_r['wall'] * 1000:.1f} ms (target <= 15 ms)  "
          f"[{big_r['cpu'] * 1000:.0f} ms cpu]")
    print(f"peak RSS S vs A         = {cached['rss_kb'] / 1024:.0f} MB vs {big_r['rss_kb'] / 1024:.0f} MB")
    print(f"load average            = {os.getloadavg()[0]:.2f} (wall times are only "
          f"comparable on an idle machine)")


if __name__ == "__main__":
    main()
