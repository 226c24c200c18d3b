"""The CLI's commands as functions: each runs the very same Rust command in-process with
``--format json`` and returns its JSON (the contract ``ckpt schema <command>`` describes).
Nothing is computed here: arguments become a command line, the output becomes Python."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Union

from ckpt import _ckpt
from ckpt.errors import CkptError

PathLike = Union[str, "os.PathLike[str]"]


class CkptWarning(UserWarning):
    """A warning a command printed (a stale sidecar, a config over a budget …)."""


def _paths(paths: Union[PathLike, Iterable[PathLike]]) -> List[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    return [os.fspath(p) for p in paths]


def _flags(options: dict) -> List[str]:
    """`sort="epoch", desc=True, group_by="run"` → `--sort epoch --desc --group-by run`;
    a list gives the flag once per item; None and False give nothing."""
    out: List[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                out += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
        else:
            out += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return out


def run(args: Sequence[str], *, json_output: bool = True, ok_codes: Sequence[int] = (0,),
        progress: Optional[Callable[[int, int], None]] = None) -> Any:
    """Run `ckpt ARGS…` (with ``--format json`` added when ``json_output``); return the parsed
    output. Warnings become :class:`CkptWarning`; a failure raises :class:`CkptError` with the
    command's one-line message and ``exit_code``."""
    argv = list(args) + (["--format", "json"] if json_output else [])
    code, out, err = _ckpt.run(argv, progress)
    text = err.decode("utf-8", errors="replace")
    errors = []
    for line in text.splitlines():
        if line.startswith("ckpt: warning: "):
            warnings.warn(line[len("ckpt: warning: "):], CkptWarning, stacklevel=3)
        elif line.strip():
            errors.append(line[len("ckpt: error: "):] if line.startswith("ckpt: error: ") else line)
    if code not in ok_codes and code != 1:
        e = CkptError("; ".join(errors) or f"ckpt {' '.join(args)}: exit {code}")
        e.exit_code = code  # type: ignore[attr-defined]
        # What the command printed before failing (a batch's JSON), when it printed any.
        try:
            e.output = json.loads(out) if json_output and out.strip() else None  # type: ignore[attr-defined]
        except ValueError:
            e.output = None  # type: ignore[attr-defined]
        raise e
    for line in errors if code in ok_codes and code != 0 else ():
        warnings.warn(line, CkptWarning, stacklevel=3)
    if not json_output:
        return out.decode("utf-8", errors="replace")
    return json.loads(out) if out.strip() else None


class Catalog:
    """The entries of ``ckpt catalog`` (one dict per checkpoint, the JSON contract) and the
    run's warnings. ``to_pandas()`` / ``to_arrow()`` when those are installed."""

    def __init__(self, checkpoints: List[dict], warnings: List[str]) -> None:
        self.checkpoints = checkpoints
        self.warnings = warnings

    def __len__(self) -> int:
        return len(self.checkpoints)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.checkpoints)

    def __getitem__(self, i: int) -> dict:
        return self.checkpoints[i]

    def __repr__(self) -> str:
        return f"<ckpt.Catalog of {len(self)} checkpoints>"

    def records(self) -> List[dict]:
        """One flat dict per checkpoint: nested fields dotted (`metrics.val_loss`,
        `hparams.lr`, `model.encoder.model_name`), sources and conflicts left out."""
        rows = []
        for e in self.checkpoints:
            row: dict = {}
            for k, v in e.items():
                if k in ("sources", "conflicts"):
                    continue
                if isinstance(v, dict) and k in ("metrics", "hparams", "model", "data"):
                    _flatten(v, k, row)
                else:
                    row[k] = v
            rows.append(row)
        return rows

    def to_pandas(self) -> Any:
        """A DataFrame, one row per checkpoint (see :meth:`records`)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records())

    def to_arrow(self) -> Any:
        """A pyarrow Table of the nested entries (sources and conflicts included)."""
        import pyarrow as pa

        return pa.Table.from_pylist(self.checkpoints)


def _flatten(v: dict, prefix: str, out: dict) -> None:
    for k, x in v.items():
        key = f"{prefix}.{k}"
        if isinstance(x, dict) and x:
            _flatten(x, key, out)
        else:
            out[key] = x


def inspect(path: PathLike, **options: Any) -> dict:
    """``ckpt inspect PATH --format json``: what the command prints about the file."""
    out = run(["inspect", *_paths(path), *_flags(options)])
    return out[0] if isinstance(out, list) and len(out) == 1 else out


class Verdict(dict):
    """One file of ``ckpt scan``: the command's JSON object (``path``, ``verdict``, ``globals``,
    ``format``, ``pickles``, ``problems``, ``error``, ``note``), its keys also readable as
    attributes, and ``safe`` / ``dangerous`` for the common questions."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def safe(self) -> bool:
        """Loading it runs nothing but torch's own rebuild functions and plain containers."""
        return self.get("verdict") == "safe"

    @property
    def dangerous(self) -> bool:
        """Loading it would import or call something that can run code."""
        return self.get("verdict") == "dangerous"

    def __repr__(self) -> str:
        return f"<ckpt.Verdict {self.get('verdict')} {self.get('path')}>"


