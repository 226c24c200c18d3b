#!/usr/bin/env python3
"""Generate real multi-rank torch.distributed.checkpoint (DCP) fixtures for `ckpt convert`.

    /tmp/venv/bin/pip install torch safetensors
    /tmp/venv/bin/python scripts/make_dcp_fixtures.py      # from anywhere except /tmp

Deletes and rewrites only fixtures/convert/dcp/. Each case is a DCP directory written by
`torch.distributed.checkpoint.save` with the default FileSystemWriter from a world of 2 CPU ranks
(gloo, spawned with torch.multiprocessing), so it holds `.metadata`, `__0_0.distcp` and
`__1_0.distcp`, and sharded tensors are split into one chunk per rank:

    fsdp2_dim0/   tiny GPT-2-shaped module under FSDP2 `fully_shard`, float32; state dict from
                  `get_model_state_dict` (DTensors, Shard(0)), saved as {"model": sd} so keys in
                  the checkpoint are `model.<fqn>`. Row counts are odd (11, 5, 3, 1) so the
                  chunks are uneven; `head.weight` / `head.bias` have one row, so rank 1's shard
                  is empty; `pos_ids` is an int64 buffer (a plain, replicated tensor).
    dtensor_mixed/ top-level dict of DTensors from `distribute_tensor` on a 1-D mesh:
                  Shard(1) float32 [6, 10] (column chunks, not contiguous in the full tensor),
                  Shard(0) float32 [7, 3], Shard(1) bfloat16 [4, 6], Replicate() float32 [5],
                  plus non-tensor entries `step` (int) and `sched.lr` (a float in a nested dict).
    fsdp2_bf16/   the fsdp2_dim0 module cast to bfloat16 before `fully_shard`.
    conv_bn_linear/ a Conv2d + BatchNorm2d + Linear model after one training step, saved as
                  {"model": model.state_dict()} by `dcp.save` in this one process (no process
                  group: DCP then saves as a world of one, `__0_0.distcp`). BatchNorm's
                  `num_batches_tracked` is a 0-d int64 tensor, whose chunk has empty offsets and
                  sizes — what every DCP save of a model with BatchNorm holds.
                  `conv_bn_linear.pth` is `torch.save` of the same state dict (a plain file with
                  the same 0-d tensor).

For each case also:

    <case>.expected.safetensors  the full (unsharded) tensors, `DTensor.full_tensor()` on rank 0,
                                 named as a converter should name them (the leading `model.` of
                                 fsdp2_* dropped), written by safetensors.torch.save_file.
    <case>.json                  per tensor: name, DCP key, dtype, full shape and the chunks as
                                 recorded in `.metadata` (offsets, sizes, and where the bytes
                                 are: file, byte offset, byte length); the non-tensor keys with
                                 their values; the planner_data (flattening) mapping.

Determinism: fixed seeds; `checkpoint_id` is a relative path (the script chdirs to the repo
root); DCP's random per-save uuid (StorageMeta.save_id) is replaced with a fixed uuid5 of the
case name, so rerunning reproduces every file byte for byte.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import uuid
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch import nn

REPO = Path(__file__).resolve().parent.parent
OUT_REL = Path("fixtures/convert/dcp")
WORLD = 2
CASES = ["fsdp2_dim0", "dtensor_mixed", "fsdp2_bf16"]
# Saved in this process, without a process group.
SINGLE_CASES = ["conv_bn_linear"]


class TinyGPT(nn.Module):
    """GPT-2-shaped names, odd row counts so FSDP2's dim-0 shards are uneven."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(11, 8)  # 11 rows -> chunks of 6 and 5
        self.wpe = nn.Embedding(5, 8)  # 5 rows -> 3 and 2
        self.ln_f = nn.LayerNorm(8)  # 8 -> 4 and 4
        self.fc = nn.Linear(8, 3)  # weight [3, 8] -> 2 and 1; bias [3] -> 2 and 1
        self.head = nn.Linear(3, 1)  # weight [1, 3], bias [1]: rank 1's chunk is empty
        self.register_buffer("pos_ids", torch.arange(5, dtype=torch.int64))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(self.pos_ids[: idx.shape[-1]])
        x = self.ln_f(x)
        return self.head(torch.relu(self.fc(x)))


