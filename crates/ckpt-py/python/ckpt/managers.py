"""The training side's folders: :class:`CheckpointManager` files runs into hierarchical
``<task>/<TIMESTAMP>_<MODEL>_<LOSS>/`` folders with JSON reports, and
:class:`ExperimentManager` into hash-addressed ``<hash>/{model,hp,data}`` experiments — both
in the layouts ``ckpt catalog``, ``ckpt hash`` and ``ckpt prune`` read.

Nothing here decides what the Rust side decides: the experiment hash is computed by the
``ckpt-identity`` crate (``ckpt._ckpt.experiment_identity``: the live module's tensor names,
dtypes and shapes, the experiment folder's ``hp/`` and ``data/`` read by the same readers as
``ckpt hash``), the config's YAML text by ckpt's own writer, each checkpoint's sidecar (with
the metrics a save was given) by the Rust live-sidecar writer ``ckpt.lightning`` uses,
retention by the ``ckpt-retention`` crate on the catalog ``ckpt prune`` reads, loading by
``ckpt.load``. This module converts Python values, writes files atomically and keeps the
bookkeeping.

torch and Lightning are imported when a method needs them, never on import.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import logging
import math
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ckpt import _ckpt
from ckpt.errors import CkptError

__all__ = [
    "CheckpointManager",
    "BinaryClassificationCheckpointManager",
    "MulticlassClassificationCheckpointManager",
    "ExperimentManager",
    "CheckpointManagerV2",
    "json_safe",
]

log = logging.getLogger("ckpt.managers")

PathLike = Union[str, "os.PathLike[str]"]

#: A tensor or array with at most this many elements is written as a list; a larger one as
#: its dtype and shape (``{"__tensor__": {"dtype": …, "shape": […]}}``, as ckpt's JSON
#: output writes a tensor), so a stray activation map cannot make a 2 GB ``config.json``.
MAX_LIST_ELEMENTS = 1000

_MAX_DEPTH = 64


# ---------------------------------------------------------------------------------------
# JSON-safe values and atomic files


def _type_name(t: type) -> str:
    return f"{t.__module__}.{t.__qualname__}"


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data, never raising: mappings (dicts, OmegaConf configs,
    ``argparse.Namespace``, dataclasses) become objects with string keys; lists, tuples and
    sets (sorted) become arrays; paths their text; enums their value (their name when the
    value is not plain); numpy scalars and 0-d tensors their number; tensors and arrays of at
    most :data:`MAX_LIST_ELEMENTS` elements lists, larger ones ``{"__tensor__": {"dtype",
    "shape"}}``; NaN and infinities the strings ``"nan"``, ``"inf"``, ``"-inf"``; dates ISO
    text; classes and functions their dotted name; anything else its ``repr``. A cycle is
    written as ``"<cycle>"``."""
    return _safe(value, 0, set())


def _float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _safe(v: Any, depth: int, seen: set) -> Any:  # noqa: C901 - one case per kind of value
    try:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, enum.Enum):
            inner = v.value
            if inner is None or isinstance(inner, (bool, int, float, str)):
                return _safe(inner, depth + 1, seen)
            return v.name
        if isinstance(v, int):
            # JSON readers (ckpt's included) hold 64-bit integers; a larger one is its digits.
            return int(v) if -(2**63) <= v < 2**64 else str(v)
        if isinstance(v, float):
            return _float(float(v))
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
            return v.isoformat()
        if isinstance(v, _dt.timedelta):
            return v.total_seconds()
        if isinstance(v, (bytes, bytearray)):
            return bytes(v).decode("utf-8", "backslashreplace")
        if isinstance(v, complex):
            return {"real": _float(v.real), "imag": _float(v.imag)}
        if isinstance(v, type) or callable(v) and hasattr(v, "__qualname__") and not hasattr(v, "shape"):
            return _type_name(v) if isinstance(v, type) else f"{getattr(v, '__module__', '')}.{v.__qualname__}"
        if depth > _MAX_DEPTH:
            return "<too deep>"
        module = type(v).__module__ or ""
        if module.startswith("torch"):
            return _torch_value(v, depth, seen)
        if module.startswith("numpy"):
            return _numpy_value(v, depth, seen)
        if id(v) in seen:
            return "<cycle>"
        seen = seen | {id(v)}
        if module.startswith("omegaconf"):
            from omegaconf import OmegaConf

            return _safe(OmegaConf.to_container(v, resolve=False, enum_to_str=True), depth + 1, seen)
        if dataclasses.is_dataclass(v):
            return {f.name: _safe(getattr(v, f.name, None), depth + 1, seen) for f in dataclasses.fields(v)}
        if isinstance(v, Mapping):
            return {_key(k): _safe(x, depth + 1, seen) for k, x in v.items()}
        if type(v).__name__ == "Namespace" and hasattr(v, "__dict__"):
            return {_key(k): _safe(x, depth + 1, seen) for k, x in vars(v).items()}
        if isinstance(v, (set, frozenset)):
            items = [_safe(x, depth + 1, seen) for x in v]
            return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
        if isinstance(v, (list, tuple)) or (hasattr(v, "__iter__") and hasattr(v, "__len__") and not hasattr(v, "keys")):
            return [_safe(x, depth + 1, seen) for x in v]
        if hasattr(v, "item") and callable(v.item):
            return _safe(v.item(), depth + 1, seen)
        return repr(v)
    except Exception as e:  # a value that cannot even be looked at must not end the run
        return f"<unserializable {type(v).__name__}: {e}>"


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, enum.Enum):
        return str(k.name)
    s = _safe(k, 0, set())
    return s if isinstance(s, str) else json.dumps(s, sort_keys=True)


