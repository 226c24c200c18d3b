#!/usr/bin/env python3
"""Hostile inputs for the budget tests (issue 10, "bounded time and memory everywhere").

    /tmp/venv/bin/python scripts/make_budget_fixtures.py            # from the repo root
    python3 scripts/make_budget_fixtures.py --big DIR               # large crafted files only

Writes (and first deletes) only fixtures/budget/. Small files are committed; `--big DIR`
writes the multi-megabyte crafted files (no torch needed) into DIR for
scripts/check_hostile_budget.sh; the Rust tests build their own copies of those at run time.

Real files where torch makes them:
  hparams_bomb_dictconfig.ckpt  torch.save of a Lightning-shaped dict whose hyper_parameters is
                                an OmegaConf DictConfig holding a doubling interpolation chain
                                (a0: x, a1: ${a0}${a0}, ... a27): 2^27 bytes if resolved naively
  hparams_bomb_dict.ckpt        the same chain in a plain dict
  hydra_bomb/                   a Hydra run folder: .hydra/config.yaml with the chain beside a
                                real checkpoint (checkpoints/last.ckpt)
  lightning_bomb/               lightning_logs/version_0/{hparams.yaml (the chain),
                                checkpoints/epoch=0-step=1.ckpt}
Crafted (by hand, the formats are simple):
  st_rank_10000.safetensors     one tensor whose shape has 10,000 dimensions of 1
  st_deep_metadata.safetensors  __metadata__ nested 100,000 levels deep
  st_header_past_end.safetensors header length claims 1 GiB in a 100-byte file
  st_overlap.safetensors        two tensors whose data ranges overlap
  st_out_of_range.safetensors   a tensor whose data_offsets run past the data section
  st_not_covered.safetensors    a hole in the data section
  zip_4g_entries.ckpt           end-of-central-directory record claiming 4 billion entries
  zip_65534_entries.ckpt        end-of-central-directory record claiming 65,534 entries
  zip_entry_past_end.ckpt       a real checkpoint whose first storage claims 2 GiB in the
                                central directory (the file is 2 KB)
  yaml_billion_laughs.yaml      anchors/aliases expanding 10^12-fold
  yaml_deep.yaml                10,000 nested flow sequences
  json_deep.json                100,000 nested arrays
  dcp_many_chunks/              a DCP .metadata pickle claiming 250,000 chunks for one tensor
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "budget"
LEVELS = 27


def chain() -> dict:
    d = {"a0": "x"}
    for i in range(1, LEVELS + 1):
        d[f"a{i}"] = f"${{a{i - 1}}}${{a{i - 1}}}"
    return d


def chain_yaml() -> str:
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in chain().items())


def zput(z: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A stored entry with a fixed timestamp (re-running gives the same bytes)."""
    z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)


def safetensors(path: Path, header: dict | str, data: bytes = b"", claimed: int | None = None) -> None:
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    hb = h.encode()
    n = len(hb) if claimed is None else claimed
    path.write_bytes(struct.pack("<Q", n) + hb + data)


