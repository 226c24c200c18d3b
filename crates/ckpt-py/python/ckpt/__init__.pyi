from os import PathLike
from typing import Any, Callable, Dict, Iterable, Iterator, List, Literal, Optional, Sequence, Tuple, Union

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