def _torch_value(v: Any, depth: int, seen: set) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        dtype = str(v.dtype).replace("torch.", "")
        if v.is_sparse or v.layout != torch.strided or v.is_meta:
            return {"__tensor__": {"dtype": dtype, "shape": list(v.shape)}}
        if v.numel() <= MAX_LIST_ELEMENTS:
            x = v.detach().cpu()
            if x.is_complex():
                return _safe(x.tolist(), depth + 1, seen)
            return _safe(x.tolist(), depth + 1, seen)
        return {"__tensor__": {"dtype": dtype, "shape": list(v.shape)}}
    if isinstance(v, (torch.dtype, torch.device)):
        return str(v).replace("torch.", "") if isinstance(v, torch.dtype) else str(v)
    if isinstance(v, torch.Size):
        return list(v)
    if isinstance(v, torch.nn.Module):
        return _type_name(type(v))
    return repr(v)


def _numpy_value(v: Any, depth: int, seen: set) -> Any:
    import numpy as np

    if isinstance(v, np.ndarray):
        if v.size <= MAX_LIST_ELEMENTS and v.dtype.kind in "biufcUSb?":
            return _safe(v.tolist(), depth + 1, seen)
        return {"__tensor__": {"dtype": str(v.dtype), "shape": list(v.shape)}}
    if isinstance(v, np.generic):
        return _safe(v.item(), depth + 1, seen)
    if isinstance(v, np.dtype):
        return str(v)
    return repr(v)


