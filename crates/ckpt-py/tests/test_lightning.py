"""ckpt.lightning.MetadataCallback in real Lightning runs (CPU, a tiny model, a few steps):
top-k rotation with save_last, every-n, a Hydra app (one run and a two-job multirun), DDP with
two processes, resume, a failing save, failures of ckpt itself. After each run the commands
(`catalog`, `validate`, `hash`, `convert-legacy`) read the output, and their values are
checked against what the run logged at each save (lightning_app.Recorder)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

# Both namespaces before ckpt.lightning: its callback is then a Callback of each.
import lightning.pytorch as LP  # noqa: E402
import pytorch_lightning as PL  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ckpt  # noqa: E402
from ckpt.lightning import MetadataCallback  # noqa: E402

import lightning_app as app  # noqa: E402

L = app.L


def yaml_load(p: Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(p))  # type: ignore[return-value]


def stems(folder: Path, suffix: str) -> set:
    return {p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix)}


def assert_orphan_free(folder: Path) -> None:
    """A sidecar beside exactly every checkpoint, and no temporary files left."""
    assert stems(folder, ".ckpt") == stems(folder, ".metadata.yaml"), sorted(os.listdir(folder))
    assert not [p for p in os.listdir(folder) if ".tmp-" in p]


def check_tree(root: Path, logged: Dict[str, dict], **expected: Any) -> List[dict]:
    """Every checkpoint under root: its sidecar is valid (`ckpt validate`), the catalog shows
    the sidecar's values, and those are what the run logged at that save. Returns the catalog."""
    report = ckpt.validate(root)
    assert report and all(r["status"] == "valid" for r in report), report
    cat = ckpt.catalog(root, no_cache=True).checkpoints
    assert len(cat) == len(report)
    for e in cat:
        p = Path(e["path"])
        sc = yaml_load(p.with_name(p.stem + ".metadata.yaml"))
        assert sc["generator"]["tool"].startswith("ckpt ") and "MetadataCallback" in sc["generator"]["writer"]
        # The catalog reads the sidecar and shows the same values.
        assert e["epoch"] == sc["training"]["epoch"] and e["global_step"] == sc["training"]["global_step"]
        for k in ("monitor", "mode", "save_top_k", "save_last"):
            assert e.get(k) == sc["checkpointing"][k], (k, e.get(k), sc["checkpointing"])
        assert e["metrics"] == sc["metrics"]["additional_metrics"]
        # ... which are what the run logged when it saved this file.
        seen = logged[f"{e['epoch']}/{e['global_step']}"]
        assert sc["metrics"]["additional_metrics"] == seen["metrics"]
        for k, v in expected.items():
            assert sc["checkpointing"][k] == v, (p, k, sc["checkpointing"])
        for k in sc["metrics"]["additional_metrics"]:
            assert sc["provenance"][f"metrics.additional_metrics.{k}"] == "live"
        assert sc["provenance"]["checkpointing.save_top_k"] == "live"
        assert e["sources"]["save_top_k"] == "live"
    return cat


def convert_legacy_changes_nothing(root: Path) -> None:
    """`catalog` before and after `convert-legacy` on the callback's tree is unchanged, and
    there was nothing to convert; after `convert-legacy --force` too."""
    before = ckpt.catalog(root, no_cache=True).checkpoints
    out = ckpt.write_sidecar(root)
    assert "Converted: 0" in out, out
    assert ckpt.catalog(root, no_cache=True).checkpoints == before
    # Rewritten from the file and the sidecar itself (`--force`): what the run saw is kept.
    ckpt.write_sidecar(root, force=True)
    assert ckpt.catalog(root, no_cache=True).checkpoints == before
    assert all(r["status"] == "valid" for r in ckpt.validate(root))


