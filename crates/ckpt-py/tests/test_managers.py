"""The training-side managers write what the command line reads: `CheckpointManager`'s
hierarchical folders are read back by `ckpt catalog` (model, loss, task, best epoch, val_f1,
test metrics), and `ExperimentManager`'s hash of a live module is exactly what `ckpt hash`
prints for the checkpoint it then saves — checked by running the command."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import json
import math
import re
import subprocess
import sys
import sysconfig
from collections import OrderedDict
from pathlib import Path

import pytest

import ckpt

torch = pytest.importorskip("torch")
nn = torch.nn


def console_script() -> str:
    """The `ckpt` command the wheel installed into this environment."""
    path = Path(sysconfig.get_path("scripts")) / "ckpt"
    assert path.exists(), path
    return str(path)


def cli(*args: str, cwd: Path | None = None) -> dict:
    out = subprocess.run([console_script(), *args, "--format", "json"], capture_output=True, text=True, check=False,
                         cwd=cwd)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_managers_are_exported_lazily() -> None:
    code = ("import sys, ckpt; assert 'ckpt.managers' not in sys.modules; "
            "m = ckpt.ExperimentManager; assert ckpt.CheckpointManagerV2 is m; "
            "assert 'torch' not in sys.modules and 'pytorch_lightning' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------
# JSON-safe values


class Color(enum.Enum):
    RED = "red"
    OBJ = (1, 2)


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    path: Path = Path("/data/x")


def test_json_safe_turns_anything_into_json_and_never_raises() -> None:
    import numpy as np
    from omegaconf import OmegaConf

    from ckpt.managers import json_safe

    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    cyc: dict = {"a": 1}
    cyc["self"] = cyc
    value = {
        "path": Path("/tmp/x"), "enum": Color.RED, "enum_obj": Color.OBJ, "np_f": np.float32(0.5),
        "np_i": np.int64(3), "np_arr": np.arange(3), "big": np.zeros((100, 100)), "t0": torch.tensor(1.5),
        "t": torch.tensor([1, 2]), "big_t": torch.zeros(50, 50), "nan": float("nan"), "inf": -math.inf,
        "set": {3, 1}, "dc": Opt(), "ns": argparse.Namespace(a=1), "cfg": OmegaConf.create({"x": "${y}", "y": 2}),
        "date": dt.datetime(2025, 1, 2, 3, 4, 5), "fn": json.dumps, "cls": nn.Linear, "module": nn.Linear(2, 2),
        "dtype": torch.float16, "weird": Weird(), "cycle": cyc, 7: "int key", ("a", 1): "tuple key", b"\xffb": 1,
    }
    out = json_safe(value)
    text = json.dumps(out, allow_nan=False)  # strict JSON
    assert out["path"] == "/tmp/x" and out["enum"] == "red" and out["enum_obj"] == "OBJ"
    assert out["np_f"] == 0.5 and out["np_i"] == 3 and out["np_arr"] == [0, 1, 2]
    assert out["big"] == {"__tensor__": {"dtype": "float64", "shape": [100, 100]}}
    assert out["t0"] == 1.5 and out["t"] == [1, 2]
    assert out["big_t"] == {"__tensor__": {"dtype": "float32", "shape": [50, 50]}}
    assert out["nan"] == "nan" and out["inf"] == "-inf" and out["set"] == [1, 3]
    assert out["dc"] == {"lr": 0.1, "path": "/data/x"} and out["ns"] == {"a": 1}
    assert out["cfg"] == {"x": "${y}", "y": 2}
    assert out["date"] == "2025-01-02T03:04:05" and out["fn"] == "json.dumps"
    assert out["cls"] == "torch.nn.modules.linear.Linear" and out["module"] == "torch.nn.modules.linear.Linear"
    assert out["dtype"] == "float16" and out["weird"].startswith("<unserializable")
    assert out["cycle"] == {"a": 1, "self": "<cycle>"}
    assert out["7"] == "int key" and out['["a", 1]'] == "tuple key"
    assert "\\\\xffb" in text


# ---------------------------------------------------------------------------------------
# CheckpointManager: a real Lightning run, read back by the catalog

pl = pytest.importorskip("pytorch_lightning")


@pytest.fixture
def only_pytorch_lightning(monkeypatch):
    """A program that imported `pytorch_lightning` only: the manager's callback is then of
    that package (the Trainer refuses another's). In this test session `test_lightning.py`
    also imports `lightning.pytorch`, which the manager would otherwise pick."""
    for name in [m for m in sys.modules if m == "lightning.pytorch" or m.startswith("lightning.pytorch.")]:
        monkeypatch.delitem(sys.modules, name)


class TinyClassifier(pl.LightningModule):
    """Logs `val_f1` (a made-up score that moves every epoch)."""

    def __init__(self, scores: list) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        self.scores = scores

    def training_step(self, batch, _i):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, _i):
        self.log("val_f1", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> "torch.utils.data.DataLoader":
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)), batch_size=8)


def fit(module: "pl.LightningModule", callback, epochs: int, root: Path) -> "pl.Trainer":
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[callback], accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root))
    trainer.fit(module, loader(), loader())
    return trainer


def test_checkpoint_manager_run_is_read_back_by_the_catalog(tmp_path: Path, only_pytorch_lightning) -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    m = ckpt.CheckpointManager("flares/multiclass", tmp_path, "vit_base_patch32_224", "focal")
    after = dt.datetime.now(dt.timezone.utc)
    # <data_folder>/checkpoints/<root_name>/<UTC start>_<MODEL>_<LOSS>/, made at once
    assert m.run_dir.parent == tmp_path / "checkpoints" / "flares" / "multiclass" and m.run_dir.is_dir()
    stamp = re.fullmatch(r"(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)_vit_base_patch32_224_focal", m.run_dir.name)
    assert stamp, m.run_dir.name
    started = dt.datetime.strptime(stamp.group(1), "%Y-%m-%d_%H-%M-%S").replace(tzinfo=dt.timezone.utc)
    assert before <= started <= after

    scores = [0.41, 0.6234, 0.55]
    cb = m.get_checkpoint_callback("val_f1", "max")
    fit(TinyClassifier(scores), cb, epochs=3, root=tmp_path)
    names = sorted(p.name for p in m.run_dir.glob("*.ckpt"))
    assert names == ["best-epoch01-val_f1-0.623.ckpt"], names  # top-1

    m.save_config({"MODEL_NAME": "vit_base_patch32_224", "LEARNING_RATE": 1e-4, "DATA_FOLDER": tmp_path,
                   "CLASS_WEIGHTS": torch.tensor([0.5, 2.0]), "EPS": float("nan"), "MODE": Color.RED})
    test = {"test_loss": 0.234, "test_f1": 0.627, "test_accuracy": 0.89}
    m.save_training_metadata({"best_epoch": 1, "best_val_f1": scores[1], "num_epochs_trained": 3,
                              "early_stopping_triggered": False, "test_results": test})
    m.save_classification_report({"test_metrics": test, "class_names": ["A", "B"]})
    m.save_minimal_logging(best_epoch=1, best_metric_value=scores[1], best_metric_name="val_f1", num_epochs_trained=3)

    summary = json.loads((m.run_dir / "training_summary.json").read_text())
    assert (summary["model_name"], summary["loss_function"], summary["root_name"]) == ("vit_base_patch32_224", "focal", "flares/multiclass")
    assert dt.datetime.fromisoformat(summary["start_time"]) == started
    assert dt.datetime.fromisoformat(summary["end_time"]) >= started
    minimal = json.loads((m.run_dir / "minimal_logging.json").read_text())
    assert set(minimal) == {"timestamp", "best_epoch", "best_val_f1", "num_epochs_trained", "early_stopping_triggered"}
    config = json.loads((m.run_dir / "config.json").read_text())
    assert config["CLASS_WEIGHTS"] == [0.5, 2.0] and config["EPS"] == "nan" and config["DATA_FOLDER"] == str(tmp_path)
    assert not list(m.run_dir.glob(".*tmp*"))  # atomic writes leave nothing behind

    cat = ckpt.catalog(tmp_path / "checkpoints", no_cache=True)
    assert len(cat) == 1
    e = cat[0]
    assert e["task"] == "flares/multiclass"
    assert e["experiment"] == f"flares/multiclass/{m.run_dir.name}"
    assert e["model"]["architecture"] == "vit_base_patch32_224" and e["model"]["loss"] == {"name": "focal"}
    assert e["epoch"] == 1 and e["is_best"] is True
    assert e["metrics"]["val_f1"] == pytest.approx(scores[1], abs=1e-6)  # the callback's score (float32)
    assert e["metrics"]["test_f1"] == 0.627 and e["metrics"]["test_loss"] == 0.234
    assert e["hparams"]["LEARNING_RATE"] == 1e-4
    assert e["monitor"] == "val_f1" and e["mode"] == "max"
    # the binary's catalog agrees
    assert cli("catalog", str(tmp_path / "checkpoints"), "--no-cache")["checkpoints"] == cat.checkpoints


def test_classification_subclasses_file_under_their_roots(tmp_path: Path, only_pytorch_lightning) -> None:
    b = ckpt.BinaryClassificationCheckpointManager(tmp_path, "resnet18", "weighted_bce")
    mc = ckpt.MulticlassClassificationCheckpointManager(tmp_path, "efficientnet_b0", "focal")
    assert b.run_dir.parent == tmp_path / "checkpoints" / "flares" / "binary_classification"
    assert mc.run_dir.parent == tmp_path / "checkpoints" / "flares" / "multiclass"
    other = ckpt.BinaryClassificationCheckpointManager(tmp_path, "resnet18", "weighted_bce", root_name="cutouts/binary")
    assert other.run_dir.parent == tmp_path / "checkpoints" / "cutouts" / "binary"
    # two managers started in the same second get two folders
    assert b.run_dir != other.run_dir
    twin = ckpt.BinaryClassificationCheckpointManager(tmp_path, "resnet18", "weighted_bce")
    assert twin.run_dir != b.run_dir and twin.run_dir.is_dir()
    cb = b.get_checkpoint_callback("val/f1", "max")
    assert isinstance(cb, pl.callbacks.ModelCheckpoint) and cb.save_top_k == 1 and cb.monitor == "val/f1"
    with pytest.raises(ValueError):
        b.get_checkpoint_callback("val/f1", "biggest")


# ---------------------------------------------------------------------------------------
# ExperimentManager: the live hash is `ckpt hash` of the saved checkpoint


def mlp(width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(10, width), act=nn.ReLU(), fc2=nn.Linear(width, 2)))


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3).to(torch.float64))


CASES = [
    (mlp(8), {"lr": 0.01, "batch_size": 32, "model": {"hidden": 8, "act": "relu"}}, [f"s{i:03d}" for i in range(50)]),
    (mlp(16), {"optimizer": {"lr": 1e-3, "betas": [0.9, 0.999]}, "epochs": 3, "note": "é\"\n", "ratio": 1.0,
               "flag": True, "none": None, "ref": "${optimizer.lr}"}, [7, 3, 3, 12, "x y"]),
    (convnet(), None, None),
    # a state dict for the model, an OmegaConf config with a reference, UIDs as a numpy array
    (mlp(4).state_dict(), "omegaconf", "numpy"),
]


def materialize(config, uids):
    import numpy as np
    from omegaconf import OmegaConf

    if config == "omegaconf":
        config = OmegaConf.create({"data": {"root": "/d", "train": "${data.root}/train"}, "lr": 3e-4, "huge": 2**70})
    if uids == "numpy":
        uids = np.array([5, 1, 5, 9], dtype=np.int64)
    return config, uids


@pytest.mark.parametrize("case", range(len(CASES)))
def test_live_hash_is_ckpt_hash_of_the_saved_checkpoint(tmp_path: Path, case: int) -> None:
    model, config, uids = CASES[case]
    config, uids = materialize(config, uids)
    em = ckpt.ExperimentManager(tmp_path / "logs")
    h, is_new = em.update_experiment_hash(model=model, config=config, active_data_uids=uids)
    assert is_new and re.fullmatch(r"v2:[0-9a-f]{16}", h)
    exp = tmp_path / "logs" / "checkpoints" / h.replace(":", "-")
    assert em.experiment_dir == exp
    # the folder describes itself before the first checkpoint
    assert (exp / "hp" / "config.yaml").is_file() == (config is not None)
    assert (exp / "data" / "active_uids.json").is_file() == (uids is not None)
    assert json.loads((exp / "model" / "architecture.json").read_text())["architecture_hash"] == em.components["architecture"]
    assert not list((tmp_path / "logs" / "checkpoints").glob(".staging-*"))
    if config is not None:
        assert em.inputs["hyperparameters"] == {"source": "hash_folder_hp", "path": str(exp / "hp" / "config.yaml")}
    if uids is not None:
        assert em.inputs["data"]["path"] == str(exp / "data" / "active_uids.json")
        assert em.inputs["data"]["uids"] == len(set(map(str, list(uids))))
    assert em.update_experiment_hash(model=model, config=config, active_data_uids=uids) == (h, False)

    path = em.save_model_checkpoint(model=model, step=100)
    assert path == exp / "model" / "checkpoint_step_000100.pt"
    report = cli("hash", str(path))
    assert report["hash"] == h
    assert report["components"] == em.components
    assert report["folder"]["matches"] == "v2"
    assert ckpt.hash(path)["hash"] == h
    # a second manager on the same inputs finds the same experiment, not a new one
    again = ckpt.CheckpointManagerV2(tmp_path / "logs")
    assert again.update_experiment_hash(model=model, config=config, active_data_uids=uids) == (h, False)
    # weights only, loadable without running anything
    loaded = ckpt.load(path)
    assert set(loaded) == {"step", "model_state_dict", "exp_hash"} and loaded["step"] == 100
    state = model.state_dict() if hasattr(model, "state_dict") else model
    assert all(torch.equal(loaded["model_state_dict"][k], v) for k, v in state.items())
    assert ckpt.scan(path)[0].safe


def test_live_hash_follows_ckpt_hash_to_a_hydra_config(tmp_path: Path, caplog) -> None:
    """In a Hydra run folder `ckpt hash` reads `.hydra/config.yaml`; so does the live hash."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("trainer:\n  max_epochs: 3\nlr: 0.1\n")
    em = ckpt.ExperimentManager(tmp_path)
    model = mlp(8)
    h, _ = em.update_experiment_hash(model=model, config={"lr": 0.5}, active_data_uids=["a"])
    assert em.inputs["hyperparameters"]["source"] == "hydra"
    assert "comes from hydra" in caplog.text
    path = em.save_model_checkpoint(model=model, step=1)
    assert cli("hash", str(path))["hash"] == h


def test_has_changed_names_exactly_the_component_that_changed(tmp_path: Path) -> None:
    em = ckpt.ExperimentManager(tmp_path)
    assert em.has_changed(model=mlp(8)) == ["architecture", "hyperparameters", "data"]  # nothing yet
    config = {"lr": 0.01, "model": {"hidden": 8}}
    uids = ["a", "b", "c"]
    h0, _ = em.update_experiment_hash(model=mlp(8), config=config, active_data_uids=uids)
    assert em.has_changed(model=mlp(8), config=dict(config), active_data_uids=["c", "b", "a", "a"]) == []
    assert em.has_changed(config={**config, "lr": 0.02}) == ["hyperparameters"]
    assert em.has_changed(config={"model": {"hidden": 8}, "lr": 1e-2}) == []  # key order, number spelling
    assert em.has_changed(active_data_uids=["a", "b"]) == ["data"]
    assert em.has_changed(model=mlp(16)) == ["architecture"]
    assert em.has_changed(model=mlp(8), config={"lr": 0.5}, active_data_uids=["z"]) == ["hyperparameters", "data"]
    assert not list((tmp_path / "checkpoints").glob(".staging-*"))
    assert em.current_hash == h0 and len(em.list_experiments()) == 1  # asking changed nothing

    # each change is a new experiment whose checkpoint `ckpt diff` tells apart by that component
    p0 = em.save_model_checkpoint(model=mlp(8), step=10)
    new_cfg = em.save_config({**config, "lr": 0.02})
    assert new_cfg.read_text() and em.current_hash != h0
    p1 = em.save_model_checkpoint(step=10)
    uid_file = em.save_data_backup(["a", "b"], extra={"weights": {"a": 1.0, "b": 0.5}})
    assert uid_file.name == "active_uids.json" and (uid_file.parent / "extra.json").is_file()
    p2 = em.save_model_checkpoint(step=10)
    hashes = [cli("hash", str(p))["hash"] for p in (p0, p1, p2)]
    assert len(set(hashes)) == 3 and hashes[2] == em.current_hash
    d = cli("hash", str(p0))["components"], cli("hash", str(p1))["components"], cli("hash", str(p2))["components"]
    assert [k for k in d[0] if d[0][k] != d[1][k]] == ["hyperparameters"]
    assert [k for k in d[1] if d[1][k] != d[2][k]] == ["data"]
    # a wider model saved: a new experiment by its architecture only
    p3 = em.save_model_checkpoint(model=mlp(16), step=10)
    c3 = cli("hash", str(p3))["components"]
    assert [k for k in c3 if c3[k] != d[2][k]] == ["architecture"]
    assert len(em.list_experiments()) == 4


def test_catalog_reads_the_experiment_tree(tmp_path: Path) -> None:
    em = ckpt.ExperimentManager(tmp_path)
    model = mlp(8)
    em.update_experiment_hash(model=model, config={"experiment_name": "demo", "lr": 0.01, "model": {"hidden": 8}},
                              active_data_uids=[f"u{i}" for i in range(20)])
    for step in (100, 200):
        em.save_model_checkpoint(model=model, step=step)
    cat = ckpt.catalog(tmp_path, no_cache=True)
    assert len(cat) == 2
    name = em.current_hash.replace(":", "-")
    for e, step in zip(sorted(cat, key=lambda e: e["global_step"]), (100, 200)):
        assert e["experiment"] == name and e["run"] == name and e["global_step"] == step
        assert e["hparams"]["lr"] == 0.01 and e["hparams"]["experiment_name"] == "demo"
        assert e["hparams"]["model"] == {"hidden": 8}
        assert e["data"]["active_uids"] == 20
        assert e["security"] == "safe" and e["tensors"] == 4
    assert cli("catalog", str(tmp_path), "--no-cache")["checkpoints"] == cat.checkpoints
    ex = cli("experiments", str(tmp_path), "--no-cache")
    assert [x["hash"] for x in ex] == [em.current_hash]


def test_retention_keeps_what_ckpt_prune_keeps(tmp_path: Path) -> None:
    em = ckpt.ExperimentManager(tmp_path, keep_last=2)
    model = mlp(8)
    em.update_experiment_hash(model=model, config={"lr": 0.1}, active_data_uids=["a"])
    for step in range(1, 6):
        em.save_model_checkpoint(model=model, step=step * 10)
    model_dir = em.experiment_dir / "model"
    assert sorted(p.name for p in model_dir.glob("checkpoint_step_*.pt")) == [
        "checkpoint_step_000040.pt", "checkpoint_step_000050.pt"]
    # `ckpt prune` with the same rules has nothing left to delete
    plan = cli("prune", str(model_dir), "--keep-top", "0", "--monitor", "global_step", "--mode", "max",
               "--keep-last", "2", "--no-cache")
    assert plan["plan"]["delete_count"] == 0 and plan["plan"]["keep_count"] == 2

    # keep the best by a metric only the live run knows, and the newest
    em2 = ckpt.ExperimentManager(tmp_path / "b", keep_best=1, monitor="val_loss", mode="min")
    em2.update_experiment_hash(model=model, config={"lr": 0.2})
    losses = {10: 0.9, 20: 0.3, 30: 0.5, 40: 0.7}
    for step, loss in losses.items():
        em2.save_model_checkpoint(model=model, step=step, metrics={"val_loss": loss})
    left = sorted(p.name for p in (em2.experiment_dir / "model").glob("checkpoint_step_*.pt"))
    assert left == ["checkpoint_step_000020.pt", "checkpoint_step_000040.pt"]  # best, newest
    assert set(em2.get_experiment_info()["metrics"]) == set(left)
    # a checkpoint without a metric is never deleted
    em2.save_model_checkpoint(model=model, step=50)
    em2.save_model_checkpoint(model=model, step=60, metrics={"val_loss": 0.8})
    left = sorted(p.name for p in (em2.experiment_dir / "model").glob("checkpoint_step_*.pt"))
    assert left == ["checkpoint_step_000020.pt", "checkpoint_step_000050.pt", "checkpoint_step_000060.pt"]
    plan = em2.apply_retention(delete=False)
    reasons = {Path(d["path"]).name: d["reasons"] for d in plan["plan"]["decisions"]}
    assert "unknown metric val_loss" in reasons["checkpoint_step_000050.pt"]
    assert any(r.startswith("top-1 by val_loss") for r in reasons["checkpoint_step_000020.pt"])
    with pytest.raises(ValueError):
        ckpt.ExperimentManager(tmp_path, keep_best=1)


def test_load_latest_and_by_step_through_ckpt_load(tmp_path: Path) -> None:
    em = ckpt.ExperimentManager(tmp_path)
    model = mlp(8)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    em.update_experiment_hash(model=model, config={"lr": 0.01}, active_data_uids=["a", "b"])
    snapshots = {}
    for step in (5, 10, 100):
        model(torch.randn(4, 10)).sum().backward()
        opt.step()
        em.save_model_checkpoint(model=model, step=step, optimizer=opt, save_optimizer=(step == 100))
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}

    fresh = mlp(8)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    got = em.load_latest_checkpoint(fresh, fresh_opt)
    assert got["step"] == 100 and got["path"].endswith("checkpoint_step_000100.pt")
    assert all(torch.equal(v, snapshots[100][k]) for k, v in fresh.state_dict().items())
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]

    older = em.load_checkpoint(10, model=fresh)
    assert older["step"] == 10 and "optimizer_state_dict" not in older
    assert all(torch.equal(v, snapshots[10][k]) for k, v in fresh.state_dict().items())
    with pytest.raises(FileNotFoundError):
        em.load_checkpoint(7)

    exps = em.list_experiments()
    assert [(x["hash"], x["steps"], x["latest_step"], x["current"]) for x in exps] == [(em.current_hash, [5, 10, 100], 100, True)]
    info = em.get_experiment_info(em.current_hash)
    assert info["config"] == {"lr": 0.01}
    assert info["identity"]["hash"] == em.current_hash
    assert info["architecture"]["class"] == "torch.nn.modules.container.Sequential"
    assert [t["name"] for t in info["architecture"]["tensors"]] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert em.get_experiment_info(em.current_hash.split(":")[1][:8])["path"] == info["path"]  # a prefix

    other = ckpt.ExperimentManager(tmp_path / "empty")
    other.update_experiment_hash(model=mlp(8))
    assert other.load_latest_checkpoint(mlp(8)) is None


