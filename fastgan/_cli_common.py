"""What every ``fastgan`` subcommand shares: a user error (a bad flag value, a missing or corrupt
file, a missing dataset) is one line on stderr, ``fastgan <cmd>: error: ...``, and exit status
2, without a traceback. Genuine bugs still raise.

Private, and below every layer (it imports nothing from fastgan), so that ``fastgan.cli`` and
the ``eval`` / ``bench`` commands living in ``fastgan.metrics`` / ``fastgan.benchmark`` share it.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Union

__all__ = ["EXIT_USER_ERROR", "ArgumentParser", "check_device", "one_line", "user_error"]

EXIT_USER_ERROR = 2  # argparse's exit status for a usage error


def one_line(message: object) -> str:
    """The message with its line breaks and runs of whitespace folded into single spaces."""
    return " ".join(str(message).split())


def user_error(command: str, error: Union[BaseException, str]) -> int:
    """Prints ``<command>: error: <message>`` on one line of stderr; returns the exit status 2."""
    print(f"{command}: error: {one_line(error)}", file=sys.stderr)
    return EXIT_USER_ERROR


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fastgan train: error: argument --steps: invalid int value: 'x'``
    (no usage block; ``--help`` shows it). Subparsers made by ``add_subparsers`` inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {one_line(message)}\n")


def check_device(spec: str, flag: str = "--device") -> str:
    """``spec`` if torch can use it here, else ValueError naming the flag."""
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{flag}: {spec!r} is not a device (examples: cpu, cuda, cuda:1)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{flag} {spec}: no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{flag} {spec}: there are {torch.cuda.device_count()} CUDA devices")
    elif dev.type not in ("cpu", "mps", "xpu") or (dev.type != "cpu" and not getattr(torch, dev.type).is_available()):
        raise ValueError(f"{flag} {spec}: not available on this machine")
    return spec