def same_as_convert_legacy(folder: Path) -> None:
    """The callback's sidecar is what `convert-legacy --checkpoint FILE` writes for the file,
    plus the live run: every section but metrics/checkpointing (where the live run ranks first)
    and the callback's own (generator, run) is equal; metrics and settings agree."""
    aside = folder.parent / (folder.name + ".callback-sidecars")
    aside.mkdir()
    try:
        for p in folder.glob("*.metadata.yaml"):
            shutil.move(str(p), aside / p.name)
        for c in sorted(folder.glob("*.ckpt")):
            ckpt.write_sidecar(c)
            ours = yaml_load(aside / (c.stem + ".metadata.yaml"))
            theirs = yaml_load(folder / (c.stem + ".metadata.yaml"))
            for k in ("schema_version", "checkpoint_path", "exp_name", "created_at", "training", "model", "fingerprint", "state"):
                assert ours[k] == theirs[k], (c, k)
            for k, v in theirs["checkpointing"].items():
                assert v is None or ours["checkpointing"][k] == v, (c, k)
            for k, v in theirs["metrics"]["additional_metrics"].items():
                assert ours["metrics"]["additional_metrics"][k] == pytest.approx(v, rel=1e-6), (c, k)
            assert "run" not in theirs and "writer" not in theirs["generator"]
            (folder / (c.stem + ".metadata.yaml")).unlink()
    finally:
        for p in aside.iterdir():
            shutil.move(str(p), folder / p.name)
        aside.rmdir()


def fit(root: Path, *, epochs: int, mc: Any, cb: Any = None, ckpt_path: Any = None, **kw: Any) -> app.Recorder:
    rec = app.Recorder()
    cb = cb if cb is not None else MetadataCallback()
    t = app.trainer(str(root), epochs=epochs, callbacks=[mc, cb, rec], **kw)
    train, val = app.loaders()
    t.fit(app.Tiny(), train, val, ckpt_path=ckpt_path)
    return rec


def test_the_callback_is_a_callback_of_each_namespace_and_import_ckpt_imports_neither() -> None:
    cb = MetadataCallback()
    assert isinstance(cb, LP.Callback) and isinstance(cb, PL.Callback)
    code = "import sys, ckpt; print(sorted(m for m in ('lightning', 'pytorch_lightning', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # With only pytorch_lightning in use, only it is imported and subclassed.
    code = (
        "import sys, pytorch_lightning as pl; from ckpt.lightning import MetadataCallback as M;"
        "print('lightning.pytorch' in sys.modules, [b.__module__.split('.')[0] for b in M.__mro__[2:-1]])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "False ['pytorch_lightning']", out.stdout


def test_the_callback_pickles_as_ddp_spawn_needs() -> None:
    import pickle

    cb = MetadataCallback(background=False)
    cb.written.append("x.metadata.yaml")
    back = pickle.loads(pickle.dumps(cb))
    assert type(back) is MetadataCallback and back.background is False and back.written == ["x.metadata.yaml"]
    back.flush()


def test_top_k_rotation_with_save_last(tmp_path: Path) -> None:
    mc = L.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", filename="{epoch:02d}-{val_loss:.4f}",
        monitor="val_loss", mode="min", save_top_k=2, save_last=True,
    )
    cb = MetadataCallback()
    rec = fit(tmp_path, epochs=5, mc=mc, cb=cb)
    folder = tmp_path / "checkpoints"
    # Rotation happened, and the sidecars are exactly the surviving checkpoints'.
    assert len(rec.saves) == 5 and len(list(folder.glob("*.ckpt"))) == 3
    assert len(cb.removed) == 3 and not cb.kept
    assert_orphan_free(folder)
    cat = check_tree(tmp_path, rec.saves, monitor="val_loss", mode="min", save_top_k=2, save_last=True)
    best = min((e for e in cat if e["path"].endswith(".ckpt") and "last" not in e["path"]), key=lambda e: e["metrics"]["val_loss"])
    assert Path(mc.best_model_path).resolve() == Path(best["path"]).resolve()
    # Everything in one run has one identity (same model, same hyperparameters).
    assert len({ckpt.hash(e["path"])["hash"] for e in cat}) == 1
    convert_legacy_changes_nothing(tmp_path)
    same_as_convert_legacy(folder)
    assert_orphan_free(folder)
    # What a save costs the training thread, and the writer (ms).
    print(f"\nper save: training thread {statistics.median(cb.timings['training_thread']):.2f} ms "
          f"(max {max(cb.timings['training_thread']):.2f}), writer {statistics.median(cb.timings['write']):.2f} ms "
          f"(max {max(cb.timings['write']):.2f}), {len(cb.timings['write'])} saves")
    assert len(cb.timings["write"]) == len(cb.timings["training_thread"]) >= 7
    assert statistics.median(cb.timings["training_thread"]) < 50


