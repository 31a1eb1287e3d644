"""Policies by name: the registry experiment configs, the CLI and the vLLM bridge resolve names
through (built-ins here, plugins via solvers.named)."""

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
from solvers.named import Kind, available, build_named, resolve

POLICIES: dict[str, type[Policy]] = {
    "fcfs": FCFSPolicy,
    "edf": EDFPolicy,
    "sjf": SJFPolicy,
    "andes": AndesPolicy,
    "slo": SloPolicy,
    "gain-density": GainDensityPolicy,
    "ltr": LtrPolicy,
}


POLICY_KIND = Kind("policy", POLICIES, "slosched.policies")


def policy_class(name: str) -> type[Policy]:
    """The class of a built-in name, an installed plugin's name, or `package.module:Class`."""
    return resolve(POLICY_KIND, name)


def policy_names() -> list[str]:
    """Built-in and installed policy names (what `module:Class` adds is open-ended)."""
    return available(POLICY_KIND)


def make_policy(name: str, **params: Any) -> Policy:
    """A fresh policy object; unknown names or parameters list what is valid."""
    return build_named(POLICY_KIND, name, params)
