#!/usr/bin/env python3
"""Write fixtures/torchscript/: real TorchScript archives (torch.jit.save) with torch's ground truth.

    /tmp/venv/bin/python scripts/make_torchscript_fixtures.py      # from anywhere

A TorchScript archive is a zip like torch.save's, plus `code/` (the compiled TorchScript source
of every class), `constants.pkl` (+ `constants/<key>` tensors), and `data.pkl` whose objects are
`__torch__.*` classes defined by that code. `torch.load` recognizes one by its `constants.pkl`
record and hands it to `torch.jit.load` (and refuses it with weights_only=True), which returns a
`torch.jit._script.RecursiveScriptModule`.

Also fixtures/namespace/ (`argparse.Namespace` training args and a Lightning `AttributeDict`
beside the weights, with what torch.load returns for them).

Writes (after deleting) fixtures/torchscript/ and fixtures/namespace/ only:

    <name>.pt                  the archive (each < 100 KB)
    expected/<name>.pt.json    what torch.load(path, weights_only=False) returns, mapped as in
                               scripts/make_fixtures.py, with a RecursiveScriptModule as
                               {"__object__": "torch.jit._script.RecursiveScriptModule",
                                "state": {"original_name", "qualified_name",
                                          "parameters": dict(m.named_parameters()),
                                          "buffers": dict(m.named_buffers())}}
    expected/<name>.pt.state_dict.json   m.state_dict() in order: name -> {"__tensor__": {dtype,
                               shape, sha256}} (sha256 of the logical row-major little-endian bytes)
    expected/<name>.pt.facts.json        code files, module classes, constants, and whether
                               torch.load(weights_only=True) accepts the file
    README.md                  file -> what it tests
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "torchscript"
NS_OUT = ROOT / "fixtures" / "namespace"
EXPECTED = OUT / "expected"
NOTES: Dict[str, str] = {}
RSM = "torch.jit._script.RecursiveScriptModule"


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def tensor_digest(t: torch.Tensor) -> dict:
    c = t.detach().cpu().contiguous().reshape(-1)
    if c.dtype != torch.uint8:
        c = c.view(torch.uint8)
    return {"__tensor__": {"dtype": dtype_name(t.dtype), "shape": list(t.shape),
                           "sha256": hashlib.sha256(c.numpy().tobytes()).hexdigest()}}


def to_expected(obj):
    """The fixtures' mapping (scripts/make_fixtures.py) for the values a TorchScript load returns."""
    if isinstance(obj, torch.jit.RecursiveScriptModule):
        return {"__object__": RSM, "state": {
            "original_name": obj.original_name,
            "qualified_name": obj._c._type().qualified_name(),
            "parameters": {n: tensor_digest(p) for n, p in obj.named_parameters()},
            "buffers": {n: tensor_digest(b) for n, b in obj.named_buffers()},
        }}
    if isinstance(obj, torch.Tensor):
        return tensor_digest(obj)
    raise TypeError(f"unexpected {type(obj)}")


def save(m: torch.jit.ScriptModule, name: str, note: str, to_buffer: bool = False,
         extra: Dict[str, bytes] | None = None) -> Path:
    path = OUT / name
    if to_buffer:  # torch.jit.save to a buffer: entries under `archive/`, not the file stem
        buf = io.BytesIO()
        torch.jit.save(m, buf)
        path.write_bytes(buf.getvalue())
    else:
        torch.jit.save(m, str(path), _extra_files=extra or {})
    size = path.stat().st_size
    assert size < 100_000, f"{name} is {size} bytes"
    NOTES[name] = note
    return path