def fixed_uuid(case: str) -> None:
    """Make StorageMeta.save_id reproducible (FileSystemWriter draws it from uuid4)."""
    import torch.distributed.checkpoint.filesystem as fs

    value = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ckpt-fixture/{case}"))
    fs._generate_uuid = lambda: value


def full_tensors(sd: dict, strip: str = "") -> dict[str, torch.Tensor]:
    """Gather every tensor (collective: all ranks must call). Non-tensors are skipped."""
    from torch.distributed.tensor import DTensor

    out = {}
    for key, value in sd.items():
        if isinstance(value, DTensor):
            value = value.full_tensor()
        if isinstance(value, torch.Tensor):
            name = key[len(strip):] if strip and key.startswith(strip) else key
            out[name] = value.detach().cpu().contiguous().clone()
    return out


def case_fsdp2(case: str, dtype: torch.dtype) -> None:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (WORLD,))
    torch.manual_seed(1234)  # the same on every rank: one model, then sharded
    model = TinyGPT().to(dtype)
    fully_shard(model, mesh=mesh)
    sd = get_model_state_dict(model)  # sharded: DTensor params, plain buffer
    dcp.save({"model": sd}, checkpoint_id=str(OUT_REL / case))
    full = full_tensors(sd)
    if dist.get_rank() == 0:
        save_expected(case, full)


def case_dtensor_mixed(case: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (WORLD,))
    g = torch.Generator().manual_seed(5678)
    cols = torch.arange(60, dtype=torch.float32).reshape(6, 10) / 8  # readable: row*10+col
    rows = torch.randn(7, 3, generator=g)
    bf16 = torch.randn(4, 6, generator=g).to(torch.bfloat16)
    rep = torch.linspace(-1, 1, 5)
    sd = {
        "cols.weight": distribute_tensor(cols, mesh, [Shard(1)]),  # [6, 5] + [6, 5]
        "rows.weight": distribute_tensor(rows, mesh, [Shard(0)]),  # [4, 3] + [3, 3]
        "bf16.weight": distribute_tensor(bf16, mesh, [Shard(1)]),  # [4, 3] + [4, 3]
        "scale": distribute_tensor(rep, mesh, [Replicate()]),  # one chunk after dedup
        "step": 100,
        "sched": {"lr": 0.5},  # nested: DCP flattens it to "sched.lr"
    }
    dcp.save(sd, checkpoint_id=str(OUT_REL / case))
    full = full_tensors(sd)
    if dist.get_rank() == 0:
        save_expected(case, full)