def big(dir: Path) -> None:
    """Large crafted files (not committed), each <= 10 MB; configs are placed where the
    catalog and convert-legacy read them, beside a copy of a committed checkpoint."""
    dir.mkdir(parents=True, exist_ok=True)
    ckpt = OUT / "hydra_bomb" / "checkpoints" / "last.ckpt"
    # A 9.9 MB header of 170,000 zero-size tensors: each a few dozen bytes of JSON.
    n = 170_000
    parts = ",".join(f'"t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(n))
    safetensors(dir / "st_many_tiny.safetensors", "{" + parts + "}")
    # A 10 MB zip of 75,000 one-byte entries beside data.pkl (the central directory is most
    # of the file).
    with zipfile.ZipFile(dir / "zip_75k_entries.ckpt", "w", zipfile.ZIP_STORED) as z:
        zput(z, "zip_75k_entries/data.pkl", b"\x80\x02}q\x00.")
        for i in range(75_000):
            zput(z, f"zip_75k_entries/data/{i}", b"\0")
    # 8 MB flow lists of 4,000,000 ints: as a Hydra config and as a JSON config sidecar.
    h = dir / "hydra_many_nodes"
    (h / ".hydra").mkdir(parents=True, exist_ok=True)
    (h / "checkpoints").mkdir(exist_ok=True)
    (h / ".hydra" / "config.yaml").write_text("a: [" + "0," * 4_000_000 + "0]\n")
    shutil.copy(ckpt, h / "checkpoints" / "last.ckpt")
    (h / "checkpoints" / "last.config.json").write_text("[" + "0," * 4_000_000 + "0]")
    # A 10 MB metrics.csv of single-digit cells in a Lightning version folder.
    v = dir / "lightning_big_csv" / "lightning_logs" / "version_0"
    (v / "checkpoints").mkdir(parents=True, exist_ok=True)
    row = ",".join(["1"] * 1000) + "\n"
    (v / "metrics.csv").write_text(
        ",".join(["epoch", "step"] + [f"m{i}" for i in range(998)]) + "\n" + row * 5000)
    shutil.copy(ckpt, v / "checkpoints" / "epoch=0-step=1.ckpt")


def crafted() -> None:
    safetensors(OUT / "st_rank_10000.safetensors",
                {"t": {"dtype": "F32", "shape": [1] * 10_000, "data_offsets": [0, 4]}}, b"\0" * 4)
    deep = '{"__metadata__":' + '{"a":' * 100_000 + '"x"' + "}" * 100_000 + "}"
    safetensors(OUT / "st_deep_metadata.safetensors", deep)
    safetensors(OUT / "st_header_past_end.safetensors",
                {"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, claimed=1 << 30)
    safetensors(OUT / "st_overlap.safetensors", {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }, b"\0" * 12)
    safetensors(OUT / "st_out_of_range.safetensors",
                {"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    safetensors(OUT / "st_not_covered.safetensors", {
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
    }, b"\0" * 12)
    # A zip whose end-of-central-directory record claims 0xFFFF entries and whose ZIP64
    # record claims 4 billion: a reader that reserves per claimed entry allocates gigabytes.
    p = OUT / "zip_4g_entries.ckpt"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        zput(z, "zip_4g_entries/data.pkl", b"\x80\x02}q\x00.")
    b = bytearray(p.read_bytes())
    eocd = b.rfind(b"PK\x05\x06")
    b[eocd + 8:eocd + 12] = struct.pack("<HH", 0xFFFF, 0xFFFF)
    cd_size, cd_off = struct.unpack("<II", b[eocd + 12:eocd + 20])
    # ZIP64 end record + locator before the EOCD, claiming 4e9 entries.
    z64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 4_000_000_000, 4_000_000_000, cd_size, cd_off)
    loc = struct.pack("<IIQI", 0x07064B50, 0, eocd, 1)
    b[eocd:eocd] = z64 + loc
    p.write_bytes(bytes(b))
    # Classic end record only: 65,534 entries claimed in a 138-byte file.
    p = OUT / "zip_65534_entries.ckpt"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        zput(z, "zip_65534_entries/data.pkl", b"\x80\x02}q\x00.")
    b = bytearray(p.read_bytes())
    eocd = b.rfind(b"PK\x05\x06")
    b[eocd + 8:eocd + 12] = struct.pack("<HH", 0xFFFE, 0xFFFE)
    p.write_bytes(bytes(b))
    # YAML: billion laughs and deep nesting; JSON: deep nesting.
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 13):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    (OUT / "yaml_billion_laughs.yaml").write_text("\n".join(lines) + "\n")
    (OUT / "yaml_deep.yaml").write_text("a: " + "[" * 10_000 + "]" * 10_000 + "\n")
    (OUT / "json_deep.json").write_text("[" * 100_000 + "]" * 100_000)


def real() -> None:
    import torch
    from omegaconf import OmegaConf

    sd = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
          "layer.bias": torch.zeros(2)}

    def lightning(hp) -> dict:
        return {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.0",
                "state_dict": sd, "hparams_name": "kwargs", "hyper_parameters": hp}

    torch.save(lightning(OmegaConf.create(chain())), OUT / "hparams_bomb_dictconfig.ckpt")
    torch.save(lightning(chain()), OUT / "hparams_bomb_dict.ckpt")
    h = OUT / "hydra_bomb"
    (h / ".hydra").mkdir(parents=True)
    (h / "checkpoints").mkdir()
    (h / ".hydra" / "config.yaml").write_text(chain_yaml())
    torch.save(lightning({"lr": 0.001}), h / "checkpoints" / "last.ckpt")
    # That checkpoint with its first storage's sizes in the central directory raised to
    # 2 GiB: a reader that trusts them allocates 2 GiB for a 2 KB file.
    b = bytearray((h / "checkpoints" / "last.ckpt").read_bytes())
    i = 0
    while (i := b.find(b"PK\x01\x02", i)) >= 0:
        (n,) = struct.unpack("<H", b[i + 28:i + 30])
        if bytes(b[i + 46:i + 46 + n]).endswith(b"/data/0"):
            b[i + 20:i + 28] = struct.pack("<II", 0x7FFF_FFF0, 0x7FFF_FFF0)
        i += 4
    (OUT / "zip_entry_past_end.ckpt").write_bytes(bytes(b))
    v = OUT / "lightning_bomb" / "lightning_logs" / "version_0"
    (v / "checkpoints").mkdir(parents=True)
    (v / "hparams.yaml").write_text(chain_yaml())
    torch.save(lightning({"lr": 0.001}), v / "checkpoints" / "epoch=0-step=1.ckpt")
    # DCP: a real .metadata from torch.distributed.checkpoint, then one whose tensor claims a
    # million chunks (the pickle is small: one chunk object memoized and referenced again).
    import pickle
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import (ChunkStorageMetadata, Metadata,
                                                       TensorStorageMetadata)
    d = OUT / "dcp_many_chunks"
    dcp.save({"w": torch.zeros(4)}, checkpoint_id=str(d))
    md = pickle.loads((d / ".metadata").read_bytes())
    t = md.state_dict_metadata["w"]
    assert isinstance(t, TensorStorageMetadata)
    chunk = ChunkStorageMetadata(offsets=torch.Size([0]), sizes=torch.Size([4]))
    t.chunks = [chunk] * 250_000
    (d / ".metadata").write_bytes(pickle.dumps(md, protocol=2))
    assert isinstance(md, Metadata)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--big":
        big(Path(sys.argv[2]))
        return
    readme = (OUT / "README.md").read_text() if (OUT / "README.md").exists() else None
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    if readme is not None:
        (OUT / "README.md").write_text(readme)
    crafted()
    real()
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.stat().st_size:>10}  {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
