"""Building an object by name, with errors that list what is valid: the one resolver of plugins.

Policies and predictors are chosen by name in configs, on the command line and in the vLLM
bridge's settings. A name is one of:
- a built-in registry name (`edf`, `oracle`, ...);
- a name an installed package registers through the entry-point group of its kind
  (`slosched.policies`, `slosched.predictors`), e.g. in its pyproject.toml
  `[project.entry-points."slosched.policies"] lwf = "mypkg.lwf:LongestWaitingFirst"`;
- `package.module:Class`, imported from wherever Python finds it (PYTHONPATH), so a user's own
  class runs without editing slosched. Spawned sweep workers and Ray tasks resolve the same text
  again in their own interpreter, which is why names (never class objects) travel in cells.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import MISSING, dataclass, fields
from importlib import metadata
from typing import Any, TypeVar

from formulations.requests import ValidationError

T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """One family of named classes: its built-in registry and its entry-point group."""

    name: str  # "policy", "predictor": used in error messages
    builtins: dict[str, type]
    group: str  # the importlib.metadata entry-point group installed packages register in


def installed(kind: Kind) -> dict[str, metadata.EntryPoint]:
    """Entry points of installed packages for this kind, by name (not yet imported)."""
    return {ep.name: ep for ep in metadata.entry_points(group=kind.group)}


def available(kind: Kind) -> list[str]:
    """Every name that resolves without `module:Class`: built-ins in registry order, then installed plugins."""
    return [*kind.builtins, *sorted(set(installed(kind)) - set(kind.builtins))]


def resolve(kind: Kind, name: str) -> type:
    """The class `name` stands for; a ValidationError naming the name and what is valid if none."""
    if ":" in name:
        return _import(kind, name, name)
    if name in kind.builtins:
        return kind.builtins[name]
    entry = installed(kind).get(name)
    if entry is None:
        raise ValidationError(f"unknown {kind.name} {name!r}; valid: {', '.join(available(kind))} "
                              "or package.module:Class")
    return _import(kind, name, entry.value)


def _import(kind: Kind, name: str, target: str) -> type:
    module, _, attr = target.partition(":")
    try:
        found = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValidationError(f"{kind.name} {name!r}: cannot import {target!r} ({err})") from None
    if not inspect.isclass(found):
        raise ValidationError(f"{kind.name} {name!r}: {target!r} is not a class")
    return found


def parameters(cls: type) -> dict[str, Any]:
    """The constructor's parameters and their defaults (`inspect.Parameter.empty` if required).
    A class with a `Params` dataclass (e.g. slo) takes that dataclass's fields as keywords."""
    params_type = getattr(cls, "Params", None)
    if params_type is not None:
        return {f.name: f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else inspect.Parameter.empty)
                for f in fields(params_type)}
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def build_named(kind: Kind, name: str, params: dict[str, Any]) -> Any:
    """resolve(kind, name)(**params); an unknown name, unknown parameter or missing one is a ValidationError."""
    cls = resolve(kind, name)
    accepted = list(parameters(cls))
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValidationError(f"{kind.name} {name!r}: unknown parameter(s) {unknown}; valid: {accepted or 'none'}")
    try:
        return cls(**params)
    except TypeError as err:  # a required parameter is missing
        raise ValidationError(f"{kind.name} {name!r}: {err}") from None
