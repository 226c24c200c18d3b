#!/usr/bin/env python3
"""Generate ckpt's test fixtures and demo checkpoints.

    python3 -m venv /tmp/venv
    /tmp/venv/bin/pip install torch pytorch-lightning omegaconf numpy
    /tmp/venv/bin/python scripts/make_fixtures.py          # from the repo root

Writes (and first deletes) only these folders:

    examples/lightning/            a real tiny pytorch_lightning run (top-2 + last.ckpt)
    examples/lightning_dictconfig/ the same with an OmegaConf DictConfig as hyper_parameters
    examples/fsdp/                 FSDP-style (`_fsdp_wrapped_module.`) and DDP-style (`module.`)
    fixtures/formats/              one state in every encoding, every dtype, Python value kinds
    fixtures/bad/                  broken and hostile files, written byte by byte, never unpickled
    fixtures/expected/<path>.json  what torch.load(path, weights_only=False) returns (mapping below)
    fixtures/README.md             file -> what it tests

Ground truth mapping (the same as the reference corpus, plus complex/bytearray):

    dict / OrderedDict / defaultdict  -> object, keys as str(key), insertion order
    list / tuple                      -> array
    set / frozenset                   -> array sorted by each element's JSON text (json.dumps)
    int (any size), float, str, bool, None -> itself; nan/inf/-inf -> {"__float__": "nan"|"inf"|"-inf"}
    bytes, bytearray                  -> {"__bytes__": "<hex>"}
    complex                           -> {"__complex__": [re, im]}
    Tensor / Parameter                -> {"__tensor__": {"dtype", "shape", "sha256"}}: sha256 of the
                                         logical elements, row-major, little-endian (t.contiguous()'s
                                         bytes; quantized tensors: their int_repr()'s bytes)
    numpy scalar -> its Python value; numpy array -> {"__ndarray__": {"dtype", "shape", "sha256"}}
    OmegaConf DictConfig / ListConfig -> the container, interpolations unresolved
    argparse.Namespace                -> object of its attributes
    torch.dtype / device / Size       -> "float16" / "cpu" / array of ints
    Enum member                       -> {"__object__": "module.Qualname", "args": [value]}
    dataclass instance                -> {"__object__": "module.Qualname", "state": {fields}}
    anything else (nn.Module, slice, classes, ...) -> {"__object__": "module.Qualname"} (of its type)

The files under fixtures/bad/ are never unpickled: hostile payloads only `echo pwned`, but a reader
must refuse them, not run them.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import hashlib
import io
import json
import logging
import os
import pickletools
import random
import shutil
import struct
import subprocess
import sys
import time
import warnings
import zipfile
from collections import OrderedDict, defaultdict
from pathlib import Path

warnings.filterwarnings("ignore")
if os.environ.get("PYTHONHASHSEED") != "0":  # set iteration order (pickled sets) depends on it
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "fixtures"
EXPECTED = FIXTURES / "expected"
# Lightning records absolute paths (dirpath, best_model_path). Training happens in this fixed
# folder, so the bytes do not depend on where the repo is checked out, and the checkpoints carry
# stale absolute paths exactly like real ones copied off a training machine.
BUILD = Path("/tmp/ckpt-fixtures-build")
SEED = 1234

OWNED = [EXAMPLES / "lightning", EXAMPLES / "lightning_dictconfig", EXAMPLES / "fsdp",
         FIXTURES / "formats", FIXTURES / "bad", FIXTURES / "expected"]

NOTES: dict[str, str] = {}      # relative path -> what it tests (README table)
SKIPPED: list[str] = []         # what this torch could not do


def note(path: Path, text: str) -> None:
    NOTES[rel(path)] = text


def rel(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT))


# --------------------------------------------------------------------------- #
# ground truth: what torch.load returns, as canonical JSON
# --------------------------------------------------------------------------- #
def dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The logical elements, row-major, little-endian (what t.contiguous() holds)."""
    c = t.detach().cpu()
    if c.is_quantized:
        c = c.int_repr()
    c = c.contiguous().reshape(-1)
    if c.dtype != torch.uint8:
        c = c.view(torch.uint8)
    return c.numpy().tobytes()


def tensor_digest(t: torch.Tensor) -> dict:
    return {"__tensor__": {"dtype": dtype_name(t.dtype), "shape": list(t.shape),
                           "sha256": hashlib.sha256(tensor_bytes(t)).hexdigest()}}


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def to_expected(obj, depth: int = 0):
    """Map a loaded object to JSON (see the module docstring)."""
    if depth > 500:
        raise RecursionError("too deep")
    if isinstance(obj, torch.Tensor):
        return tensor_digest(obj)
    if isinstance(obj, enum.Enum):  # before int: an IntEnum is an int too
        return {"__object__": qualname(type(obj)), "args": [to_expected(obj.value, depth + 1)]}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if obj != obj:
            return {"__float__": "nan"}
        if obj in (float("inf"), float("-inf")):
            return {"__float__": "inf" if obj > 0 else "-inf"}
        return float(obj)
    if isinstance(obj, complex):
        return {"__complex__": [to_expected(obj.real, depth + 1), to_expected(obj.imag, depth + 1)]}
    if isinstance(obj, (bytes, bytearray)):
        return {"__bytes__": bytes(obj).hex()}
    if isinstance(obj, dict):
        return {str(k): to_expected(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):  # torch.Size is a tuple of ints
        return [to_expected(v, depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_expected(v, depth + 1) for v in obj), key=json.dumps)
    if isinstance(obj, np.generic):
        return to_expected(obj.item(), depth + 1)
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": {"dtype": str(obj.dtype), "shape": list(obj.shape),
                                "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}}
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return to_expected(OmegaConf.to_container(obj, resolve=False), depth + 1)
    except ImportError:
        pass
    if isinstance(obj, argparse.Namespace):
        return to_expected(vars(obj), depth + 1)
    if isinstance(obj, torch.dtype):
        return dtype_name(obj)
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, nn.Module):
        return {"__object__": qualname(type(obj))}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__object__": qualname(type(obj)), "state": to_expected(vars(obj), depth + 1)}
    return {"__object__": qualname(type(obj))}


