"""Policies by name: the registry experiment configs and the CLI resolve names through."""

from __future__ import annotations

from typing import Any

from formulations.online import Policy
from solvers.policies.edf import EDFPolicy
from solvers.policies.fcfs import FCFSPolicy
from solvers.policies.sjf import SJFPolicy
from solvers.policies.andes import AndesPolicy
from solvers.policies.gain_density import GainDensityPolicy
from solvers.policies.ltr import LtrPolicy
from solvers.policies.slo import SloPolicy
from solvers.named import build_named

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
    return build_named("policy", POLICIES, name, params)
