"""The bridge's settings, read from vLLM's `additional_config["slosched"]` (`--additional-config`).

    {"slosched": {"policy": "andes", "params": {...}, "predictor": "oracle", "predictor_params": {},
                  "latency": "llama3-8b-h100" | {"c0": ..., "c_prefill": ..., ...}, "slot_time": null}}

`latency` is what policies read as `view.engine.latency` to estimate times (a profile name, or
coefficients, e.g. fitted to this engine); `slot_time` switches the scheduler's clock to
iteration counting (iteration k starts at k * slot_time), which makes a vLLM run comparable
step for step with the simulator's slotted mode. Policy and predictor names resolve as everywhere
(solvers.named): a registry name, an installed plugin's name, or "package.module:Class".
No vLLM import here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from formulations.latency_model import LatencyModel, load_profile
from formulations.online import Policy
from formulations.requests import ValidationError
from solvers.prediction.base import LengthPredictor

KEY = "slosched"
_FIELDS = {"policy", "params", "predictor", "predictor_params", "latency", "slot_time"}
DEFAULT_PROFILE = "llama3-8b-h100"


@dataclass(frozen=True)
class BridgeConfig:
    policy: str = "fcfs"
    params: dict[str, Any] = field(default_factory=dict)
    predictor: str = "oracle"
    predictor_params: dict[str, Any] = field(default_factory=dict)
    latency: str | dict[str, float] = DEFAULT_PROFILE
    slot_time: float | None = None

    @classmethod
    def from_additional_config(cls, additional: Mapping[str, Any] | None) -> BridgeConfig:
        raw = (additional or {}).get(KEY, {})
        if not isinstance(raw, Mapping):
            raise ValidationError(f"additional_config[{KEY!r}] must be a mapping, got {type(raw).__name__}")
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ValidationError(f"additional_config.{KEY}: unknown field(s) {sorted(unknown)}; valid: {sorted(_FIELDS)}")
        slot = raw.get("slot_time")
        if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int | float) or slot <= 0):
            raise ValidationError(f"additional_config.{KEY}.slot_time={slot!r} must be a positive number or null")
        for name in ("params", "predictor_params"):
            if not isinstance(raw.get(name, {}), Mapping):
                raise ValidationError(f"additional_config.{KEY}.{name} must be a mapping")
        return cls(policy=str(raw.get("policy", "fcfs")), params=dict(raw.get("params", {})),
                   predictor=str(raw.get("predictor", "oracle")), predictor_params=dict(raw.get("predictor_params", {})),
                   latency=raw.get("latency", DEFAULT_PROFILE), slot_time=None if slot is None else float(slot))

    def to_additional_config(self) -> dict[str, Any]:
        return {KEY: {"policy": self.policy, "params": self.params, "predictor": self.predictor,
                      "predictor_params": self.predictor_params, "latency": self.latency, "slot_time": self.slot_time}}

    def latency_model(self) -> LatencyModel:
        if isinstance(self.latency, Mapping):
            try:
                return LatencyModel(**self.latency)
            except TypeError as err:
                raise ValidationError(f"additional_config.{KEY}.latency: {err}") from None
        return load_profile(self.latency).latency

    def make_policy(self) -> Policy:
        from solvers.policies.registry import make_policy

        return make_policy(self.policy, **self.params)

    def make_predictor(self) -> LengthPredictor:
        from solvers.prediction.registry import make_predictor

        return make_predictor(self.predictor, **self.predictor_params)