def scan(paths: Union[PathLike, Iterable[PathLike]], **options: Any) -> List[Verdict]:
    """``ckpt scan PATHS… --format json``: a :class:`Verdict` per file (``safe``, ``unknown``,
    ``dangerous``, ``error``, ``no-pickle``) with the globals behind it. Files that could not be
    read are in the list with their error (the command's exit 2 is a warning here, not an
    exception)."""
    out = run(["scan", *_paths(paths), *_flags(options)], ok_codes=(0, 1, 2))
    return [Verdict(v) for v in out or []]


def catalog(paths: Union[PathLike, Iterable[PathLike]], *, filter: Union[None, str, Sequence[str]] = None,
            sort: Optional[str] = None, best: bool = False, **options: Any) -> Catalog:
    """``ckpt catalog PATHS… --format json`` with the same options (``filter``, ``sort``,
    ``desc``, ``best``, ``latest``, ``group_by``, ``cache_file``, ``no_cache`` …)."""
    flt = [filter] if isinstance(filter, str) else filter
    out = run(["catalog", *_paths(paths), *_flags({"filter": flt, "sort": sort, "best": best, **options})])
    return Catalog(out["checkpoints"], out.get("warnings", []))


def hash(path: PathLike, **options: Any) -> dict:  # noqa: A001 - the command's name
    """``ckpt hash PATH --format json``: the experiment identity and its components."""
    return run(["hash", *_paths(path), *_flags(options)])


def diff(a: PathLike, b: PathLike, **options: Any) -> dict:
    """``ckpt diff A B --format json``."""
    return run(["diff", os.fspath(a), os.fspath(b), *_flags(options)])


def compare(*paths: PathLike, **options: Any) -> dict:
    """``ckpt compare A B … --format json``."""
    return run(["compare", *(os.fspath(p) for p in paths), *_flags(options)])


def experiments(paths: Union[PathLike, Iterable[PathLike]], **options: Any) -> Any:
    """``ckpt experiments PATHS… --format json``."""
    return run(["experiments", *_paths(paths), *_flags(options)])


def prune(paths: Union[PathLike, Iterable[PathLike]], *, keep_top: int, monitor: str, mode: str,
          delete: bool = False, **options: Any) -> dict:
    """``ckpt prune``: the plan (what is kept and why, what would go). Nothing is deleted
    unless ``delete=True`` (``--yes``)."""
    return run(["prune", *_paths(paths), *_flags({"keep_top": keep_top, "monitor": monitor, "mode": mode,
                                                   "yes": delete, **options})])


def _target(path: PathLike) -> List[str]:
    """`--checkpoint FILE` or `--exp-dir FOLDER`, as the sidecar commands take them."""
    p = os.fspath(path)
    return ["--checkpoint", p] if os.path.isfile(p) else ["--exp-dir", p]


def validate(path: PathLike, **options: Any) -> Any:
    """``ckpt validate --checkpoint FILE | --exp-dir FOLDER --format json``: each sidecar
    valid, invalid (with field paths), missing or stale."""
    return run(["validate", *_target(path), *_flags(options)])


def write_sidecar(path: PathLike, **options: Any) -> str:
    """``ckpt convert-legacy --checkpoint FILE | --exp-dir FOLDER``: write
    ``<stem>.metadata.yaml`` beside each checkpoint that has none (atomically; an existing
    sidecar is rewritten only with ``force=True``). Returns what the command printed."""
    return run(["convert-legacy", *_target(path), *_flags(options)], json_output=False)


def convert(paths: Union[PathLike, Iterable[PathLike]], output_dir: PathLike, *,
            progress: Optional[Callable[[int, int], None]] = None, **options: Any) -> Any:
    """``ckpt convert PATHS… --output-dir DIR --format json`` (``to``, ``dtype``,
    ``max_shard_size``, ``base_model`` …). ``progress(bytes_done, bytes_total)`` is called as
    the tensors are written (summed over the batch)."""
    return run(["convert", *_paths(paths), *_flags({"output_dir": output_dir, **options})], progress=progress)


def schema(name: Optional[str] = None) -> dict:
    """The JSON Schema of a command's ``--format json`` output (the sidecar's by default)."""
    return json.loads(run(["schema", *([name] if name else [])], json_output=False))