def _dumps(value: Any, indent: Optional[int] = 2) -> str:
    return json.dumps(json_safe(value), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def _write_atomic(path: Path, data: Union[str, bytes]) -> Path:
    """Write ``path`` through a temporary file in the same folder (fsync, then rename): a
    reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _metric_number(v: Any) -> Optional[float]:
    """A metric given to a save as a float: a number, a numpy scalar or a one-element tensor
    (NaN and infinities kept: the Rust writer drops them); else ``None``."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        size = v.numel() if callable(getattr(v, "numel", None)) else getattr(v, "size", None)
        return float(v.item()) if size == 1 and callable(getattr(v, "item", None)) else None
    except (TypeError, ValueError, RuntimeError):
        return None


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _lightning(namespace: Optional[str] = None) -> Any:
    """``lightning.pytorch`` or ``pytorch_lightning``: the one asked for, else the one the
    program already imported (a Trainer accepts callbacks of its own package only; when both
    are imported, ``lightning.pytorch``), else whichever is installed."""
    if namespace is not None:
        if namespace not in ("lightning.pytorch", "pytorch_lightning"):
            raise ValueError(f"lightning must be 'lightning.pytorch' or 'pytorch_lightning', not {namespace!r}")
        import importlib

        return importlib.import_module(namespace)
    for name in ("lightning.pytorch", "pytorch_lightning"):
        if name in sys.modules:
            return sys.modules[name]
    try:
        import lightning.pytorch as pl  # type: ignore[import-not-found]
    except ImportError:
        try:
            import pytorch_lightning as pl  # type: ignore[import-not-found,no-redef]
        except ImportError as e:
            raise ImportError("CheckpointManager.get_checkpoint_callback needs lightning or pytorch_lightning") from e
    return pl


# ---------------------------------------------------------------------------------------
# CheckpointManager


class CheckpointManager:
    """One training run filed as ``<data_folder>/checkpoints/<root_name>/<YYYY-MM-DD_HH-MM-SS>_<MODEL>_<LOSS>/``
    (the UTC time the manager was made) with the JSON reports ``ckpt catalog`` reads:
    ``config.json``, ``training_summary.json``, ``classification_report.json``,
    ``minimal_logging.json``, and the best checkpoint ``best-epochXX-<monitor>-<value>.ckpt``.

    The folder is created at once. Two managers made in the same second for the same model
    and loss get distinct folders (the later one's time is moved on by a second)."""

    def __init__(self, root_name: str, data_folder: PathLike, model_name: str, loss_function: str) -> None:
        self.root_name = str(root_name)
        self.data_folder = Path(data_folder)
        self.model_name = str(model_name)
        self.loss_function = str(loss_function)
        start = _now().replace(microsecond=0)
        base = self.data_folder / "checkpoints" / self.root_name
        base.mkdir(parents=True, exist_ok=True)
        for _ in range(3600):
            d = base / f"{start:%Y-%m-%d_%H-%M-%S}_{self.model_name}_{self.loss_function}"
            try:
                d.mkdir()
                break
            except FileExistsError:
                start += _dt.timedelta(seconds=1)
        else:
            raise FileExistsError(f"{base}: no free run folder for {self.model_name}_{self.loss_function}")
        self.start_time = start
        #: The run folder.
        self.run_dir = d
        self.checkpoint_callback: Any = None

    @property
    def checkpoint_dir(self) -> Path:
        """The run folder (checkpoints and reports are side by side in it)."""
        return self.run_dir

    def __repr__(self) -> str:
        return f"<ckpt.{type(self).__name__} {self.run_dir}>"

    def get_checkpoint_callback(self, monitor: str, mode: str, *, lightning: Optional[str] = None) -> Any:
        """A Lightning ``ModelCheckpoint`` keeping the best checkpoint by ``monitor``
        (``mode`` ``"max"`` or ``"min"``), as ``best-epoch{XX}-{monitor}-{value:.3f}.ckpt`` in
        the run folder (a ``/`` in the monitor's name is written ``_`` in the file name).
        ``lightning`` names the package of the Trainer it is for (``"lightning.pytorch"`` or
        ``"pytorch_lightning"``); by default the one imported (``lightning.pytorch`` when both
        are: a Trainer of the other would not see the callback as its checkpointer)."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
        pl = _lightning(lightning)
        shown = monitor.replace("/", "_")
        cb = pl.callbacks.ModelCheckpoint(
            dirpath=str(self.run_dir),
            filename="best-epoch{epoch:02d}-" + shown + "-{" + monitor + ":.3f}",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            auto_insert_metric_name=False,
        )
        self.checkpoint_callback = cb
        return cb

    def _write_json(self, name: str, value: Any) -> Path:
        return _write_atomic(self.run_dir / name, _dumps(value))

    def save_config(self, config: Mapping[str, Any]) -> Path:
        """``config.json``: the run's configuration, every value made JSON-safe (see
        :func:`json_safe`)."""
        return self._write_json("config.json", config)

    def save_training_metadata(self, metadata: Mapping[str, Any]) -> Path:
        """``training_summary.json``: ``start_time``, ``end_time`` (now), ``model_name``,
        ``loss_function``, ``root_name``, then what is given (``best_epoch``,
        ``best_<metric>``, ``num_epochs_trained``, ``early_stopping_triggered``,
        ``test_results`` …; a key given wins)."""
        out: Dict[str, Any] = {
            "start_time": self.start_time.isoformat(),
            "end_time": _now().isoformat(),
            "model_name": self.model_name,
            "loss_function": self.loss_function,
            "root_name": self.root_name,
        }
        out.update(json_safe(dict(metadata)))
        return self._write_json("training_summary.json", out)

    def save_classification_report(self, report: Mapping[str, Any]) -> Path:
        """``classification_report.json``: the report given (``test_metrics``, scikit-learn's
        ``classification_report(output_dict=True)`` …) with ``model_name`` and
        ``loss_function`` added when it has none."""
        out: Dict[str, Any] = dict(json_safe(dict(report)))
        out.setdefault("model_name", self.model_name)
        out.setdefault("loss_function", self.loss_function)
        return self._write_json("classification_report.json", out)

    def save_minimal_logging(self, best_epoch: int, best_metric_value: float, best_metric_name: str,
                             num_epochs_trained: int, early_stopping_triggered: bool = False) -> Path:
        """``minimal_logging.json``: ``timestamp`` (now), ``best_epoch``,
        ``best_<best_metric_name>``, ``num_epochs_trained``, ``early_stopping_triggered``."""
        return self._write_json("minimal_logging.json", {
            "timestamp": _now().isoformat(),
            "best_epoch": best_epoch,
            f"best_{best_metric_name}": best_metric_value,
            "num_epochs_trained": num_epochs_trained,
            "early_stopping_triggered": bool(early_stopping_triggered),
        })


class BinaryClassificationCheckpointManager(CheckpointManager):
    """A :class:`CheckpointManager` for binary classifiers, filed under
    ``checkpoints/flares/binary_classification/`` unless another root is given."""

    default_root = "flares/binary_classification"

    def __init__(self, data_folder: PathLike, model_name: str, loss_function: str,
                 root_name: Optional[str] = None) -> None:
        super().__init__(root_name or self.default_root, data_folder, model_name, loss_function)


class MulticlassClassificationCheckpointManager(CheckpointManager):
    """A :class:`CheckpointManager` for multiclass classifiers, filed under
    ``checkpoints/flares/multiclass/`` unless another root is given."""

    default_root = "flares/multiclass"

    def __init__(self, data_folder: PathLike, model_name: str, loss_function: str,
                 root_name: Optional[str] = None) -> None:
        super().__init__(root_name or self.default_root, data_folder, model_name, loss_function)


# ---------------------------------------------------------------------------------------
# ExperimentManager

#: The component names ``has_changed`` reports (``ckpt hash``'s ``components``).
COMPONENTS = ("architecture", "hyperparameters", "data")


def _tensor_table(model: Any) -> List[Tuple[str, str, List[int]]]:
    """``(name, dtype, shape)`` of every tensor ``model.state_dict()`` holds: what the saved
    checkpoint's ``model_state_dict`` will hold, and all the architecture component reads."""
    import torch

    sd = model.state_dict() if hasattr(model, "state_dict") else model
    out = []
    for name, t in sd.items():
        if isinstance(t, torch.Tensor):
            out.append((str(name), str(t.dtype).replace("torch.", ""), [int(d) for d in t.shape]))
    return out


