"""The engine model shared by the simulator and the exact models (docs/DESIGN.md, "Engine model")."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from functools import cached_property
from typing import Any, Literal

from formulations.latency_model import LatencyModel, load_profile
from formulations.requests import ValidationError
from formulations.arithmetic import ceil_div

PreemptionMode = Literal["recompute", "swap"]


@dataclass(frozen=True)
class EngineSpec:
    """Capacities and timing of one serving engine.

    Iteration-level continuous batching: per iteration at most `token_budget` tokens (prefill
    chunks + one per decoding request) and `max_seqs` requests; every resident request holds
    ceil(tokens_in_cache / block_size) KV blocks and the sum stays <= `kv_blocks`.

    `slot_time` switches on the slotted mode: every iteration lasts exactly `slot_time` seconds
    whatever the batch. The exact models describe that mode; the latency model is then unused.

    Admission of a waiting request (vLLM 0.32's allocate_slots, formulations/online.py rule 2):
    `reserve_full_prompt` (vLLM's scheduler_reserve_full_isl, on by default as in vLLM) admits it
    only when the blocks for its whole sequence known so far (prompt, plus the generated tokens a
    preempted request recomputes) are free, not just its first chunk's; False restores the
    first-chunk rule (for ablations). `watermark` (vLLM's, a fraction of the pool) keeps
    int(watermark * (kv_blocks + 1)) blocks free on top of that while any request holds KV.
    """

    kv_blocks: int
    latency: LatencyModel
    block_size: int = 16
    token_budget: int = 8192
    max_seqs: int = 256
    preemption: PreemptionMode = "recompute"
    swap_time_per_block: float = 0.0
    slot_time: float | None = None
    reserve_full_prompt: bool = True
    watermark: float = 0.0
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        for name in ("kv_blocks", "block_size", "token_budget", "max_seqs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"engine: {name}={value!r} must be a positive integer")
        if self.preemption not in ("recompute", "swap"):
            raise ValidationError(f"engine: preemption={self.preemption!r}; valid: recompute, swap")
        if not _finite(self.swap_time_per_block) or self.swap_time_per_block < 0:
            raise ValidationError(f"engine: swap_time_per_block={self.swap_time_per_block!r} must be a number >= 0")
        if self.slot_time is not None and not (_finite(self.slot_time) and self.slot_time > 0):
            raise ValidationError(f"engine: slot_time={self.slot_time!r} must be a number > 0")
        if not isinstance(self.reserve_full_prompt, bool):
            raise ValidationError(f"engine: reserve_full_prompt={self.reserve_full_prompt!r} must be true or false")
        if not isinstance(self.enable_prefix_caching, bool):
            raise ValidationError(f"engine: enable_prefix_caching={self.enable_prefix_caching!r} must be true or false")
        if not (_finite(self.watermark) and 0.0 <= self.watermark < 1.0):
            raise ValidationError(f"engine: watermark={self.watermark!r} must be in [0, 1)")

    @cached_property
    def watermark_blocks(self) -> int:
        """Blocks a waiting request must leave free when admitted while another holds KV.

        vLLM takes int(watermark * num_blocks) where num_blocks counts its reserved null block,
        which `kv_blocks` (the usable pool) leaves out.
        """
        return int(self.watermark * (self.kv_blocks + 1))

    @classmethod
    def from_profile(cls, profile: str, **overrides: Any) -> EngineSpec:
        """Engine defaults and latency coefficients of a named profile, with overrides."""
        prof = load_profile(profile)
        base = dict(
            kv_blocks=prof.kv_blocks,
            latency=prof.latency,
            block_size=prof.block_size,
            token_budget=prof.token_budget,
            max_seqs=prof.max_seqs,
            swap_time_per_block=prof.swap_time_per_block,
        )
        unknown = set(overrides) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValidationError(
                f"engine: unknown field(s) {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        base.update(overrides)
        return cls(**base)

    def blocks_for(self, tokens: int) -> int:
        """KV blocks needed to hold `tokens` tokens."""
        return ceil_div(tokens, self.block_size)

    def with_(self, **changes: Any) -> EngineSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineSpec:
        data = dict(data)
        if "latency" not in data:
            raise ValidationError("engine: missing field 'latency'")
        latency = data.pop("latency")
        if isinstance(latency, str):
            return cls.from_profile(latency, **data)
        if not isinstance(latency, dict):
            raise ValidationError(f"engine: latency = {latency!r}: expected a profile name or an object of coefficients")
        coefficients = {f.name for f in fields(LatencyModel)}
        missing = sorted(f.name for f in fields(LatencyModel) if f.default is MISSING and f.name not in latency)
        unknown = sorted(set(latency) - coefficients)
        if missing or unknown:
            raise ValidationError(f"engine.latency: {'missing' if missing else 'unknown'} coefficient(s) "
                                  f"{missing or unknown}; valid: {sorted(coefficients)}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValidationError(f"engine: unknown field(s) {unknown}; valid: {sorted(f.name for f in fields(cls))}")
        return cls(latency=LatencyModel(**latency), **data)


def _finite(value: Any) -> bool:
    """A real number (not a boolean), finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
