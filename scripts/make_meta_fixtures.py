#!/usr/bin/env python3
"""Generate the metadata-sidecar fixtures (issue 3): a small, real outputs tree.

    python3 -m venv /tmp/venv-hydra
    /tmp/venv-hydra/bin/pip install torch pytorch-lightning hydra-core numpy
    /tmp/venv-hydra/bin/python scripts/make_meta_fixtures.py         # from the repo root

hydra-core 1.3.8 requires omegaconf<2.4 (it installs 2.3.1, what real Hydra users pickle into
their checkpoints), so use a venv of its own rather than downgrading the one make_fixtures.py uses
(the fixtures were made in a venv with hydra-core + omegaconf 2.3.1 whose site-packages fall back
to /tmp/venv's torch and pytorch-lightning through a .pth file).

Writes (and first deletes) only:

    fixtures/outputs/            a Hydra + Lightning outputs tree, one folder per source/precedence case
    fixtures/outputs/README.md   folder -> what it tests
    fixtures/outputs/EXPECTED.md what a correct `ckpt convert-legacy --outputs-dir fixtures/outputs`
                                 writes for every checkpoint, value by value, with the winning source
    fixtures/outputs/expected.json  the same, machine-readable
    fixtures/sidecars_bad/       sidecars for `ckpt validate`: unparsable, wrong types, future schema,
                                 valid, stale; expected.json = what validate must report

Everything is real: Lightning trains (CPU, 2-3 epochs, a ~130-parameter model, random data) and
Hydra runs are `@hydra.main` scripts executed in a subprocess with `hydra.run.dir=...`, so
`.hydra/{config,overrides,hydra}.yaml` are what Hydra writes. Training happens in a fixed folder
(/tmp/ckpt-meta-fixtures-build) so absolute paths inside the checkpoints (Lightning's dirpath,
best_model_path, Hydra's runtime.cwd) do not depend on the checkout; re-running gives the same
bytes. Expected values are computed by reading the checkpoints back with torch.load and applying
the issue's rules (see `expected_for`), then cross-checked against hand-written assertions.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

try:
    import hydra  # noqa: F401,E402
except ImportError:
    sys.exit("make_meta_fixtures.py needs hydra-core (pip install hydra-core) next to torch and "
             "pytorch-lightning")

import torch  # noqa: E402
import yaml  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
OUT = FIXTURES / "outputs"
BAD = FIXTURES / "sidecars_bad"
BUILD = Path("/tmp/ckpt-meta-fixtures-build")
APP = BUILD / "_app"
SEED = 1234
OWNED = [OUT, BAD]

NOTES: dict[str, str] = {}  # folder (relative to fixtures/outputs) -> what it tests

# --------------------------------------------------------------------------- #
# the model and LightningModule, shared by in-process and Hydra (subprocess) runs
# --------------------------------------------------------------------------- #
TINY_SRC = r'''
"""Tiny DBNet-shaped model + LightningModule for ckpt's metadata fixtures (written by
scripts/make_meta_fixtures.py; imported by it and by the Hydra app)."""
import logging
import torch
import torch.nn as nn
import torch.nn.functional as F
import pytorch_lightning as pl
from torch.utils.data import DataLoader, TensorDataset

SEED = 1234

DBNET = {
    "architecture_name": "dbnet",
    "encoder": {"model_name": "mobilenetv3_small_050", "pretrained": True, "frozen": False},
    "decoder": {"name": "pan_decoder", "in_channels": [16, 24, 48, 96], "inner_channels": 96,
                "output_channels": 128, "params": {}},
    "head": {"name": "db_head", "in_channels": 128, "params": {}},
    "loss": {"name": "db_loss", "params": {}},
}


class TinyNet(nn.Module):
    """encoder / decoder / head, 133 parameters."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.conv_stem = nn.Conv2d(3, 4, 3, 2, 1, bias=False)
        self.decoder = nn.Module()
        self.decoder.out = nn.Conv2d(4, 4, 1)
        self.head = nn.Module()
        self.head.binarize = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        f = F.relu(self.encoder.conv_stem(x))
        f = F.relu(self.decoder.out(f))
        return torch.sigmoid(self.head.binarize(f))


def cleval_for(epoch):
    """Synthetic but deterministic CLEval numbers, improving every epoch (Python floats)."""
    p, r = 0.80 + 0.03 * epoch, 0.65 + 0.025 * epoch
    return {"precision": p, "recall": r, "hmean": 2 * p * r / (p + r)}


class Detector(pl.LightningModule):
    def __init__(self, hparams=None, cleval=True):
        super().__init__()
        if hparams is not None:
            self.save_hyperparameters(hparams)  # a dict -> stored as a dict; a DictConfig -> pickled
        self.net = TinyNet()
        self.with_cleval = cleval
        self._cleval = {}

    def forward(self, x):
        return self.net(x)

    def _loss(self, batch):
        x, y = batch
        return F.binary_cross_entropy(self(x), y)

    def training_step(self, batch, _):
        loss = self._loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, _):
        self.log("val/loss", self._loss(batch))

    def on_validation_epoch_end(self):
        self._cleval = cleval_for(self.current_epoch)
        for k, v in self._cleval.items():
            self.log(f"val/{k}", v)  # logged as float32: ModelCheckpoint's current_score

    def on_save_checkpoint(self, checkpoint):
        if self.with_cleval:
            checkpoint["cleval_metrics"] = dict(self._cleval)  # float64: the exact numbers

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.01)


def fit(module, callbacks, max_epochs):
    for lg in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(lg).setLevel(logging.ERROR)
    pl.seed_everything(SEED, verbose=False)
    x = torch.randn(8, 3, 8, 8)
    y = (torch.rand(8, 1, 4, 4) > 0.5).float()
    ds = TensorDataset(x, y)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=callbacks, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         devices=1, deterministic=True)
    trainer.fit(module, DataLoader(ds, batch_size=4), DataLoader(ds, batch_size=4))
'''

# --------------------------------------------------------------------------- #
# the Hydra app: one @hydra.main, one config file per case (selected with --config-name)
# --------------------------------------------------------------------------- #
HYDRA_APP = r'''
import os
import sys

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tinymodels import DBNET, Detector, fit, seed_model  # noqa: E402

# Hydra's `${now:...}` resolver caches its results in the config's root metadata, and a DictConfig
# saved by save_hyperparameters(cfg) pickles that cache (the run's date and time). A frozen clock
# keeps the fixture bytes reproducible; the cache is still there, as in real checkpoints.
import datetime as _dt  # noqa: E402
import hydra.core.utils as _hydra_utils  # noqa: E402


class _FrozenClock(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2025, 10, 17, 22, 0, 16)


_hydra_utils.datetime = _FrozenClock

FILENAME = "epoch={epoch:02d}-step={step}-hmean={val/hmean:.4f}"


