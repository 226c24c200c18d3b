"""The CLI's commands as functions: the same Rust command run in-process, its JSON contract
returned — checked against the binary's own output; and `ckpt.open`, the lazy reader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import ckpt

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
LIGHTNING = REPO / "examples/lightning/checkpoints"


def console_script() -> str:
    """The `ckpt` command the wheel installed into this environment."""
    path = Path(sysconfig.get_path("scripts")) / "ckpt"
    assert path.exists(), path
    return str(path)


def cli_json(*args: str) -> object:
    out = subprocess.run([console_script(), *args, "--format", "json"], capture_output=True, check=False, cwd=REPO)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_catalog_is_the_cli_contract_and_goes_to_pandas_shape(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    cat = ckpt.catalog("examples", no_cache=True)
    assert isinstance(cat, ckpt.Catalog)
    assert cat.checkpoints == cli_json("catalog", "examples", "--no-cache")["checkpoints"]
    assert len(cat) >= 6
    rows = cat.records()
    assert all("path" in r for r in rows)
    assert any(k.startswith("metrics.") for r in rows for k in r)
    assert not any(k in r for r in rows for k in ("sources", "conflicts"))


def test_catalog_options_are_the_cli_options(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    best = ckpt.catalog("examples/lightning", no_cache=True, best=True)
    assert [e["path"] for e in best] == [e["path"] for e in cli_json("catalog", "examples/lightning", "--no-cache", "--best")["checkpoints"]]
    sorted_ = ckpt.catalog("examples/lightning", no_cache=True, sort="epoch", desc=True)
    epochs = [e["epoch"] for e in sorted_]
    assert epochs == sorted(epochs, reverse=True)
    filtered = ckpt.catalog("examples/lightning", no_cache=True, filter="epoch >= 2")
    assert filtered and all(e["epoch"] >= 2 for e in filtered)


def test_a_mistake_is_an_error_with_the_cli_message(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(ckpt.CkptError) as e:
        ckpt.catalog("outptus")
    assert "outptus" in str(e.value)
    assert e.value.exit_code == 2
    with pytest.raises(ckpt.CkptError) as e:
        ckpt.catalog("examples", no_cache=True, sort="hmena")
    assert "hmean" in str(e.value)  # did you mean …


def test_inspect_scan_hash_diff_validate(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    last = "examples/lightning/checkpoints/last.ckpt"
    info = ckpt.inspect(last)
    assert info["format"] == "zip" and info["lightning_version"]
    v = ckpt.scan(last)[0]
    assert v["verdict"] == "safe" and v.verdict == "safe" and v.safe and not v.dangerous
    assert isinstance(v, ckpt.Verdict) and v.path == last
    evil = ckpt.scan(REPO / "fixtures/hostile")
    assert evil and any(x.dangerous for x in evil) and not any(x.safe for x in evil)
    h = ckpt.hash(last)
    assert h == cli_json("hash", last)
    d = ckpt.diff(last, "examples/lightning/checkpoints/epoch=01-step=4-hmean=0.7445.ckpt")
    assert isinstance(d, dict)
    v = ckpt.validate("examples/lightning")
    assert v == cli_json("validate", "--exp-dir", "examples/lightning")


def test_prune_plans_and_deletes_only_when_asked(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples/lightning", tmp_path / "run")
    before = sorted(os.listdir(tmp_path / "run/checkpoints"))
    plan = ckpt.prune(tmp_path / "run", keep_top=1, monitor="val/hmean", mode="max")
    assert sorted(os.listdir(tmp_path / "run/checkpoints")) == before
    doomed = [p for p in json.dumps(plan).split('"') if p.endswith(".ckpt")]
    assert doomed
    ckpt.prune(tmp_path / "run", keep_top=1, monitor="val/hmean", mode="max", delete=True)
    assert len(os.listdir(tmp_path / "run/checkpoints")) < len(before)


def test_write_sidecar_then_validate(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples/lightning", tmp_path / "run")
    ckpt.write_sidecar(tmp_path / "run")
    sidecars = list((tmp_path / "run/checkpoints").glob("*.metadata.yaml"))
    assert len(sidecars) == 3
    report = json.dumps(ckpt.validate(tmp_path / "run"))
    assert "invalid" not in report


def test_schema_is_the_cli_schema() -> None:
    s = ckpt.schema("catalog")
    assert s["title"] or s["$schema"]


def test_the_wheel_installs_the_ckpt_command(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    out = subprocess.run([console_script(), "catalog", "examples", "--no-cache"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "last.ckpt" in out.stdout
    bad = subprocess.run([console_script(), "catalog", "outptus"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2
    assert bad.stderr.startswith("ckpt: error: ") and "outptus" in bad.stderr
    help_ = subprocess.run([console_script(), "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "catalog" in help_.stdout


def test_open_is_lazy_and_shares_what_it_built() -> None:
    code = (
        "import sys, ckpt\n"
        f"c = ckpt.open({str(HERE / 'fixtures/dictconfig_lightning.ckpt')!r})\n"
        "keys = c.keys()\n"
        "print('torch' in sys.modules, 'state_dict' in keys)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    torch = pytest.importorskip("torch")
    c = ckpt.open(HERE / "fixtures/dictconfig_lightning.ckpt")
    sd = c["state_dict"]
    assert isinstance(sd, ckpt.LazyMapping)
    assert "net.conv.weight" in sd and len(sd) == len(sd.keys())
    w = c.tensor("state_dict.net.conv.weight")
    assert w is sd["net.conv.weight"]
    full = torch.load(HERE / "fixtures/dictconfig_lightning.ckpt", weights_only=False)
    assert torch.equal(w, full["state_dict"]["net.conv.weight"])
    assert c.summary()["format"] == "zip"
    assert c.scan()["verdict"] == "safe"
    # Reported from the scan made on opening: the same record `ckpt scan` prints.
    assert c.scan() == dict(ckpt.scan(HERE / "fixtures/dictconfig_lightning.ckpt")[0])
    with pytest.raises(KeyError):
        c.tensor("state_dict.nope")


def test_convert_reports_progress_and_writes_the_cli_result(tmp_path: Path) -> None:
    seen = []
    out = ckpt.convert(REPO / "examples/fsdp/epoch-001.pth", tmp_path / "out", to="safetensors",
                       progress=lambda done, total: seen.append((done, total)))
    assert seen, "no progress reported"
    done, total = seen[-1]
    assert total > 0 and done == total
    assert all(d <= t for d, t in seen)
    assert list((tmp_path / "out").rglob("*.safetensors"))
    assert "epoch-001" in json.dumps(out)


def test_an_exception_in_the_progress_callback_is_raised_after_the_command(tmp_path: Path) -> None:
    def boom(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        ckpt.convert(REPO / "examples/fsdp/epoch-001.pth", tmp_path / "out", to="safetensors", progress=boom)


def test_catalog_to_pandas_and_arrow(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    cat = ckpt.catalog("examples", no_cache=True)
    df = cat.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(cat)
    assert {"path", "epoch", "global_step", "is_best"} <= set(df.columns)
    best = df[df["is_best"]]
    assert set(best["path"]) == {e["path"] for e in cat if e["is_best"]}
    table = cat.to_arrow()
    assert table.num_rows == len(cat)
    assert table.column("path").to_pylist() == [e["path"] for e in cat]


def test_import_ckpt_stays_light() -> None:
    code = "import sys, ckpt; ckpt.catalog; print(sorted(m for m in ('pandas', 'pyarrow', 'torch', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
