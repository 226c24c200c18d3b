#!/usr/bin/env python3
"""Valid inputs of <= 10 MB that cost the most memory per byte (issue 10's goal: every command
on any input of <= 10 MB exits within 1 s with a peak RSS <= 100 MB).

    python3 scripts/make_memory_inputs.py DIR      # no torch needed; writes DIR/*, prints sizes

Each file is something `pickle.load` / `safetensors.safe_open` read without complaint, so
ckpt must decode it (not refuse it) within the budget. scripts/check_hostile_budget.sh runs
every command over them; the files are not committed (10 MB each), this script is.

  pickle_batched_lists.pt   a list of 3,300,000 empty lists, appended in batches of 1,000
                            (APPENDS), no memo: three bytes of pickle per value
  pickle_memo_lists.pt      pickle.dumps([[] for _ in range(N)], protocol=4): what Python
                            writes (every list memoized, FRAMEs): two bytes per value
  pickle_short_strs.pt      pickle.dumps of 1,000,000 distinct short strings, protocol 4
  pickle_small_dicts.pt     pickle.dumps of 600,000 one-item dicts {"a": i}, protocol 4
                            (the key memoized once and fetched with BINGET)
  pickle_tuples.pt          pickle.dumps of 650,000 pairs (i, i), protocol 2
  st_many_tiny.safetensors  a 9.9 MB header of 170,000 zero-size tensors
  st_many_small.safetensors 110,000 one-element F32 tensors with their data
"""
from __future__ import annotations

import json
import pickle
import struct
import sys
from pathlib import Path

LIMIT = 10 * 1024 * 1024


def write(path: Path, data: bytes) -> None:
    assert len(data) <= LIMIT, f"{path.name}: {len(data)} bytes is over 10 MiB"
    path.write_bytes(data)


def safetensors(path: Path, header: str, data: bytes = b"") -> None:
    hb = header.encode()
    write(path, struct.pack("<Q", len(hb)) + hb + data)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = Path(sys.argv[1])
    d.mkdir(parents=True, exist_ok=True)
    n = 3_300_000
    write(d / "pickle_batched_lists.pt",
          b"\x80\x02]" + (b"(" + b"]" * 1000 + b"e") * (n // 1000) + b".")
    write(d / "pickle_memo_lists.pt", pickle.dumps([[] for _ in range(4_900_000)], protocol=4))
    write(d / "pickle_short_strs.pt", pickle.dumps([f"{i:x}" for i in range(1_000_000)], protocol=4))
    write(d / "pickle_small_dicts.pt", pickle.dumps([{"a": i} for i in range(600_000)], protocol=4))
    write(d / "pickle_tuples.pt", pickle.dumps([(i, i) for i in range(650_000)], protocol=2))
    n = 170_000
    parts = ",".join(f'"t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(n))
    safetensors(d / "st_many_tiny.safetensors", "{" + parts + "}")
    n = 110_000
    parts = ",".join(
        f'"t{i}":{{"dtype":"F32","shape":[1],"data_offsets":[{4 * i},{4 * i + 4}]}}' for i in range(n))
    safetensors(d / "st_many_small.safetensors", "{" + parts + "}", b"\0" * (4 * n))
    for p in sorted(d.iterdir()):
        print(f"{p.stat().st_size:>10}  {p}")


if __name__ == "__main__":
    main()
