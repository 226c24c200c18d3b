"""Fixtures of crates/ckpt-curves/tests: the logs real trainings write, and what reference
readers make of them (``expected.json`` beside each).

Run with the dev venv's Python (torch, lightning) and the ``tensorboard`` package on the path
(it is not in the dev venv; a separate venv holding only ``tensorboard``, ``protobuf`` and
``absl-py`` is put on ``PYTHONPATH``)::

    python3 -m venv /tmp/venv-curves
    /tmp/venv-curves/bin/pip install --no-deps tensorboard==2.21.0 protobuf==7.36.2 absl-py
    PYTHONPATH=/tmp/venv-curves/lib/python3.11/site-packages \\
        /tmp/venv-cb/bin/python scripts/make_curves_fixtures.py

What is made (under crates/ckpt-curves/tests/fixtures/):

- ``lightning/version_0/``: a real Lightning 2.6 run logged by CSVLogger *and*
  TensorBoardLogger into the same version folder, trained 2 epochs, then resumed from its
  last checkpoint to 3 (the CSV gets rows appended, TensorBoard a second event file).
  ``val_weird`` is NaN in epoch 1. Expected series come from Python's ``csv`` module and from
  TensorBoard's own ``EventAccumulator``.
- ``tb_tensor/``: torch's ``SummaryWriter.add_scalar(new_style=True)`` (scalars as tensors,
  float and double precision), a histogram and a text summary (not scalars), and
  ``add_scalars`` (one subfolder per curve: ``acc_train/``, ``acc_val/``).
- ``mlflow/metrics/``: MLflow's file-store layout (``timestamp value step`` lines; a key with a
  slash is a subfolder), written here as MLflow's FileStore writes it (mlflow is not
  installed).
- ``wandb/offline-run-20261122_064815-abcd1234/run-abcd1234.wandb``: W&B's LevelDB-log of
  ``wandb_internal.Record`` protobufs as wandb 0.31 writes for Lightning's WandbLogger
  (``define_metric("*", step_metric="trainer/global_step")``, history rows with
  ``nested_key`` items and ``value_json``), encoded here by a small protobuf writer (wandb is
  not installed); a record spans two blocks (FIRST/LAST fragments).
- ``reports/``: ``training_summary.json`` and ``minimal_logging.json`` as
  ``ckpt.CheckpointManager`` writes them, with a per-epoch history.
"""

import csv
import json
import math
import os
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "ckpt-curves" / "tests" / "fixtures"


def series_sorted(d):
    """{metric: {step: value}} -> {metric: [[step, "value"], ...]} sorted by step, NaN/inf out.
    Values are written as Python's repr (the shortest text that reads back exactly), as
    strings: a JSON parser that rounds (serde_json without float_roundtrip) cannot blur them."""
    out = {}
    for m, pts in d.items():
        kept = [[s, repr(float(v))] for s, v in sorted(pts.items()) if math.isfinite(v)]
        if kept:
            out[m] = kept
    return out


