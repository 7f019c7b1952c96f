"""`fastgan bench`: the benchmark report against stock PyTorch and torch.compile.

:mod:`.cases` lists what is measured, :mod:`.runner` measures it (correctness first),
:mod:`.report` writes the tables, JSON and chart, :mod:`.cli` is the command.
"""

from .cases import Case, all_cases, get_cases, register
from .runner import Result, Settings, run

__all__ = ["Case", "Result", "Settings", "all_cases", "get_cases", "register", "run"]
