"""``torch.load(weights_only=True)`` for files a user hands us (checkpoints, weights, caches),
with an error that says what is wrong with the file: corrupt (empty, truncated, a damaged
archive) or not the expected kind (not a PyTorch file, or a pickle holding Python objects
that weights-only loading refuses). torch's own message advises retrying with
``weights_only=False``; that advice is never passed on: a tool must not nudge its users
toward unpickling files that may run code.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["UnloadableFileError", "load_weights_only"]

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_PROTO = b"\x80"  # a pickle of protocol >= 2 (torch's legacy format, or a plain pickle)


class UnloadableFileError(ValueError):
    """A file that cannot be loaded safely: missing, unreadable, corrupt, or not the expected kind."""


def _refused_global(e: BaseException) -> str:
    m = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"; refused: {m.group(1)}" if m else ""


def _first_sentence(e: BaseException) -> str:
    """torch's diagnosis without its advice: the first sentence, unless it mentions weights_only."""
    text = " ".join(str(e).split())
    first = text.split(". ")[0].rstrip(".")
    return f": {first}" if first and "weights_only" not in first else ""


def load_weights_only(path: Union[str, os.PathLike], what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, map_location, weights_only=True)``; any failure raises
    :class:`UnloadableFileError` ``"<path>: corrupt <what> (...)"`` or ``"<path>: not a <what> (...)"``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise UnloadableFileError(f"{path}: no such file") from None
    except OSError as e:
        raise UnloadableFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if not head:
        raise UnloadableFileError(f"{path}: corrupt {what} (empty file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol of a foreign file
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights-only unpickling refused an opcode or a global: the payload holds Python
        # objects beyond tensors and plain containers, which fastgan never writes
        if head == _ZIP_MAGIC:
            raise UnloadableFileError(f"{path}: not a {what} (it holds Python objects that fastgan does not "
                                      f"unpickle{_refused_global(e)})") from None
        if head.startswith(_PICKLE_PROTO):
            raise UnloadableFileError(f"{path}: not a {what} (a pickle of Python objects that fastgan does not "
                                      f"unpickle{_refused_global(e)})") from None
        raise UnloadableFileError(f"{path}: not a {what} (neither a PyTorch zip archive nor a pickle)") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        if head == _ZIP_MAGIC:
            raise UnloadableFileError(f"{path}: corrupt {what} (damaged or truncated archive"
                                      f"{_first_sentence(e)})") from None
        if head.startswith(_PICKLE_PROTO):
            if isinstance(e, EOFError):
                raise UnloadableFileError(f"{path}: corrupt {what} (truncated)") from None
            raise UnloadableFileError(f"{path}: not a {what} (a pickle, not a PyTorch file)") from None
        raise UnloadableFileError(f"{path}: not a {what} (neither a PyTorch zip archive nor a pickle)") from None
