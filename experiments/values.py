"""Checked scalar values for configs and command-line options (pydantic does the checking).

Config values are checked strictly (a TOML boolean is not an integer, a string is not a number);
command-line values arrive as text and are parsed. Floats are always finite: an `inf` rate
scale would put every arrival at time 0 and write `Infinity` into JSON results.
"""

from __future__ import annotations

import argparse
from functools import cache
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter
from pydantic import ValidationError as PydanticError

from experiments.errors import ConfigError

# Token counts and seeds beyond this are typos (numpy seeds and int64 columns take far more).
MAX_COUNT = 2**40


@cache
def _adapter(tp: Any, strict: bool, constraints: tuple[tuple[str, Any], ...]) -> TypeAdapter:
    if tp is float:
        constraints = (*constraints, ("allow_inf_nan", False))
    annotated = Annotated[tp, Field(**dict(constraints))] if constraints else tp
    return TypeAdapter(annotated, config=ConfigDict(strict=strict))


def checked(value: Any, tp: type, where: str, *, strict: bool = True, **constraints: Any) -> Any:
    """`value` as a `tp` meeting `constraints` (pydantic Field keywords: gt, ge, le, ...), or a
    one-line ConfigError naming `where` and the value."""
    try:
        return _adapter(tp, strict, tuple(sorted(constraints.items()))).validate_python(value)
    except PydanticError as err:
        message = err.errors()[0]["msg"]
        message = message[0].lower() + message[1:]
        raise ConfigError(f"{where} = {value!r}: {message}") from None


def seed(value: Any, where: str, *, strict: bool = True) -> int:
    return checked(value, int, where, strict=strict, ge=0, lt=MAX_COUNT)


def cli_type(tp: type, **constraints: Any) -> Any:
    """An argparse `type=` that parses and checks an option's text (errors name the value)."""

    def parse(text: str) -> Any:
        try:
            return checked(text, tp, "value", strict=False, **constraints)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value = ")) from None

    parse.__name__ = tp.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT = cli_type(int, ge=1, lt=MAX_COUNT)
SEED = cli_type(int, ge=0, lt=MAX_COUNT)
POSITIVE_FLOAT = cli_type(float, gt=0)
NON_NEGATIVE_FLOAT = cli_type(float, ge=0)