def test_a_crashed_staging_folder_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    import os
    import time

    stale = tmp_path / "checkpoints" / ".staging-1-dead"
    live = tmp_path / "checkpoints" / ".staging-2-live"
    for d in (stale, live):
        (d / "hp").mkdir(parents=True)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    em = ckpt.ExperimentManager(tmp_path)
    assert not stale.exists() and live.is_dir()
    em.update_experiment_hash(model=mlp(8), config={"lr": 1})
    assert [e["path"] for e in em.list_experiments()] == [str(em.experiment_dir)]  # staging is no experiment


# ---------------------------------------------------------------------------------------
# ExperimentManager: what a save is told is in the tree, for every command to read


def cli_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, check=False)


LOSSES = {10: 0.9, 20: 0.3, 30: 0.5, 40: 0.7, 50: 0.4, 60: 0.8}


def test_saved_metrics_are_read_from_the_tree_by_prune_catalog_and_validate(tmp_path: Path) -> None:
    model = mlp(8)
    config, uids = {"lr": 0.1, "model": {"hidden": 8}}, ["a", "b", "c"]
    em = ckpt.ExperimentManager(tmp_path / "kept", keep_best=2, monitor="val_loss", mode="min")
    em.update_experiment_hash(model=model, config=config, active_data_uids=uids)
    # The same saves without retention: what `ckpt prune` plans from scratch.
    every = ckpt.ExperimentManager(tmp_path / "every")
    assert every.update_experiment_hash(model=model, config=config, active_data_uids=uids)[0] == em.current_hash
    for step, loss in LOSSES.items():
        for m in (em, every):
            m.save_model_checkpoint(model=model, step=step, metrics={"val_loss": loss, "acc": torch.tensor(1 - loss)})
    model_dir = em.experiment_dir / "model"
    kept = sorted(p.name for p in model_dir.glob("checkpoint_step_*.pt"))
    # the best two (0.3, 0.4) and the newest
    assert kept == ["checkpoint_step_000020.pt", "checkpoint_step_000050.pt", "checkpoint_step_000060.pt"]
    # each kept checkpoint has its sidecar, a deleted one took its own along; nothing on the side
    assert sorted(p.name for p in model_dir.glob("*.metadata.yaml")) == [n[:-3] + ".metadata.yaml" for n in kept]
    assert not list(em.experiment_dir.rglob("metrics.json"))

    prune = ["--keep-top", "2", "--monitor", "val_loss", "--mode", "min", "--no-cache"]
    # `ckpt prune` (dry run) on the experiment folder plans exactly what the manager kept ...
    plan = cli("prune", str(em.experiment_dir), *prune)["plan"]
    assert plan["delete_count"] == 0
    assert sorted(Path(d["path"]).name for d in plan["decisions"] if d["action"] == "keep") == kept
    # ... and, on the tree where nothing was deleted, would delete exactly what it deleted
    plan = cli("prune", str(every.experiment_dir), *prune)["plan"]
    assert sorted(Path(d["path"]).name for d in plan["decisions"] if d["action"] == "keep") == kept
    assert plan["delete_count"] == len(LOSSES) - len(kept)

    # the catalog shows the metrics, from the live run, and the monitor the manager ranks by
    out = cli("catalog", str(em.experiment_dir), "--no-cache")
    assert out["warnings"] == []
    entries = sorted(out["checkpoints"], key=lambda e: e["global_step"])
    assert [e["global_step"] for e in entries] == [20, 50, 60]
    for e in entries:
        assert e["metrics"]["val_loss"] == LOSSES[e["global_step"]]
        assert e["metrics"]["acc"] == pytest.approx(1 - LOSSES[e["global_step"]])
        assert e["sources"]["metrics.val_loss"] == "live" and e["sources"]["metrics.acc"] == "live"
        assert (e["monitor"], e["mode"]) == ("val_loss", "min") and e["sources"]["monitor"] == "live"
    assert em.get_experiment_info()["metrics"]["checkpoint_step_000020.pt"]["val_loss"] == 0.3

    # `ckpt validate` finds every sidecar valid
    v = cli_run("validate", "--exp-dir", str(em.experiment_dir))
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"{len(kept)} checkpoint(s): {len(kept)} valid, 0 invalid, 0 stale, 0 missing" in v.stdout

    # the identity does not change because a sidecar appeared: `ckpt hash` reads no sidecar
    newest = model_dir / kept[-1]
    with_sidecar = cli("hash", str(newest))
    assert with_sidecar["hash"] == em.current_hash
    assert ckpt._ckpt.remove_sidecar(str(newest))["removed"] == [str(model_dir / "checkpoint_step_000060.metadata.yaml")]
    assert cli("hash", str(newest)) == with_sidecar
    assert cli("hash", str(em.experiment_dir))["hash"] == em.current_hash


