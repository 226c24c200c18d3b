"""The exceptions ckpt raises: one tree under :class:`CkptError`."""

from __future__ import annotations

from typing import Optional, Sequence


class CkptError(Exception):
    """Anything ckpt refuses or cannot do. ``path`` names the file when there is one."""

    def __init__(self, message: str, path: Optional[str] = None) -> None:
        super().__init__(message)
        self.path = path


class FormatError(CkptError):
    """The file is not what it claims to be: ``offset`` is the byte offset of the problem
    (in the pickle, or in the file) when known."""

    def __init__(self, message: str, path: Optional[str] = None, offset: Optional[int] = None) -> None:
        super().__init__(message, path)
        self.offset = offset


class UnsafeError(CkptError):
    """Loading the file would import or call something ckpt does not rebuild by a safe
    mechanism. ``globals`` lists those names (``module.Qualname``); nothing was run."""

    def __init__(self, message: str, path: Optional[str] = None, globals: Sequence[str] = ()) -> None:
        super().__init__(message, path)
        self.globals = list(globals)