class ConvBnLinear(nn.Module):
    """A model with BatchNorm: its state dict holds the 0-d `num_batches_tracked`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 2 * 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def case_conv_bn_linear(case: str) -> None:
    """One process, no process group: `dcp.save` saves as a world of one."""
    torch.manual_seed(4321)
    model = ConvBnLinear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):  # running stats move, num_batches_tracked becomes 3
        opt.zero_grad()
        model(torch.randn(5, 2, 4, 4)).square().mean().backward()
        opt.step()
    sd = model.state_dict()
    assert sd["bn.num_batches_tracked"].dim() == 0
    fixed_uuid(case)
    dcp.save({"model": sd}, checkpoint_id=str(OUT_REL / case))
    torch.save(sd, OUT_REL / f"{case}.pth")
    save_expected(case, {k: v.detach().contiguous().clone() for k, v in sd.items()})


def save_expected(case: str, full: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # For the fsdp2 cases the DCP keys are "model.<fqn>"; the expected names drop "model.".
    save_file(full, str(OUT_REL / f"{case}.expected.safetensors"))


def worker(rank: int, port: int) -> None:
    os.chdir(REPO)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        for case in CASES:
            fixed_uuid(case)
            if case == "fsdp2_dim0":
                case_fsdp2(case, torch.float32)
            elif case == "fsdp2_bf16":
                case_fsdp2(case, torch.bfloat16)
            else:
                case_dtensor_mixed(case)
            dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def describe(case: str) -> dict:
    """Read .metadata back (single process, no process group) and describe it."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    path = OUT_REL / case
    md = dcp.FileSystemReader(str(path)).read_metadata()
    storage = md.storage_data  # MetadataIndex -> _StorageInfo
    strip = "model." if case.startswith("fsdp2") or case in SINGLE_CASES else ""
    tensors, others = [], []
    for key, item in md.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            chunks = []
            for chunk in item.chunks:
                info = next(
                    v for k, v in storage.items() if k.fqn == key and k.offset == chunk.offsets
                )
                chunks.append(
                    {
                        "offsets": list(chunk.offsets),
                        "sizes": list(chunk.sizes),
                        "file": info.relative_path,
                        "byte_offset": info.offset,
                        "byte_length": info.length,
                    }
                )
            tensors.append(
                {
                    "name": key.removeprefix(strip),
                    "dcp_key": key,
                    "dtype": dtype_name(item.properties.dtype),
                    "shape": list(item.size),
                    "chunks": chunks,
                }
            )
        elif isinstance(item, BytesStorageMetadata):
            info = next(v for k, v in storage.items() if k.fqn == key)
            with open(path / info.relative_path, "rb") as f:
                f.seek(info.offset)
                blob = f.read(info.length)
            import io

            value = torch.load(io.BytesIO(blob), weights_only=True)
            others.append(
                {
                    "key": key,
                    "value": value,
                    "file": info.relative_path,
                    "byte_offset": info.offset,
                    "byte_length": info.length,
                }
            )
        else:
            raise TypeError(f"{key}: unexpected {type(item)}")

    # Cross-check: torch's own single-process DCP loader must agree with the expected file.
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    tmp = OUT_REL / f".{case}.tmp.pt"
    dcp_to_torch_save(str(path), str(tmp))
    loaded = torch.load(tmp, weights_only=True)
    tmp.unlink()
    flat = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = obj

    walk("", loaded)
    expected = load_file(str(OUT_REL / f"{case}.expected.safetensors"))
    assert sorted(expected) == sorted(t["name"] for t in tensors), case
    for t in tensors:
        got = flat[t["dcp_key"]]
        want = expected[t["name"]]
        assert got.dtype == want.dtype and torch.equal(got, want), (case, t["name"])
    for o in others:
        assert flat[o["key"]] == o["value"], (case, o["key"])

    return {
        "case": case,
        "dir": case,
        "world_size": 1 if case in SINGLE_CASES else WORLD,
        "files": sorted(p.name for p in path.iterdir()),
        "dcp_version": md.version,
        "strip_prefix": strip,
        "tensors": tensors,
        "non_tensor_keys": [o["key"] for o in others],
        "non_tensors": others,
        "planner_data": {k: list(v) for k, v in (md.planner_data or {}).items()},
    }


def compact_json(obj) -> str:
    """Indented JSON, but with each list of numbers (offsets, sizes, shape) on one line."""
    text = json.dumps(obj, indent=1)
    return re.sub(
        r"\[\s*(-?[0-9.]+(?:,\s*-?[0-9.]+)*)\s*\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )


def main() -> None:
    os.chdir(REPO)
    if OUT_REL.exists():
        shutil.rmtree(OUT_REL)
    OUT_REL.mkdir(parents=True)
    mp.spawn(worker, args=(free_port(),), nprocs=WORLD, join=True)
    for case in SINGLE_CASES:
        case_conv_bn_linear(case)

    total = 0
    for case in CASES + SINGLE_CASES:
        desc = describe(case)
        (OUT_REL / f"{case}.json").write_text(compact_json(desc) + "\n")
        print(f"{case}:")
        for t in desc["tensors"]:
            chunks = " ".join(f"{c['offsets']}+{c['sizes']}" for c in t["chunks"])
            print(f"  {t['name']:<14} {t['dtype']:<9} {str(t['shape']):<8} {chunks}")
        for o in desc["non_tensors"]:
            print(f"  {o['key']:<14} = {o['value']!r} (bytes)")
    for p in sorted(OUT_REL.rglob("*")):
        if p.is_file():
            p.chmod(0o644)  # safetensors writes 0600
            total += p.stat().st_size
    print(f"wrote {OUT_REL}/: {sum(1 for p in OUT_REL.rglob('*') if p.is_file())} files, {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