def expected_path(ckpt: Path) -> Path:
    r = ckpt.resolve()
    if r.is_relative_to(FIXTURES):
        return EXPECTED / (str(r.relative_to(FIXTURES)) + ".json")
    return EXPECTED / (str(r.relative_to(ROOT)) + ".json")  # examples/...


def expected_text(obj) -> str:
    return json.dumps(to_expected(obj), indent=1) + "\n"


def load(path: Path, weights_only: bool = False):
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def write_expected(ckpt: Path) -> None:
    out = expected_path(ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(expected_text(load(ckpt)))


def checkpoint_files() -> list[Path]:
    """Every loadable checkpoint this script writes (examples/ and fixtures/, not bad/)."""
    found = []
    for base in (EXAMPLES, FIXTURES):
        for p in sorted(base.rglob("*")):
            if p.suffix in (".pt", ".pth", ".ckpt", ".bin") and p.is_file():
                parts = p.resolve().relative_to(ROOT).parts
                if "bad" not in parts and "expected" not in parts:
                    found.append(p)
    return found


# --------------------------------------------------------------------------- #
# examples/lightning, examples/lightning_dictconfig: real Lightning training
# --------------------------------------------------------------------------- #
HPARAMS = {
    "architecture_name": "dbnet",
    "encoder": {"model_name": "mobilenetv3_small_050", "pretrained": True, "frozen": False},
    "decoder": {"name": "pan_decoder", "in_channels": [4], "inner_channels": 8, "output_channels": 4,
                "params": {}},
    "head": {"name": "db_head", "in_channels": 4, "params": {"k": 50}},
    "loss": {"name": "db_loss", "params": {"alpha": 1.0, "beta": 10.0}},
    "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0001},
}


class TinyDBNet(nn.Module):
    """DBNet-shaped (encoder / decoder / head), about 200 parameters."""

    def __init__(self, enc_out: int = 4, inner: int = 8, out: int = 4):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.conv_stem = nn.Conv2d(3, enc_out, 3, 2, 1, bias=False)
        self.encoder.bn1 = nn.BatchNorm2d(enc_out)
        self.decoder = nn.Module()
        self.decoder.lateral = nn.Conv2d(enc_out, inner, 1)
        self.decoder.out = nn.Conv2d(inner, out, 1)
        self.head = nn.Module()
        self.head.binarize = nn.Conv2d(out, 1, 1)
        self.head.thresh = nn.Conv2d(out, 1, 1)

    def forward(self, x):
        f = F.relu(self.encoder.bn1(self.encoder.conv_stem(x)))
        f = F.relu(self.decoder.out(F.relu(self.decoder.lateral(f))))
        return torch.sigmoid(self.head.binarize(f)), torch.sigmoid(self.head.thresh(f))


def lightning_module_classes():
    import pytorch_lightning as pl

    class DetectorBase(pl.LightningModule):
        def _setup(self, decoder: dict, lr: float, weight_decay: float):
            self.model = TinyDBNet(enc_out=decoder["in_channels"][0], inner=decoder["inner_channels"],
                                   out=decoder["output_channels"])
            self.lr, self.weight_decay = lr, weight_decay
            self._cleval = {}

        def forward(self, x):
            return self.model(x)

        def _loss(self, batch):
            x, y = batch
            prob, thresh = self(x)
            return F.binary_cross_entropy(prob, y) + 0.1 * F.l1_loss(thresh, y)

        def training_step(self, batch, _):
            loss = self._loss(batch)
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch, _):
            self.log("val/loss", self._loss(batch))

        def on_validation_epoch_end(self):
            # synthetic but deterministic CLEval numbers, improving every epoch
            e = self.current_epoch
            p, r = 0.80 + 0.03 * e, 0.65 + 0.025 * e
            self._cleval = {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r)}
            for k, v in self._cleval.items():
                self.log(f"val/{k}", v)

        def on_save_checkpoint(self, checkpoint):
            checkpoint["cleval_metrics"] = dict(self._cleval)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return [opt], [sched]

    class TextDetector(DetectorBase):
        def __init__(self, architecture_name: str, encoder: dict, decoder: dict, head: dict, loss: dict,
                     optimizer: dict):
            super().__init__()
            self.save_hyperparameters()  # hyper_parameters: the nested dict of the init arguments
            self._setup(decoder, optimizer["lr"], optimizer["weight_decay"])

    class ConfigTextDetector(DetectorBase):
        def __init__(self, cfg):
            super().__init__()
            self.save_hyperparameters(cfg)  # hyper_parameters: the DictConfig itself (pickled)
            self._setup(cfg.decoder, cfg.optimizer.lr, cfg.optimizer.weight_decay)

    return TextDetector, ConfigTextDetector


def train_lightning(module, name: str, max_epochs: int, save_top_k: int, save_last: bool) -> Path:
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    for lg in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(lg).setLevel(logging.ERROR)
    run = BUILD / name
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    pl.seed_everything(SEED, verbose=False)
    x = torch.randn(8, 3, 16, 16)
    y = (torch.rand(8, 1, 8, 8) > 0.5).float()
    ds = TensorDataset(x, y)
    ckpt = pl.callbacks.ModelCheckpoint(
        dirpath=str(run / "checkpoints"), monitor="val/hmean", mode="max", save_top_k=save_top_k,
        save_last=save_last, filename="epoch={epoch:02d}-step={step}-hmean={val/hmean:.4f}",
        auto_insert_metric_name=False)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=[ckpt], logger=False, default_root_dir=str(run),
                         accelerator="cpu", devices=1, deterministic=True, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module(), DataLoader(ds, batch_size=4), DataLoader(ds, batch_size=4))
    return run / "checkpoints"