def _uid_list(uids: Iterable[Any]) -> List[Union[str, int, float]]:
    """UIDs as JSON strings and numbers (what ``data/active_uids.json`` holds)."""
    if hasattr(uids, "tolist") and not isinstance(uids, (list, tuple)):
        uids = uids.tolist()
    out: List[Union[str, int, float]] = []
    for u in uids:
        if hasattr(u, "item") and not isinstance(u, (str, int, float)):
            u = u.item()
        if isinstance(u, bool) or not isinstance(u, (str, int, float)):
            u = str(json_safe(u))
        elif isinstance(u, float) and not math.isfinite(u):
            u = str(u)
        out.append(u)
    return out


def _folder_of_hash(h: str) -> str:
    """The folder a hash names: ``v2:c3b2…`` → ``v2-c3b2…`` (a ``:`` is not allowed in file
    names everywhere; ``ckpt hash`` matches both)."""
    return h.replace(":", "-")


class ExperimentManager:
    """Experiments addressed by what they are: ``<root_log_dir>/checkpoints/<hash>/`` where
    ``<hash>`` is the identity ``ckpt hash`` prints for the checkpoints saved there (the
    model's architecture, the run's config, the active data UIDs), written ``v2-<16 hex>``.

    - ``hp/config.yaml``: the config; ``data/active_uids.json``: the active UIDs;
      ``model/checkpoint_step_NNNNNN.pt``: weights every N steps (``{"step",
      "model_state_dict", "exp_hash"}``, ``optimizer_state_dict`` when asked);
      ``model/architecture.json``: the model's class, parameter count and tensor table, once
      per hash (``model/architecture.pt``, a pickled module, only with
      ``save_architecture_module=True``); the catalog reads it.
    - ``model/checkpoint_step_NNNNNN.metadata.yaml``: each checkpoint's sidecar, written by the
      Rust live-sidecar writer right after the save, with the metrics the save was given
      (``provenance: live``), so ``ckpt catalog``, ``ckpt prune`` and ``ckpt validate`` read
      them from the tree.
    - Retention (``keep_last``, ``keep_best`` with ``monitor``/``mode``) runs after each save:
      exactly ``ckpt prune --no-cache`` on ``model/`` (the ``ckpt-retention`` crate on the same
      catalog): the newest and the best are never deleted, a checkpoint whose metric is
      unknown is kept. ``keep_last`` alone ranks by step.
    """

    def __init__(self, root_log_dir: PathLike, *, keep_last: Optional[int] = None, keep_best: Optional[int] = None,
                 monitor: Optional[str] = None, mode: str = "min", save_architecture_module: bool = False,
                 algorithm: str = "v2") -> None:
        if keep_best is not None and not monitor:
            raise ValueError("keep_best needs a monitor (the metric to rank by)")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
        self.root_log_dir = Path(root_log_dir)
        self.checkpoints_dir = self.root_log_dir / "checkpoints"
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.monitor = monitor
        self.mode = mode
        self.save_architecture_module = save_architecture_module
        self.algorithm = algorithm
        #: The current experiment's hash (``None`` before the first update).
        self.current_hash: Optional[str] = None
        #: Its components, as ``ckpt hash`` names them.
        self.components: Optional[Dict[str, Optional[str]]] = None
        #: What the hash was computed from (``ckpt hash``'s ``inputs``).
        self.inputs: Optional[dict] = None
        self._model: Any = None
        self._tensors: Optional[List[Tuple[str, str, List[int]]]] = None
        self._config_json: Optional[str] = None
        self._uids_json: Optional[str] = None
        self._key: Optional[tuple] = None
        self._sweep_staging()

    def _sweep_staging(self, older_than_s: float = 3600.0) -> None:
        """Remove folders a crashed process left half laid out (``.staging-*``, an hour old):
        a live one is renamed or removed within milliseconds."""
        import time

        if not self.checkpoints_dir.is_dir():
            return
        for d in self.checkpoints_dir.glob(".staging-*"):
            try:
                if time.time() - d.stat().st_mtime > older_than_s:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"<ckpt.{type(self).__name__} {self.root_log_dir} {self.current_hash}>"

    # -- identity ------------------------------------------------------------------------

    @property
    def experiment_dir(self) -> Optional[Path]:
        """``<root_log_dir>/checkpoints/<hash>`` of the current experiment."""
        return None if self.current_hash is None else self.checkpoints_dir / _folder_of_hash(self.current_hash)

    def _inputs(self, model: Any, config: Any, active_data_uids: Any) -> tuple:
        """(tensors, config JSON, UIDs JSON) for the given values, the current ones for those
        not given."""
        tensors = self._tensors if model is None else _tensor_table(model)
        config_json = self._config_json if config is None else json.dumps(json_safe(config), ensure_ascii=False, allow_nan=False)
        uids_json = self._uids_json if active_data_uids is None else json.dumps(_uid_list(active_data_uids), ensure_ascii=False)
        return tensors, config_json, uids_json

    def _identify(self, tensors: Optional[list], config_json: Optional[str], uids_json: Optional[str],
                  model: Any = None) -> Tuple[dict, Path]:
        """Lay the experiment folder out under a temporary name (``hp/config.yaml`` and
        ``data/active_uids.json`` as they will be), and ask the identity crate for the hash
        of a checkpoint saved in it. Returns (``ckpt hash``'s report, the staged folder)."""
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        staging = self.checkpoints_dir / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            for sub in ("model", "hp", "data"):
                (staging / sub).mkdir(parents=True)
            if config_json is not None:
                _write_atomic(staging / "hp" / "config.yaml", _ckpt.config_yaml(config_json))
            if uids_json is not None:
                _write_atomic(staging / "data" / "active_uids.json", uids_json + "\n")
            report = json.loads(_ckpt.experiment_identity(
                str(staging / "model" / "checkpoint_step_000000.pt"), tensors or [], self.algorithm))
            if model is not None and tensors:
                self._describe(model, tensors, report, staging / "model")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return report, staging

    def _describe(self, model: Any, tensors: list, report: dict, model_dir: Path) -> None:
        """``model/architecture.json`` (and ``architecture.pt`` when asked)."""
        import torch

        n = sum(math.prod(s) for _, _, s in tensors)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if hasattr(model, "parameters") else None
        _write_atomic(model_dir / "architecture.json", _dumps({
            "class": _type_name(type(model)),
            "architecture_hash": report["components"]["architecture"],
            "elements": n,
            "trainable_parameters": trainable,
            "tensors": [{"name": a, "dtype": d, "shape": s} for a, d, s in tensors],
            "repr": repr(model) if isinstance(model, torch.nn.Module) else None,
        }))
        if self.save_architecture_module and isinstance(model, torch.nn.Module):
            tmp = model_dir / f".architecture.pt.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                torch.save(model, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, model_dir / "architecture.pt")

    def update_experiment_hash(self, model: Any = None, config: Any = None,
                               active_data_uids: Optional[Iterable[Any]] = None) -> Tuple[str, bool]:
        """The experiment's hash for ``model`` (an ``nn.Module`` or a state dict), ``config``
        (a dict, an OmegaConf config, a dataclass …) and ``active_data_uids``; a value not
        given keeps the current one. Returns ``(hash, is_new)``: the string ``ckpt hash``
        prints for a checkpoint this manager then saves, and whether its folder was created
        now (with ``hp/config.yaml``, ``data/active_uids.json`` and
        ``model/architecture.json`` in it at once: the folder appears complete, by a rename).

        The config component is what ``ckpt hash`` will read: when the run also has a Hydra
        config (``.hydra/config.yaml`` up to three folders above the checkpoint), that one,
        as for any checkpoint (a warning says so)."""
        tensors, config_json, uids_json = self._inputs(model, config, active_data_uids)
        key = (None if tensors is None else tuple((n, d, tuple(s)) for n, d, s in tensors), config_json, uids_json)
        if key == self._key and self.current_hash is not None and self.experiment_dir is not None \
                and self.experiment_dir.is_dir():
            if model is not None:
                self._model = model
            return self.current_hash, False
        report, staging = self._identify(tensors, config_json, uids_json, model if model is not None else self._model)
        final = self.checkpoints_dir / _folder_of_hash(report["hash"])
        is_new = False
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            try:
                os.rename(staging, final)
                is_new = True
            except OSError:  # another process made it meanwhile
                shutil.rmtree(staging, ignore_errors=True)
                if not final.is_dir():
                    raise
        src = (report.get("inputs") or {}).get("hyperparameters") or {}
        if config_json is not None and src.get("source") not in (None, "hash_folder_hp"):
            log.warning("the config component of %s comes from %s (%s), as ckpt hash reads it, not from the config given",
                        report["hash"], src.get("source"), src.get("path"))
        # The files were read in the staged folder: name them where they are now.
        report["inputs"]["checkpoint"] = None
        report["folder"] = None
        for part in ("hyperparameters", "data"):
            src_p = (report["inputs"].get(part) or {}).get("path")
            if src_p and Path(src_p).is_relative_to(staging):
                report["inputs"][part]["path"] = str(final / Path(src_p).relative_to(staging))
        self.current_hash = report["hash"]
        self.components = report["components"]
        self.inputs = report["inputs"]
        self._key = key
        self._tensors, self._config_json, self._uids_json = tensors, config_json, uids_json
        if model is not None:
            self._model = model
        return self.current_hash, is_new

    def has_changed(self, model: Any = None, config: Any = None,
                    active_data_uids: Optional[Iterable[Any]] = None) -> List[str]:
        """The components (``"architecture"``, ``"hyperparameters"``, ``"data"``) whose
        hash for the given values differs from the current experiment's; every component
        when there is none yet. Nothing is created or changed."""
        if self.components is None:
            return list(COMPONENTS)
        tensors, config_json, uids_json = self._inputs(model, config, active_data_uids)
        report, staging = self._identify(tensors, config_json, uids_json)
        shutil.rmtree(staging, ignore_errors=True)
        return [c for c in COMPONENTS if report["components"].get(c) != self.components.get(c)]

    # -- saving --------------------------------------------------------------------------

    def _require_experiment(self) -> Path:
        if self.experiment_dir is None:
            raise CkptError("no experiment yet: call update_experiment_hash(model=, config=, active_data_uids=) first")
        return self.experiment_dir

    def save_config(self, config: Any) -> Path:
        """Make ``config`` the run's config: a changed config is a new experiment (its
        ``hp/config.yaml`` written with its folder); an unchanged one writes nothing. Returns
        the ``hp/config.yaml`` path."""
        self.update_experiment_hash(config=config)
        return self._require_experiment() / "hp" / "config.yaml"

    def save_data_backup(self, uids: Iterable[Any], extra: Any = None) -> Path:
        """Make ``uids`` the active sample UIDs (``data/active_uids.json``, read by ``ckpt
        hash`` and the catalog; changed UIDs are a new experiment). ``extra`` (per-sample
        weights, losses …) is written JSON-safe to ``data/extra.json`` beside it. Returns the
        UID file's path."""
        self.update_experiment_hash(active_data_uids=uids)
        d = self._require_experiment() / "data"
        if extra is not None:
            _write_atomic(d / "extra.json", _dumps(extra))
        return d / "active_uids.json"

    def save_model_checkpoint(self, model: Any = None, step: Optional[int] = None, optimizer: Any = None,
                              save_optimizer: bool = False, metrics: Optional[Mapping[str, float]] = None) -> Path:
        """Save ``model``'s weights as ``model/checkpoint_step_{step:06d}.pt`` in the
        experiment of its hash (updated first: a changed architecture is a new experiment),
        atomically (a temporary file, fsync, rename). The optimizer's state goes in only with
        ``save_optimizer=True``. Then its sidecar ``checkpoint_step_{step:06d}.metadata.yaml`` is
        written with ``metrics`` (``{"val_loss": 0.31}``; numbers, numpy scalars or
        one-element tensors; NaN dropped), where ``ckpt catalog`` and ``ckpt prune`` — and so
        retention, which ranks by ``monitor`` when ``keep_best`` is set — read them. Then
        retention runs. Returns the checkpoint's path."""
        import torch

        if step is None:
            raise TypeError("save_model_checkpoint needs step=")
        model = model if model is not None else self._model
        if model is None:
            raise TypeError("save_model_checkpoint needs model= (no model given before)")
        h, _ = self.update_experiment_hash(model=model)
        exp = self._require_experiment()
        path = exp / "model" / f"checkpoint_step_{int(step):06d}.pt"
        payload: Dict[str, Any] = {
            "step": int(step),
            "model_state_dict": model.state_dict() if hasattr(model, "state_dict") else model,
            "exp_hash": h,
        }
        if save_optimizer and optimizer is not None:
            payload["optimizer_state_dict"] = optimizer.state_dict()
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            if path.exists():
                # A step saved again: the sidecar ckpt wrote describes the old file, and a
                # writer that found it fresh (same bytes) would read its metrics back.
                self._remove_sidecar(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._write_sidecar(path, step, metrics)
        self.apply_retention()
        return path

    @staticmethod
    def _remove_sidecar(path: Path) -> None:
        """Remove the sidecars ckpt wrote for ``path`` (a hand-written one stays)."""
        try:
            _ckpt.remove_sidecar(str(path))
        except Exception as e:  # noqa: BLE001 - the save goes on; the writer replaces it
            log.warning("ckpt: the sidecar of %s was not removed before it was saved again: %s", path, e)

    def _write_sidecar(self, path: Path, step: int, metrics: Optional[Mapping[str, Any]]) -> Optional[str]:
        """``<stem>.metadata.yaml`` beside the checkpoint just saved, by the Rust live-sidecar
        writer (``ckpt.lightning.MetadataCallback``'s): the file read back, resolved as
        ``ckpt convert-legacy`` resolves it, with ``metrics`` and the retention monitor/mode
        as what the live run observed. Atomic; a sidecar ckpt did not write is left (a
        warning). Never raises: the checkpoint is saved whatever happens here, and without
        its sidecar its metric is unknown, which ``ckpt prune``'s rules keep. Returns the
        sidecar's path when written."""
        values: Dict[str, float] = {}
        for k, v in dict(metrics or {}).items():
            x = _metric_number(v)
            if x is not None:
                values[str(k)] = x
        live: Dict[str, Any] = {
            "trainer": {"global_step": int(step)},
            "writer": f"ckpt.ExperimentManager (ckpt {getattr(_ckpt, '__version__', '?')})",
        }
        if self.monitor:
            live["monitor"] = self.monitor
            live["mode"] = self.mode
        try:
            r = _ckpt.write_live_sidecar(str(path), json.dumps(live), values)
        except Exception as e:  # noqa: BLE001 - a failure is a warning, never an exception
            log.warning("ckpt: no sidecar for %s (its metrics are unknown to retention, so it is kept): %s", path, e)
            return None
        if r["status"] == "kept":
            log.warning("ckpt: %s was not written by ckpt; left as it is (it may not describe %s)", r["sidecar"], path)
            return None
        return str(r["sidecar"])

    def apply_retention(self, delete: bool = True) -> Optional[dict]:
        """Apply ``keep_last`` / ``keep_best`` to the current experiment's ``model/``: what
        ``ckpt prune model/ --no-cache --keep-top K --monitor M --mode MODE --keep-last N``
        plans (and, with ``delete``, does), the metrics read from the checkpoints' sidecars
        as the command reads them. Returns its ``{"plan", "executed"}`` (``None`` when no
        retention is set). ``delete=False``: the plan only."""
        if self.keep_last is None and self.keep_best is None:
            return None
        exp = self._require_experiment()
        model_dir = (exp / "model").absolute()
        if self.keep_best is not None and self.monitor:
            monitor, mode, top = self.monitor, self.mode, int(self.keep_best)
        else:
            # `keep_last` alone: newest by step (the best by `global_step`, max, is the newest).
            monitor, mode, top = "global_step", "max", 0
        out = json.loads(_ckpt.retain([str(model_dir)], top, monitor, mode, int(self.keep_last or 0), delete))
        executed = out.get("executed") or {}
        for (p, why) in executed.get("skipped", []):
            log.warning("retention kept %s: %s", p, why)
        return out

    # -- loading -------------------------------------------------------------------------

    def _resolve(self, experiment: Optional[str]) -> Path:
        """An experiment folder by hash (``v2:…``, ``v2-…``, a folder name or a unique
        prefix of one), the current one by default."""
        if experiment is None:
            return self._require_experiment()
        name = _folder_of_hash(experiment)
        d = self.checkpoints_dir / name
        if d.is_dir():
            return d
        matches = [e for e in self._experiment_dirs() if e.name.startswith(name)
                   or e.name.split("-", 1)[-1].startswith(name)]
        if len(matches) == 1:
            return matches[0]
        raise CkptError(f"{self.checkpoints_dir}: {'no' if not matches else 'more than one'} experiment {experiment!r}")

    def _experiment_dirs(self) -> List[Path]:
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(d for d in self.checkpoints_dir.iterdir()
                      if d.is_dir() and not d.name.startswith(".") and (d / "model").is_dir())

    def _load_into(self, path: Path, model: Any, optimizer: Any) -> dict:
        import ckpt

        data = ckpt.load(path)
        if model is not None:
            model.load_state_dict(data["model_state_dict"])
        if optimizer is not None and "optimizer_state_dict" in data:
            optimizer.load_state_dict(data["optimizer_state_dict"])
        data["path"] = str(path)
        return data

    def load_latest_checkpoint(self, model: Any = None, optimizer: Any = None,
                               experiment: Optional[str] = None) -> Optional[dict]:
        """Load the newest checkpoint (largest step) of the current experiment (or
        ``experiment``) into ``model`` (and ``optimizer``, when the checkpoint has its state)
        through ``ckpt.load`` (nothing in the file is run). Returns the checkpoint (``step``,
        ``model_state_dict`` …, and ``path``), or ``None`` when there is none."""
        from ckpt._commands import run

        exp = self._resolve(experiment)
        try:
            path = run(["latest", str(exp / "model"), "--no-cache"], json_output=False).strip()
        except CkptError:
            return None
        return self._load_into(Path(path), model, optimizer) if path else None

    def load_checkpoint(self, step: int, model: Any = None, optimizer: Any = None,
                        experiment: Optional[str] = None) -> dict:
        """Load ``checkpoint_step_{step:06d}.pt`` of the current experiment (or
        ``experiment``) through ``ckpt.load``, into ``model``/``optimizer`` when given."""
        path = self._resolve(experiment) / "model" / f"checkpoint_step_{int(step):06d}.pt"
        if not path.is_file():
            raise FileNotFoundError(str(path))
        return self._load_into(path, model, optimizer)

    def list_experiments(self) -> List[dict]:
        """Every experiment folder under ``<root_log_dir>/checkpoints``: ``hash`` (``v2:…``
        for a hash-named folder, else the folder name), ``path``, ``steps`` (of its
        ``checkpoint_step_*.pt``, ascending), ``latest_step``."""
        out = []
        for d in self._experiment_dirs():
            steps = sorted(int(s) for s in (p.name[len("checkpoint_step_"):-3] for p in (d / "model").glob("checkpoint_step_*.pt"))
                           if s.isdigit())
            out.append({
                "hash": d.name.replace("-", ":", 1) if d.name[:1] == "v" and "-" in d.name else d.name,
                "path": str(d),
                "steps": steps,
                "latest_step": steps[-1] if steps else None,
                "current": d == self.experiment_dir,
            })
        return out

    def get_experiment_info(self, experiment: Optional[str] = None) -> dict:
        """One experiment (the current one by default): what :meth:`list_experiments` says,
        its ``config`` (``hp/config.yaml`` as ckpt reads it), ``architecture``
        (``model/architecture.json``), the ``metrics`` of its checkpoints as ``ckpt catalog``
        reads them (file name → metrics, for those that have any: the ones given at save time
        come from the checkpoints' sidecars), and ``identity`` — ``ckpt hash`` of its newest
        checkpoint (``None`` before the first)."""
        import ckpt

        d = self._resolve(experiment)
        info = next((e for e in self.list_experiments() if e["path"] == str(d)), {"path": str(d)})
        cfg = d / "hp" / "config.yaml"
        info["config"] = json.loads(_ckpt.read_config(str(cfg))) if cfg.is_file() else None
        arch = d / "model" / "architecture.json"
        try:
            info["architecture"] = json.loads(arch.read_text("utf-8"))
        except (OSError, ValueError):
            info["architecture"] = None
        info["metrics"] = {}
        if info.get("steps"):
            for e in ckpt.catalog(d / "model", no_cache=True):
                if e.get("metrics"):
                    info["metrics"][Path(e["path"]).name] = dict(e["metrics"])
        info["identity"] = ckpt.hash(d) if info.get("steps") else None
        return info


#: The name the seed's users know.
CheckpointManagerV2 = ExperimentManager
