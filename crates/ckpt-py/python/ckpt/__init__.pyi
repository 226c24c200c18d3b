from os import PathLike
from typing import Any, Iterable, Literal, Optional, Union

from ckpt.errors import CkptError as CkptError, FormatError as FormatError, UnsafeError as UnsafeError

__version__: str

def load(
    path: Union[str, PathLike[str]],
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

class Opaque:
    """An allowed object that is neither an enum nor a dataclass, kept as data."""
    cls: type
    args: tuple
    state: Any
    def __init__(self, cls: type, args: tuple, state: Any) -> None: ...