def test_a_saved_again_step_replaces_ckpts_sidecar_and_leaves_a_hand_written_one(tmp_path: Path, caplog) -> None:
    em = ckpt.ExperimentManager(tmp_path, keep_best=1, monitor="val_loss", mode="min")
    model = mlp(8)
    em.update_experiment_hash(model=model, config={"lr": 0.1})
    em.save_model_checkpoint(model=model, step=10, metrics={"val_loss": 0.5})
    em.save_model_checkpoint(model=model, step=10, metrics={"val_loss": 0.25})
    model_dir = em.experiment_dir / "model"
    [e] = cli("catalog", str(model_dir), "--no-cache")["checkpoints"]
    assert e["metrics"]["val_loss"] == 0.25  # the sidecar describes the file saved last

    mine = model_dir / "checkpoint_step_000020.metadata.yaml"
    text = "schema_version: '1.0'\nexp_name: mine\n"
    mine.write_text(text)
    em.save_model_checkpoint(model=model, step=20, metrics={"val_loss": 0.9})
    assert mine.read_text() == text
    assert "was not written by ckpt" in caplog.text
    # step 10 the best, step 20 the newest (of unknown val_loss: its sidecar is not ckpt's);
    # `ckpt prune` agrees
    assert sorted(p.name for p in model_dir.glob("*.pt")) == ["checkpoint_step_000010.pt", "checkpoint_step_000020.pt"]
    plan = cli("prune", str(model_dir), "--keep-top", "1", "--monitor", "val_loss", "--mode", "min", "--no-cache")["plan"]
    assert plan["delete_count"] == 0
    reasons = {Path(d["path"]).name: d["reasons"] for d in plan["decisions"]}
    assert "unknown metric val_loss" in reasons["checkpoint_step_000020.pt"]


