"""`SloParams`: every knob of the `slo` policy, with its unit, default and why it exists.

Measured effects of the defaults are in docs (results), not here; this says what each one means.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

SELECTIONS = ("auto", "priority", "density", "exact")


@dataclass(frozen=True)
class SloParams:
    # quantile levels (0..1) of the predicted output length
    conservative: float = 0.9  # planning length: slack and priority are computed with it
    optimistic: float = 0.1  # doom test: a request out of reach even at this length is given up
    qoe_threshold: float = 0.95  # a stream's SLO is met iff its final QoE >= this (0..1)
    # batch selection: "auto" (least slack first, density packing above `overload_at`),
    # "priority", "density", or "exact" (the exact per-step knapsack; slow, for the gap study)
    selection: str = "auto"
    starvation_iterations: float = 20000.0  # iterations a given-up request waits before promotion
    gang_iterations: float = 4.0  # iterations: a bulk group this close to its slack runs as a gang
    admission: bool = True  # Moore-Hodgson admission control over engine seconds
    max_rejections: int = 8  # admission give-ups per decision at most (bounds decide() time)
    reject: bool = True  # tell given-up requests at once (Plan.reject) instead of serving them late
    preempt_margin_iterations: float = 50.0  # iterations of slack above which an overloaded resident yields KV
    latency_budget_share: float = 0.2  # share (0..1] of a stream's allowed delay area it plans to spend
    overload_at: float = 1.4  # offered load (engine seconds per second) above which "auto" packs by density
    short_first: float = 1.0  # exponent of the (median / own remaining iterations) value factor
    short_first_cap: float = 1.5  # cap of that factor (a nearly finished request is not worth 20 others)
    urgency_horizon: float = 1.0  # seconds: value ~ 1 / (1 + slack / horizon)
    idle_value: float = 0.05  # value floor of a feasible request, so spare room is still used

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"slo: selection={self.selection!r}; valid: {', '.join(SELECTIONS)}")
        for name in ("conservative", "optimistic", "qoe_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"slo: {name}={getattr(self, name)} must be in [0, 1]")
        for name in ("overload_at", "short_first", "idle_value", "preempt_margin_iterations", "max_rejections"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"slo: {name}={getattr(self, name)} must be >= 0")
        for name, unit in (("short_first_cap", ""), ("urgency_horizon", " (seconds)"),
                           ("latency_budget_share", "")):
            if not getattr(self, name) > 0:
                raise ValueError(f"slo: {name}={getattr(self, name)} must be > 0{unit}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
