from os import PathLike
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from ckpt.errors import CkptError as CkptError, FormatError as FormatError, UnsafeError as UnsafeError

_Path = Union[str, PathLike[str]]
_Paths = Union[_Path, Iterable[_Path]]

__version__: str

def load(
    path: _Path,
    *,
    map_location: Any = None,
    tensors: Optional[Literal["torch", "numpy"]] = None,
    mmap: bool = True,
    allow: Iterable[str] = (),
) -> Any:
    """What ``torch.load(path, weights_only=False)`` returns, rebuilt without running any code
    from the file. Tensors are views of a copy-on-write map of the file (``mmap=True``), torch
    tensors when torch is importable (or ``tensors="torch"``), numpy arrays otherwise.
    Raises ``UnsafeError`` (with ``.globals``) for anything outside ckpt's safe table unless
    named in ``allow``, ``FormatError`` (with ``.path``, ``.offset``) for a damaged file."""

def open(path: _Path, *, tensors: Optional[Literal["torch", "numpy"]] = None, allow: Iterable[str] = ()) -> Checkpoint:
    """A checkpoint read lazily: keys now, values (and tensor bytes) when asked for."""

class Checkpoint:
    """A lazily read checkpoint (``ckpt.open``)."""
    path: str
    format: str
    def keys(self) -> List[str]: ...
    def __contains__(self, key: str) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def __getitem__(self, key: str) -> Any:
        """A top-level value; a dict (a state dict) comes as a ``LazyMapping``."""
    def tensor(self, name: str) -> Any:
        """One value by dotted name (``"state_dict.encoder.weight"``), reading only its bytes."""
    def load(self) -> Any:
        """Everything, as ``ckpt.load`` returns it."""
    def state_dict(self) -> Dict[str, Any]:
        """The weights as ``model.state_dict()`` gives them (an ``OrderedDict``), read without
        running anything: a pickled whole module's parameters and persistent buffers; a
        TorchScript archive's ``torch.jit.load(p).state_dict()`` (a tied tensor under each of
        its names; a TorchScript ``__setstate__`` that only unpacks its state is followed, one
        that computes a parameter raises ``CkptError``); a Lightning checkpoint's
        ``state_dict``; a plain state dict itself."""
    def summary(self) -> dict:
        """What ``ckpt inspect --format json`` says about the file."""
    def scan(self) -> dict:
        """What ``ckpt scan --format json`` says about the file."""

class LazyMapping:
    """A mapping inside a lazily read checkpoint; values are rebuilt when reached."""
    def keys(self) -> List[str]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __getitem__(self, key: str) -> Any: ...
    def items(self) -> List[Tuple[str, Any]]: ...
    def load(self) -> Any: ...

class Opaque:
    """An allowed object that is neither an enum nor a dataclass, kept as data."""
    cls: type
    args: tuple
    state: Any
    def __init__(self, cls: type, args: tuple, state: Any) -> None: ...

class CkptWarning(UserWarning):
    """A warning a command printed."""

class Catalog:
    """``ckpt catalog``'s entries (the JSON contract, one dict each) and warnings."""
    checkpoints: List[dict]
    warnings: List[str]
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[dict]: ...
    def __getitem__(self, i: int) -> dict: ...
    def records(self) -> List[dict]:
        """One flat dict per checkpoint (``metrics.val_loss``, ``hparams.lr`` …)."""
    def to_pandas(self) -> Any:
        """A pandas DataFrame (needs pandas)."""
    def to_arrow(self) -> Any:
        """A pyarrow Table (needs pyarrow)."""

def catalog(paths: _Paths, *, filter: Union[None, str, Sequence[str]] = None, sort: Optional[str] = None, best: bool = False, **options: Any) -> Catalog:
    """``ckpt catalog`` with the same options (``desc``, ``latest``, ``group_by``, ``cache_file``, ``no_cache`` …)."""
def inspect(path: _Path, **options: Any) -> dict:
    """``ckpt inspect --format json``."""
class Verdict(dict):
    """One file of ``ckpt scan``: its JSON object, keys also as attributes."""
    path: str
    verdict: str
    globals: List[dict]
    @property
    def safe(self) -> bool: ...
    @property
    def dangerous(self) -> bool: ...

def scan(paths: _Paths, **options: Any) -> List[Verdict]:
    """``ckpt scan --format json``: one verdict per file."""
def hash(path: _Path, **options: Any) -> dict:
    """``ckpt hash --format json``."""
def diff(a: _Path, b: _Path, **options: Any) -> dict:
    """``ckpt diff --format json``."""
def compare(*paths: _Path, **options: Any) -> dict:
    """``ckpt compare --format json``."""
def experiments(paths: _Paths, **options: Any) -> Any:
    """``ckpt experiments --format json``."""
def prune(paths: _Paths, *, keep_top: int, monitor: str, mode: str, delete: bool = False, **options: Any) -> dict:
    """``ckpt prune``: the plan; deletes only with ``delete=True``."""
def validate(path: _Path, **options: Any) -> Any:
    """``ckpt validate --format json``."""
def write_sidecar(path: _Path, **options: Any) -> str:
    """``ckpt convert-legacy``: write missing sidecars."""
def convert(paths: _Paths, output_dir: _Path, *, progress: Optional[Callable[[int, int], None]] = None, **options: Any) -> Any:
    """``ckpt convert --format json``."""
