"""Pick the exact model for an instance: compact when the token budget can never bind, else general.

Both are exact for the slotted engine (see their module docstrings); the compact one is much
smaller and tighter, the general one also covers cut prefill chunks.
"""

from __future__ import annotations

from formulations.exact.compact import budget_never_binds, build_compact
from formulations.exact.hindsight import HindsightModel, build_hindsight
from formulations.instance import Instance
from formulations.metrics import DEFAULT_QOE_THRESHOLD
from formulations.requests import ValidationError
from formulations.turns import require_open_loop

KINDS = ("auto", "general", "compact")


def build_model(instance: Instance, qoe_threshold: float = DEFAULT_QOE_THRESHOLD, kind: str = "auto") -> HindsightModel:
    if kind not in KINDS:
        raise ValidationError(f"model kind={kind!r}; valid: {', '.join(KINDS)}")
    require_open_loop(instance.requests, "the exact model")
    if instance.engine.enable_prefix_caching and any(r.content_ids for r in instance.requests):
        shared = next(r.id for r in instance.requests if r.content_ids)
        raise ValidationError(f"request {shared!r}: content_ids with engine.enable_prefix_caching=true; the exact model "
                              "has no prefix cache (hits would make its optimum no bound): set "
                              "enable_prefix_caching=false or drop content_ids")
    if instance.engine.preemption != "recompute":
        raise ValidationError(f"engine: preemption={instance.engine.preemption!r}; the exact model covers recompute only")
    if kind == "compact" and not budget_never_binds(instance):
        spec = instance.engine
        raise ValidationError(f"engine: kv_blocks*block_size={spec.kv_blocks * spec.block_size} >= token_budget="
                              f"{spec.token_budget}: the compact model needs a budget that can never bind")
    if kind == "compact" or (kind == "auto" and budget_never_binds(instance)):
        return build_compact(instance, qoe_threshold)
    return build_hindsight(instance, qoe_threshold)