def facts(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    root = names[0].split("/")[0]
    code = sorted(n[len(root) + 1:] for n in names
                  if n.startswith(f"{root}/code/") and n.endswith(".py"))
    loaded = torch.jit.load(str(path))
    modules = []
    for mname, mod in loaded.named_modules():
        modules.append({"name": mname, "qualified_name": mod._c._type().qualified_name(),
                        "original_name": mod.original_name})
    try:
        torch.load(path, weights_only=True)
        wo = "yes"
    except Exception as e:  # noqa: BLE001 - we record what torch says
        wo = "no: " + str(e).splitlines()[0][:120]
    return {"root": root, "code_files": code, "modules": modules,
            "constants": "constants.pkl" in {n[len(root) + 1:] for n in names},
            "extra_files": sorted(n[len(root) + 1:] for n in names if n.startswith(f"{root}/extra/")),
            "parameters": [n for n, _ in loaded.named_parameters()],
            "buffers": [n for n, _ in loaded.named_buffers()],
            "weights_only_true": wo}


def write_truth(path: Path) -> None:
    EXPECTED.mkdir(parents=True, exist_ok=True)
    loaded = torch.load(path, weights_only=False, map_location="cpu")
    assert isinstance(loaded, torch.jit.RecursiveScriptModule), type(loaded)
    (EXPECTED / f"{path.name}.json").write_text(json.dumps(to_expected(loaded), indent=1) + "\n")
    sd = {k: tensor_digest(v) for k, v in loaded.state_dict().items()}
    (EXPECTED / f"{path.name}.state_dict.json").write_text(json.dumps(sd, indent=1) + "\n")
    (EXPECTED / f"{path.name}.facts.json").write_text(json.dumps(facts(path), indent=1) + "\n")


# --------------------------------------------------------------------------- models
class ConvBN(nn.Module):
    """conv + BatchNorm + linear, a persistent and a non-persistent buffer, and attributes of
    the kinds TorchScript pickles with type tags (int list, float, str, dict)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.register_buffer("scale", torch.tensor([1.5, 2.5]))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.sizes: List[int] = [1, 2, 3]
        self.gain: float = 0.5
        self.tag: str = "convbn"
        self.table: Dict[str, int] = {"a": 1}

    def forward(self, x):
        y = self.bn(self.conv(x)).mean([2, 3])
        return self.fc(y) * self.scale * self.gain + self.scratch + self.sizes[0]


class Block(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.proj = nn.Linear(n, n)
        self.norm = nn.LayerNorm(n)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        return self.norm(self.proj(x))


class Nested(nn.Module):
    """Submodules (a block, Sequential, ModuleList, ModuleDict), buffers at several depths, a
    frozen parameter, and an embedding tied to the output layer (one Parameter, two names)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.blocks = nn.ModuleList([Block(6), Block(6)])
        self.mixer = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))
        self.heads = nn.ModuleDict({"cls": nn.Linear(6, 3)})
        self.out = nn.Linear(6, 10, bias=False)
        self.out.weight = self.embed.weight  # tied
        self.temperature = nn.Parameter(torch.tensor(0.7), requires_grad=False)
        self.register_buffer("mask", torch.tensor([True, False, True]))

    def forward(self, ids):
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x)
        x = self.mixer(x)
        return self.out(x) / self.temperature, self.heads["cls"](x)


class Traced(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        # the literal tensor becomes a constant in constants.pkl
        return self.fc(self.body(x).mean([2, 3])) + torch.tensor([0.25, -0.25])


class WithSetstate(nn.Module):
    """A TorchScript class that defines __getstate__/__setstate__: torch.jit.load runs the
    archive's TorchScript __setstate__ while loading."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 2))
        self.calls = 0

    def forward(self, x):
        return x @ self.weight

    @torch.jit.export
    def __getstate__(self):
        return (self.weight, self.calls, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, int, bool]):
        self.weight = state[0]
        self.calls = state[1] + 1
        self.training = state[2]


def fixed(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed date, so the hand-made files are byte-for-byte reproducible."""
    return zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))


def hostile_archive(path: Path) -> None:
    """A TorchScript-shaped zip (constants.pkl, code/, version) whose data.pkl calls os.system.
    Written byte by byte, never loaded: inside a TorchScript archive the archive's own classes
    and list tags are data, but a Python callable is still dangerous."""
    payload = b"echo pwned"
    data = (b"\x80\x02cos\nsystem\nq\x00X" + len(payload).to_bytes(4, "little") + payload
            + b"\x85q\x01Rq\x02.")
    entries = [("hostile/data.pkl", data), ("hostile/constants.pkl", b"\x80\x02).")
               , ("hostile/code/__torch__.py", b"class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n")
               , ("hostile/version", b"3\n")]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, body in entries:
            z.writestr(fixed(name), body)
    NOTES[path.name] = ("hostile, written byte by byte and never loaded: a TorchScript-shaped zip "
                        "(constants.pkl, code/) whose data.pkl calls os.system")


