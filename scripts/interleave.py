#!/usr/bin/env python3
"""Whole-process timing of several shell commands, interleaved round by round.

On a shared machine the disk and the page allocator stall for seconds at random, so timing one
command N times and then the next N times compares different weather. Here each round runs every
command once, in turn, after the same preparation; we report median and minimum wall time, the
peak RSS (from wait4), and each command's median/min ratio to the first command, all from the
same run. The order rotates each round (round r starts with command r mod n), so no command
always runs first or right after the same neighbour. Standard library only.

    scripts/interleave.py --rounds 10 --prepare 'rm -rf out' 'cp a b' 'ckpt convert a ...'
"""
import argparse
import os
import shlex
import statistics
import subprocess
import time


def run(cmd: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed ({status}): {cmd}")
    return wall, usage.ru_maxrss  # KB on Linux


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--prepare", default="", help="shell command run before every command")
    ap.add_argument("--name", action="append", default=[], help="a label per command, in order")
    ap.add_argument("commands", nargs="+")
    a = ap.parse_args()
    names = a.name + a.commands[len(a.name):]
    times: list[list[float]] = [[] for _ in a.commands]
    rss: list[int] = [0 for _ in a.commands]
    n = len(a.commands)
    for r in range(a.rounds):
        for i in [(r + k) % n for k in range(n)]:
            cmd = a.commands[i]
            if a.prepare:
                subprocess.run(a.prepare, shell=True, check=True)
            wall, kb = run(cmd)
            times[i].append(wall)
            rss[i] = max(rss[i], kb)
    base_med = statistics.median(times[0])
    base_min = min(times[0])
    print(f"{a.rounds} interleaved rounds, order rotating (prepare: {a.prepare or '-'})")
    width = max(len(n) for n in names)
    for i, n in enumerate(names):
        med, lo = statistics.median(times[i]), min(times[i])
        print(
            f"  {n:<{width}}  median {med:7.3f} s  min {lo:7.3f} s  peak RSS {rss[i] / 1024:7.1f} MB"
            f"  ratio to {names[0]}: median {med / base_med:5.2f}  min {lo / base_min:5.2f}"
        )
    print("  all times (s), in round order:")
    for i, n in enumerate(names):
        print(f"    {n:<{width}} " + " ".join(f"{t:.2f}" for t in times[i]))


if __name__ == "__main__":
    main()