def case_lightning() -> None:
    from omegaconf import OmegaConf

    TextDetector, ConfigTextDetector = lightning_module_classes()
    # 1. save_hyperparameters() of nested-dict init arguments; top-2 by val/hmean + last.ckpt
    src = train_lightning(lambda: TextDetector(**json.loads(json.dumps(HPARAMS))), "lightning",
                          max_epochs=3, save_top_k=2, save_last=True)
    dst = EXAMPLES / "lightning" / "checkpoints"
    dst.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        shutil.copy(p, dst / p.name)
        note(dst / p.name, "real Lightning run: `save_hyperparameters()` of nested dict init args, "
             "`ModelCheckpoint(monitor=\"val/hmean\", save_top_k=2, save_last=True)`, `cleval_metrics`, "
             "AdamW + StepLR state, stale absolute paths under /tmp/ckpt-fixtures-build")

    # 2. save_hyperparameters(cfg) with an OmegaConf DictConfig holding an interpolation
    cfg = dict(json.loads(json.dumps(HPARAMS)))
    cfg["optimizer"]["scheduled_lr"] = "${optimizer.lr}"
    src = train_lightning(lambda: ConfigTextDetector(OmegaConf.create(cfg)), "lightning_dictconfig",
                          max_epochs=2, save_top_k=1, save_last=False)
    dst = EXAMPLES / "lightning_dictconfig" / "checkpoints"
    dst.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        shutil.copy(p, dst / p.name)
        note(dst / p.name, "real Lightning run: `hyper_parameters` is a pickled OmegaConf DictConfig "
             "(`optimizer.scheduled_lr: ${optimizer.lr}` left unresolved), `hparams_type` is the class")
    shutil.rmtree(BUILD)
    torch.use_deterministic_algorithms(False)  # Trainer(deterministic=True) set it process-wide