def test_catalog_reads_the_architecture_description(tmp_path: Path) -> None:
    em = ckpt.ExperimentManager(tmp_path)
    model = mlp(8)
    model.fc1.weight.requires_grad_(False)
    em.update_experiment_hash(model=model, config={"lr": 0.01}, active_data_uids=["a"])
    for step in (1, 2):
        em.save_model_checkpoint(model=model, step=step)
    out = cli("catalog", str(tmp_path), "--no-cache")
    assert out["warnings"] == []
    for e in out["checkpoints"]:
        assert e["model"]["class"] == "torch.nn.modules.container.Sequential"
        assert e["sources"]["model.class"] == "hash_folder"
        assert e["model"]["trainable_parameters"] == 106 - 80
        assert e["params"] == 106 and e["sources"]["params"] == "checkpoint" and e["tensors"] == 4
        assert e["model"]["architecture"] == "Sequential"  # nothing names it better
        assert not e.get("conflicts")

    # a hostile description: one warning for the two checkpoints, no other effect, exit 0
    (em.experiment_dir / "model" / "architecture.json").write_bytes(b" " * (16 * 2**20 + 1))
    r = cli_run("catalog", str(tmp_path), "--no-cache", "--format", "json")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if "architecture.json" in x]
    assert len(lines) == 1 and "larger than the 16 MiB" in lines[0], r.stderr
    for e in json.loads(r.stdout)["checkpoints"]:
        assert "class" not in e["model"] and e["params"] == 106