@hydra.main(version_base=None, config_path="conf")
def main(cfg: DictConfig):
    case = os.environ["FIXTURE_CASE"]
    seed_model()
    if case == "hparams_dict":
        # the LightningModule's hparams come from the model preset, not from the Hydra config;
        # the checkpoint callback is instantiated from the config (Lightning+Hydra template)
        hp = {**DBNET, "optimizer": {"name": "adamw", "lr": cfg.optimizer.lr}}
        model = Detector(hp, cleval=True)
        callbacks = [hydra.utils.instantiate(cfg.callbacks.model_checkpoint)]
    elif case == "hydra_only":
        model = Detector(None, cleval=True)  # legacy: no hyper_parameters at all
        callbacks = [pl.callbacks.ModelCheckpoint(
            dirpath="checkpoints", monitor="val/hmean", mode="max",
            save_top_k=cfg.checkpoint.save_top_k, save_last=True, filename=cfg.checkpoint.filename,
            auto_insert_metric_name=False)]
    elif case == "dictconfig":
        # values decided at run time, after Hydra wrote .hydra/config.yaml
        cfg.model.architecture = cfg.model.architecture.lower()
        cfg.model.component_overrides.decoder.in_channels = [16, 24, 48, 96]
        model = Detector(cfg, cleval=True)  # save_hyperparameters(cfg): the DictConfig is pickled
        callbacks = [pl.callbacks.ModelCheckpoint(
            dirpath="checkpoints", monitor="val/hmean", mode="max", save_top_k=2, save_last=True,
            filename=FILENAME, auto_insert_metric_name=False)]
    elif case == "mixed_sources":
        # hparams know only the architecture and the encoder (no pretrained/frozen)
        model = Detector({"architecture": "crnn", "encoder": {"model_name": "vgg_tiny"}}, cleval=False)
        callbacks = [pl.callbacks.ModelCheckpoint(
            dirpath="runs/seed_1/checkpoints", monitor="val/hmean", mode="max", save_top_k=1,
            filename=FILENAME, auto_insert_metric_name=False)]
    else:
        raise SystemExit(f"unknown case {case}")
    fit(model, callbacks, cfg.trainer.max_epochs)


if __name__ == "__main__":
    main()
