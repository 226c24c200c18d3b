from typing import Any, Dict, List

__all__ = ["MetadataCallback"]

class MetadataCallback:
    """A Lightning ``Callback`` (of ``lightning.pytorch``, ``pytorch_lightning``, or both —
    whichever is imported, else installed) writing ``<stem>.metadata.yaml`` beside every
    checkpoint any ``ModelCheckpoint`` saves, with ``ckpt convert-legacy``'s schema and values
    plus the live run's (metrics, the saving callback's monitor/mode/save_top_k/save_last at
    the ``live`` source's rank, the ``run`` section: Hydra job, loggers, trainer); removing it
    when Lightning removes the checkpoint. Rank 0 writes, on one worker thread; failures are
    warnings on the ``ckpt.lightning`` logger, never exceptions."""

    background: bool
    """Write on a worker thread (default) rather than on the training thread."""
    timings: Dict[str, List[float]]
    """Milliseconds per save: ``"training_thread"`` (what the training step waited for) and
    ``"write"`` (reading the checkpoint and writing its sidecar, on the worker)."""
    written: List[str]
    """Sidecars written (paths), in order."""
    removed: List[str]
    """Sidecars removed with their checkpoints."""
    kept: List[str]
    """Sidecars ckpt did not write, left in place (once per encounter)."""

    def __init__(self, *, background: bool = True) -> None: ...
    def flush(self) -> None:
        """Wait until every sidecar asked for so far is written or removed."""
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Attach to each ``ModelCheckpoint`` of ``trainer`` (its instance's save, removal and
        link methods are wrapped; the class is never patched)."""
    def on_train_end(self, trainer: Any, pl_module: Any) -> None: ...
    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None: ...
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Flush, and detach from the ``ModelCheckpoint`` instances."""