def schema(name: Optional[str] = None) -> dict:
    """A command's JSON Schema."""

# Training side (ckpt.managers; imported when first named).

class CheckpointManager:
    """One run filed as ``<data_folder>/checkpoints/<root_name>/<YYYY-MM-DD_HH-MM-SS>_<MODEL>_<LOSS>/``
    (UTC start) with the JSON reports ``ckpt catalog`` reads."""
    root_name: str
    data_folder: Path
    model_name: str
    loss_function: str
    start_time: datetime
    run_dir: Path
    checkpoint_callback: Any
    def __init__(self, root_name: str, data_folder: _Path, model_name: str, loss_function: str) -> None: ...
    @property
    def checkpoint_dir(self) -> Path:
        """The run folder."""
    def get_checkpoint_callback(self, monitor: str, mode: str, *, lightning: Optional[str] = None) -> Any:
        """A Lightning ``ModelCheckpoint``: top-1 by ``monitor`` as ``best-epoch{XX}-{monitor}-{value:.3f}.ckpt``."""
    def save_config(self, config: Mapping[str, Any]) -> Path:
        """``config.json``, every value made JSON-safe."""
    def save_training_metadata(self, metadata: Mapping[str, Any]) -> Path:
        """``training_summary.json``: start/end time, model, loss, root_name and what is given."""
    def save_classification_report(self, report: Mapping[str, Any]) -> Path:
        """``classification_report.json``."""
    def save_minimal_logging(self, best_epoch: int, best_metric_value: float, best_metric_name: str,
                             num_epochs_trained: int, early_stopping_triggered: bool = False) -> Path:
        """``minimal_logging.json``: timestamp, best_epoch, best_<name>, num_epochs_trained, early_stopping_triggered."""

class BinaryClassificationCheckpointManager(CheckpointManager):
    """A CheckpointManager under ``checkpoints/flares/binary_classification/`` by default."""
    default_root: str
    def __init__(self, data_folder: _Path, model_name: str, loss_function: str, root_name: Optional[str] = None) -> None: ...

class MulticlassClassificationCheckpointManager(CheckpointManager):
    """A CheckpointManager under ``checkpoints/flares/multiclass/`` by default."""
    default_root: str
    def __init__(self, data_folder: _Path, model_name: str, loss_function: str, root_name: Optional[str] = None) -> None: ...

class ExperimentManager:
    """Experiments addressed by ``ckpt hash``'s identity: ``<root_log_dir>/checkpoints/v2-<hex>/{model,hp,data}``."""
    root_log_dir: Path
    checkpoints_dir: Path
    keep_last: Optional[int]
    keep_best: Optional[int]
    monitor: Optional[str]
    mode: str
    save_architecture_module: bool
    algorithm: str
    current_hash: Optional[str]
    components: Optional[Dict[str, Optional[str]]]
    inputs: Optional[dict]
    def __init__(self, root_log_dir: _Path, *, keep_last: Optional[int] = None, keep_best: Optional[int] = None,
                 monitor: Optional[str] = None, mode: str = "min", save_architecture_module: bool = False,
                 algorithm: str = "v2") -> None: ...
    @property
    def experiment_dir(self) -> Optional[Path]:
        """The current experiment's folder."""
    def update_experiment_hash(self, model: Any = None, config: Any = None,
                               active_data_uids: Optional[Iterable[Any]] = None) -> Tuple[str, bool]:
        """``(hash, is_new)``: the hash ``ckpt hash`` prints for the checkpoints then saved."""
    def has_changed(self, model: Any = None, config: Any = None,
                    active_data_uids: Optional[Iterable[Any]] = None) -> List[str]:
        """The components (``architecture``, ``hyperparameters``, ``data``) that would change."""
    def save_config(self, config: Any) -> Path:
        """Make ``config`` the run's config (``hp/config.yaml``)."""
    def save_data_backup(self, uids: Iterable[Any], extra: Any = None) -> Path:
        """Make ``uids`` the active UIDs (``data/active_uids.json``); ``extra`` to ``data/extra.json``."""
    def save_model_checkpoint(self, model: Any = None, step: Optional[int] = None, optimizer: Any = None,
                              save_optimizer: bool = False, metrics: Optional[Mapping[str, float]] = None) -> Path:
        """``model/checkpoint_step_{step:06d}.pt`` (weights only unless ``save_optimizer``), then retention."""
    def apply_retention(self, delete: bool = True) -> Optional[dict]:
        """``keep_last``/``keep_best`` by ``ckpt prune``'s rules; the plan and what was done."""
    def load_latest_checkpoint(self, model: Any = None, optimizer: Any = None,
                               experiment: Optional[str] = None) -> Optional[dict]:
        """The newest checkpoint, loaded through ``ckpt.load`` (into ``model``/``optimizer``)."""
    def load_checkpoint(self, step: int, model: Any = None, optimizer: Any = None,
                        experiment: Optional[str] = None) -> dict:
        """``checkpoint_step_{step:06d}.pt``, loaded through ``ckpt.load``."""
    def list_experiments(self) -> List[dict]:
        """Every experiment folder: hash, path, steps, latest_step, current."""
    def get_experiment_info(self, experiment: Optional[str] = None) -> dict:
        """One experiment: config, architecture, metrics and ``ckpt hash`` of its newest checkpoint."""

CheckpointManagerV2 = ExperimentManager