'''

CONF = {
    # 1. hparams (plain dict) beat Hydra; checkpointing settings all from the template's
    #    callbacks.model_checkpoint; an unresolvable ${hydra:...} elsewhere in the file
    "hparams_dict.yaml": '''
        defaults:
          - callbacks: template
          - _self_
        exp_name: hparams_dict_exp
        paths:
          output_dir: ${hydra:runtime.output_dir}
        model:
          architecture: hydra_arch
          component_overrides:
            encoder:
              model_name: resnet18
              pretrained: false
              frozen: true
            decoder:
              name: fpn_decoder
              in_channels: [64, 128, 256, 512]
              inner_channels: 256
              output_channels: 256
              params: {}
            head:
              name: hydra_head
              in_channels: ${model.component_overrides.decoder.output_channels}
              params: {}
            loss:
              name: hydra_loss
              params: {}
        optimizer:
          name: adamw
          lr: 0.01
        trainer:
          max_epochs: 2
        ''',
    "callbacks/template.yaml": '''
        model_checkpoint:
          _target_: pytorch_lightning.callbacks.ModelCheckpoint
          dirpath: ${paths.output_dir}/checkpoints
          filename: epoch={epoch:02d}-step={step}-hmean={val/hmean:.4f}
          monitor: val/hmean
          mode: max
          save_top_k: 2
          save_last: true
          auto_insert_metric_name: false
        ''',
    # 2. legacy: architecture only in Hydra; interpolations inside the file; checkpoint.save_top_k
    "hydra_only.yaml": '''
        exp_name: ${model.architecture}_legacy
        model:
          architecture: dbnet
          component_overrides:
            encoder:
              model_name: mobilenetv3_small_050
              pretrained: true
              frozen: false
            decoder:
              name: pan_decoder
              in_channels: [16, 24, 48, 96]
              inner_channels: 96
              output_channels: 128
              params: {}
            head:
              name: db_head
              in_channels: ${model.component_overrides.decoder.output_channels}
              params: {}
            loss:
              name: db_loss
              params: {}
        optimizer:
          name: adamw
          lr: 0.01
        trainer:
          max_epochs: 3
        checkpoint:
          save_top_k: 2
          filename: epoch={epoch:02d}-step={step}-hmean={val/hmean:.4f}
        ''',
    # 3. save_hyperparameters(cfg); the run changes cfg after Hydra saved it
    "dictconfig.yaml": '''
        exp_name: dictconfig_run
        model:
          architecture: DBNet
          component_overrides:
            encoder:
              model_name: mobilenetv3_small_050
              pretrained: true
              frozen: false
            decoder:
              name: pan_decoder
              in_channels: ???
              inner_channels: 96
              output_channels: 128
              params: {}
            head:
              name: db_head
              in_channels: ${model.component_overrides.decoder.output_channels}
              params: {}
            loss:
              name: db_loss
              params: {}
        optimizer:
          name: adamw
          lr: 0.01
          scheduled_lr: ${optimizer.lr}
        trainer:
          max_epochs: 3
        ''',
    # 10. per-field fallback: hparams have architecture + encoder, Hydra the rest; checkpoints
    #     two levels below the run dir; no checkpointing settings anywhere
    "mixed_sources.yaml": '''
        exp_name: mixed_sources_run
        model:
          architecture: dbnet
          component_overrides:
            encoder:
              model_name: mobilenetv3_small_050
              pretrained: false
              frozen: true
            decoder:
              name: lstm_decoder
              hidden: 8
              params: {}
            head:
              name: ctc_head
              num_classes: 37
              params: {}
            loss:
              name: ctc_loss
              params:
                blank: 0
        optimizer:
          name: adamw
          lr: 0.01
        trainer:
          max_epochs: 2
        ''',
}


def write_app() -> None:
    if APP.exists():
        shutil.rmtree(APP)
    (APP / "conf" / "callbacks").mkdir(parents=True)
    src = TINY_SRC + textwrap.dedent('''

        def seed_model():
            pl.seed_everything(SEED, verbose=False)
        ''')
    (APP / "tinymodels.py").write_text(src)
    (APP / "hydra_train.py").write_text(HYDRA_APP)
    for name, text in CONF.items():
        (APP / "conf" / name).write_text(textwrap.dedent(text).lstrip())
    sys.path.insert(0, str(APP))


def hydra_run(case: str, overrides: list[str]) -> Path:
    """A real Hydra run (subprocess); returns its run dir under BUILD."""
    run_dir = BUILD / case
    if run_dir.exists():
        shutil.rmtree(run_dir)
    env = dict(os.environ, FIXTURE_CASE=case, PYTHONHASHSEED="0")
    cmd = [sys.executable, str(APP / "hydra_train.py"), f"--config-name={case}",
           f"hydra.run.dir={run_dir}", "hydra.job.chdir=true", *overrides]
    p = subprocess.run(cmd, env=env, cwd=BUILD, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"hydra run {case} failed:\n{p.stdout}\n{p.stderr}")
    return run_dir


def copy_run(run_dir: Path, dst: Path) -> None:
    shutil.copytree(run_dir, dst)
    for log in dst.glob("*.log"):  # Hydra's job log; keep it only if empty (no timestamps)
        if log.stat().st_size:
            log.unlink()


def train_in_process(case: str, module, callbacks_fn, max_epochs: int) -> Path:
    import tinymodels

    run = BUILD / case
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    tinymodels.seed_model()
    tinymodels.fit(module(), callbacks_fn(run / "checkpoints"), max_epochs)
    return run / "checkpoints"


def tiny_state_dict(prefix: str = "model.") -> dict:
    import tinymodels

    torch.manual_seed(SEED)
    return {prefix + k: v for k, v in tinymodels.TinyNet().state_dict().items()}


# --------------------------------------------------------------------------- #
# the cases
# --------------------------------------------------------------------------- #
def case_hparams_dict() -> None:
    run = hydra_run("hparams_dict", ["trainer.max_epochs=3"])
    copy_run(run, OUT / "hparams_dict")
    NOTES["hparams_dict/"] = (
        "Hydra run dir (config groups: `callbacks: template`) + Lightning. `hyper_parameters` is a plain "
        "dict (`architecture_name: dbnet`, encoder/decoder/head/loss) and the Hydra config disagrees on "
        "purpose (`model.architecture: hydra_arch`, other components): **hparams beat Hydra**. "
        "`exp_name` and all four checkpointing settings come from Hydra "
        "(`callbacks.model_checkpoint.*`, the Lightning+Hydra template layout; the same section holds "
        "`dirpath: ${paths.output_dir}/checkpoints` → `${hydra:runtime.output_dir}`, a resolver that "
        "cannot be resolved outside Hydra: resolve per key, do not fail the file). precision/recall only "
        "from `cleval_metrics`; cleval hmean (float64) equals the logged val/hmean (float32 "
        "`current_score`), so the value tells which source won. Override `trainer.max_epochs=3`.")


def case_hydra_only() -> None:
    run = hydra_run("hydra_only", ["model.component_overrides.encoder.frozen=true"])
    dst = OUT / "hydra_only"
    copy_run(run, dst)
    ck = dst / "checkpoints"
    best = max(ck.glob("epoch=*.ckpt"), key=lambda p: float(p.stem.split("hmean=")[1]))
    shutil.copy(best, ck / "best.ckpt")  # what the conversion tool's docs do
    NOTES["hydra_only/"] = (
        "The legacy case: **no `hyper_parameters`**; architecture and components only in "
        "`.hydra/config.yaml`, with interpolations inside the file (`exp_name: ${model.architecture}_legacy` "
        "→ `dbnet_legacy`; `head.in_channels: ${model.component_overrides.decoder.output_channels}` → 128) "
        "and a command-line override (`model.component_overrides.encoder.frozen=true`, already applied in "
        "config.yaml). `checkpoint.save_top_k: 2` (top-level `checkpoint` section); monitor from the "
        "callback state, mode parsed from the callback key, save_last inferred from `last.ckpt`. "
        "`best.ckpt` is a byte copy of the best epoch file (its callback paths name the epoch file, "
        "so no callback names `best.ckpt`: the first one is taken).")


def case_dictconfig() -> None:
    run = hydra_run("dictconfig", ["optimizer.lr=0.01"])
    copy_run(run, OUT / "dictconfig")
    NOTES["dictconfig/"] = (
        "`save_hyperparameters(cfg)` with the Hydra `DictConfig`: `hyper_parameters` is a pickled "
        "DictConfig (`hparams_type` = DictConfig) with `model.architecture` nested and "
        "`model.component_overrides.*`, interpolations `${optimizer.lr}` and "
        "`${model.component_overrides.decoder.output_channels}` unresolved inside it. The run changed "
        "cfg after Hydra saved config.yaml (`DBNet` → `dbnet`, `decoder.in_channels: ???` → a list), so "
        "hparams and Hydra differ and the value shows the source. No checkpointing settings in the config: "
        "save_top_k inferred from `best_k_models`.")


def case_mixed_sources() -> None:
    run = hydra_run("mixed_sources", [])
    copy_run(run, OUT / "mixed_sources")
    NOTES["mixed_sources/"] = (
        "Per-field fallback: hparams (plain dict) have only top-level `architecture: crnn` (not "
        "`architecture_name`) and an `encoder` without pretrained/frozen (defaults fill them, the Hydra "
        "encoder is not merged in); decoder/head/loss come from Hydra. Checkpoints two levels below the "
        "run dir (`runs/seed_1/checkpoints/`): the `.hydra` search walks up. No `cleval_metrics`: hmean is "
        "the callback's `current_score` (beats the 4-decimal file name). save_top_k=1 and no save_last: "
        "one file, save_top_k inferred 1, no `last.ckpt` beside it.")


def case_nested_model() -> None:
    from pytorch_lightning.utilities.parsing import AttributeDict

    d = OUT / "nested_model"
    d.mkdir(parents=True)
    hp = AttributeDict(model={
        "architecture": "craft",
        "encoder": {"model_name": "vgg16_bn", "pretrained": False, "frozen": True},
        "decoder": {"name": "craft_decoder", "in_channels": [8, 16], "params": {}},
        "head": {"name": "craft_head", "in_channels": 8, "params": {"num_classes": 2}},
        "loss": {"name": "craft_loss", "params": {"neg_ratio": 3}},
    })
    torch.save({"epoch": 5, "global_step": 500, "state_dict": tiny_state_dict(),
                "hyper_parameters": hp}, d / "epoch=5-step=500.ckpt")
    NOTES["nested_model/"] = (
        "Plain `torch.save` (no Lightning run): `hyper_parameters` is a pytorch_lightning `AttributeDict` "
        "with the architecture nested under `model` (`model.architecture: craft`, `model.encoder` ...). "
        "No Hydra dir, no callbacks, no metrics: checkpointing stays null, metrics null.")


def case_two_callbacks() -> None:
    import pytorch_lightning as pl
    import tinymodels

    def cbs(dirpath: Path):
        return [
            pl.callbacks.ModelCheckpoint(dirpath=str(dirpath), monitor="val/loss", mode="min",
                                         save_top_k=1, filename="loss-{epoch:02d}"),
            pl.callbacks.ModelCheckpoint(dirpath=str(dirpath), monitor="val/hmean", mode="max",
                                         save_top_k=1, filename="hmean-{epoch:02d}", save_last=True),
        ]

    src = train_in_process("two_callbacks", lambda: tinymodels.Detector(None, cleval=False), cbs, 3)
    shutil.copytree(src, OUT / "two_callbacks" / "checkpoints")
    NOTES["two_callbacks/"] = (
        "Lightning with two ModelCheckpoint callbacks (`val/loss` min top-1 `loss-{epoch:02d}`, then "
        "`val/hmean` max top-1 `hmean-{epoch:02d}` with save_last), no hparams, no Hydra, no cleval: "
        "metrics only from `current_score`. The callback whose best/last path names the file wins "
        "(for `last.ckpt` that is the *second* one), the other goes to additional_metrics — note its "
        "score there can be a previous epoch's (a callback that runs later has not updated yet).")


def case_filename_only() -> None:
    d = OUT / "filename_only"
    d.mkdir(parents=True)
    sd = tiny_state_dict()
    for name in ("best-epoch02-val_f1-0.847.ckpt", "epoch=3-step=400-v1.ckpt",
                 "epoch=02-step=6-hmean=0.7718.ckpt"):
        torch.save({"state_dict": sd}, d / name)
    NOTES["filename_only/"] = (
        "`torch.save({\"state_dict\": ...})` only: epoch, step and metrics can come only from the file "
        "name (`best-epoch02-val_f1-0.847`, `epoch=3-step=400-v1` where `-v1` is Lightning's version "
        "suffix, `epoch=02-step=6-hmean=0.7718`).")


def case_broken() -> None:
    src = OUT / "hparams_dict" / "checkpoints" / "epoch=01-step=4-hmean=0.7445.ckpt"
    d = OUT / "broken"
    d.mkdir(parents=True)
    data = src.read_bytes()
    (d / src.name).write_bytes(data[: len(data) // 2])
    NOTES["broken/"] = (
        "A real checkpoint cut to its first half (no zip central directory). convert-legacy must count "
        "it as Failed (with the reason) and go on with the batch, exit non-zero — even though its file "
        "name alone would give epoch/step/hmean: an unreadable checkpoint is a failure, not a file-name "
        "case.")


# existing sidecars ---------------------------------------------------------- #
def case_existing_sidecar() -> None:
    import pytorch_lightning as pl
    import tinymodels

    def cbs(dirpath: Path):
        return [pl.callbacks.ModelCheckpoint(
            dirpath=str(dirpath), monitor="val/hmean", mode="max", save_top_k=3,
            filename="epoch={epoch:02d}-step={step}-hmean={val/hmean:.4f}", auto_insert_metric_name=False)]

    hp = json.loads(json.dumps(tinymodels.DBNET))
    src = train_in_process("existing_sidecar", lambda: tinymodels.Detector(hp, cleval=True), cbs, 3)
    files = sorted(src.glob("*.ckpt"))
    assert len(files) == 3, files
    yd = OUT / "existing_sidecar" / "checkpoints"
    yd.mkdir(parents=True)
    shutil.copy(files[0], yd / files[0].name)  # gets a hand-written .metadata.yaml
    shutil.copy(files[1], yd / files[1].name)  # no sidecar: converted normally
    jd = OUT / "existing_sidecar_json" / "checkpoints"
    jd.mkdir(parents=True)
    shutil.copy(files[2], jd / files[2].name)  # gets a .metadata.json
    NOTES["existing_sidecar/"] = (
        "Lightning run (hparams dict, cleval, top-3). The epoch-0 checkpoint already has a hand-written "
        "`.metadata.yaml` in the 1.0 schema plus unknown keys (`custom_notes: keep me` at top level, "
        "`training.notes` nested): left byte-for-byte alone without `--force`; with `--force` rewritten "
        "from the sources with both unknown keys kept. The epoch-1 checkpoint has none: converted.")
    NOTES["existing_sidecar_json/"] = (
        "The epoch-2 checkpoint of the same run (moved: its callback paths still name "
        "`/tmp/ckpt-meta-fixtures-build/existing_sidecar/...`) with a `.metadata.json` sidecar in the same "
        "schema: an existing sidecar too (skipped without `--force`; `validate` reads it).")


def write_existing_sidecars(expected: dict) -> None:
    yd = OUT / "existing_sidecar" / "checkpoints"
    ck = sorted(yd.glob("epoch=00-*.ckpt"))[0]
    e = expected[rel(ck)]
    doc = sidecar_doc(e, created_at="2025-10-17T22:00:16.030374")
    # hand-written in the old tool's style (block YAML, blank lines between sections), with extras
    text = (f"schema_version: '1.0'\n"
            f"checkpoint_path: {doc['checkpoint_path']}\n"
            f"exp_name: {doc['exp_name']}\n"
            f"created_at: '{doc['created_at']}'\n\n"
            f"training:\n"
            f"  epoch: {doc['training']['epoch']}\n"
            f"  global_step: {doc['training']['global_step']}\n"
            f"  training_phase: training\n"
            f"  notes: resumed once from a preempted node\n\n"
            + yaml_section("model", doc["model"]) + "\n"
            + yaml_section("metrics", doc["metrics"]) + "\n"
            + yaml_section("checkpointing", doc["checkpointing"]) + "\n"
            + "custom_notes: keep me\n")
    (yd / (ck.stem + ".metadata.yaml")).write_text(text)
    back = yaml.safe_load(text)
    assert back["custom_notes"] == "keep me" and back["training"]["notes"]
    assert back["metrics"] == doc["metrics"] and back["model"] == doc["model"], (back, doc)

    jd = OUT / "existing_sidecar_json" / "checkpoints"
    ck = sorted(jd.glob("*.ckpt"))[0]
    doc = sidecar_doc(expected[rel(ck)], created_at="2025-10-17T22:05:41.512008")
    doc["reviewed_by"] = "ops-team"  # an unknown key: kept on a --force rewrite
    (jd / (ck.stem + ".metadata.json")).write_text(json.dumps(doc, indent=2) + "\n")


def yaml_section(key: str, obj) -> str:
    return yaml.safe_dump({key: obj}, sort_keys=False, default_flow_style=None, width=100)


def sidecar_doc(e: dict, created_at: str) -> dict:
    """The 1.0 sidecar a correct converter writes for expected entry `e` (with a given created_at)."""
    v = lambda k: e[k]["value"]  # noqa: E731
    metrics = {"precision": v("metrics.precision"), "recall": v("metrics.recall"), "hmean": v("metrics.hmean")}
    if v("metrics.validation_loss") is not None:
        metrics["validation_loss"] = v("metrics.validation_loss")
    metrics["additional_metrics"] = dict(e["metrics.additional_metrics"]["contains"])
    return {
        "schema_version": "1.0",
        "checkpoint_path": v("checkpoint_path"),
        "exp_name": v("exp_name"),
        "created_at": created_at,
        "training": {"epoch": v("training.epoch"), "global_step": v("training.global_step"),
                     "training_phase": v("training.training_phase")},
        "model": {k: v(f"model.{k}") for k in ("architecture", "encoder", "decoder", "head", "loss")},
        "metrics": metrics,
        "checkpointing": {k: v(f"checkpointing.{k}") for k in ("monitor", "mode", "save_top_k", "save_last")},
    }


# --------------------------------------------------------------------------- #
# expected values: the rules applied to what torch.load returns
# --------------------------------------------------------------------------- #
ENCODER_DEFAULTS = {"model_name": "unknown", "pretrained": True, "frozen": False}
PART_DEFAULT = {"name": "unknown", "params": {}}
METRIC_FIELDS = ("precision", "recall", "hmean", "validation_loss")


def rel(p: Path, base: Path = OUT) -> str:
    return p.relative_to(base).as_posix()


def plain(obj):
    """DictConfig (resolved within itself) / AttributeDict / dict -> plain Python containers."""
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True, throw_on_missing=False)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def lookup(tree, path: str):
    cur = tree
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def find_hydra(ckpt: Path):
    """The run's `.hydra/config.yaml`: the checkpoint's folder, then parents up to the outputs dir."""
    d = ckpt.parent
    while True:
        c = d / ".hydra" / "config.yaml"
        if c.is_file():
            return c
        if d == OUT or OUT not in d.parents:
            return None
        d = d.parent


def hydra_select(cfg, key: str):
    """One key of the Hydra config with `${a.b}` resolved; None if absent or unresolvable."""
    try:
        v = OmegaConf.select(cfg, key, throw_on_resolution_failure=False, throw_on_missing=False)
    except Exception:
        return None
    if isinstance(v, (DictConfig, ListConfig)):
        return OmegaConf.to_container(v, resolve=True, throw_on_missing=False)
    return v


def metric_field(name: str):
    last = name.rsplit("/", 1)[-1]
    for pre in ("val_", "valid_", "validation_"):
        if last.startswith(pre):
            last = last[len(pre):]
    if last == "loss":
        return "validation_loss"
    return last if last in METRIC_FIELDS else None


def parse_file_name(stem: str) -> dict:
    epoch = step = None
    metrics: dict[str, float] = {}
    pending = None
    for tok in stem.split("-"):
        if "=" in tok:
            k, v = tok.split("=", 1)
            pending = None
            if k == "epoch":
                epoch = int(v)
            elif k in ("step", "global_step"):
                step = int(v)
            else:
                try:
                    metrics[k] = float(v)
                except ValueError:
                    pass
        elif re.fullmatch(r"epoch\d+", tok):
            epoch, pending = int(tok[5:]), None
        elif re.fullmatch(r"step\d+", tok):
            step, pending = int(tok[4:]), None
        elif re.fullmatch(r"\d*\.\d+", tok):
            if pending:
                metrics[pending] = float(tok)
            pending = None
        else:
            pending = None if (re.fullmatch(r"v\d+", tok) or not tok) else tok
    return {"epoch": epoch, "step": step, "metrics": metrics}


def model_checkpoints(ck: dict) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in (ck.get("callbacks") or {}).items()
            if isinstance(k, str) and k.startswith("ModelCheckpoint")]


def names_file(path, name: str) -> bool:
    return bool(path) and re.split(r"[/\\]", path)[-1] == name


def score(t):
    return None if t is None else float(t)


def expected_for(ckpt: Path) -> dict:
    r = rel(ckpt)
    E: dict = {"_status": "convert", "_sidecar": rel(ckpt.with_name(ckpt.stem + ".metadata.yaml"))}
    try:
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as ex:
        return {"_status": "fail",
                "_reason": f"truncated zip (no central directory); torch.load raises {type(ex).__name__}"}

    def put(field, value, source, **extra):
        E[field] = {"value": value, "source": source, **extra}

    put("checkpoint_path", r, None)
    fn = parse_file_name(ckpt.stem)
    hp = plain(ck.get("hyper_parameters")) if ck.get("hyper_parameters") is not None else None
    hcfg_path = find_hydra(ckpt)
    hcfg = OmegaConf.load(hcfg_path) if hcfg_path else None
    hy = (lambda k: hydra_select(hcfg, k)) if hcfg is not None else (lambda k: None)
    if hcfg_path:
        E["_hydra_config"] = rel(hcfg_path)
    cleval = ck.get("cleval_metrics") or {}
    mcs = model_checkpoints(ck)
    chosen = next(((k, s) for k, s in mcs if names_file(s.get("best_model_path"), ckpt.name)
                   or names_file(s.get("last_model_path"), ckpt.name)), mcs[0] if mcs else None)
    if chosen:
        E["_callback"] = {"key": chosen[0],
                          "why": "its best_model_path/last_model_path names this file"
                          if (names_file(chosen[1].get("best_model_path"), ckpt.name)
                              or names_file(chosen[1].get("last_model_path"), ckpt.name))
                          else "first ModelCheckpoint (none names this file)"}

    # exp_name: Hydra, else the experiment folder (parent of checkpoints/, else the file's folder)
    if hy("exp_name") is not None:
        put("exp_name", hy("exp_name"), "hydra")
    else:
        exp_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        put("exp_name", exp_dir.name, "folder_name")

    # training
    for field, key, fkey in (("training.epoch", "epoch", "epoch"), ("training.global_step", "global_step", "step")):
        if isinstance(ck.get(key), int):
            put(field, ck[key], "checkpoint")
        elif fn[fkey] is not None:
            put(field, fn[fkey], "file_name")
        else:
            put(field, 0, "default", note="issue silent on the default; ckpt-meta writes 0")
    put("training.training_phase", "training", "default")

    # model: hparams (top level, model.*, model.component_overrides.*), then Hydra
    arch = None
    if hp is not None:
        for p in ("architecture_name", "architecture", "model.architecture", "model.architecture_name"):
            if isinstance(lookup(hp, p), str):
                arch = (lookup(hp, p), "hparams", p)
                break
    if arch is None and isinstance(hy("model.architecture"), str):
        arch = (hy("model.architecture"), "hydra", "model.architecture")
    if arch:
        put("model.architecture", arch[0], arch[1], key=arch[2])
    else:
        put("model.architecture", "unknown", "default")
    for part in ("encoder", "decoder", "head", "loss"):
        found = None
        if hp is not None:
            for p in (part, f"model.{part}", f"model.component_overrides.{part}"):
                if isinstance(lookup(hp, p), dict):
                    found = (lookup(hp, p), "hparams", p)
                    break
        if found is None and isinstance(hy(f"model.component_overrides.{part}"), dict):
            found = (hy(f"model.component_overrides.{part}"), "hydra", f"model.component_overrides.{part}")
        if part == "encoder":
            if found:
                val = dict(found[0])
                filled = [k for k in ("pretrained", "frozen", "model_name") if k not in val]
                for k in filled:
                    val[k] = ENCODER_DEFAULTS[k]
                extra = {"defaults_filled": filled} if filled else {}
                put("model.encoder", val, found[1], key=found[2], **extra)
            else:
                put("model.encoder", dict(ENCODER_DEFAULTS), "default",
                    note="pretrained/frozen defaults are the issue's; model_name 'unknown' is ckpt-meta's choice")
        elif found:
            put(f"model.{part}", found[0], found[1], key=found[2])
        else:
            put(f"model.{part}", dict(PART_DEFAULT), "default", note="issue silent; ckpt-meta's choice")

    # metrics: cleval, then the chosen callback's current_score, then the file name
    for f in METRIC_FIELDS:
        if f in cleval and f != "validation_loss":
            put(f"metrics.{f}", float(cleval[f]), "cleval")
        elif chosen and metric_field(chosen[1].get("monitor") or "") == f and chosen[1].get("current_score") is not None:
            put(f"metrics.{f}", score(chosen[1]["current_score"]), "callback",
                key=f"{chosen[1]['monitor']} current_score (float32)")
        elif any(metric_field(k) == f for k in fn["metrics"]):
            k = next(k for k in fn["metrics"] if metric_field(k) == f)
            put(f"metrics.{f}", fn["metrics"][k], "file_name", key=k)
        else:
            put(f"metrics.{f}", None, None, **({"absent_ok": True} if f == "validation_loss" else {}))
    contains: dict = {}
    for k, v in cleval.items():
        contains[k] = float(v)
    for k, s in mcs:
        if chosen and k != chosen[0] and s.get("current_score") is not None:
            contains.setdefault(s["monitor"], score(s["current_score"]))
    if not cleval and not mcs:
        for k, v in fn["metrics"].items():
            contains.setdefault(k, v)
    E["metrics.additional_metrics"] = {"contains": contains, "source": "mixed",
                                       "note": "must contain at least these (name → value); more allowed"}

    # checkpointing: config (callbacks.model_checkpoint.*, checkpoint.*), then the callback
    def cfg_key(k):
        for base in ("callbacks.model_checkpoint", "checkpoint"):
            v = hy(f"{base}.{k}")
            if v is not None:
                return v, f"{base}.{k}"
        return None

    def mode_from_key(key: str):
        m = re.search(r"'mode':\s*'(\w+)'", key)
        return m.group(1) if m else None

    c = cfg_key("monitor")
    if c:
        put("checkpointing.monitor", c[0], "hydra", key=c[1])
    elif chosen:
        put("checkpointing.monitor", chosen[1]["monitor"], "callback")
    else:
        put("checkpointing.monitor", None, None)
    c = cfg_key("mode")
    if c:
        put("checkpointing.mode", c[0], "hydra", key=c[1])
    elif chosen and mode_from_key(chosen[0]):
        put("checkpointing.mode", mode_from_key(chosen[0]), "callback", key="parsed from the callback's state key")
    else:
        put("checkpointing.mode", None, None)
    c = cfg_key("save_top_k")
    if c:
        put("checkpointing.save_top_k", c[0], "hydra", key=c[1])
    elif chosen and chosen[1].get("best_k_models"):
        put("checkpointing.save_top_k", len(chosen[1]["best_k_models"]), "inferred",
            key="len(best_k_models) of the chosen callback")
    else:
        put("checkpointing.save_top_k", None, None)
    c = cfg_key("save_last")
    if c:
        put("checkpointing.save_last", c[0], "hydra", key=c[1])
    elif (ckpt.parent / "last.ckpt").is_file():
        put("checkpointing.save_last", True, "inferred", key="last.ckpt beside it")
    elif chosen:
        put("checkpointing.save_last", False, "inferred",
            key="a ModelCheckpoint ran and no last.ckpt is beside it", also_accepted=[None],
            note="issue silent on the negative case (ckpt-meta currently writes null); false preferred: "
                 "Lightning with save_last=True always writes last.ckpt into its dirpath")
    else:
        put("checkpointing.save_last", None, None)
    return E


def all_checkpoints(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.ckpt") if p.is_file())


def check(expected: dict) -> None:
    """Hand-written expectations the computed values must agree with (guards the rules code)."""
    def v(path, field):
        return expected[path][field]["value"], expected[path][field]["source"]

    hd = [p for p in expected if p.startswith("hparams_dict/")]
    assert hd and all(v(p, "model.architecture") == ("dbnet", "hparams") for p in hd)
    assert all(v(p, "model.encoder")[0]["model_name"] == "mobilenetv3_small_050" for p in hd)
    assert all(v(p, "exp_name") == ("hparams_dict_exp", "hydra") for p in hd)
    assert all(v(p, "checkpointing.save_top_k") == (2, "hydra") for p in hd)
    assert all(v(p, "metrics.precision")[1] == "cleval" for p in hd)
    ho = [p for p in expected if p.startswith("hydra_only/")]
    assert "hydra_only/checkpoints/best.ckpt" in ho
    for p in ho:
        assert v(p, "model.architecture") == ("dbnet", "hydra")
        assert v(p, "exp_name") == ("dbnet_legacy", "hydra")
        assert v(p, "model.head")[0]["in_channels"] == 128
        assert v(p, "model.encoder")[0]["frozen"] is True
        assert v(p, "checkpointing.save_top_k") == (2, "hydra")
        assert v(p, "checkpointing.monitor") == ("val/hmean", "callback")
        assert v(p, "checkpointing.mode") == ("max", "callback")
        assert v(p, "checkpointing.save_last") == (True, "inferred")
    b = "hydra_only/checkpoints/best.ckpt"
    assert v(b, "training.epoch")[0] == 2 and v(b, "training.global_step")[0] == 6
    assert round(v(b, "metrics.hmean")[0], 4) == 0.7718 and v(b, "metrics.hmean")[1] == "cleval"
    dc = [p for p in expected if p.startswith("dictconfig/")]
    for p in dc:
        assert v(p, "model.architecture") == ("dbnet", "hparams")
        assert v(p, "model.decoder")[0]["in_channels"] == [16, 24, 48, 96]
        assert v(p, "model.head")[0]["in_channels"] == 128
        assert v(p, "checkpointing.save_top_k") == (2, "inferred")
    ms = [p for p in expected if p.startswith("mixed_sources/")]
    assert len(ms) == 1
    for p in ms:
        assert v(p, "model.architecture") == ("crnn", "hparams")
        assert v(p, "model.encoder")[0] == {"model_name": "vgg_tiny", "pretrained": True, "frozen": False}
        assert v(p, "model.decoder") == ({"name": "lstm_decoder", "hidden": 8, "params": {}}, "hydra")
        assert v(p, "metrics.hmean")[1] == "callback" and v(p, "checkpointing.save_top_k") == (1, "inferred")
    n = "nested_model/epoch=5-step=500.ckpt"
    assert v(n, "model.architecture") == ("craft", "hparams") and v(n, "training.epoch") == (5, "checkpoint")
    assert v(n, "checkpointing.monitor") == (None, None) and v(n, "exp_name") == ("nested_model", "folder_name")
    tc = {p.split("/")[-1]: p for p in expected if p.startswith("two_callbacks/")}
    assert set(k.split("-")[0] for k in tc) == {"loss", "hmean", "last.ckpt"}, tc
    last = tc["last.ckpt"]
    assert v(last, "checkpointing.monitor") == ("val/hmean", "callback")
    assert "val/loss" in expected[last]["metrics.additional_metrics"]["contains"]
    lossf = next(p for k, p in tc.items() if k.startswith("loss"))
    assert v(lossf, "checkpointing.mode") == ("min", "callback")
    assert v(lossf, "metrics.validation_loss")[1] == "callback" and v(lossf, "metrics.hmean") == (None, None)
    fo = "filename_only/"
    assert v(fo + "best-epoch02-val_f1-0.847.ckpt", "training.epoch") == (2, "file_name")
    assert expected[fo + "best-epoch02-val_f1-0.847.ckpt"]["metrics.additional_metrics"]["contains"] == {"val_f1": 0.847}
    assert v(fo + "epoch=3-step=400-v1.ckpt", "training.global_step") == (400, "file_name")
    assert v(fo + "epoch=02-step=6-hmean=0.7718.ckpt", "metrics.hmean") == (0.7718, "file_name")
    assert all(e["_status"] == "fail" for p, e in expected.items() if p.startswith("broken/"))


# --------------------------------------------------------------------------- #
# fixtures/sidecars_bad: what `ckpt validate` must say
# --------------------------------------------------------------------------- #
def case_sidecars_bad(expected: dict) -> dict:
    BAD.mkdir(parents=True)
    src_rel = "hparams_dict/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt"
    src = OUT / src_rel
    e = expected[src_rel]
    assert e["training.epoch"]["value"] == 1
    out: dict = {}

    def valid_doc(name: str) -> dict:
        d = sidecar_doc(e, created_at="2025-10-17T22:00:16.030374")
        d["checkpoint_path"] = f"{name}.ckpt"
        d["exp_name"] = "sidecars_bad"
        return d

    def dump(d: dict) -> str:
        return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=100)

    for name in ("broken_yaml", "wrong_types", "future_schema", "valid", "stale"):
        shutil.copy(src, BAD / f"{name}.ckpt")

    # (a) does not parse: an unclosed flow sequence opened on line 3
    text = ("schema_version: '1.0'\ncheckpoint_path: broken_yaml.ckpt\ntraining: [epoch, unclosed\n"
            "exp_name: sidecars_bad\nmodel:\n  architecture: dbnet\n")
    (BAD / "broken_yaml.metadata.yaml").write_text(text)
    try:
        yaml.safe_load(text)
        raise AssertionError("broken_yaml parsed")
    except yaml.MarkedYAMLError as ex:
        ctx = ex.context_mark
        prob = ex.problem_mark
        out["broken_yaml.ckpt"] = {
            "status": "invalid", "sidecar": "broken_yaml.metadata.yaml",
            "problems": [{"kind": "parse", "opened_at": {"line": 3, "column": 11},
                          "pyyaml": {"context": ex.context, "context_line": ctx.line + 1 if ctx else None,
                                     "context_column": ctx.column + 1 if ctx else None,
                                     "problem": ex.problem, "line": prob.line + 1, "column": prob.column + 1}}],
            "note": "1-based positions. The bracket opens on line 3 column 11; PyYAML reports the failure "
                    "where it notices it (problem line/column). Accept either position, but report one.",
        }

    # (b) wrong types: otherwise a complete, valid sidecar
    d = valid_doc("wrong_types")
    d["exp_name"] = 12
    d["training"]["epoch"] = "minus one"
    d["training"]["global_step"] = -5
    d["metrics"]["hmean"] = 1.7
    d["checkpointing"]["mode"] = "sideways"
    (BAD / "wrong_types.metadata.yaml").write_text(dump(d))
    out["wrong_types.ckpt"] = {
        "status": "invalid", "sidecar": "wrong_types.metadata.yaml",
        "problems": [{"path": "exp_name", "why": "an integer, not a string"},
                     {"path": "training.epoch", "why": "a string, not an integer"},
                     {"path": "training.global_step", "why": "negative"},
                     {"path": "metrics.hmean", "why": "outside [0, 1]"},
                     {"path": "checkpointing.mode", "why": "not one of max, min"}],
        "note": "exactly these five field paths; nothing else is wrong in the file",
    }

    # (c) a newer major schema version: a clear error, not a best-effort read
    d = valid_doc("future_schema")
    d["schema_version"] = "9.0"
    (BAD / "future_schema.metadata.yaml").write_text(dump(d))
    out["future_schema.ckpt"] = {"status": "invalid", "sidecar": "future_schema.metadata.yaml",
                                 "problems": [{"path": "schema_version",
                                               "why": "major version 9 is newer than the supported 1"}]}

    # (d) valid and describing its checkpoint (epoch 1, step 4)
    (BAD / "valid.metadata.yaml").write_text(dump(valid_doc("valid")))
    out["valid.ckpt"] = {"status": "valid", "sidecar": "valid.metadata.yaml"}

    # (e) stale: valid, but describes epoch 7 / step 70 while the checkpoint holds epoch 1 / step 4
    d = valid_doc("stale")
    d["training"]["epoch"] = 7
    d["training"]["global_step"] = 70
    (BAD / "stale.metadata.yaml").write_text(dump(d))
    out["stale.ckpt"] = {
        "status": "stale", "sidecar": "stale.metadata.yaml",
        "why": "sidecar says epoch 7 / global_step 70, the checkpoint holds epoch 1 / global_step 4",
        "note": "no fingerprint section (old-tool sidecar): staleness must come from comparing "
                "training.epoch/global_step with the checkpoint, not from mtimes (git checkout resets them)",
    }
    for name in ("valid", "stale"):  # both must be schema-valid
        back = yaml.safe_load((BAD / f"{name}.metadata.yaml").read_text())
        assert back["schema_version"] == "1.0" and isinstance(back["training"]["epoch"], int)
    (BAD / "expected.json").write_text(json.dumps(
        {"_exit_code": "non-zero (not everything is valid)", **out}, indent=1) + "\n")
    return out


# --------------------------------------------------------------------------- #
# README, EXPECTED.md, expected.json
# --------------------------------------------------------------------------- #
def versions() -> str:
    import hydra as _h
    import omegaconf
    import pytorch_lightning as pl

    return (f"torch {torch.__version__}, pytorch-lightning {pl.__version__}, hydra-core {_h.__version__}, "
            f"omegaconf {omegaconf.__version__}, python {sys.version.split()[0]}")


def fmt(v) -> str:
    if isinstance(v, (dict, list)):
        return "`" + json.dumps(v) + "`"
    if isinstance(v, str):
        return f"`{v}`"
    return f"`{json.dumps(v)}`"


FIELD_ORDER = ["checkpoint_path", "exp_name", "training.epoch", "training.global_step",
               "training.training_phase", "model.architecture", "model.encoder", "model.decoder",
               "model.head", "model.loss", "metrics.precision", "metrics.recall", "metrics.hmean",
               "metrics.validation_loss", "metrics.additional_metrics", "checkpointing.monitor",
               "checkpointing.mode", "checkpointing.save_top_k", "checkpointing.save_last"]

RULES_MD = """\
## How the values were decided

Computed by `scripts/make_meta_fixtures.py` (`expected_for`): `torch.load` of each checkpoint,
the run's `.hydra/config.yaml` (searched from the checkpoint's folder up to `fixtures/outputs`,
`${a.b}` resolved per key), the file name, and the rules of issue 3 — first source that has a value
wins. Source names are the ones `ckpt-meta` records in `provenance`: `checkpoint`, `hparams`,
`hydra`, `cleval`, `callback`, `file_name`, `folder_name`, `inferred`, `default`. Source `null`:
no source has the value and it is written as `null` (no provenance entry), or it is not a sourced
value (`checkpoint_path`: where the file is, relative to `fixtures/outputs`). `absent_ok`: the key
may also be left out (`metrics.validation_loss` "may appear"). `also_accepted`: other values an
implementation may defensibly write where the issue is silent (the listed value is preferred).

- **training.epoch / global_step**: checkpoint → file name → default `0`.
- **model.architecture**: hparams (`architecture_name`, `architecture`, `model.architecture`, in that
  order; plain dict, `AttributeDict` or pickled `DictConfig` resolved within itself) → Hydra
  `model.architecture` → `unknown`.
- **model.encoder/decoder/head/loss**: taken *whole* from the first source that has the part
  (hparams top level, `model.<part>`, `model.component_overrides.<part>`; then Hydra
  `model.component_overrides.<part>`); parts are not merged across sources. An encoder that lacks
  `pretrained`/`frozen` gets the safe defaults (`true`/`false`) — see `mixed_sources`.
- **exp_name**: Hydra `exp_name` (interpolations resolved) → the experiment folder's name
  (`folder_name`: parent of `checkpoints/`, else the checkpoint's folder).
- **metrics.precision/recall/hmean**: `cleval_metrics` (float64) → the chosen callback's
  `current_score` when its monitor is that metric (float32 tensor, written as `float(t)`) → file name.
  `validation_loss`: the chosen callback's `current_score` when it monitors `val/loss`.
  Never `best_model_score`.
- **metrics.additional_metrics**: must *contain* the listed entries (every `cleval_metrics` entry; the
  `current_score` of every ModelCheckpoint that was not chosen, keyed by its monitor; file-name
  metrics when nothing else has metrics). Other entries (e.g. the chosen callback's own
  `val/hmean`) are allowed.
- **chosen callback**: the ModelCheckpoint whose `best_model_path` or `last_model_path` ends with
  this file's name (paths are stale absolute paths under `/tmp/ckpt-meta-fixtures-build`: compare
  the file name), else the first one.
- **checkpointing.monitor / mode**: Hydra (`callbacks.model_checkpoint.*`, then `checkpoint.*`) →
  the chosen callback (`monitor`; `mode` parsed from its state key
  `ModelCheckpoint{'monitor': ..., 'mode': 'max', ...}`) → `null`.
- **checkpointing.save_top_k**: Hydra → `len(best_k_models)` of the chosen callback (`inferred`;
  Lightning does not store it — the inferred value is what the dict held when *this* file was
  written) → `null`.
- **checkpointing.save_last**: Hydra → `true` if a `last.ckpt` is beside the checkpoint (`inferred`)
  → `false` (`inferred`) when a ModelCheckpoint ran and no `last.ckpt` is beside it → `null`.
- **created_at** is the checkpoint's mtime: not listed (git checkouts reset mtimes).
- **Failed**: a checkpoint `torch.load` cannot read (`broken/`) gets no sidecar even though its file
  name would give values.
- **Skipped (existing)**: `_status: skip_existing` — a `.metadata.yaml` or `.metadata.json` is
  already there; without `--force` it stays byte-for-byte. The field values listed are what
  `--force` writes; `_preserved` are unknown keys of the old sidecar that must survive the rewrite.
"""


def write_expected_files(expected: dict, bad: dict) -> None:
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    n_conv = sum(e["_status"] == "convert" for e in expected.values())
    n_skip = sum(e["_status"] == "skip_existing" for e in expected.values())
    n_fail = sum(e["_status"] == "fail" for e in expected.values())
    L = [
        "# What `ckpt convert-legacy` must write for every checkpoint here",
        "",
        "Generated by `scripts/make_meta_fixtures.py` (do not edit; re-run it). Machine-readable: "
        "`expected.json` (`{\"<path>\": {\"<field>\": {\"value\", \"source\", ...}, \"_status\": ...}}`).",
        f"Made with {versions()}.",
        "",
        "Run it on a **copy** of this folder (it writes sidecars beside the checkpoints):",
        "`ckpt convert-legacy --outputs-dir <copy>` → "
        f"Total checkpoints found: {len(expected)}, Converted: {n_conv}, Skipped (existing): {n_skip}, "
        f"Failed: {n_fail}; exit code non-zero (one failure). A second run: Converted 0, Skipped "
        f"{n_conv + n_skip}, Failed {n_fail}. `--dry-run` writes nothing. `--force`: Converted "
        f"{n_conv + n_skip}, Failed {n_fail}.",
        "",
        RULES_MD,
        "## Per checkpoint",
        "",
    ]
    for path, e in expected.items():
        L.append(f"### `{path}`")
        L.append("")
        if e["_status"] == "fail":
            L += [f"**Failed** — {e['_reason']}", ""]
            continue
        extra = []
        if e["_status"] == "skip_existing":
            keep = ", ".join("`%s: %s`" % kv for kv in e["_preserved"].items()) or "nothing extra"
            extra.append(f"**Skipped (existing sidecar `{e['_existing']}`)**; with `--force` it becomes the "
                         f"values below, keeping {keep}.")
            if "_status_note" in e:
                extra.append(e["_status_note"][0].upper() + e["_status_note"][1:] + ".")
        else:
            extra.append(f"Sidecar: `{e['_sidecar']}`.")
        if "_hydra_config" in e:
            extra.append(f"Hydra config: `{e['_hydra_config']}`.")
        if "_callback" in e:
            extra.append(f"Chosen callback: `{e['_callback']['key']}` ({e['_callback']['why']}).")
        else:
            extra.append("No ModelCheckpoint state.")
        L += [" ".join(extra), "", "| field | value | source | detail |", "|---|---|---|---|"]
        for f in FIELD_ORDER:
            x = e[f]
            if f == "metrics.additional_metrics":
                L.append(f"| {f} | contains {fmt(x['contains'])} | (each entry's own) | {x['note']} |")
                continue
            parts = [str(x["key"])] if "key" in x else []
            if "defaults_filled" in x:
                parts.append(f"defaults filled: {x['defaults_filled']}")
            if x.get("absent_ok"):
                parts.append("may be absent")
            if "also_accepted" in x:
                parts.append("also accepted: " + ", ".join(fmt(a) for a in x["also_accepted"]))
            if "note" in x:
                parts.append(x["note"])
            detail = "; ".join(parts)
            L.append(f"| {f} | {fmt(x['value'])} | {x['source'] or '—'} | {detail} |")
        L.append("")
    L += ["## `ckpt validate`", "",
          "On `fixtures/outputs` before any conversion: every checkpoint is *missing* except the two with "
          "sidecars (`existing_sidecar/...epoch=00...` YAML, `existing_sidecar_json/...` JSON), which are "
          "*valid* (unknown keys are not errors) and not stale; `broken/` cannot be read (reported, "
          "non-zero exit). After `convert-legacy`, everything readable is valid.", "",
          "On `fixtures/sidecars_bad` (`fixtures/sidecars_bad/expected.json`), exit non-zero:", "",
          "| checkpoint | status | problems |", "|---|---|---|"]
    for name, b in bad.items():
        probs = "; ".join(
            (f"`{p['path']}`: {p['why']}" if "path" in p else
             f"YAML does not parse: bracket opened at line {p['opened_at']['line']} col "
             f"{p['opened_at']['column']}; PyYAML: \"{p['pyyaml']['problem']}\" at line {p['pyyaml']['line']} "
             f"col {p['pyyaml']['column']}")
            for p in b.get("problems", [])) or b.get("why", "")
        L.append(f"| `{name}` | {b['status']} | {probs} |")
    (OUT / "EXPECTED.md").write_text("\n".join(L) + "\n")


def write_readme() -> None:
    L = ["# Metadata-sidecar fixtures (issue 3)", "",
         "Generated by `scripts/make_meta_fixtures.py` (do not edit by hand; re-run it with torch, "
         "pytorch-lightning, hydra-core). " f"Made with {versions()}.", "",
         "A real outputs tree: Lightning training on CPU (133-parameter model, 2–3 epochs) and real "
         "`@hydra.main` runs (`.hydra/config.yaml`, `overrides.yaml`, `hydra.yaml` are Hydra's own). "
         "Absolute paths inside (Lightning's `dirpath`/`best_model_path`, Hydra's `runtime.cwd`) name "
         "`/tmp/ckpt-meta-fixtures-build/...`: stale, as on any machine the outputs were copied to.", "",
         "- `EXPECTED.md` / `expected.json`: every checkpoint's expected sidecar values and the source "
         "each must come from.",
         "- `convert-legacy` writes beside the checkpoints: tests must run it on a copy.",
         "- `../sidecars_bad/` (+ its `expected.json`): sidecars for `ckpt validate` — YAML that does "
         "not parse (line 3), wrong types (five field paths), `schema_version: '9.0'`, a valid one, and "
         "a stale one (describes epoch 7 / step 70, the checkpoint beside it is epoch 1 / step 4; it has "
         "no fingerprint section, so staleness must come from epoch/global_step — the Rust side defines "
         "fingerprints for sidecars it writes). All five checkpoints are byte copies of "
         "`hparams_dict/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt`.", "",
         "| folder | what it tests |", "|---|---|"]
    for folder, text in NOTES.items():
        L.append(f"| `{folder}` | {text} |")
    (OUT / "README.md").write_text("\n".join(L) + "\n")


# --------------------------------------------------------------------------- #
def main() -> int:
    t0 = time.time()
    for p in OWNED:
        if p.exists():
            shutil.rmtree(p)
    OUT.mkdir(parents=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    write_app()

    for name, build in (("hparams_dict", case_hparams_dict), ("hydra_only", case_hydra_only),
                        ("dictconfig", case_dictconfig), ("nested_model", case_nested_model),
                        ("two_callbacks", case_two_callbacks), ("filename_only", case_filename_only),
                        ("existing_sidecar", case_existing_sidecar), ("broken", case_broken),
                        ("mixed_sources", case_mixed_sources)):
        t = time.time()
        build()
        print(f"built {name} in {time.time() - t:.1f}s", flush=True)

    expected = {rel(p): expected_for(p) for p in all_checkpoints(OUT)}
    write_existing_sidecars(expected)
    for p, e in expected.items():
        ck = OUT / p
        for suffix in (".metadata.yaml", ".metadata.json"):
            side = ck.with_name(ck.stem + suffix)
            if side.is_file():
                old = (yaml.safe_load if suffix.endswith("yaml") else json.loads)(side.read_text())
                known = set(sidecar_doc(e, "x"))
                pres = {k: v for k, v in old.items() if k not in known}
                pres.update({f"training.{k}": v for k, v in old["training"].items()
                             if k not in ("epoch", "global_step", "training_phase")})
                e["_status"], e["_existing"], e["_preserved"] = "skip_existing", rel(side), pres
                if suffix == ".metadata.json":
                    e["_status_note"] = (
                        "the existing sidecar is JSON: it counts as existing (same schema, read like the "
                        "YAML), so no .metadata.yaml is written beside it without --force; with --force "
                        "the preferred behaviour is to rewrite that JSON file in place (one sidecar per "
                        "checkpoint), keeping its unknown keys")
    check(expected)
    bad = case_sidecars_bad(expected)
    write_expected_files(expected, bad)
    write_readme()

    print(f"\n{versions()}")
    total = 0
    print("\nfiles:")
    for base in OWNED:
        for p in sorted(base.rglob("*")):
            if p.is_file():
                total += p.stat().st_size
                print(f"  {p.stat().st_size:>8}  {p.relative_to(ROOT)}")
    print(f"total {total} bytes ({total / 1024:.0f} KiB), {len(expected)} checkpoints in fixtures/outputs")
    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