def test_every_n_train_steps_on_the_pytorch_lightning_namespace(tmp_path: Path) -> None:
    mc = PL.callbacks.ModelCheckpoint(dirpath=tmp_path / "steps", filename="{step:03d}", every_n_train_steps=3, save_top_k=-1)
    TinyPL, RecorderPL = app.classes(PL)
    rec = RecorderPL()
    t = app.trainer(str(tmp_path), epochs=2, callbacks=[mc, MetadataCallback(), rec], ns=PL)
    train, val = app.loaders()
    t.fit(TinyPL(), train, val)
    folder = tmp_path / "steps"
    assert sorted(stems(folder, ".ckpt")) == ["step=003", "step=006"]
    assert_orphan_free(folder)
    cat = check_tree(tmp_path, rec.saves, monitor=None, save_top_k=-1, save_last=False)
    assert [e["global_step"] for e in sorted(cat, key=lambda e: e["global_step"])] == [3, 6]
    assert "pytorch_lightning" in yaml_load(folder / "step=003.metadata.yaml")["generator"]["writer"]
    convert_legacy_changes_nothing(tmp_path)


def test_save_last_as_a_link(tmp_path: Path) -> None:
    mc = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "c", filename="{epoch:02d}", monitor="val_loss",
                                     mode="min", save_top_k=1, save_last="link")
    rec = fit(tmp_path, epochs=3, mc=mc)
    folder = tmp_path / "c"
    assert (folder / "last.ckpt").is_symlink()
    assert_orphan_free(folder)
    best = yaml_load(folder / "epoch=02.metadata.yaml")
    last = yaml_load(folder / "last.metadata.yaml")
    # The link describes what it points to.
    assert last["training"] == best["training"] and last["fingerprint"]["pickle_sha256"] == best["fingerprint"]["pickle_sha256"]
    assert last["metrics"]["additional_metrics"] == rec.saves["2/12"]["metrics"]
    assert last["checkpointing"]["save_last"] is True


def test_resume_from_a_checkpoint(tmp_path: Path) -> None:
    def mc() -> Any:
        return L.callbacks.ModelCheckpoint(
            dirpath=tmp_path / "checkpoints", filename="{epoch:02d}", monitor="val_loss", mode="min",
            save_top_k=2, save_last=True,
        )

    first = fit(tmp_path, epochs=2, mc=mc())
    folder = tmp_path / "checkpoints"
    assert sorted(stems(folder, ".metadata.yaml")) == ["epoch=00", "epoch=01", "last"]
    cb = MetadataCallback()
    second = fit(tmp_path, epochs=4, mc=mc(), cb=cb, ckpt_path=str(folder / "last.ckpt"))
    assert set(second.saves) and not set(second.saves) & set(first.saves)
    # The first run's sidecars (written by ckpt) went with their rotated checkpoints.
    assert_orphan_free(folder)
    assert sorted(stems(folder, ".ckpt")) == ["epoch=02", "epoch=03", "last"]
    assert sorted(Path(p).name for p in cb.removed) == ["epoch=00.metadata.yaml", "epoch=01.metadata.yaml"]
    cat = check_tree(tmp_path, {**first.saves, **second.saves}, save_top_k=2, save_last=True)
    assert max(e["epoch"] for e in cat) == 3
    last = yaml_load(folder / "last.metadata.yaml")
    assert last["training"]["epoch"] == 3 and last["run"]["trainer"]["current_epoch"] == 3


