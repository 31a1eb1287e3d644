"""Building an object by name from a registry, with errors that list what is valid.

Policies and predictors are both chosen by name in configs and on the command line; both go
through `build_named` so a wrong name or parameter reads the same everywhere.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any, TypeVar

from formulations.requests import ValidationError

T = TypeVar("T")


def build_named(kind: str, registry: dict[str, type[T]], name: str, params: dict[str, Any]) -> T:
    """registry[name](**params); an unknown name, unknown parameter or missing one is a ValidationError."""
    cls = registry.get(name)
    if cls is None:
        raise ValidationError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(registry))}")
    params_type = getattr(cls, "Params", None)  # a parameter dataclass, passed as keywords
    if params_type is not None:
        accepted = [f.name for f in fields(params_type)]
    else:
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValidationError(f"{kind} {name!r}: unknown parameter(s) {unknown}; valid: {accepted or 'none'}")
    try:
        return cls(**params)
    except TypeError as err:  # a required parameter is missing
        raise ValidationError(f"{kind} {name!r}: {err}") from None
