"""Metadata sidecars written by the training run itself: :class:`MetadataCallback`.

Added to a Lightning ``Trainer`` (``lightning.pytorch`` or ``pytorch_lightning``), it writes
``<stem>.metadata.yaml`` beside every checkpoint any ``ModelCheckpoint`` saves — top-k, last,
every-n — with the schema and the values ``ckpt convert-legacy --checkpoint FILE`` would
write for that file, plus what only the live run knows: its metrics, the saving callback's
monitor / mode / ``save_top_k`` / ``save_last``, the running Hydra job and the loggers' runs.
Every value is computed by ckpt's Rust reader and resolution engine (``ckpt._ckpt``); this
module only gathers the live run's values and hands them over.

``import ckpt`` does not import this module (nor Lightning); importing it imports the
Lightning namespaces already imported, else every one installed, so the callback is a
``Callback`` of whichever ``Trainer`` it is given.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import queue
import sys
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from ckpt import _ckpt

__all__ = ["MetadataCallback"]

log = logging.getLogger("ckpt.lightning")

_NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def _lightning_modules() -> List[Any]:
    """The Lightning namespaces to subclass ``Callback`` from: those already imported (the
    ``Trainer`` in use is one of them), else every one that is installed."""
    loaded = [sys.modules[n] for n in _NAMESPACES if n in sys.modules]
    if loaded:
        return loaded
    for name in _NAMESPACES:
        try:
            loaded.append(importlib.import_module(name))
        except ImportError:
            continue
    if not loaded:
        raise ImportError("ckpt.lightning needs lightning (lightning.pytorch) or pytorch_lightning")
    return loaded


_MODULES = _lightning_modules()


def _writer_name(trainer: Any) -> str:
    """``ckpt.lightning.MetadataCallback (<the trainer's package> <its version>)``."""
    top = type(trainer).__module__.split(".")[0]
    version = getattr(sys.modules.get(top), "__version__", "?")
    return f"ckpt.lightning.MetadataCallback ({top} {version})"


def _plain(v: Any) -> Any:
    """A value as JSON can carry it (paths and other objects as text)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _metric_value(v: Any) -> Optional[float]:
    """A logged metric as a float: a Python number or a one-element tensor; else ``None``."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    numel = getattr(v, "numel", None)
    if numel is not None and numel() == 1:
        try:
            return float(v.item())
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def _hydra_job() -> Optional[Dict[str, Any]]:
    """The running Hydra job (``HydraConfig``), when Hydra is in use and set: never imports
    Hydra when the program did not."""
    if "hydra" not in sys.modules:
        return None
    try:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
        out: Dict[str, Any] = {}
        out["job_name"] = _plain(OmegaConf.select(hc, "job.name", default=None))
        num = OmegaConf.select(hc, "job.num", default=None)
        if num is not None:
            out["job_num"] = int(num)
        out_dir = OmegaConf.select(hc, "runtime.output_dir", default=None)
        out["output_dir"] = _plain(out_dir)
        mode = OmegaConf.select(hc, "mode", default=None)
        if mode is not None:
            out["mode"] = getattr(mode, "name", str(mode))
        if out.get("mode") == "MULTIRUN":
            out["sweep_dir"] = _plain(OmegaConf.select(hc, "sweep.dir", default=None))
        overrides = OmegaConf.select(hc, "overrides.task", default=None)
        if overrides is not None:
            out["overrides"] = [str(o) for o in overrides]
        choices = OmegaConf.select(hc, "runtime.choices", default=None)
        if choices is not None:
            # The app's config groups (Hydra's own `hydra/...` groups say nothing about it).
            out["choices"] = {
                str(k): _plain(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra/")
            }
        subdir = OmegaConf.select(hc, "output_subdir", default=None)
        if out_dir and subdir:
            cfg = os.path.join(str(out_dir), str(subdir), "config.yaml")
            if os.path.isfile(cfg):
                out["config"] = cfg
        return {k: v for k, v in out.items() if v is not None}
    except Exception as e:  # noqa: BLE001 - never into training
        log.warning("ckpt: the running Hydra config could not be read: %s", e)
        return None


def _loggers(trainer: Any) -> List[Dict[str, Any]]:
    """Each logger's run: its class, name, version or run id, and directories."""
    out = []
    for lg in getattr(trainer, "loggers", None) or []:
        d: Dict[str, Any] = {"logger": type(lg).__name__}
        for attr in ("name", "version", "run_id", "experiment_id", "save_dir", "log_dir"):
            try:
                v = getattr(lg, attr, None)
            except Exception:  # noqa: BLE001 - a logger property that fails says nothing
                v = None
            if v is not None and not callable(v):
                d[attr] = _plain(v)
        out.append(d)
    return out


def _async_fence(trainer: Any) -> Optional[Tuple[Any, Any]]:
    """With Lightning's ``AsyncCheckpointIO`` the save returns before the file is written, by
    its one-thread executor: a no-op queued behind it is done when the file is. ``None`` for a
    synchronous checkpoint IO."""
    io = getattr(getattr(trainer, "strategy", None), "checkpoint_io", None)
    executor = getattr(io, "_executor", None)
    if executor is None or not hasattr(executor, "submit"):
        return None
    return io, executor.submit(lambda: None)


class _Worker:
    """One thread that writes and removes sidecars in the order the run asked (a removal is
    never done before the write of the same file it follows), off the training thread."""

    def __init__(self) -> None:
        self._q: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ckpt-sidecars", daemon=True)
                self._thread.start()
        self._q.put(job)

    def _run(self) -> None:
        while True:
            job = self._q.get()
            try:
                if job is not None:
                    job()
            except Exception as e:  # noqa: BLE001 - jobs log their own failures; belt and braces
                log.warning("ckpt: sidecar job failed: %s", e)
            finally:
                self._q.task_done()

    def flush(self) -> None:
        """Wait until every job submitted so far is done."""
        if self._thread is not None:
            self._q.join()


class _MetadataCallbackCore:
    """The behaviour of :class:`MetadataCallback`, independent of the Lightning namespace."""

    def __init__(self, *, background: bool = True) -> None:
        #: Write on a worker thread (default) or on the training thread.
        self.background = background
        #: Milliseconds per save: ``"training_thread"`` (what the step waited for: gathering
        #: the live values and queueing) and ``"write"`` (reading the checkpoint, resolving,
        #: writing the sidecar, on the worker).
        self.timings: Dict[str, List[float]] = {"training_thread": [], "write": []}
        #: Sidecars written, removed, and left in place (not written by ckpt), by path.
        self.written: List[str] = []
        self.removed: List[str] = []
        self.kept: List[str] = []
        self._worker = _Worker()
        self._wrapped: List[Tuple[Any, Tuple[str, ...]]] = []
        self._hydra: Optional[Dict[str, Any]] = None
        self._loggers: Optional[List[Dict[str, Any]]] = None
        self._writer = "ckpt.lightning.MetadataCallback"
        ref = weakref.ref(self)
        atexit.register(lambda: (ref() or _Nothing()).flush())

    def __getstate__(self) -> Dict[str, Any]:
        # Pickled with the trainer (``ddp_spawn``): the worker thread and the wrappers stay
        # behind; a new worker is made on the other side, and ``setup`` wraps there.
        state = self.__dict__.copy()
        state.pop("_worker", None)
        state["_wrapped"] = []
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._worker = _Worker()

    # -- Lightning hooks -------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        try:
            self._hydra = _hydra_job()
            self._writer = _writer_name(trainer)
            self._loggers = None
            for mc in getattr(trainer, "checkpoint_callbacks", []):
                self._wrap(mc)
        except Exception as e:  # noqa: BLE001
            log.warning("ckpt: MetadataCallback could not attach to the checkpoint callbacks: %s", e)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.flush()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.flush()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.flush()
        self._unwrap()

    def flush(self) -> None:
        """Wait until every sidecar asked for so far is written (or removed)."""
        try:
            self._worker.flush()
        except Exception as e:  # noqa: BLE001
            log.warning("ckpt: flushing sidecars failed: %s", e)

    # -- the seams: ModelCheckpoint's own save and removal ----------------------------------

    def _wrap(self, mc: Any) -> None:
        """Wrap this ModelCheckpoint instance's ``_save_checkpoint(trainer, filepath)`` (every
        file it writes: top-k, last, every-n, on exception), ``_remove_checkpoint(trainer,
        filepath)`` (top-k rotation, the previous last) and ``_link_checkpoint`` (``save_last
        ="link"``). Instance attributes shadow the class's methods and are deleted at
        teardown; the class is never patched."""
        if getattr(mc, "_ckpt_metadata_callback", None) is self:
            return
        names = []
        orig_save = getattr(mc, "_save_checkpoint", None)
        orig_remove = getattr(mc, "_remove_checkpoint", None)
        orig_link = getattr(mc, "_link_checkpoint", None)
        if orig_save is None:
            log.warning("ckpt: %s has no _save_checkpoint; no sidecars for its files", type(mc).__name__)
            return
        cb = self

        def _save_checkpoint(trainer: Any, filepath: str) -> None:
            try:
                orig_save(trainer, filepath)
            except BaseException:
                cb._save_failed(trainer, filepath)
                raise
            cb._saved(trainer, mc, filepath)

        mc._save_checkpoint = _save_checkpoint
        names.append("_save_checkpoint")
        if orig_remove is not None:

            def _remove_checkpoint(trainer: Any, filepath: str) -> None:
                orig_remove(trainer, filepath)
                cb._removed(trainer, filepath)

            mc._remove_checkpoint = _remove_checkpoint
            names.append("_remove_checkpoint")
        if orig_link is not None:

            def _link_checkpoint(trainer: Any, filepath: str, linkpath: str) -> None:
                orig_link(trainer, filepath, linkpath)
                cb._saved(trainer, mc, linkpath)

            mc._link_checkpoint = _link_checkpoint
            names.append("_link_checkpoint")
        mc._ckpt_metadata_callback = self
        names.append("_ckpt_metadata_callback")
        self._wrapped.append((mc, tuple(names)))

    def _unwrap(self) -> None:
        for mc, names in self._wrapped:
            for n in names:
                mc.__dict__.pop(n, None)
        self._wrapped = []

    # -- what happens at a save, a removal, a failed save -----------------------------------

    def _live(self, trainer: Any, mc: Any) -> Tuple[str, Dict[str, float]]:
        """The live run's values at this save (JSON for ``_ckpt.write_live_sidecar``, and the
        metrics apart so that NaN and infinities reach Rust, which drops them)."""
        metrics: Dict[str, float] = {}
        for k, v in dict(getattr(trainer, "callback_metrics", {}) or {}).items():
            x = _metric_value(v)
            if x is not None:
                metrics[str(k)] = x
        if self._loggers is None:
            self._loggers = _loggers(trainer)
        save_last = getattr(mc, "save_last", None)
        top_k = getattr(mc, "save_top_k", None)
        strategy = getattr(trainer, "strategy", None)
        live: Dict[str, Any] = {
            "monitor": getattr(mc, "monitor", None),
            "mode": getattr(mc, "mode", None),
            "save_top_k": int(top_k) if isinstance(top_k, int) else None,
            "save_last": None if save_last is None else bool(save_last),
            "loggers": self._loggers,
            "trainer": {
                "current_epoch": int(getattr(trainer, "current_epoch", 0)),
                "global_step": int(getattr(trainer, "global_step", 0)),
                "world_size": int(getattr(trainer, "world_size", 1)),
                "strategy": type(strategy).__name__ if strategy is not None else None,
            },
            "writer": self._writer,
        }
        if self._hydra:
            live["hydra"] = self._hydra
        return json.dumps(live), metrics

    def _saved(self, trainer: Any, mc: Any, filepath: str) -> None:
        if not getattr(trainer, "is_global_zero", True):
            return
        try:
            t0 = time.perf_counter()
            path = os.fspath(filepath)
            live, metrics = self._live(trainer, mc)
            fence = _async_fence(trainer)
            if self.background:
                self._worker.submit(lambda: self._write(path, live, metrics, fence))
            else:
                self._write(path, live, metrics, fence)
            self.timings["training_thread"].append((time.perf_counter() - t0) * 1e3)
        except Exception as e:  # noqa: BLE001
            log.warning("ckpt: no sidecar for %s: %s", filepath, e)

    def _write(self, path: str, live: str, metrics: Dict[str, float], fence: Any = None) -> None:
        if fence is not None:
            # An asynchronous checkpoint IO: wait until the save is on disk; if it failed,
            # the file is not a checkpoint to describe.
            io, done = fence
            done.result()
            if getattr(io, "_error", None) is not None:
                self._remove(path)
                return
        if not os.path.exists(path):
            return  # removed (rotated out) before its turn came: nothing to describe
        t0 = time.perf_counter()
        try:
            r = _ckpt.write_live_sidecar(path, live, metrics)
        except FileNotFoundError:
            return
        except Exception as e:  # noqa: BLE001 - a failure is a warning, never an exception
            log.warning("ckpt: no sidecar for %s: %s", path, e)
            return
        self.timings["write"].append((time.perf_counter() - t0) * 1e3)
        if r["status"] == "kept":
            self.kept.append(r["sidecar"])
            log.warning("ckpt: %s was not written by ckpt; left as it is (it may no longer describe %s)", r["sidecar"], path)
        else:
            self.written.append(r["sidecar"])

    def _remove(self, path: str) -> None:
        try:
            r = _ckpt.remove_sidecar(path)
        except Exception as e:  # noqa: BLE001
            log.warning("ckpt: the sidecar of removed %s was not removed: %s", path, e)
            return
        self.removed.extend(r["removed"])
        for k in r["kept"]:
            self.kept.append(k)
            log.warning("ckpt: %s was removed by Lightning; its sidecar %s was not written by ckpt and is left", path, k)

    def _removed(self, trainer: Any, filepath: str) -> None:
        if not getattr(trainer, "is_global_zero", True):
            return
        try:
            path = os.fspath(filepath)
            if self.background:
                self._worker.submit(lambda: self._remove(path))
            else:
                self._remove(path)
        except Exception as e:  # noqa: BLE001
            log.warning("ckpt: the sidecar of removed %s was not removed: %s", filepath, e)

    def _save_failed(self, trainer: Any, filepath: str) -> None:
        """A save raised: whatever is at ``filepath`` is not the checkpoint a sidecar would
        describe, so a sidecar ckpt wrote there earlier goes (at once: the run is failing)."""
        if not getattr(trainer, "is_global_zero", True):
            return
        try:
            self.flush()
            self._remove(os.fspath(filepath))
        except Exception as e:  # noqa: BLE001
            log.warning("ckpt: after a failed save of %s: %s", filepath, e)


class _Nothing:
    def flush(self) -> None:
        pass


def _make_class() -> type:
    bases = tuple(m.Callback for m in _MODULES)
    doc = """A Lightning callback that writes ``<stem>.metadata.yaml`` beside every checkpoint
    any ``ModelCheckpoint`` of the ``Trainer`` saves (top-k, last, every-n), and removes it
    when Lightning removes the checkpoint (top-k rotation).

    The sidecar has the schema and values ``ckpt convert-legacy --checkpoint FILE`` would
    write, computed by ckpt's Rust reader from the file just saved, plus what only the live
    run knows — its metrics (``trainer.callback_metrics``), the saving ``ModelCheckpoint``'s
    ``monitor``, ``mode``, ``save_top_k`` and ``save_last`` (at the ``live`` source's rank:
    ``provenance: live``), and the ``run`` section (the running Hydra job, the loggers' name,
    version / run id and directories, the trainer's epoch, step, world size and strategy).

    - Written atomically (temporary file, fsync, rename) on one worker thread, in order;
      flushed at ``on_train_end``, on an exception and at teardown (``flush()`` on demand).
    - Only rank 0 writes (DDP). A save that raises leaves no sidecar. A sidecar that ckpt did
      not write (its ``generator`` says who did) is never replaced or removed: it is left and
      reported as a warning. Nothing here raises into training: failures are warnings on the
      ``ckpt.lightning`` logger.
    - ``background=False`` writes on the training thread instead.
    - ``timings`` holds the milliseconds each save cost the training thread and the writer.

    Usage::

        from ckpt.lightning import MetadataCallback
        trainer = Trainer(callbacks=[ModelCheckpoint(monitor="val_loss", save_top_k=2,
                                                     save_last=True), MetadataCallback()])
    """
    return type(
        "MetadataCallback",
        (_MetadataCallbackCore, *bases),
        {"__doc__": doc, "__module__": __name__, "__init__": _MetadataCallbackCore.__init__},
    )


MetadataCallback = _make_class()