def test_a_sidecar_that_cannot_be_written_is_a_warning_and_its_checkpoint_is_kept(tmp_path: Path, caplog,
                                                                                   monkeypatch) -> None:
    em = ckpt.ExperimentManager(tmp_path, keep_best=1, monitor="val_loss", mode="min")
    model = mlp(8)
    em.update_experiment_hash(model=model, config={"lr": 0.1})
    em.save_model_checkpoint(model=model, step=10, metrics={"val_loss": 0.1})

    def refuse(*_a, **_k):
        raise ckpt.CkptError("disk full")

    monkeypatch.setattr(ckpt._ckpt, "write_live_sidecar", refuse)
    path = em.save_model_checkpoint(model=model, step=20, metrics={"val_loss": 0.9})
    monkeypatch.undo()
    em.save_model_checkpoint(model=model, step=30, metrics={"val_loss": 0.5})
    assert "no sidecar for" in caplog.text and "disk full" in caplog.text
    # step 20's val_loss is unknown to the tree: kept, as `ckpt prune` keeps it
    left = sorted(p.name for p in path.parent.glob("checkpoint_step_*.pt"))
    assert left == ["checkpoint_step_000010.pt", "checkpoint_step_000020.pt", "checkpoint_step_000030.pt"]
    assert not (path.parent / "checkpoint_step_000020.metadata.yaml").exists()
    plan = cli("prune", str(path.parent), "--keep-top", "1", "--monitor", "val_loss", "--mode", "min", "--no-cache")
    assert plan["plan"]["delete_count"] == 0


def test_checkpoint_callback_for_the_trainers_package_when_both_are_imported(tmp_path: Path) -> None:
    """With both `lightning.pytorch` and `pytorch_lightning` imported, `lightning=` picks the
    package of the Trainer: its checkpointer is the manager's (no default one beside it)."""
    pytest.importorskip("lightning.pytorch")
    m = ckpt.CheckpointManager("flares/multiclass", tmp_path, "resnet_18", "ce")
    cb = m.get_checkpoint_callback("val_f1", "max", lightning="pytorch_lightning")
    assert isinstance(cb, pl.callbacks.ModelCheckpoint)
    fit(TinyClassifier([0.2, 0.7]), cb, epochs=2, root=tmp_path)
    assert [p.name for p in tmp_path.rglob("*.ckpt")] == ["best-epoch01-val_f1-0.700.ckpt"]
    with pytest.raises(ValueError):
        m.get_checkpoint_callback("val_f1", "max", lightning="keras")
