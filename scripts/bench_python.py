#!/usr/bin/env python3
"""The Python package's figures (issue 12), side by side in one run, with the venv's python:

  - `python -c "import ckpt"` vs `python -c "import torch"` (whole process, wall);
  - ckpt.load(tensors="torch") of a 500 MB Lightning-shaped checkpoint written by real torch,
    in-process after imports, vs torch.load(mmap=True, weights_only=True) on the same file,
    and each one's peak RSS (a fresh process each, imports included in both);
  - ckpt.open(p).summary() on that file;
  - ckpt.catalog of 20 hard links of it, in-process, vs the `ckpt` binary's whole process.

    VENV/bin/python scripts/bench_python.py [--dir /tmp/ckpt-bench-py] [--mb 500] [--runs 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_wall(cmd, runs):
    out = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return statistics.median(out[1:])


def timed(fn, runs):
    out = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        r = fn()
        out.append(time.perf_counter() - t)
        del r
    return statistics.median(out[1:])


def peak_rss_mb(code):
    out = subprocess.run([sys.executable, "-c", code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def make(path, mb):
    import torch

    n = max(1, mb // 10)
    sd = {f"model.layers.{i}.weight": torch.randn(1280, 2048) for i in range(n)}  # 10 MB each
    sd["model.head.bias"] = torch.zeros(10)
    torch.save({
        "epoch": 9, "global_step": 1000, "pytorch-lightning_version": "2.6.6",
        "state_dict": sd,
        "hyper_parameters": {"lr": 1e-3, "encoder": {"name": "resnet50"}, "layers": n},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "params": list(range(n))}]}],
        "callbacks": {}, "loops": {},
    }, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/ckpt-bench-py")
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    big = os.path.join(a.dir, f"big{a.mb}.ckpt")
    if not os.path.exists(big):
        make(big, a.mb)
    tree = os.path.join(a.dir, f"tree{a.mb}", "checkpoints")
    if not os.path.exists(tree):
        os.makedirs(tree)
        for i in range(20):
            os.link(big, os.path.join(tree, f"epoch={i:02d}-step={(i + 1) * 100}.ckpt"))
    with open(big, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass

    imp_ckpt = median_wall([sys.executable, "-c", "import ckpt"], a.runs)
    imp_torch = median_wall([sys.executable, "-c", "import torch"], a.runs)

    import torch

    import ckpt

    load_ckpt = timed(lambda: ckpt.load(big, tensors="torch"), a.runs)
    load_torch = timed(lambda: torch.load(big, mmap=True, weights_only=True), a.runs)
    rss_ckpt = peak_rss_mb(f"import torch, ckpt\nx = ckpt.load({big!r}, tensors='torch')")
    rss_torch = peak_rss_mb(f"import torch, ckpt\nx = torch.load({big!r}, mmap=True, weights_only=True)")
    summary = timed(lambda: ckpt.open(big).summary(), a.runs)
    cat_py = timed(lambda: ckpt.catalog(os.path.dirname(tree), no_cache=True), a.runs)
    binary = os.path.join(ROOT, "target/release/ckpt")
    cat_cli = median_wall([binary, "catalog", "--no-cache", "--format", "json", os.path.dirname(tree)], a.runs)

    print(f"file: {big} ({os.path.getsize(big) / 1e6:.0f} MB), medians of {a.runs}")
    print(f"import ckpt                 {imp_ckpt * 1000:8.1f} ms   (target <= 50 ms; import torch {imp_torch * 1000:.0f} ms)")
    print(f"ckpt.load tensors=torch     {load_ckpt * 1000:8.2f} ms   torch.load(mmap, weights_only) {load_torch * 1000:.2f} ms"
          f"   ratio {load_ckpt / load_torch:.2f} (target <= 0.33)")
    print(f"peak RSS (process)          {rss_ckpt:8.0f} MB   torch.load {rss_torch:.0f} MB (target: not above)")
    print(f"ckpt.open(p).summary()      {summary * 1000:8.2f} ms   (target <= 5 ms)")
    print(f"ckpt.catalog 20 x {a.mb} MB    {cat_py * 1000:8.1f} ms   binary whole process {cat_cli * 1000:.1f} ms"
          f"   ratio {cat_py / cat_cli:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