def lightning():
    import torch
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.l = torch.nn.Linear(4, 1)

        def training_step(self, b, i):
            x, y = b
            loss = torch.nn.functional.mse_loss(self.l(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, b, i):
            x, y = b
            self.log("val_loss", torch.nn.functional.mse_loss(self.l(x), y))
            self.log("val_acc", 0.5 + 0.1 * self.current_epoch)
            self.log("val_weird", float("nan") if self.current_epoch == 1 else 1.0 * self.current_epoch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(40, 4), torch.randn(40, 1))
    dl = lambda: torch.utils.data.DataLoader(ds, batch_size=8)
    base = OUT / "lightning"
    shutil.rmtree(base, ignore_errors=True)
    ckpts = base / "version_0" / "checkpoints"

    def fit(epochs, resume):
        loggers = [CSVLogger(str(OUT), name="lightning", version=0),
                   TensorBoardLogger(str(OUT), name="lightning", version=0, default_hp_metric=False)]
        cb = pl.callbacks.ModelCheckpoint(dirpath=str(ckpts), save_last=True, monitor="val_loss", mode="min")
        t = pl.Trainer(max_epochs=epochs, logger=loggers, callbacks=[cb], log_every_n_steps=2,
                       enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        t.fit(M(), dl(), dl(), ckpt_path=resume)

    fit(2, None)
    time.sleep(1.1)  # the second event file's name (its time) sorts after the first
    fit(3, str(ckpts / "last.ckpt"))
    # The checkpoints are not needed by the reader tests: keep the fixture small.
    shutil.rmtree(ckpts)
    for p in (base / "version_0").iterdir():
        if p.name == "hparams.yaml":
            p.unlink()

    d = {}
    with open(base / "version_0" / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            for k, v in row.items():
                if k == "step" or v == "":
                    continue
                d.setdefault(k, {})[step] = float(v)
    expected_csv = series_sorted(d)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    d = {}
    for ev in sorted((base / "version_0").glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                d.setdefault(tag, {})[e.step] = e.value
    expected_tb = series_sorted(d)
    (base / "expected.json").write_text(json.dumps({"csv": expected_csv, "tensorboard": expected_tb}) + "\n")


def tb_tensor():
    import torch
    from torch.utils.tensorboard import SummaryWriter
    d = OUT / "tb_tensor"
    shutil.rmtree(d, ignore_errors=True)
    w = SummaryWriter(str(d))
    for step in range(5):
        w.add_scalar("loss/new_style", 1.0 / (step + 1), step, new_style=True)
        w.add_scalar("loss/double", 1.0 / 3.0 + step, step, new_style=True, double_precision=True)
        w.add_scalar("lr", 0.1 * 0.5 ** step, step)
        w.add_histogram("weights", torch.arange(10.0) * step, step)
        w.add_text("note", f"step {step}", step)
        # Each curve to its own subfolder (acc_train/, acc_val/), tag "acc".
        w.add_scalars("acc", {"train": 0.5 + 0.1 * step, "val": 0.4 + 0.1 * step}, step)
    w.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util
    acc = EventAccumulator(str(d), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        out[tag] = [[e.step, repr(e.value)] for e in acc.Scalars(tag)]
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        out[tag] = [[e.step, repr(float(tensor_util.make_ndarray(e.tensor_proto)))] for e in acc.Tensors(tag)]
    for sub in sorted(p for p in d.iterdir() if p.is_dir()):
        acc = EventAccumulator(str(sub), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[f"{sub.name}/{tag}"] = [[e.step, repr(e.value)] for e in acc.Scalars(tag)]
    (d / "expected.json").write_text(json.dumps(out, sort_keys=True) + "\n")


def mlflow():
    d = OUT / "mlflow" / "metrics"
    shutil.rmtree(OUT / "mlflow", ignore_errors=True)
    (d / "val").mkdir(parents=True)
    t0 = 1795330097000
    # MLflow's FileStore appends "%s %s %s\n" % (timestamp, value, step); Python's str() of
    # a float: nan, inf.
    (d / "val" / "loss").write_text("".join(f"{t0 + i} {v} {s}\n" for i, (v, s) in enumerate([(1.2, 2), (1.1, 5), (float("nan"), 8), (0.9, 11)])))
    (d / "val" / "acc").write_text("".join(f"{t0 + i} {v} {s}\n" for i, (v, s) in enumerate([(0.5, 2), (0.6, 5), (0.7, 8), (0.75, 11)])))
    (d / "epoch").write_text("".join(f"{t0 + i} {float(e)} {s}\n" for i, (e, s) in enumerate([(0, 2), (1, 5), (2, 8), (3, 11)])))
    # An old store's line without a step.
    (d / "old_style").write_text(f"{t0} 3.5\n{t0 + 1} 4.5\n")


# --- a minimal protobuf writer (for the W&B log only) ---------------------------------

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, n):
    return varint(num << 3) + varint(n)


def s(x):
    return x.encode("utf-8")


def history(items, step):
    # HistoryRecord: item=1 (HistoryItem: nested_key=2, value_json=16), step=2 (num=1)
    body = b"".join(field_bytes(1, field_bytes(2, s(k)) + field_bytes(16, s(v))) for k, v in items)
    body += field_bytes(2, field_varint(1, step) if step else b"")
    return body


def record(num, kind_field, body):
    return field_varint(1, num) + field_bytes(kind_field, body)


def wandb():
    run = OUT / "wandb" / "offline-run-20261122_064815-abcd1234"
    shutil.rmtree(OUT / "wandb", ignore_errors=True)
    (run / "files").mkdir(parents=True)
    recs = []
    n = 1
    # RunRecord (17) with run_id: not read, skipped as unknown.
    recs.append(record(n, 17, field_bytes(1, s("abcd1234")))); n += 1
    # MetricRecord (12): name trainer/global_step; glob "*" -> step_metric trainer/global_step
    recs.append(record(n, 12, field_bytes(1, s("trainer/global_step")) + field_bytes(6, field_varint(3, 1)))); n += 1
    recs.append(record(n, 12, field_bytes(2, s("*")) + field_bytes(4, s("trainer/global_step")) + field_bytes(6, field_varint(3, 1)))); n += 1
    # ConfigRecord (5): skipped.
    recs.append(record(n, 5, field_bytes(1, field_bytes(1, s("lr")) + field_bytes(16, s("0.05"))))); n += 1
    expected = {}
    rows = [
        # (_step, global_step, {metric: value_json})
        (0, 4, {"train/loss": "1.5", "epoch": "0"}),
        (1, 4, {"val/loss": "1.2080845832824707", "val/acc": "0.5", "epoch": "0"}),
        (2, 9, {"train/loss": "1.25", "epoch": "1"}),
        (3, 9, {"val/loss": "NaN", "val/acc": "0.6000000238418579", "epoch": "1"}),
        (4, 14, {"train/loss": "1.0", "epoch": "2", "media": '{"_type": "image-file", "path": "x.png"}'}),
        (5, 14, {"val/loss": "1.1004608869552612", "val/acc": "0.699999988079071", "epoch": "2"}),
    ]
    for st, gs, vals in rows:
        items = list(vals.items()) + [("trainer/global_step", str(gs)), ("_step", str(st)),
                                       ("_runtime", "0.8"), ("_timestamp", "1.7953300960607622e+09")]
        # SummaryRecord (3) first, as wandb writes: not read.
        recs.append(record(n, 3, field_bytes(1, field_bytes(2, s("_runtime")) + field_bytes(16, s("0.8"))))); n += 1
        recs.append(record(n, 2, history(items, st))); n += 1
        for k, v in vals.items():
            try:
                x = float(json.loads(v)) if v not in ("NaN",) else float("nan")
            except (TypeError, ValueError):
                continue
            # One point per step, the later row's value winning.
            expected.setdefault(k, {})[gs] = x
    # One big history row spanning two 32 KiB blocks (FIRST + LAST fragments), at step 20.
    big = [("filler/%04d" % i, "%d.5" % i) for i in range(1800)] + [("trainer/global_step", "20"), ("_step", "6")]
    recs.append(record(n, 2, history(big, 6))); n += 1
    # (filler/NNNN = NNNN.5 at step 20: checked by rule in the tests, not listed here)
    # ExitRecord (18)
    recs.append(record(n, 18, b"")); n += 1

    BLOCK, HDR = 32768, 7
    out = bytearray(struct.pack("<4sHB", b":W&B", 0xBEE1, 0))
    for data in recs:
        left_in_block = BLOCK - len(out) % BLOCK
        if left_in_block < HDR:
            out += b"\0" * left_in_block
            left_in_block = BLOCK
        if len(data) + HDR <= left_in_block:
            frags = [(1, data)]
        else:
            frags = []
            room = left_in_block - HDR
            frags.append((2, data[:room]))
            rest = data[room:]
            while len(rest) > BLOCK - HDR:
                frags.append((3, rest[:BLOCK - HDR]))
                rest = rest[BLOCK - HDR:]
            frags.append((4, rest))
        for kind, part in frags:
            left_in_block = BLOCK - len(out) % BLOCK
            if left_in_block < HDR:
                out += b"\0" * left_in_block
            crc = zlib.crc32(part, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF
            out += struct.pack("<IHB", crc, len(part), kind) + part
    (run / "run-abcd1234.wandb").write_bytes(bytes(out))
    (run / "files" / "wandb-summary.json").write_text(json.dumps({"val/acc": 0.7, "_step": 5, "_runtime": 1.0}) + "\n")
    (OUT / "wandb" / "expected.json").write_text(json.dumps(series_sorted(expected), sort_keys=True) + "\n")


def reports():
    d = OUT / "reports"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "training_summary.json").write_text(json.dumps({
        "start_time": "2025-02-12T15:10:33", "end_time": "2025-02-12T23:59:59",
        "model_name": "resnet18", "loss_function": "focal", "root_name": "flares/multiclass",
        "best_epoch": 2, "best_val_f1": 0.612, "num_epochs_trained": 4,
        "early_stopping_triggered": True,
        "test_results": {"test_loss": 0.234, "test_f1": 0.616},
        "history": {"train_loss": [0.9, 0.7, 0.6, 0.55], "val_f1": [0.4, 0.5, 0.612, 0.6]},
    }, indent=2) + "\n")
    (d / "minimal_logging.json").write_text(json.dumps({
        "timestamp": "2025-02-12T23:59:59", "best_epoch": 2, "best_val_f1": 0.612,
        "num_epochs_trained": 4, "early_stopping_triggered": True,
    }, indent=2) + "\n")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    lightning()
    tb_tensor()
    mlflow()
    wandb()
    reports()
    print("fixtures written to", OUT)
