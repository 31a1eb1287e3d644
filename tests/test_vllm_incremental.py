"""The bridge keeps its view's columns in the request book, fed by its hooks (computed tokens
after each schedule, delivered tokens, preemptions), instead of reading every live request back
from vLLM each step. Checked here against a view derived afresh from vLLM's own request objects,
KV blocks and prefix cache at every step of a run with KV preemptions, prefix-cache hits and
requests the policy rejects (aborted in vLLM). Skipped only when vLLM is missing outside CI.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vllm_required import require_vllm  # noqa: E402

require_vllm()

from test_vllm_prefix import SETTINGS, TAU, conversations, mixed  # noqa: E402

from engine_adapter.bridge_config import BridgeConfig  # noqa: E402
from engine_adapter.realized import realize  # noqa: E402
from engine_adapter.vllm_runner import VllmEngine, replay  # noqa: E402
from formulations.online import EngineView, Plan, Policy  # noqa: E402
from solvers.policies.registry import make_policy  # noqa: E402


class RejectEveryFifth(Policy):
    """`slo`'s plan, but every fifth request (by index) still live after its first token is rejected."""

    name = "slo-reject"

    def __init__(self) -> None:
        self.inner = make_policy("slo")

    def reset(self, engine) -> None:
        self.inner.reset(engine)

    def decide(self, view: EngineView) -> Plan:
        plan = self.inner.decide(view)
        doomed = view.idx[(view.idx % 5 == 4) & (view.generated > 0)]
        return dataclasses.replace(plan, run=plan.run[~np.isin(plan.run, doomed)],
                                   preempt=plan.preempt[~np.isin(plan.preempt, doomed)], reject=doomed)


def fresh_view(sched, view: EngineView, live) -> dict[str, np.ndarray]:
    """The columns of `view` derived from vLLM's request objects, block tables and prefix cache."""
    n_running = int(view.resident.sum())
    bs = sched.block_size
    computed = np.array([r.num_computed_tokens for r in live])
    total = np.array([r.num_tokens for r in live])
    prompt = np.array([r.num_prompt_tokens for r in live])
    decoding = (total > prompt) & (computed >= total - 1)
    generated = np.array([r.num_output_tokens for r in live])
    rows = np.array([sched.row_of[r.request_id] for r in live], dtype=np.int64)
    held = [len(sched.kv_cache_manager.get_blocks(r.request_id).blocks[0]) if k < n_running else 0
            for k, r in enumerate(live)]
    hits = [0] * n_running + [len(sched.kv_cache_manager.get_computed_blocks(r)[0].blocks[0]) * bs
                              for r in live[n_running:]]
    return dict(
        idx=sched.book.index[rows], prompt_len=prompt, generated=generated, computed=computed,
        prefill_left=np.where(decoding, 0, total - computed), resident=np.arange(len(live)) < n_running,
        kv_blocks=np.array(held), preemptions=np.array([r.num_preemptions for r in live]),
        pred_quantiles=sched.predictor.refine(sched.book.pred[rows], generated),
        free_blocks=sched.kv_cache_manager.block_pool.get_num_free_blocks(), cached=np.array(hits),
    )


def test_incremental_view_equals_a_fresh_view_at_every_step():
    engine = VllmEngine(SETTINGS, BridgeConfig(policy="fcfs", slot_time=TAU))
    sched = engine.scheduler
    engine.configure(BridgeConfig(policy="fcfs", slot_time=TAU), RejectEveryFifth())
    instance = realize(conversations(0, n=6, second_turn_at=3.0, slo=mixed), engine.spec)
    built = type(sched)._view
    seen = {"views": 0, "hit": 0, "preempted": 0, "waiting_after_preemption": 0}

    def checked(self, now, live, n_running):
        out = built(self, now, live, n_running)
        view = out[0]
        want = fresh_view(self, view, live)
        for name, value in want.items():
            np.testing.assert_array_equal(getattr(view, name), value, err_msg=f"{name} at t={now}")
        seen["views"] += 1
        seen["hit"] += int(view.cached.sum() > 0)
        seen["preempted"] += int(view.preemptions.sum() > 0)
        seen["waiting_after_preemption"] += int(((view.preemptions > 0) & ~view.resident).any())
        return out

    sched._view = checked.__get__(sched)
    try:
        result = replay(engine, instance)
    finally:
        del sched._view
    assert result.schedule.meta["plan_deviations"] == 0
    reasons = result.stats["finish_reasons"]
    assert "abort" in reasons.values() and "length" in reasons.values()
    assert seen["views"] >= len(result.schedule.meta["iteration_log"]["start"])  # a view at every step
    assert seen["hit"] and seen["preempted"] and seen["waiting_after_preemption"], seen
