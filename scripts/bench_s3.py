#!/usr/bin/env python3
"""Issue 15's object-storage figures, counted by the server (scripts/s3_server.py's
/_ckpt/stats), not timed: run by scripts/bench_s3.sh, which makes the venv and builds the
release binaries, or by hand:

    PY scripts/bench_s3.py --ckpt target/release/ckpt --examples target/release/examples \\
        [--count 20] [--size-mb 500] [--small 1000] [--dir DIR]

A. COUNT Lightning-shaped checkpoints of SIZE_MB each (ckpt-test-support's writer, as the local
   catalog bench makes them) in one Lightning run folder of a bucket, with hparams.yaml and a
   metrics.csv beside them. One file is generated, uploaded, and copied server-side COUNT-1
   times, then the local copy is deleted (moto keeps objects in $TMPDIR: COUNT x SIZE_MB there).
   - `catalog` uncached: bytes fetched / total size, GETs per checkpoint;
   - the same `catalog` again, the bucket unchanged: requests (listings only, no GET);
   - `inspect` of one object: requests.
B. SMALL small checkpoints (make_tree, 32 KB each): wall time and requests of an uncached
   `catalog` (the local server serves a few hundred GETs/s on 2 cores: the requests are the
   figure, the seconds are the server's as much as ckpt's).

Prints one table with the issue's targets and the ratio measured/target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

BUCKET = "ckpt-bench"
ROOT = Path(__file__).resolve().parent.parent


class Server:
    def __init__(self, python: str, env: dict) -> None:
        self.proc = subprocess.Popen(
            [python, str(ROOT / "scripts/s3_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            sys.exit(f"s3_server.py did not start: {line!r}")
        self.url = line.split()[1]

    def control(self, what: str, method: str = "POST", **q) -> dict:
        qs = urllib.parse.urlencode(q)
        req = urllib.request.Request(
            f"{self.url}/_ckpt/{what}" + (f"?{qs}" if qs else ""), method=method
        )
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.load(r)

    def stats(self) -> dict:
        return self.control("stats", method="GET")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(ckpt: str, env: dict, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run([ckpt, *args], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        sys.exit(f"ckpt {' '.join(args)}: exit {p.returncode}")
    return dt, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="the ckpt binary (release)")
    ap.add_argument("--examples", required=True, help="folder with make_checkpoint, make_tree")
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed)")
    ap.add_argument("--in-flight", default="4", help="CKPT_IO_MAX_IN_FLIGHT (moto reads a whole object per ranged GET)")
    args = ap.parse_args()

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ckpt-bench-s3-"))
    work.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(os.environ.get("TMPDIR", "/tmp")).free
    need = args.count * args.size_mb * (1 << 20) * 1.2 + (2 << 30)
    if free < need:
        sys.exit(f"{free >> 30} GB free in TMPDIR, need about {int(need) >> 30} GB (moto spools objects there)")

    server_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    srv = Server(sys.executable, server_env)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(work / "home"),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": srv.url,
        "AWS_ALLOW_HTTP": "true",
        "CKPT_IO_MAX_IN_FLIGHT": args.in_flight,
        "CKPT_CACHE_DIR": str(work / "cache"),
    }
    rows: list[tuple[str, str, str, str]] = []
    try:
        # A: the big run folder --------------------------------------------------------------
        run_dir = work / "run"
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        proto = run_dir / "proto.ckpt"
        print(f"== generating one {args.size_mb} MB checkpoint", flush=True)
        subprocess.run(
            [str(Path(args.examples) / "make_checkpoint"), str(proto), str(args.size_mb)],
            check=True,
        )
        size = proto.stat().st_size
        (run_dir / "hparams.yaml").write_text(
            "lr: 0.001\nbatch_size: 32\nmodel:\n  name: convnet\n  layers: 60\n"
        )
        with open(run_dir / "metrics.csv", "w") as f:
            f.write("epoch,step,train/loss,val/hmean\n")
            for i in range(2000):
                f.write(f"{i // 100},{i},{1.0 / (i + 1):.6f},{i / 2000:.6f}\n")
        prefix = "runs/lightning_logs/version_0"
        print(f"== uploading to s3://{BUCKET}/{prefix} ({args.count} x {size} bytes)", flush=True)
        t = time.perf_counter()
        srv.control("upload", bucket=BUCKET, file=str(run_dir / "hparams.yaml"), key=f"{prefix}/hparams.yaml")
        srv.control("upload", bucket=BUCKET, file=str(run_dir / "metrics.csv"), key=f"{prefix}/metrics.csv")
        names = [f"epoch={i:02d}-step={(i + 1) * 100}.ckpt" for i in range(args.count)]
        first = f"{prefix}/checkpoints/{names[0]}"
        srv.control("upload", bucket=BUCKET, file=str(proto), key=first)
        proto.unlink()
        for n in names[1:]:
            srv.control("copy", bucket=BUCKET, src=first, dst=f"{prefix}/checkpoints/{n}")
        print(f"   {time.perf_counter() - t:.1f} s", flush=True)
        total = size * args.count

        cache = work / "cache.sqlite3"
        for p in work.glob("cache.sqlite3*"):
            p.unlink()
        root_url = f"s3://{BUCKET}/runs"
        srv.control("reset")
        dt, p = run(args.ckpt, env, "catalog", "--cache-file", str(cache), "--format", "json", root_url)
        n = len(json.loads(p.stdout)["checkpoints"])
        if n != args.count:
            sys.exit(f"catalogued {n} checkpoints, expected {args.count}")
        s = srv.stats()
        pct = 100.0 * s["bytes_out"] / total
        gets = s["GET"] / args.count
        rows.append(("catalog uncached: bytes fetched / total size",
                     f"{pct:.4f} % ({s['bytes_out']} of {total} B)", "<= 0.05 %", f"{pct / 0.05:.2f}"))
        rows.append(("catalog uncached: GETs per checkpoint",
                     f"{gets:.2f} ({s['GET']} GET, {s['LIST']} LIST, {s['HEAD']} HEAD; {dt:.1f} s)",
                     "<= 2.5", f"{gets / 2.5:.2f}"))

        srv.control("reset")
        dt, _ = run(args.ckpt, env, "catalog", "--cache-file", str(cache), "--format", "json", root_url)
        s = srv.stats()
        rows.append(("catalog again, bucket unchanged: requests",
                     f"{s['requests']} ({s['GET']} GET, {s['LIST']} LIST, {s['HEAD']} HEAD; {dt:.2f} s)",
                     "listings only, 0 GET", "ok" if s["GET"] == 0 and s["HEAD"] == 0 else "FAIL"))

        srv.control("reset")
        dt, _ = run(args.ckpt, env, "inspect", f"s3://{BUCKET}/{first}")
        s = srv.stats()
        rows.append(("inspect of one object: requests",
                     f"{s['requests']} ({s['GET']} GET, {s['LIST']} LIST, {s['HEAD']} HEAD; {s['bytes_out']} B; {dt:.2f} s)",
                     "<= 4", f"{s['requests'] / 4:.2f}"))

        # B: many small objects --------------------------------------------------------------
        if args.small > 0:
            small = work / "small"
            if not small.exists():
                subprocess.run(
                    [str(Path(args.examples) / "make_tree"), str(small), str(args.small), "32"],
                    check=True,
                )
            print(f"== uploading {args.small} small checkpoints", flush=True)
            srv.control("upload", bucket=BUCKET, prefix="small", dir=str(small))
            srv.control("reset")
            dt, p = run(args.ckpt, env, "catalog", "--no-cache", "--format", "json", f"s3://{BUCKET}/small")
            s = srv.stats()
            rows.append((f"catalog of {args.small} small objects, uncached: wall time",
                         f"{dt:.1f} s ({s['requests']} requests: {s['GET']} GET, {s['LIST']} LIST; {s['requests'] / dt:.0f}/s)",
                         "report", "-"))
            shutil.rmtree(small, ignore_errors=True)
    finally:
        srv.stop()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"object storage, {args.count} x {args.size_mb} MB Lightning checkpoints (moto on loopback, CKPT_IO_MAX_IN_FLIGHT={args.in_flight})")
    w = [max(len(r[i]) for r in rows + [("figure", "measured", "target", "ratio")]) for i in range(4)]
    head = ("figure", "measured", "target", "ratio")
    print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(head)) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |")


if __name__ == "__main__":
    main()
