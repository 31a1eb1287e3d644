"""Errors shown to a CLI user as one line (no traceback)."""

from __future__ import annotations

import reprlib
from typing import Any

from formulations.requests import ValidationError


class ConfigError(ValidationError):
    """A wrong name or value in a config file or on the command line; says what is valid."""


class CellFailed(RuntimeError):
    """A cell raised; `index` is its position in the items given to the backend, `others` the
    number of further cells that failed (with keep_going)."""

    def __init__(self, index: int, item: Any, cause: BaseException, others: int = 0) -> None:
        more = f" (and {others} more cell(s) failed)" if others else ""
        name = getattr(item, "key", None) or reprlib.repr(item)
        super().__init__(f"cell {name} failed: {type(cause).__name__}: {cause}{more}")
        self.index = index
        self.item = item
        self.cause = cause
        self.others = others
        self.partial: list[Any] | None = None  # run_sweep: results in cell order, None where missing

    @classmethod
    def first_of(cls, failures: list[CellFailed]) -> CellFailed | None:
        """The first failure, counting the others (None when nothing failed)."""
        if not failures:
            return None
        first = failures[0]
        return cls(first.index, first.item, first.cause, others=len(failures) - 1)


def one_line(err: BaseException) -> str:
    """The error's message on one line (an OSError with its file name)."""
    if isinstance(err, OSError) and err.strerror:
        text = f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    else:
        text = str(err)
    return " ".join(text.split())