def code_bomb(path: Path) -> None:
    """A TorchScript-shaped zip whose code/ file inflates to 64 MiB (about 64 KB deflated):
    a reader must stop at its budget, not allocate what the file claims."""
    body = b"class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n" + b"#" * (64 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(fixed("bomb/data.pkl"), b"\x80\x02c__torch__\nM\nq\x00)\x81}b.")
        z.writestr(fixed("bomb/constants.pkl"), b"\x80\x02).")
        z.writestr(fixed("bomb/code/__torch__.py"), body, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(fixed("bomb/version"), b"3\n")
    assert path.stat().st_size < 100_000
    NOTES[path.name] = ("hostile, written byte by byte: a TorchScript-shaped zip whose "
                        "code/__torch__.py inflates to 64 MiB (about 64 KB deflated)")


def namespace_args() -> argparse.Namespace:
    """45 training arguments, as argparse parses them in a typical train.py."""
    a = argparse.Namespace()
    fields = {
        "arch": "resnet18", "data": "/datasets/imagenet", "workers": 4, "epochs": 90,
        "start_epoch": 0, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
        "print_freq": 10, "resume": "", "evaluate": False, "pretrained": False,
        "world_size": -1, "rank": -1, "dist_url": "tcp://224.66.41.62:23456",
        "dist_backend": "nccl", "seed": None, "gpu": None, "multiprocessing_distributed": False,
        "dummy": False, "optimizer": "sgd", "scheduler": "step", "step_size": 30, "gamma": 0.1,
        "warmup_epochs": 5, "label_smoothing": 0.1, "mixup": 0.2, "cutmix": 1.0,
        "amp": True, "channels_last": False, "clip_grad": None, "ema": True, "ema_decay": 0.9998,
        "image_size": 224, "crop_pct": 0.875, "mean": [0.485, 0.456, 0.406],
        "std": (0.229, 0.224, 0.225), "layers": [2, 2, 2, 2], "drop_path": 0.05,
        "output_dir": "runs/resnet18", "log_wandb": False, "tags": ["baseline", "imagenet"],
        "notes": "ünïcode ok", "hmean_target": float("nan"),
    }
    assert len(fields) == 45, len(fields)
    for k, v in fields.items():
        setattr(a, k, v)
    return a


def case_namespace() -> List[Path]:
    """`argparse.Namespace` training args and a Lightning `AttributeDict` beside the weights."""
    from pytorch_lightning.utilities.parsing import AttributeDict

    if NS_OUT.exists():
        shutil.rmtree(NS_OUT)
    (NS_OUT / "expected").mkdir(parents=True)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    out = []
    p = NS_OUT / "train_args.pt"
    torch.save({"epoch": 3, "arch": "resnet18", "args": namespace_args(),
                "state_dict": model.state_dict(), "best_acc1": 71.5}, p)
    out.append(p)
    p = NS_OUT / "attribute_dict.pt"
    hp = AttributeDict(lr=0.001, batch_size=32, encoder=AttributeDict(name="resnet", depth=18))
    torch.save({"hparams": hp, "state_dict": model.state_dict(), "global_step": 40}, p)
    out.append(p)
    for p in out:
        loaded = torch.load(p, weights_only=False)
        (NS_OUT / "expected" / f"{p.name}.json").write_text(
            json.dumps(plain(loaded), indent=1) + "\n")
    (NS_OUT / "README.md").write_text(
        "# Namespace fixtures\n\nGenerated by `scripts/make_torchscript_fixtures.py` with torch "
        f"{torch.__version__}.\n\n"
        "| file | what it tests |\n|---|---|\n"
        "| `train_args.pt` | `torch.save({'args': argparse.Namespace(45 fields), 'state_dict': ..., "
        "'epoch': 3, ...})`, as ImageNet-style training scripts save it |\n"
        "| `attribute_dict.pt` | a Lightning `AttributeDict` (nested) under `hparams` beside a state dict |\n"
        "\n`expected/<file>.json`: what `torch.load(weights_only=False)` returns (Namespace and "
        "AttributeDict as objects of their fields; tensors as in the other fixtures).\n")
    return out


def plain(obj):
    """The fixtures' mapping for the values these two files hold."""
    if isinstance(obj, torch.Tensor):
        return tensor_digest(obj)
    if isinstance(obj, argparse.Namespace):
        return plain(vars(obj))
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return {"__float__": "nan"}
    return obj


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    torch.manual_seed(1234)

    m = ConvBN().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.num_batches_tracked.fill_(7)
    files = [save(torch.jit.script(m), "scripted_convbn.pt",
                  "torch.jit.script of conv + BatchNorm + linear; a persistent and a non-persistent "
                  "buffer (TorchScript keeps both in state_dict); int list / float / str / dict "
                  "attributes (`torch.jit._pickle` type tags)")]

    n = Nested()
    files.append(save(torch.jit.script(n), "nested_buffers.pt",
                      "scripted: Block submodule, ModuleList, Sequential, ModuleDict, buffers at "
                      "several depths (bool, 0-d int64), a frozen Parameter, an embedding tied to "
                      "the output layer; saved to a buffer (entries under `archive/`)",
                      to_buffer=True))

    t = Traced().eval()
    files.append(save(torch.jit.trace(t, torch.randn(1, 1, 5, 5)), "traced.pt",
                      "torch.jit.trace of Sequential(conv, BatchNorm, ReLU) + linear: a tensor "
                      "constant in constants.pkl, traced_inputs.pkl, an `_extra_files` entry "
                      "(extra/meta.json)",
                      extra={"meta.json": b'{"task": "demo", "input": [1, 1, 5, 5]}'}))

    b = ConvBN().to(torch.bfloat16)
    files.append(save(torch.jit.script(b), "bf16.pt",
                      "the conv + BatchNorm + linear module in bfloat16 (parameters and float "
                      "buffers bf16, num_batches_tracked int64)"))

    files.append(save(torch.jit.script(WithSetstate()), "setstate.pt",
                      "a scripted module defining TorchScript __getstate__/__setstate__: "
                      "torch.jit.load runs archive code while loading"))

    fr = torch.jit.freeze(torch.jit.script(Traced().eval()))
    files.append(save(fr, "frozen.pt",
                      "torch.jit.freeze: the weights are folded into constants.pkl, the module "
                      "has no parameters or buffers left"))

    for p in files:
        write_truth(p)
    hostile_archive(OUT / "hostile_os_system.pt")
    code_bomb(OUT / "code_bomb.pt")

    lines = ["# TorchScript fixtures", "",
             "Generated by `scripts/make_torchscript_fixtures.py` (do not edit by hand; re-run it",
             f"with torch). Made with torch {torch.__version__}.", "",
             "- `expected/<file>.json`: what `torch.load(path, weights_only=False)` returns (a",
             "  `torch.jit._script.RecursiveScriptModule`), mapped as `{\"__object__\": "
             "\"torch.jit._script.RecursiveScriptModule\",",
             "  \"state\": {\"original_name\", \"qualified_name\", \"parameters\", \"buffers\"}}` "
             "(named_parameters() / named_buffers(), in torch's order, tensors as in the other "
             "fixtures).",
             "- `expected/<file>.state_dict.json`: `m.state_dict()`, in order (what `ckpt convert` writes).",
             "- `expected/<file>.facts.json`: code files, module classes, parameter/buffer names, and what",
             "  `torch.load(weights_only=True)` says (torch refuses TorchScript archives there).", "",
             "| file | what it tests |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in NOTES.items()]
    (OUT / "README.md").write_text("\n".join(lines) + "\n")
    files += case_namespace()
    for p in files:
        print(f"wrote {p.relative_to(ROOT)} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
