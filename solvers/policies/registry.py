"""Policies by name: the registry experiment configs and the CLI resolve names through."""

from __future__ import annotations

import inspect
from typing import Any

from formulations.online import Policy
from formulations.requests import ValidationError
from solvers.policies.edf import EDFPolicy
from solvers.policies.fcfs import FCFSPolicy
from solvers.policies.sjf import SJFPolicy
from solvers.policies.andes import AndesPolicy
from solvers.policies.gain_density import GainDensityPolicy
from solvers.policies.ltr import LtrPolicy
from solvers.policies.slo import SloPolicy

POLICIES: dict[str, type[Policy]] = {
    "fcfs": FCFSPolicy,
    "edf": EDFPolicy,
    "sjf": SJFPolicy,
    "andes": AndesPolicy,
    "slo": SloPolicy,
    "gain-density": GainDensityPolicy,
    "ltr": LtrPolicy,
}


def make_policy(name: str, **params: Any) -> Policy:
    """A fresh policy object; unknown names or parameters list what is valid."""
    cls = POLICIES.get(name)
    if cls is None:
        raise ValidationError(f"unknown policy {name!r}; valid: {', '.join(sorted(POLICIES))}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValidationError(f"policy {name!r}: unknown parameter(s) {unknown}; valid: {accepted or 'none'}")
    try:
        return cls(**params)
    except TypeError as err:  # a required parameter is missing
        raise ValidationError(f"policy {name!r}: {err}") from None