class FlakyIO(L.plugins.io.TorchCheckpointIO):
    """Writes half a file and raises on the second save of ``last.ckpt``."""

    def __init__(self) -> None:
        super().__init__()
        self.lasts = 0

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if str(path).endswith("last.ckpt"):
            self.lasts += 1
            if self.lasts == 2:
                with open(path, "wb") as f:
                    f.write(b"PK\x03\x04 half a checkpoint")
                raise OSError(28, "No space left on device (test)")
        super().save_checkpoint(checkpoint, path, storage_options)


def test_a_failing_save_leaves_no_sidecar(tmp_path: Path) -> None:
    mc = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="{epoch:02d}", monitor="val_loss",
                                     mode="min", save_top_k=-1, save_last=True)
    with pytest.raises(OSError, match="No space left"):
        fit(tmp_path, epochs=3, mc=mc, plugins=[FlakyIO()])
    folder = tmp_path / "checkpoints"
    # last.ckpt is now half a file: the sidecar of its previous content is gone with it.
    assert sorted(stems(folder, ".ckpt")) == ["epoch=00", "epoch=01", "last"]
    assert sorted(stems(folder, ".metadata.yaml")) == ["epoch=00", "epoch=01"]
    assert all(r["status"] == "valid" for r in ckpt.validate(folder / "epoch=00.ckpt"))


