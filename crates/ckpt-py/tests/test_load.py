"""`ckpt.load` returns what `torch.load` returns — checked, not assumed — on every fixture
and corpus file torch itself can load; refuses what would run code; never runs it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import ckpt

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE))
from same import differences  # noqa: E402

torch = pytest.importorskip("torch")

# Folders of files ckpt and torch both read (not the hostile, damaged or budget ones).
FIXTURE_DIRS = [
    "examples",
    "fixtures/outputs",
    "fixtures/formats",
    "fixtures/namespace",
    "fixtures/state_dict",
    "fixtures/identity",
    "fixtures/benign",
    "fixtures/convert",
    "crates/ckpt-py/tests/fixtures",
]
SKIP_SUFFIXES = (".yaml", ".yml", ".json", ".md", ".csv", ".txt", ".log", ".py", ".metadata", ".distcp")

# What torch.load returns that ckpt does not rebuild yet, each with the reason.
KNOWN_GAPS = {
}


def corpus_dir() -> Path | None:
    env = os.environ.get("CKPT_CORPUS")
    d = Path(env) if env else REPO.parent / "shared" / "corpus" / "data"
    return d if d.is_dir() else None


def files(dirs):
    out = []
    for d in dirs:
        for root, _, names in os.walk(d):
            for n in sorted(names):
                p = Path(root) / n
                if n.endswith(SKIP_SUFFIXES) or p.stat().st_size == 0 or ".hydra" in p.parts:
                    continue
                out.append(p)
    return out


def fixture_files():
    return files([REPO / d for d in FIXTURE_DIRS])


def corpus_files():
    c = corpus_dir()
    if c is None:
        return []
    return files([p for p in sorted(c.iterdir()) if p.is_dir() and p.name not in ("bad", "expected")])


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def check_same_as_torch(p: Path) -> None:
    if rel(p) in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[rel(p)])
    try:
        ours = ckpt.load(p)
    except ckpt.UnsafeError as e:
        # Refused: it names what it would have called, and torch.load is not tried (it would
        # run it). Files refused this way are pickled modules and user classes — never a kind
        # ckpt's table rebuilds (a regression there would show as a refusal).
        assert e.globals, e
        assert e.path == str(p)
        rebuilt = ("collections.", "argparse.", "omegaconf.", "numpy.", "builtins.", "torch._utils.",
                   "torch.Size", "torch.device", "_codecs.", "lightning", "pytorch_lightning")
        assert not [g for g in e.globals if g.startswith(rebuilt)], e.globals
        return
    except ckpt.CkptError as e:
        # Unreadable for ckpt: torch must not read it either (checked safely).
        with pytest.raises(Exception):
            torch.load(p, weights_only=True)
        assert e.path
        return
    try:
        theirs = torch.load(p, weights_only=False, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        # A plain pickle (not a torch file): torch.load refuses it (it reads the first pickle
        # as its legacy magic number),
        # ckpt reads it as pickle.load would. ckpt accepted it, so only the safe table's
        # constructors are in it: loading it with pickle runs nothing else.
        import zipfile

        assert not zipfile.is_zipfile(p), e
        with open(p, "rb") as f:
            theirs = pickle.load(f)
    diffs = differences(ours, theirs)
    assert not diffs, "\n".join(diffs)


@pytest.mark.parametrize("path", fixture_files(), ids=rel)
def test_load_equals_torch_load_on_fixtures(path: Path) -> None:
    check_same_as_torch(path)


@pytest.mark.skipif(corpus_dir() is None, reason="corpus: needs ../shared/corpus")
@pytest.mark.parametrize("path", corpus_files(), ids=rel)
def test_load_equals_torch_load_on_the_corpus(path: Path) -> None:
    check_same_as_torch(path)


def test_every_value_kind_of_python_values_is_rebuilt_and_equal() -> None:
    # Not refused, not a known gap: the file of every Python value kind loads and matches.
    for name in ("python_values.pt", "python_values_protocol5.pt"):
        p = REPO / "fixtures/formats" / name
        ours = ckpt.load(p)
        assert not differences(ours, torch.load(p, weights_only=False))
        assert type(ours["ordered"]).__name__ == "OrderedDict"
        assert ours["defaultdict"].default_factory is list
        # Shared objects stay shared.
        assert ours["shared_list"][0] is ours["shared_list"][1]


def test_a_dictconfig_lightning_checkpoint_that_weights_only_refuses_loads_and_runs() -> None:
    from fixture_model import Net

    p = HERE / "fixtures" / "dictconfig_lightning.ckpt"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(p, weights_only=True)
    ours = ckpt.load(p)
    from omegaconf import DictConfig

    hp = ours["hyper_parameters"]
    assert isinstance(hp, DictConfig)
    # The interpolation is kept, and resolves as OmegaConf resolves it.
    assert hp.optimizer._get_node("scheduled_lr")._value() == "${optimizer.lr}"
    assert hp.optimizer.scheduled_lr == 0.01
    state = {k.removeprefix("net."): v for k, v in ours["state_dict"].items()}
    theirs = torch.load(p, weights_only=False)
    ref = {k.removeprefix("net."): v for k, v in theirs["state_dict"].items()}
    a, b = Net().eval(), Net().eval()
    a.load_state_dict(state)
    b.load_state_dict(ref)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a(x), b(x))


def test_tensors_are_copy_on_write_views_of_the_file(tmp_path: Path) -> None:
    src = HERE / "fixtures" / "dictconfig_lightning.ckpt"
    p = tmp_path / "c.ckpt"
    p.write_bytes(src.read_bytes())
    before = p.read_bytes()
    sd = ckpt.load(p)["state_dict"]
    w = sd["net.conv.weight"]
    w.add_(1.0)  # written: a private copy of the page, never the file
    assert p.read_bytes() == before
    # Two tensors over one storage share it, as torch's do.
    t = {"a": torch.arange(10.0)}
    t["b"] = t["a"][2:5]
    q = tmp_path / "views.pt"
    torch.save(t, q)
    v = ckpt.load(q)
    assert v["b"].untyped_storage().data_ptr() == v["a"].untyped_storage().data_ptr()
    assert v["b"].storage_offset() == 2
    v["a"][3] = 100.0
    assert v["b"][1] == 100.0


def test_numpy_arrays_without_torch(tmp_path: Path) -> None:
    import numpy as np

    t = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), "n": 3}
    q = tmp_path / "t.pt"
    torch.save(t, q)
    out = ckpt.load(q, tensors="numpy")
    assert isinstance(out["w"], np.ndarray)
    assert out["w"].shape == (3, 2)
    assert out["w"].strides == (4, 12)
    assert (out["w"] == t["w"].numpy()).all()


def test_import_ckpt_never_imports_torch_lightning_or_pandas() -> None:
    code = "import sys, ckpt; print(sorted(m for m in ('torch', 'lightning', 'pytorch_lightning', 'pandas', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def hostile_pickle(target: Path) -> bytes:
    """A pickle that, when loaded by pickle or torch.load(weights_only=False), calls
    builtins.open(target, "w") — built opcode by opcode, never by running it."""
    s = str(target).encode()
    return (
        b"\x80\x02cbuiltins\nopen\n"
        + b"X" + len(s).to_bytes(4, "little") + s
        + b"X\x01\x00\x00\x00w"
        + b"\x86R."
    )


def test_a_hostile_file_raises_unsafe_error_and_nothing_runs(tmp_path: Path) -> None:
    proof = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    p.write_bytes(hostile_pickle(proof))
    with pytest.raises(ckpt.UnsafeError) as e:
        ckpt.load(p)
    assert "builtins.open" in e.value.globals
    assert not proof.exists()
    # Inside a torch zip too.
    z = tmp_path / "evil_zip.pt"
    torch.save({"a": 1}, z)
    import zipfile

    with zipfile.ZipFile(z) as src, zipfile.ZipFile(tmp_path / "evil2.pt", "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = hostile_pickle(proof)
            dst.writestr(info, data)
    with pytest.raises(ckpt.UnsafeError):
        ckpt.load(tmp_path / "evil2.pt")
    assert not proof.exists()


def test_allow_rebuilds_enums_by_value_dataclasses_by_fields_and_keeps_the_rest_opaque() -> None:
    p = REPO / "fixtures/formats/user_classes.pt"
    with pytest.raises(ckpt.UnsafeError) as e:
        ckpt.load(p)
    assert any(g.startswith("fixture_user_code.") for g in e.value.globals)
    import fixture_user_code as u

    names = ["fixture_user_code.Color", "fixture_user_code.Phase", "fixture_user_code.Opt", "fixture_user_code.Thing"]
    ours = ckpt.load(p, allow=names)
    assert ours["color"] is u.Color.RED and ours["phase"] is u.Phase.TRAIN
    assert ours["opt"] == u.Opt() and ours["opt"].color is u.Color.GREEN
    thing = ours["thing"]
    assert isinstance(thing, ckpt.Opaque) and thing.cls is u.Thing
    assert thing.state == {"x": 1, "items": [1, 2]}
    theirs = torch.load(p, weights_only=False)
    ours["thing"], theirs["thing"] = None, None
    assert not differences(ours, theirs)


def test_state_dict_of_a_pickled_module_or_torchscript_is_model_state_dict() -> None:
    for name in ("fixtures/formats/pickled_module.pt", "fixtures/identity/checkpoints/3c5e7a9b1d2f/model/architecture.pt"):
        ours = ckpt.open(REPO / name).state_dict()
        ref = torch.load(REPO / name, weights_only=False).state_dict()
        assert not differences(ours, ref), name
    for name in ("traced.pt", "scripted_convbn.pt", "bf16.pt", "frozen.pt"):
        p = REPO / "fixtures/torchscript" / name
        with pytest.raises(ckpt.UnsafeError):
            ckpt.load(p)
        ours = ckpt.open(p).state_dict()
        ref = torch.jit.load(p).state_dict()
        assert not differences(ours, ref), name


@pytest.mark.parametrize("name", ["nested_buffers.pt", "setstate.pt"])
def test_state_dict_of_torchscript_with_tied_weights_or_setstate(name: str) -> None:
    """nested_buffers.pt: `out.weight` is `embed.weight` (tied), listed under both names;
    setstate.pt: a TorchScript `__setstate__` unpacks a tuple into `weight` (read, not run)."""
    p = REPO / "fixtures/torchscript" / name
    with pytest.raises(ckpt.UnsafeError) as e:
        ckpt.load(p)
    assert "ckpt.open(p).state_dict()" in str(e.value) and "TorchScript" in str(e.value)
    assert e.value.globals == ["torch.jit._script.RecursiveScriptModule"]
    ours = ckpt.open(p).state_dict()
    ref = torch.jit.load(p).state_dict()
    assert list(ours) == list(ref)
    assert not differences(ours, ref), name
    if name == "nested_buffers.pt":
        assert ours["out.weight"].data_ptr() == ours["embed.weight"].data_ptr()


def _scripted_setstate_modules():
    """Modules whose TorchScript `__setstate__` unpacks a nested tuple (tuple unpacking,
    `(inner)[0]`) or a dict (`d["w"]`), as submodules beside an ordinary one."""
    from typing import Dict, Tuple

    nn = torch.nn

    class Tup(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.arange(4.0).reshape(2, 2))
            self.register_buffer("b", torch.arange(3, dtype=torch.int64))
            self.n = 0

        def forward(self, x):
            return x @ self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, (self.b, self.n), self.training)

        @torch.jit.export
        def __setstate__(self, st: Tuple[torch.Tensor, Tuple[torch.Tensor, int], bool]):
            w, inner, tr = st
            self.w = w
            self.b = inner[0]
            self.n = inner[1]
            self.training = tr

    class Dct(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.full((3,), 2.0))

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self):
            return {"w": self.w}

        @torch.jit.export
        def __setstate__(self, d: Dict[str, torch.Tensor]):
            self.w = d["w"]
            self.training = False

    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.tup = Tup()
            self.dct = Dct()

        def forward(self, x):
            return self.tup(self.lin(x)).sum() * self.dct(x).sum()

    return Top()


def test_state_dict_of_torchscript_setstate_submodules(tmp_path: Path) -> None:
    p = tmp_path / "nested_setstate.pt"
    torch.jit.save(torch.jit.script(_scripted_setstate_modules()), str(p))
    ours = ckpt.open(p).state_dict()
    ref = torch.jit.load(p).state_dict()
    assert list(ours) == ["lin.weight", "lin.bias", "tup.w", "tup.b", "dct.w"] == list(ref)
    assert not differences(ours, ref)


def test_state_dict_of_torchscript_computed_by_setstate_is_refused(tmp_path: Path) -> None:
    """A `__setstate__` that computes a parameter: ckpt would have to run it; it says so."""
    from typing import Tuple

    nn = torch.nn

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x * self.w

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, st: Tuple[torch.Tensor, bool]):
            self.w = torch.mul(st[0], 2.0)
            self.training = st[1]

    p = tmp_path / "scaled.pt"
    torch.jit.save(torch.jit.script(Scaled()), str(p))
    with pytest.raises(ckpt.CkptError) as e:
        ckpt.open(p).state_dict()
    assert "__setstate__" in str(e.value) and "the root module" in str(e.value)
    assert e.value.path == str(p)


def test_errors_form_a_tree_and_name_the_file(tmp_path: Path) -> None:
    assert issubclass(ckpt.FormatError, ckpt.CkptError)
    assert issubclass(ckpt.UnsafeError, ckpt.CkptError)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ckpt.FormatError) as e:
        ckpt.load(bad)
    assert e.value.path == str(bad)
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "missing.ckpt")


def hostile_files():
    out = files([REPO / "fixtures/hostile", REPO / "fixtures/bad"])
    c = corpus_dir()
    if c is not None and (c / "bad").is_dir():
        out += files([c / "bad"])
    return out


def test_hostile_files_raise_unsafe_error_and_no_payload_runs(tmp_path: Path) -> None:
    # The payloads run `touch pwned` in the current folder: load every one from a scratch
    # folder, in another process, and look for the file.
    paths = [str(p) for p in hostile_files()]
    assert len(paths) > 50
    code = (
        "import json, sys, ckpt\n"
        "out = {}\n"
        "for p in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        ckpt.load(p, tensors='numpy'); out[p] = 'loaded'\n"
        "    except ckpt.UnsafeError as e:\n"
        "        out[p] = 'UnsafeError' if e.globals else 'UnsafeError without globals'\n"
        "    except ckpt.CkptError as e:\n"
        "        out[p] = 'CkptError' if e.path is not None else 'CkptError without path'\n"
        "    except (FileNotFoundError, IsADirectoryError, PermissionError, OSError) as e:\n"
        "        out[p] = 'OSError'\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    outcome = json.loads(r.stdout)
    assert not (tmp_path / "pwned").exists()
    assert list(tmp_path.iterdir()) == []
    verdicts = {f["path"]: f["verdict"] for f in ckpt.scan(paths)}
    for p in paths:
        if verdicts.get(p) == "dangerous":
            assert outcome[p] == "UnsafeError", (p, outcome[p])
        else:
            assert outcome[p] in ("loaded", "UnsafeError", "CkptError", "OSError"), (p, outcome[p])