# --------------------------------------------------------------------------- #
# examples/fsdp: FSDP-style and DDP-style checkpoints of a tiny GPT-2
# --------------------------------------------------------------------------- #
class Conv1D(nn.Module):
    """GPT-2's linear layer: weight stored as (in_features, out_features)."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class Block(nn.Module):
    def __init__(self, e: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(e)
        self.attn = nn.Module()
        self.attn.c_attn = Conv1D(3 * e, e)
        self.attn.c_proj = Conv1D(e, e)
        self.ln_2 = nn.LayerNorm(e)
        self.mlp = nn.Module()
        self.mlp.c_fc = Conv1D(4 * e, e)
        self.mlp.c_proj = Conv1D(e, 4 * e)

    def forward(self, h):
        q, k, v = self.attn.c_attn(self.ln_1(h)).chunk(3, dim=-1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.attn.c_proj(a)
        return h + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(h))))


class TinyGPT2(nn.Module):
    """GPT-2 names and shapes (transformer.wte/wpe/h.N/ln_f, lm_head tied to wte)."""

    def __init__(self, vocab: int = 16, positions: int = 8, e: int = 4, layers: int = 2):
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(vocab, e)
        self.transformer.wpe = nn.Embedding(positions, e)
        self.transformer.h = nn.ModuleList([Block(e) for _ in range(layers)])
        self.transformer.ln_f = nn.LayerNorm(e)
        self.lm_head = nn.Linear(e, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one Parameter, one storage

    def forward(self, ids):
        t = self.transformer
        h = t.wte(ids) + t.wpe(torch.arange(ids.shape[1]))
        for block in t.h:
            h = block(h)
        return self.lm_head(t.ln_f(h))


def fsdp_key(k: str) -> str:
    """FSDP (use_orig_params=True, blocks auto-wrapped): root and every block get a wrapper."""
    parts = k.split(".")
    if parts[:2] == ["transformer", "h"]:
        parts.insert(3, "_fsdp_wrapped_module")
    return "_fsdp_wrapped_module." + ".".join(parts)


def case_fsdp() -> None:
    d = EXAMPLES / "fsdp"
    d.mkdir(parents=True)
    torch.manual_seed(SEED)
    model = TinyGPT2()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ids = torch.randint(0, 16, (4, 8))

    def train(steps: int) -> None:
        for _ in range(steps):
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()

    train(2)
    sd = model.state_dict()  # lm_head.weight and transformer.wte.weight share one storage
    torch.save({"model": {fsdp_key(k): v for k, v in sd.items()}, "optimizer": opt.state_dict(),
                "epoch": 1, "step": 100}, d / "epoch-001.pth")
    note(d / "epoch-001.pth", "FSDP-style: `_fsdp_wrapped_module.` prefixes (root and per block) under "
         "`model`, tied `lm_head.weight` shares `wte`'s storage, SGD momentum state keyed by ints")
    train(2)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 2,
                "step": 200}, d / "ddp-epoch-002.pth")
    note(d / "ddp-epoch-002.pth", "DDP-style: `module.` prefixes under `state_dict` (an OrderedDict's "
         "items in a plain dict), tied weights share a storage")


# --------------------------------------------------------------------------- #
# fixtures/formats
# --------------------------------------------------------------------------- #
FLOAT_VALUES = [[1.0, -2.5, 0.1], [1e4, -0.0, 3e-5]]
FLOAT_SPECIAL = [[1.0, -2.5, 0.1], [float("inf"), float("nan"), -0.0]]
DTYPE_VALUES = {
    "float32": FLOAT_SPECIAL, "float64": FLOAT_SPECIAL, "float16": FLOAT_VALUES, "bfloat16": FLOAT_VALUES,
    "int8": [[0, -1, 127], [-128, 42, -7]],
    "int16": [[0, -1, 32767], [-32768, 1234, -7]],
    "int32": [[0, -1, 2**31 - 1], [-(2**31), 123456, -7]],
    "int64": [[0, -1, 2**63 - 1], [-(2**63), 2**40, -7]],
    "uint8": [[0, 1, 255], [128, 42, 7]],
    "uint16": [[0, 1, 65535], [32768, 1234, 7]],
    "uint32": [[0, 1, 2**32 - 1], [2**31, 123456, 7]],
    "uint64": [[0, 1, 2**64 - 1], [2**63, 2**40, 7]],
    "bool": [[True, False, True], [False, False, True]],
    "complex32": [[1 + 2j, -0.5 - 0.25j, 3 + 0j], [0j, 100 - 0.125j, -1 + 1j]],
    "bcomplex32": [[1 + 2j, -0.5 - 0.25j, 3 + 0j], [0j, 100 - 0.125j, -1 + 1j]],
    "complex64": [[1 + 2j, -0.5 - 0.25j, 3 + 0j], [0j, 1e3 - 1e-3j, complex(float("inf"), -1)]],
    "complex128": [[1 + 2j, -0.5 - 0.25j, 3 + 0j], [0j, 1e300 - 1e-300j, complex(float("inf"), -1)]],
    "float8_e4m3fn": [[1.0, -2.5, 0.1], [448.0, 0.015625, -0.0]],
    "float8_e5m2": [[1.0, -2.5, 0.1], [57344.0, 0.015625, -0.0]],
    "float8_e4m3fnuz": [[1.0, -2.5, 0.1], [240.0, 0.015625, 0.0]],
    "float8_e5m2fnuz": [[1.0, -2.5, 0.1], [57344.0, 0.015625, 0.0]],
    "float8_e8m0fnu": [[1.0, 2.0, 0.5], [1024.0, 2.0**-10, 2.0**100]],
}
BITS_DTYPES = ["bits8", "bits16", "bits1x8", "bits2x4", "bits4x2", "float4_e2m1fn_x2"]
QUANTIZED_DTYPES = ["qint8", "quint8", "qint32", "quint4x2", "quint2x4"]


def make_dtype_tensor(name: str, values) -> torch.Tensor:
    dt = getattr(torch, name)
    if name == "uint64":  # values above 2**63 do not go through torch.tensor(); use the bit pattern
        return torch.tensor([[v - 2**64 if v >= 2**63 else v for v in row] for row in values],
                            dtype=torch.int64).view(torch.uint64)
    if name in ("complex32", "bcomplex32"):
        return torch.tensor(values, dtype=torch.complex64).to(dt)
    if name.startswith("float8") or name == "bfloat16" or name == "float16":
        return torch.tensor(values, dtype=torch.float32).to(dt)
    return torch.tensor(values, dtype=dt)


def py_values(t: torch.Tensor):
    """The elements as Python numbers (for dtypes.values.json)."""
    if t.dtype.is_complex:
        c = t.to(torch.complex128) if t.dtype != torch.complex128 else t
        return [[to_expected(complex(z)) for z in row] for row in c.tolist()]
    if t.dtype.is_floating_point:
        return [[to_expected(float(v)) for v in row] for row in t.to(torch.float64).tolist()]
    return t.tolist()


def savable(t: torch.Tensor) -> bool:
    buf = io.BytesIO()
    torch.save(t, buf)
    buf.seek(0)
    r = torch.load(buf, weights_only=False)
    return r.dtype == t.dtype and tensor_bytes(r) == tensor_bytes(t)


def normalize_legacy_keys(path: Path) -> None:
    """The legacy format names storages by their memory address (str(storage._cdata)) and writes
    them sorted by that name, so its bytes change on every run. Rename the keys to zero-padded
    counters of the same length, numbered in order of first use, and write the storages in that
    order: the layout torch writes, reproducible bytes. Parsed statically (pickletools), checked by
    loading before and after."""
    data = path.read_bytes()
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, sys_info
        list(pickletools.genops(f))
    head_end = f.tell()
    main_ops = list(pickletools.genops(f))
    main_end = f.tell()
    old_keys = [arg for op, arg, _ in pickletools.genops(f) if op.name == "BINUNICODE"]
    keys_end = f.tell()
    # storage type of each key: the value pushed just before the key string (GLOBAL or BINGET of one)
    memo, last, types, order = {}, None, {}, []
    for op, arg, _ in main_ops:
        if op.name == "GLOBAL":
            last = arg
        elif op.name == "BINUNICODE":
            if arg in old_keys and arg not in types:
                types[arg] = last
                order.append(arg)
            last = arg
        elif op.name in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = last
        elif op.name in ("BINGET", "LONG_BINGET"):
            last = memo.get(arg)
        else:
            last = None
    assert sorted(order) == sorted(old_keys), (order, old_keys)
    blocks, pos = {}, keys_end
    for key in old_keys:  # each storage: int64 element count, then the elements
        esz = getattr(torch, types[key].split()[1]).dtype.itemsize
        (numel,) = struct.unpack("<q", data[pos:pos + 8])
        blocks[key] = data[pos:pos + 8 + numel * esz]
        pos += 8 + numel * esz
    assert pos == len(data)
    rename = {k: str(i).rjust(len(k), "0") for i, k in enumerate(order)}
    assert all(len(k) == len(v) and k.isdigit() for k, v in rename.items())

    def sub(chunk: bytes, mapping: dict[str, str]) -> bytes:
        for old, new in mapping.items():
            o, n = old.encode(), new.encode()
            chunk = chunk.replace(b"X" + struct.pack("<I", len(o)) + o, b"X" + struct.pack("<I", len(n)) + n)
        return chunk

    new_order = sorted(rename.values())
    out = (data[:head_end] + sub(data[head_end:main_end], rename) +
           sub(data[main_end:keys_end], dict(zip(old_keys, new_order))) +
           b"".join(blocks[k] for k in sorted(order, key=rename.get)))
    before = expected_text(load(path))
    path.write_bytes(out)
    assert expected_text(load(path)) == before


def case_formats() -> None:
    d = FIXTURES / "formats"
    d.mkdir(parents=True)
    torch.manual_seed(SEED)

    # one state in every encoding
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = {
        "base": base, "row": base[1], "col": base[:, 2], "transposed": base.t(), "sliced": base[1:3, 2:5],
        "stepped": base[::2, ::3], "alias": base, "scalar": torch.tensor(3.5), "empty": torch.empty(0, 3),
        "expanded": torch.tensor([[1.0, 2.0, 3.0]]).expand(4, 3), "int_scalar": torch.tensor(7),
    }
    what = ("base 4x6 + row/col/transposed/sliced/stepped views of its storage (offsets, strides), the "
            "same tensor twice (memo), 0-d, empty (0,3), expanded (stride 0)")
    torch.save(views, d / "views.pt")
    note(d / "views.pt", f"zip format, pickle protocol 2 (torch's default): {what}")
    torch.save(views, d / "legacy.pt", _use_new_zipfile_serialization=False)
    normalize_legacy_keys(d / "legacy.pt")
    note(d / "legacy.pt", "pre-1.6 non-zip format (magic number, protocol, sys_info, pickle, storage keys, "
         "raw storages) of the views.pt state")
    for proto in (0, 1, 3, 4, 5):
        name = d / f"protocol{proto}.pt"
        try:
            torch.save(views, name, pickle_protocol=proto)
            load(name)  # protocol 0 saves, but its text persistent ids do not load back
            note(name, f"views.pt state with pickle protocol {proto}" +
                 {1: " (no PROTO opcode, bools as text INT `I01\\n`/`I00\\n`, every tuple as MARK ... TUPLE)",
                  3: "", 4: " (FRAME, STACK_GLOBAL, MEMOIZE, SHORT_BINUNICODE)",
                  5: " (FRAME, STACK_GLOBAL, MEMOIZE)"}.get(proto, ""))
        except Exception as e:  # protocol 0 cannot carry torch's tuple persistent ids
            name.unlink(missing_ok=True)
            SKIPPED.append(f"pickle_protocol={proto}: torch.save writes it but torch.load cannot read it "
                           f"({type(e).__name__}: {e})")
    buf = io.BytesIO()
    torch.save(views, buf)
    (d / "archive_prefix.pt").write_bytes(buf.getvalue())
    note(d / "archive_prefix.pt", "views.pt state saved to a BytesIO: entries under `archive/`, not the file stem")

    # every dtype
    dtypes, values = {}, {}
    for name, vals in DTYPE_VALUES.items():
        if not hasattr(torch, name):
            SKIPPED.append(f"dtype {name}: not in torch {torch.__version__}")
            continue
        try:
            t = make_dtype_tensor(name, vals)
            if not savable(t):
                raise ValueError("does not round-trip through torch.save/torch.load")
        except Exception as e:
            SKIPPED.append(f"dtype {name}: {type(e).__name__}: {e}")
            continue
        dtypes[name] = t
        values[name] = {"dtype": name, "shape": list(t.shape), "le_bytes_hex": tensor_bytes(t).hex(),
                        "values": py_values(t)}
    torch.save(dtypes, d / "dtypes.pt")
    note(d / "dtypes.pt", "a 2x3 tensor of every numeric dtype: " + ", ".join(dtypes) +
         " (legacy typed storages and `_rebuild_tensor_v3` + UntypedStorage + dtype for the newer ones)")
    (d / "dtypes.values.json").write_text(json.dumps(values, indent=1) + "\n")
    note(d / "dtypes.values.json", "not a checkpoint: for each tensor in dtypes.pt its raw little-endian "
         "bytes (hex) and its values as numbers (floats widened by torch to float64; complex as "
         "`{\"__complex__\": [re, im]}`; nan/inf as `{\"__float__\": ..}`), to test element decoding")

    bits = {}
    for name in BITS_DTYPES:
        if not hasattr(torch, name):
            SKIPPED.append(f"dtype {name}: not in torch {torch.__version__}")
            continue
        dt = getattr(torch, name)
        try:
            t = torch.tensor([[0x00, 0x01, 0x7F, 0x80, 0xA5, 0xFF] * dt.itemsize], dtype=torch.uint8)
            t = t.view(dt).reshape(2, 3)
            if not savable(t):
                raise ValueError("does not round-trip")
        except Exception as e:
            SKIPPED.append(f"dtype {name}: {type(e).__name__}: {e}")
            continue
        bits[name] = t
    torch.save(bits, d / "dtypes_bits.pt")
    note(d / "dtypes_bits.pt", "opaque bit / packed dtypes (no arithmetic in torch, made by viewing bytes): " +
         ", ".join(bits))
    for name in sorted(n for n in dir(torch) if isinstance(getattr(torch, n), torch.dtype)):
        dn = dtype_name(getattr(torch, name))
        if name == dn and dn not in DTYPE_VALUES and dn not in BITS_DTYPES and dn not in QUANTIZED_DTYPES:
            try:
                t = torch.zeros(2, 3, dtype=torch.uint8).view(getattr(torch, dn))
                savable(t)
                SKIPPED.append(f"dtype {dn}: savable but not included (unknown to this script)")
            except Exception as e:
                SKIPPED.append(f"dtype {dn}: cannot be saved ({type(e).__name__}: {str(e)[:60]})")

    quant = {}
    x = torch.tensor([[-1.0, 0.0, 0.5], [1.0, 2.0, -0.25]])
    for name in QUANTIZED_DTYPES:
        try:
            if name == "qint32":
                q = torch.quantize_per_tensor(x, 0.001, 0, torch.qint32)
            elif name in ("quint4x2", "quint2x4"):
                q = torch.quantize_per_tensor(x.abs().reshape(-1)[:4], 0.25, 0, getattr(torch, name))
            else:
                q = torch.quantize_per_tensor(x, 0.05, 3 if name == "quint8" else 0, getattr(torch, name))
            if not savable(q):
                raise ValueError("does not round-trip")
            quant[name] = q
        except Exception as e:
            SKIPPED.append(f"quantized {name}: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
    try:
        quant["qint8_per_channel"] = torch.quantize_per_channel(
            x, torch.tensor([0.1, 0.05], dtype=torch.float64), torch.tensor([0, 1]), 0, torch.qint8)
    except Exception as e:
        SKIPPED.append(f"quantized qint8 per channel: {type(e).__name__}: {e}")
    torch.save(quant, d / "quantized.pt")
    note(d / "quantized.pt", "quantized tensors (`torch._utils._rebuild_qtensor`, quantizer params "
         "tuple): " + ", ".join(quant) + "; expected sha256 is of `int_repr()`")

    # Python values of every kind a checkpoint carries
    shared_list = [1, 2, 3]
    shared_dict = {"k": "v", "n": [1.5]}
    dd = defaultdict(list)
    dd["a"].append(1)
    dd["b"].extend([2, 3])
    dd["empty"]  # noqa: B018  (creates an empty list)
    pv = {
        "ints": [0, 1, -1, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63), 2**63,
                 2**64, 2**100, -(2**100)],
        "floats": [0.0, -0.0, 0.1, -2.5e-300, 5e-324, 1.7976931348623157e308, float("inf"), float("-inf"),
                   float("nan")],
        "strings": ["", "ascii", "ünïcödé ✓", "日本語", "emoji 🦀", "line\nbreak\ttab \"quote\" \\ back", "x" * 300],
        "bytes": b"\x00\x01\xff\x80", "bytes_empty": b"", "bytes_long": bytes(range(256)) + b"\xab" * 44,
        "bytearray": bytearray(b"\x00abc\xff"),
        "none": None, "bools": [True, False],
        "tuples": [(), (1,), (1, "a"), (1, "a", 2.0), (1, 2, 3, 4), ((), ((),))],
        "set": {3, 1, 2, 10}, "set_str": {"b", "a", "c"}, "empty_set": set(), "frozenset": frozenset({"b", "a"}),
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "defaultdict": dd,
        "int_keys": {1: "one", -2: "minus two", 10: "ten"},
        "nested": {"a": {"b": {"c": [1, {"d": [2, (3, {"e": None})]}]}}},
        "empty": {"list": [], "dict": {}, "tuple": ()},
        "np_float64": np.float64(0.773), "np_float32": np.float32(0.5), "np_int64": np.int64(-42),
        "np_bool": np.bool_(True),
        "np_array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "np_int_array": np.array([[1, -2], [3, 4]], dtype=np.int64),
        "namespace": argparse.Namespace(lr=0.01, layers=[64, 64], name="run", nested=argparse.Namespace(x=1)),
        "dtype": torch.float16, "dtypes": [torch.bfloat16, torch.int64, torch.bool],
        "device": torch.device("cpu"), "device_cuda": torch.device("cuda", 0),
        "size": torch.Size([2, 3]), "size_empty": torch.Size([]),
        "shared_list": [shared_list, shared_list],
        "shared_dict": {"first": shared_dict, "second": shared_dict},
        "complex": complex(1.5, -2.0), "complex_special": [1j, complex(float("inf"), float("nan"))],
        "slice": slice(1, 10, 2),
        "long_string": "y" * 300,
    }
    torch.save(pv, d / "python_values.pt")
    note(d / "python_values.pt", "protocol 2 (torch default; builtins named `__builtin__`): big ints (LONG1, 2**100), inf/nan/-0.0, bytes and "
         "bytearray (via `_codecs.encode` at protocol 2), sets/frozensets (sorted by JSON text: 10 before 2), "
         "tuples of every length, OrderedDict, defaultdict(list), int keys, numpy scalars and arrays, "
         "argparse.Namespace, torch dtype/device/Size, a list and a dict referenced twice, complex, slice, "
         "unicode, 300-char strings")
    torch.save(pv, d / "python_values_protocol5.pt", pickle_protocol=5)
    note(d / "python_values_protocol5.pt", "the same values at protocol 5: SHORT_BINBYTES/BINBYTES, BYTEARRAY8, "
         "EMPTY_SET/ADDITEMS, FROZENSET, numpy's `_frombuffer`, FRAME, MEMOIZE")

    # classes that exist only in the training code
    mod = type(sys)("fixture_user_code")
    sys.modules["fixture_user_code"] = mod

    class Color(enum.Enum):
        RED = 1
        GREEN = 2

    class Phase(enum.Enum):
        TRAIN = "train"

    @dataclasses.dataclass
    class Opt:
        lr: float = 0.1
        betas: tuple = (0.9, 0.999)
        color: Color = Color.GREEN
        tags: list = dataclasses.field(default_factory=lambda: ["a", "b"])

    class Thing:
        def __init__(self):
            self.x = 1
            self.items = [1, 2]

    for cls in (Color, Phase, Opt, Thing):
        cls.__module__ = "fixture_user_code"
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    uc = {"epoch": 4, "color": Color.RED, "phase": Phase.TRAIN, "opt": Opt(), "thing": Thing(),
          "weights": {"w": torch.ones(2)}}
    torch.save(uc, d / "user_classes.pt")
    write_expected(d / "user_classes.pt")  # only this process knows these classes
    del sys.modules["fixture_user_code"]
    note(d / "user_classes.pt", "classes from a module absent at load time (`fixture_user_code`): two Enums "
         "(int and str values), a dataclass (NEWOBJ + BUILD) holding an Enum, a plain object; torch.load fails "
         "in a fresh process")

    # parameters, requires_grad, storage offsets
    storage = torch.arange(10, dtype=torch.float32)
    params = {
        "weight": nn.Parameter(torch.randn(3, 2)),
        "frozen_bias": nn.Parameter(torch.zeros(3), requires_grad=False),
        "leaf_requires_grad": torch.randn(2).requires_grad_(),
        "offset_view": storage[4:7],
        "offset_param": nn.Parameter(torch.arange(8, dtype=torch.float32)[2:6]),
    }
    torch.save(params, d / "params.pt")
    note(d / "params.pt", "`nn.Parameter` (`_rebuild_parameter`, requires_grad True and False), a plain tensor "
         "with requires_grad, a view saved alone (whole storage written, storage offset 4), a Parameter "
         "over an offset view")

    # a whole pickled nn.Module
    torch.manual_seed(SEED)
    torch.save(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), d / "pickled_module.pt")
    note(d / "pickled_module.pt", "a whole pickled `nn.Sequential` (torch.nn classes, module `__dict__` "
         "state, `_parameters` OrderedDicts); only the class is compared")


# --------------------------------------------------------------------------- #
# fixtures/bad: written byte by byte, never unpickled
# --------------------------------------------------------------------------- #
PROTO2 = b"\x80\x02"


def binunicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def short_binunicode(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def make_zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def torch_zip(pkl: bytes, stem: str = "archive", pkl_name: str = "data.pkl") -> bytes:
    return make_zip([(f"{stem}/{pkl_name}", pkl), (f"{stem}/byteorder", b"little"), (f"{stem}/version", b"3\n")])


def legacy_header() -> bytes:
    """What torch's legacy (non-zip) format starts with: magic number, protocol version, sys_info."""
    magic = 0x1950A86A20F9469CFC6C.to_bytes(10, "little", signed=True)
    magic_pkl = PROTO2 + b"\x8a\x0a" + magic + b"."
    proto_pkl = PROTO2 + b"M" + struct.pack("<H", 1001) + b"."
    sysinfo = (PROTO2 + b"}(" + binunicode("protocol_version") + b"M" + struct.pack("<H", 1001) +
               binunicode("little_endian") + b"\x88" + binunicode("type_sizes") + b"}(" +
               binunicode("short") + b"K\x02" + binunicode("int") + b"K\x04" + binunicode("long") + b"K\x04" +
               b"uu.")
    return magic_pkl + proto_pkl + sysinfo