class SlowIO(L.plugins.io.TorchCheckpointIO):
    """Takes its time: under AsyncCheckpointIO the file appears well after the save returned."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Any = None) -> None:
        import time

        time.sleep(0.2)
        super().save_checkpoint(checkpoint, path, storage_options)


def test_asynchronous_checkpoint_io_is_waited_for(tmp_path: Path) -> None:
    from lightning.pytorch.plugins.io import AsyncCheckpointIO

    mc = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "c", filename="{epoch:02d}", monitor="val_loss",
                                     mode="min", save_top_k=-1, save_last=True)
    cb = MetadataCallback()
    rec = fit(tmp_path, epochs=2, mc=mc, cb=cb, plugins=[AsyncCheckpointIO(SlowIO())])
    assert sorted(stems(tmp_path / "c", ".metadata.yaml")) == ["epoch=00", "epoch=01", "last"]
    assert len(cb.written) == 4
    check_tree(tmp_path / "c", rec.saves, save_top_k=-1, save_last=True)


def test_failures_of_ckpt_are_warnings_never_exceptions(tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    import ckpt.lightning as cl

    def broken(path: str, live: str, metrics: dict) -> dict:
        raise ckpt.CkptError(f"{path}: cannot write here (test)")

    monkeypatch.setattr(cl._ckpt, "write_live_sidecar", broken)
    mc = L.callbacks.ModelCheckpoint(dirpath=tmp_path / "c", filename="{epoch:02d}", save_top_k=1)
    with caplog.at_level(logging.WARNING, logger="ckpt.lightning"):
        fit(tmp_path, epochs=2, mc=mc)
    assert sorted(stems(tmp_path / "c", ".ckpt")) == ["epoch=01"]
    assert not list((tmp_path / "c").glob("*.metadata.yaml"))
    msgs = [r.getMessage() for r in caplog.records if r.name == "ckpt.lightning"]
    assert len(msgs) == 2 and all("cannot write here (test)" in m for m in msgs), msgs


def test_a_hand_written_sidecar_is_left_and_reported(tmp_path: Path, caplog: Any) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    mine = folder / "epoch=00.metadata.yaml"
    mine.write_text("schema_version: '1.0'\nexp_name: my notes\n")
    mc = L.callbacks.ModelCheckpoint(dirpath=folder, filename="{epoch:02d}", save_top_k=1)
    cb = MetadataCallback()
    with caplog.at_level(logging.WARNING, logger="ckpt.lightning"):
        fit(tmp_path, epochs=2, mc=mc, cb=cb)
    # Neither replaced when its checkpoint was saved nor removed when it was rotated out.
    assert mine.read_text() == "schema_version: '1.0'\nexp_name: my notes\n"
    assert not (folder / "epoch=00.ckpt").exists()
    assert (folder / "epoch=01.metadata.yaml").exists()
    assert cb.kept == [str(mine), str(mine)]
    msgs = [r.getMessage() for r in caplog.records if r.name == "ckpt.lightning"]
    assert len(msgs) == 2 and all(str(mine) in m for m in msgs), msgs


def run_script(args: List[str], cwd: Path, timeout: int = 120) -> None:
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]


def test_hydra_app_run_and_multirun(tmp_path: Path) -> None:
    script = str(HERE / "hydra_app.py")
    run_script([script, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    # Two jobs, checkpoints saved outside their job folders: only the live run knows their
    # Hydra config.
    run_script([script, "--multirun", "lr=0.05,0.1", f"hydra.sweep.dir={tmp_path / 'multi'}",
                f"outside={tmp_path / 'ckpts'}"], tmp_path)
    run = tmp_path / "run"
    assert_orphan_free(run / "checkpoints")
    check_tree(run, json.loads((run / "logged.json").read_text()), monitor="val_loss", save_top_k=1, save_last=True)
    sc = yaml_load(run / "checkpoints" / "last.metadata.yaml")
    assert sc["exp_name"] == "tiny_regression" and sc["model"]["architecture"] == "tiny_mlp"
    assert sc["run"]["hydra"]["mode"] == "RUN" and sc["run"]["hydra"]["output_dir"] == str(run)
    convert_legacy_changes_nothing(run)
    same_as_convert_legacy(run / "checkpoints")
    hashes = set()
    for job in (0, 1):
        folder = tmp_path / "ckpts" / str(job)
        assert_orphan_free(folder)
        logged = json.loads((tmp_path / "multi" / str(job) / "logged.json").read_text())
        cat = check_tree(folder, logged, monitor="val_loss", mode="min", save_top_k=1, save_last=True)
        sc = yaml_load(folder / "last.metadata.yaml")
        h = sc["run"]["hydra"]
        assert (h["job_num"], h["mode"], h["overrides"][0]) == (job, "MULTIRUN", ["lr=0.05", "lr=0.1"][job])
        assert h["config"] == str(tmp_path / "multi" / str(job) / ".hydra" / "config.yaml")
        assert sc["run"]["loggers"][0]["log_dir"] == str(tmp_path / "multi" / str(job) / "csv" / "version_0")
        # The running config reached the sidecar though no .hydra/ is near the checkpoints.
        assert (sc["exp_name"], sc["model"]["architecture"]) == ("tiny_regression", "tiny_mlp")
        assert sc["provenance"]["model.architecture"] == "hydra"
        assert {e["experiment"] for e in cat} == {"tiny_regression"}
        hashes |= {ckpt.hash(e["path"])["hash"] for e in cat}
        convert_legacy_changes_nothing(folder)
    # Two learning rates, two experiments.
    assert len(hashes) == 2


def test_ddp_with_two_processes(tmp_path: Path) -> None:
    run_script([str(HERE / "lightning_app.py"), str(tmp_path), "--ddp", "--epochs", "3"], tmp_path, timeout=180)
    folder = tmp_path / "checkpoints"
    assert_orphan_free(folder)
    assert sorted(stems(folder, ".ckpt")) != [] and len(list(folder.glob("*.ckpt"))) == 3
    logged = json.loads((tmp_path / "logged-rank0.json").read_text())
    check_tree(tmp_path, logged, monitor="val_loss", mode="min", save_top_k=2, save_last=True)
    sc = yaml_load(folder / "last.metadata.yaml")
    assert sc["run"]["trainer"]["world_size"] == 2 and sc["run"]["trainer"]["strategy"] == "DDPStrategy"
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert timings["world_size"] == 2 and len(timings["write"]) == 6
    convert_legacy_changes_nothing(tmp_path)
