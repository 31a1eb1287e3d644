"""An instance replayed on vLLM's own, unmodified scheduler, one step per slot (for comparisons).

The engine is a `VllmEngine` built with `bridge=None`. Step k runs at slot k (time k * tau):
requests whose arrival is due by then are submitted first (an idle engine jumps to the next
arrival's slot), and a token returned by step k is delivered at (k + 1) * tau, as in the
simulator's slotted mode. Prompts realize the instance's content ids (content_tokens.py), so
vLLM's prefix cache sees the same sharing as the simulator's. Recorded per request: the time of
each token, vLLM's preemption count and the prefix-cache hit tokens of its admissions (what
`allocate_slots` was given for the requests it admitted). The prefix cache is reset first: an
earlier run's blocks would hit (all blocks then carry no key, as in a fresh simulator pool; their
free-queue order is a relabelling that changes no hit or eviction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine_adapter.content_tokens import ContentTokens
from engine_adapter.vllm_runner import VllmEngine
from formulations.instance import Instance


@dataclass
class ReferenceRun:
    token_times: dict[str, list[float]]
    preemptions: dict[str, int]
    hits_of: dict[str, int]
    finish_order: list[str]


def replay_vllm_scheduler(engine: VllmEngine, instance: Instance) -> ReferenceRun:
    tau = instance.engine.slot_time
    if engine.bridge is not None or tau is None:
        raise ValueError("replay_vllm_scheduler needs vLLM's own scheduler (bridge=None) and a slotted instance")
    sched = engine.scheduler
    if engine.busy() or not engine.llm.reset_prefix_cache():
        raise RuntimeError("replay_vllm_scheduler: the engine must be idle (its prefix cache is reset first)")
    hits: dict[str, int] = {r.id: 0 for r in instance.requests}
    allocate = sched.kv_cache_manager.allocate_slots

    def counting_allocate(request, num_new_tokens, num_new_computed_tokens=0, *args, **kwargs):
        got = allocate(request, num_new_tokens, num_new_computed_tokens, *args, **kwargs)
        if got is not None and num_new_computed_tokens:
            hits[request.request_id.rsplit("-", 1)[0]] += num_new_computed_tokens  # vLLM appends "-<8 chars>"
        return got

    sched.kv_cache_manager.allocate_slots = counting_allocate
    try:
        return _replay(engine, instance, tau, hits)
    finally:
        del sched.kv_cache_manager.allocate_slots


def _replay(engine: VllmEngine, instance: Instance, tau: float, hits: dict[str, int]) -> ReferenceRun:
    sched = engine.scheduler
    content = ContentTokens(instance, engine.vocab_size, engine.settings.seed)
    pending = sorted(range(len(instance.requests)), key=lambda i: (instance.requests[i].arrival, i))
    index = {r.id: i for i, r in enumerate(instance.requests)}
    times: dict[str, list[float]] = {r.id: [] for r in instance.requests}
    preemptions: dict[str, int] = {}
    live: dict[str, object] = {}
    order: list[str] = []
    step = 0
    while pending or engine.busy():
        while pending and instance.requests[pending[0]].arrival <= step * tau + 1e-9:
            req = instance.requests[pending.pop(0)]
            engine.submit(req.id, req.prompt_len, req.output_len, tokens=content.prompt(index[req.id]))
        if not engine.busy():
            step = math.ceil(instance.requests[pending[0]].arrival / tau - 1e-9)
            continue
        live.update({rid.rsplit("-", 1)[0]: r for rid, r in sched.requests.items()})
        for out in engine.llm.step():
            got = times[out.request_id]
            got.extend([(step + 1) * tau] * (len(out.outputs[0].token_ids) - len(got)))
            if out.finished:
                order.append(out.request_id)
                content.finished(index[out.request_id], list(out.outputs[0].token_ids))
        for rid, r in live.items():
            preemptions[rid] = r.num_preemptions
        step += 1
    return ReferenceRun(times, preemptions, hits, order)