def case_bad() -> None:
    d = FIXTURES / "bad"
    d.mkdir(parents=True)
    good = (FIXTURES / "formats" / "views.pt").read_bytes()

    def bad(name: str, data: bytes, what: str) -> None:
        (d / name).write_bytes(data)
        note(d / name, what)

    bad("empty.ckpt", b"", "zero bytes")
    bad("truncated_zip.ckpt", good[: len(good) // 2], "first half of views.pt: zip local headers, no central directory")
    bad("random_bytes.ckpt", random.Random(SEED).randbytes(4096), "4096 pseudo-random bytes")
    bad("git_lfs_pointer.ckpt",
        b"version https://git-lfs.github.com/spec/v1\n"
        b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 102400000\n",
        "a Git LFS pointer file instead of the checkpoint (should say: run `git lfs pull`)")
    bad("zip_without_data_pkl.ckpt", torch_zip(PROTO2 + b"}.", pkl_name="data.xyz"),
        "torch-like zip (byteorder, version) with no `*/data.pkl`")
    bad("bad_opcode.ckpt", torch_zip(PROTO2 + b"}q\x00\xff."), "pickle with the undefined opcode 0xff")
    bad("unterminated_pickle.ckpt", torch_zip(PROTO2 + b"}q\x00(" + binunicode("a")),
        "pickle that ends without STOP (MARK still open)")
    # a real checkpoint whose pickle names a storage the archive lacks
    src = zipfile.ZipFile(io.BytesIO(good))
    bad("missing_storage_entry.ckpt",
        make_zip([(i.filename, src.read(i)) for i in src.infolist() if not i.filename.endswith("/data/0")]),
        "views.pt re-zipped without `views/data/0` (the storage every tensor in it views)")
    bad("huge_length_prefix.ckpt", torch_zip(PROTO2 + b"X\xff\xff\xff\xff" + b"abc."),
        "BINUNICODE claiming a 4 GiB string in a 3-byte remainder (must not allocate 4 GiB)")
    bad("deep_nesting_100k.ckpt", torch_zip(PROTO2 + b"]" * 100_000 + b"a" * 99_999 + b"."),
        "100,000 nested lists (EMPTY_LIST x 100000, APPEND x 99999): stack/recursion bomb")
    bomb = PROTO2 + b"]q\x00"  # memo[0] = []
    for i in range(60):  # memo[i+1] = (memo[i], memo[i]): 2**60 leaves if expanded
        bomb += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) + b"0"
    bomb += b"h" + bytes([60]) + b"."
    bad("memo_bomb_2pow60.ckpt", torch_zip(bomb),
        "60 levels of 2-tuples each holding the level below twice (BINGET): 2**60 leaves if copied, "
        "fine if shared")

    call1 = lambda arg: b"(" + binunicode(arg) + b"tR"  # noqa: E731  MARK arg TUPLE REDUCE
    hostile = {
        "hostile_os_system.ckpt": (PROTO2 + glob("os", "system") + call1("echo pwned") + b".",
                                   "GLOBAL os.system + REDUCE"),
        "hostile_builtins_eval.ckpt": (PROTO2 + glob("builtins", "eval") + call1("print('pwned')") + b".",
                                       "GLOBAL builtins.eval + REDUCE"),
        "hostile_subprocess_popen.ckpt": (
            PROTO2 + glob("subprocess", "Popen") + b"(](" + binunicode("echo") + binunicode("pwned") + b"etR.",
            "GLOBAL subprocess.Popen + REDUCE with an argv list"),
        "hostile_posix_system_in_state_dict.ckpt": (
            PROTO2 + b"}(" + binunicode("epoch") + b"K\x01" + binunicode("state_dict") + b"}" +
            binunicode("layer.weight") + glob("posix", "system") + call1("echo pwned") + b"su.",
            "a normal-looking checkpoint dict whose `state_dict[\"layer.weight\"]` is posix.system(...)"),
        "hostile_inst_os_system.ckpt": (
            b"(Vecho pwned\nios\nsystem\n.",
            "protocol 0 INST opcode (`i`) calling os.system: no GLOBAL, no REDUCE"),
        "hostile_newobj_popen.ckpt": (
            PROTO2 + glob("subprocess", "Popen") + b"(](" + binunicode("echo") + binunicode("pwned") +
            b"et\x81.",
            "NEWOBJ (`\\x81`) of subprocess.Popen"),
    }
    # protocol 4: STACK_GLOBAL builtins.getattr(builtins.__import__("os"), "system")("echo pwned"), framed
    body = (short_binunicode("builtins") + short_binunicode("getattr") + b"\x93" +
            short_binunicode("builtins") + short_binunicode("__import__") + b"\x93" +
            short_binunicode("os") + b"\x85R" + short_binunicode("system") + b"\x86R" +
            short_binunicode("echo pwned") + b"\x85R.")
    hostile["hostile_stack_global_getattr.ckpt"] = (
        b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body,
        "protocol 4, FRAME, STACK_GLOBAL (`\\x93`) fetching builtins.getattr and builtins.__import__ to "
        "reach os.system without naming it in a GLOBAL")
    for name, (pkl, what) in hostile.items():
        bad(name, torch_zip(pkl), f"hostile: {what}")
    os_system = hostile["hostile_os_system.ckpt"][0]
    bad("hostile_os_system_raw_pickle.pt", os_system, "hostile: a bare os.system pickle, not a zip at all")
    bad("hostile_os_system_legacy.pt", legacy_header() + os_system,
        "hostile: legacy (non-zip) format: valid magic number, protocol and sys_info pickles, then an "
        "os.system pickle as the payload")

    # self-check: every pickle that is meant to be well formed parses (statically, nothing is run)
    for name, (pkl, _) in hostile.items():
        list(pickletools.genops(pkl))
    list(pickletools.genops(bomb))
    h = io.BytesIO(legacy_header() + os_system)
    for _ in range(4):
        list(pickletools.genops(h))


# --------------------------------------------------------------------------- #
# verification in a fresh process, README, summary
# --------------------------------------------------------------------------- #
def verify() -> int:
    """Run in a fresh process: every loadable file loads and maps to its expected JSON."""
    report = {"weights_only": {}, "errors": []}
    for p in checkpoint_files():
        r = rel(p)
        exp = expected_path(p)
        if not exp.exists():
            report["errors"].append(f"{r}: no expected JSON")
            continue
        if p.name == "user_classes.pt":
            try:
                load(p)
                report["errors"].append(f"{r}: loaded in a fresh process, but its module should be missing")
            except ModuleNotFoundError:
                pass
        else:
            try:
                got = expected_text(load(p))
                if got != exp.read_text():
                    report["errors"].append(f"{r}: fresh-process load differs from {rel(exp)}")
            except Exception as e:
                report["errors"].append(f"{r}: {type(e).__name__}: {e}")
        try:
            load(p, weights_only=True)
            report["weights_only"][r] = "yes"
        except Exception as e:
            msg = str(e)
            reason = next((ln.strip() for ln in msg.splitlines() if "Unsupported" in ln or "GLOBAL" in ln), "")
            report["weights_only"][r] = "no" + (f" ({reason[:90]})" if reason else "")
    print(json.dumps(report))
    return 1 if report["errors"] else 0


def check_corpus(data: Path) -> int:
    """Compare to_expected() with a corpus's expected/ (files whose classes are absent are skipped)."""
    same, differ = 0, []
    for exp in sorted((data / "expected").rglob("*.json")):
        ckpt = data / str(exp.relative_to(data / "expected"))[: -len(".json")]
        try:
            obj = load(ckpt)
        except (ModuleNotFoundError, AttributeError) as e:
            print(f"skipped {ckpt.relative_to(data)}: {e}")
            continue
        if expected_text(obj) == exp.read_text():
            same += 1
        else:
            differ.append(str(ckpt.relative_to(data)))
    print(f"{same} identical, {len(differ)} different" + "".join(f"\n  {d}" for d in differ))
    return 1 if differ else 0


def write_readme(weights_only: dict[str, str]) -> None:
    lines = [
        "# Test fixtures",
        "",
        "Generated by `scripts/make_fixtures.py` (do not edit by hand; re-run it:",
        "`/tmp/venv/bin/python scripts/make_fixtures.py` with torch, pytorch-lightning, omegaconf, numpy).",
        f"Made with torch {torch.__version__}, pytorch-lightning {pl_version()}, omegaconf {omegaconf_version()}, "
        f"numpy {np.__version__}.",
        "",
        "- `expected/<path>.json`: what `torch.load(path, weights_only=False)` returns, mapped to JSON as",
        "  described in the script's docstring (same mapping as the reference corpus, plus",
        "  `{\"__complex__\": [re, im]}`; bytearray maps like bytes). Paths under `examples/` appear as",
        "  `expected/examples/...`.",
        "- `bad/` files were written byte by byte and never unpickled: a reader must reject them",
        "  with an error (hostile ones: report the callable, never call it).",
        "- Lightning checkpoints record `/tmp/ckpt-fixtures-build/...` as their folder: stale",
        "  absolute paths, as in any checkpoint copied off a training machine.",
        "- `weights_only=True`: whether torch's own restricted unpickler accepts the file.",
        "",
        "| file | what it tests | weights_only=True |",
        "|---|---|---|",
    ]
    for path in sorted(NOTES, key=lambda p: (not p.startswith("examples"), p)):
        wo = weights_only.get(path, "n/a" if "/bad/" in path or path.endswith(".json") else "")
        lines.append(f"| `{path}` | {NOTES[path]} | {wo} |")
    if SKIPPED:
        lines += ["", "## Not possible with this torch", ""] + [f"- {s}" for s in SKIPPED]
    (FIXTURES / "README.md").write_text("\n".join(lines) + "\n")


def pl_version() -> str:
    import pytorch_lightning as pl

    return pl.__version__


def omegaconf_version() -> str:
    import omegaconf

    return omegaconf.__version__


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="only check existing files (fresh process)")
    ap.add_argument("--check-corpus", type=Path, metavar="DATA_DIR",
                    help="check this script's JSON mapping against a reference corpus's expected/ and exit")
    a = ap.parse_args()
    if a.verify:
        return verify()
    if a.check_corpus:
        return check_corpus(a.check_corpus)

    t0 = time.time()
    for p in OWNED:
        if p.exists():
            shutil.rmtree(p)
    for p in (EXAMPLES, FIXTURES):
        p.mkdir(exist_ok=True)

    for name, build in (("lightning", case_lightning), ("fsdp", case_fsdp), ("formats", case_formats),
                        ("bad", case_bad)):
        t = time.time()
        build()
        print(f"built {name} in {time.time() - t:.1f}s", flush=True)

    for p in checkpoint_files():
        if p.name != "user_classes.pt":
            write_expected(p)

    print("verifying in a fresh process ...", flush=True)
    proc = subprocess.run([sys.executable, __file__, "--verify"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONHASHSEED="0"))
    try:
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        print(proc.stdout, proc.stderr, file=sys.stderr)
        return 1
    write_readme(report["weights_only"])

    print(f"\ntorch {torch.__version__}, pytorch-lightning {pl_version()}, omegaconf {omegaconf_version()}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}")
    total = 0
    print("\nfiles:")
    for base in (EXAMPLES, FIXTURES):
        for p in sorted(base.rglob("*")):
            if p.is_file() and any(p.resolve().is_relative_to(o) for o in OWNED + [FIXTURES / "README.md"]):
                total += p.stat().st_size
                r = rel(p)
                if not r.startswith("fixtures/expected/"):
                    wo = report["weights_only"].get(r)
                    print(f"  {p.stat().st_size:>8}  {r}" + (f"   [weights_only: {wo}]" if wo else ""))
    n_exp = sum(1 for _ in EXPECTED.rglob("*.json"))
    print(f"  (+ {n_exp} expected JSON files in fixtures/expected/)")
    print(f"total {total} bytes ({total / 1024:.0f} KiB)")
    if SKIPPED:
        print("\nnot possible with this torch:")
        for s in SKIPPED:
            print(f"  - {s}")
    if report["errors"]:
        print("\nVERIFY FAILED:")
        for e in report["errors"]:
            print(f"  - {e}")
        return 1
    print(f"\nverified: {len(report['weights_only'])} checkpoints load in a fresh process and match "
          f"their expected JSON (user_classes.pt: fails to load there, as intended)")
    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
