#!/usr/bin/env python3
"""Differential check of `ckpt scan` against CPython's own unpickler.

    /tmp/venv/bin/python scripts/diff_scan_vs_cpython.py [N] [SEED]

Generates N random small pickles (random opcodes and arguments, mostly without a PROTO
header, with GLOBALs spread among them), loads each with CPython's C unpickler whose
`find_class` only records the name and hands back an inert stand-in (nothing is imported or
run), and compares the globals CPython reached with the ones `ckpt scan --format json`
reports. A global CPython reaches that scan does not report, or a file scan calls `safe` or
`no-pickle` although CPython reached a global, is a miss: printed, and the exit code is 1.
"""

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "target" / "debug" / "ckpt"


class Inert:
    """Accepts every call CPython's unpickler may make on an object."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return Inert()

    def __setstate__(self, state):
        pass

    def append(self, x):
        pass

    def extend(self, xs):
        for _ in xs:
            pass

    def __setitem__(self, k, v):
        pass

    def add(self, x):
        pass

    def __reduce__(self):
        return (Inert, ())


class Recorder(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.seen = []

    def find_class(self, module, name):
        self.seen.append(f"{module}.{name}")
        return Inert

    def persistent_load(self, pid):
        # as plain pickle.load: no persistent ids
        raise pickle.UnpicklingError("no persistent_load")


MODS = [("os", "system"), ("builtins", "eval"), ("subprocess", "call"), ("posix", "system")]


def atom(r):
    c = r.randrange(12)
    if c == 0:
        return b"N"
    if c == 1:
        return b"I" + r.choice([b"1", b"0x1f", b"010", b" 7", b"1_0", b"-3", b"00", b"01"]) + b"\n"
    if c == 2:
        return b"K" + bytes([r.randrange(256)])
    if c == 3:
        return b"S'" + r.choice([b"a", b"b\\x41", b""]) + b"'\n"
    if c == 4:
        return b"X" + struct.pack("<I", 1) + b"z"
    if c == 5:
        return b"L" + r.choice([b"5L", b"0x10L", b"1_0"]) + b"\n"
    if c == 6:
        return b"F1.5\n"
    if c == 7:
        return b"V" + r.choice([b"u", b"\\u0041"]) + b"\n"
    if c == 8:
        return b"U\x01q"
    if c == 9:
        return b"C\x01b"
    if c == 10:
        return r.choice([b"\x88", b"\x8c\x02os", b"\x8c\x06system", b"\x8c\x08builtins",
                         b"\x8c\x04eval"])
    return b"G" + struct.pack(">d", 2.0)


OPS = [b"(", b"0", b"1", b"2", b"t", b"l", b"d", b"]", b"}", b")", b"a", b"e", b"s", b"u",
       b"\x85", b"\x86", b"\x87", b"\x8f", b"\x90", b"\x91", b"b", b"R", b"\x81", b"o",
       b"p0\n", b"g0\n", b"q\x01", b"h\x01", b"\x94", b"Q", b"P1\n", b"\x95", b"\x93",
       b"\x93"]


def gen(r):
    out = b""
    if r.random() < 0.2:
        out += b"\x80" + bytes([r.choice([2, 3, 4])])
    for _ in range(r.randrange(1, 14)):
        k = r.random()
        if k < 0.35:
            out += atom(r)
        elif k < 0.45:
            m, n = r.choice(MODS)
            out += b"c" + m.encode() + b"\n" + n.encode() + b"\n"
        else:
            op = r.choice(OPS)
            if op == b"\x95":
                op += struct.pack("<Q", r.randrange(0, 8))
            out += op
    m, n = r.choice(MODS)
    tail = b"c" + m.encode() + b"\n" + n.encode() + b"\n" + b"(S'x'\ntR"
    if r.random() < 0.5:
        out += tail
    return out + (b"." if r.random() < 0.8 else b"")


def cpython_globals(data):
    rec = Recorder(io.BytesIO(data))
    try:
        rec.load()
    except Exception:
        pass
    return rec.seen


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    r = random.Random(seed)
    misses = 0
    with tempfile.TemporaryDirectory() as d:
        cases = {}
        for i in range(n):
            data = gen(r)
            seen = cpython_globals(data)
            p = Path(d) / f"case{i:06d}.pkl"
            p.write_bytes(data)
            cases[str(p)] = (data, seen)
        out = subprocess.run([str(CKPT), "scan", "--format", "json", d], capture_output=True)
        records = {x["path"]: x for x in json.loads(out.stdout)}
        for path, (data, seen) in cases.items():
            rec = records[path]
            ours = {g["name"] for g in rec["globals"]}
            missing = [g for g in seen if g not in ours]
            silent = seen and rec["verdict"] in ("safe", "no-pickle")
            if missing or silent:
                misses += 1
                if misses <= 20:
                    print(f"MISS {data!r}: CPython reached {seen}, scan said "
                          f"{rec['verdict']} {sorted(ours)} {rec.get('error')}")
    reached = sum(1 for _, seen in cases.values() if seen)
    verdicts = {}
    for rec in records.values():
        verdicts[rec["verdict"]] = verdicts.get(rec["verdict"], 0) + 1
    print(f"{n} cases ({reached} where CPython reached a global), {misses} misses; "
          f"scan verdicts {verdicts}")
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
