"""ckpt: everything about ML checkpoints, without torch and without running pickle code.

``ckpt.load`` is ``torch.load`` that never imports or calls anything the file names: the
file is decoded by ckpt's own pickle reader (Rust) and the objects are rebuilt by a fixed
table of safe constructions. ``import ckpt`` never imports torch, lightning or pandas;
``ckpt.load`` imports torch only to make torch tensors (``tensors="numpy"`` does without).
"""

from __future__ import annotations

from typing import Any

from ckpt._ckpt import Checkpoint, LazyMapping, __version__, load, open
from ckpt._commands import (
    Catalog,
    CkptWarning,
    Verdict,
    catalog,
    compare,
    convert,
    diff,
    experiments,
    hash,
    inspect,
    prune,
    scan,
    schema,
    validate,
    write_sidecar,
)
from ckpt.errors import CkptError, FormatError, UnsafeError

__all__ = [
    "__version__",
    "load",
    "open",
    "Checkpoint",
    "LazyMapping",
    "Opaque",
    "Catalog",
    "catalog",
    "compare",
    "convert",
    "diff",
    "experiments",
    "hash",
    "inspect",
    "prune",
    "scan",
    "schema",
    "validate",
    "write_sidecar",
    "Verdict",
    "CkptError",
    "CkptWarning",
    "FormatError",
    "UnsafeError",
    "CheckpointManager",
    "BinaryClassificationCheckpointManager",
    "MulticlassClassificationCheckpointManager",
    "ExperimentManager",
    "CheckpointManagerV2",
]

# The training-side managers (`ckpt.managers`) are imported when first named, so that
# `import ckpt` stays free of them (they import torch and Lightning when used, not before).
_MANAGERS = (
    "CheckpointManager",
    "BinaryClassificationCheckpointManager",
    "MulticlassClassificationCheckpointManager",
    "ExperimentManager",
    "CheckpointManagerV2",
)


def __getattr__(name: str) -> Any:
    if name in _MANAGERS:
        from ckpt import managers

        return getattr(managers, name)
    raise AttributeError(f"module 'ckpt' has no attribute {name!r}")


class Opaque:
    """An object of a class the caller allowed (``allow=[...]``) that is neither an enum nor
    a dataclass: its class, the constructor arguments and the state the pickle recorded,
    kept as data. ckpt never calls the class with them."""

    __slots__ = ("cls", "args", "state")

    def __init__(self, cls: type, args: tuple, state: Any) -> None:
        self.cls = cls
        self.args = args
        self.state = state

    def __repr__(self) -> str:
        return f"ckpt.Opaque({self.cls.__module__}.{self.cls.__qualname__}, args={self.args!r}, state={self.state!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Opaque)
            and (self.cls, self.args, self.state) == (other.cls, other.args, other.state)
        )

    __hash__ = None  # type: ignore[assignment]
