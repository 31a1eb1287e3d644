"""Fast-forwarding a run of identical pure-decode iterations in closed form.

When a batch is only decode steps of resident requests and nothing happens in between, the same
batch repeats: in latency mode iteration j of the run lasts
    c0 + c_decode*m + c_ctx*(ctx_0 + m*j)
(every member's context grows by one token per iteration), an arithmetic progression; in slotted
mode every iteration lasts tau. The run stops at the first event: a member finishing, the next
arrival or the plan's recheck time reached at an iteration start, or the first iteration whose
KV growth no longer fits (kv_cache.first_shortage_step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine_adapter.simulator.clock import Clock
from engine_adapter.simulator.kv_cache import first_shortage_step
from formulations.engine_spec import EngineSpec


@dataclass
class DecodeRun:
    k: int  # iterations to run
    ends: np.ndarray  # end time of each of the k iterations
    ctx: np.ndarray  # decode context tokens of each iteration
    kv_stop: bool  # the run stops because the next iteration would not fit in KV


def plan_decode_run(spec: EngineSpec, clock: Clock, held_after_first: np.ndarray, remaining: np.ndarray,
                    free_after_first: int, next_event_time: float) -> DecodeRun:
    """The longest run of decode iterations from now (the first one already fits).

    held_after_first: members' tokens in cache after the first iteration; remaining: tokens each
    still has to produce; next_event_time: earliest arrival or recheck (inf if none);
    limit: at most this many iterations (None: no limit).
    """
    m = len(held_after_first)
    k_done = int(remaining.min())
    k_kv = first_shortage_step(held_after_first, free_after_first, spec.block_size)
    k = min(k_done, k_kv)
    if next_event_time <= clock.now:
        k = 1
    ctx0 = int(held_after_first.sum())
    tau = spec.slot_time
    if tau is None:
        lat = spec.latency
        base = lat.c0 + lat.c_decode * m
        if next_event_time != np.inf and k > 1:
            first = base + lat.c_ctx * ctx0  # iterations only get longer: this bounds the count
            k = min(k, int((next_event_time - clock.now) / first) + 2)
        ctx = ctx0 + m * np.arange(k, dtype=np.int64)
        ends = clock.run_ends(base + lat.c_ctx * ctx)
    else:
        if next_event_time != np.inf and k > 1:
            k = min(k, int((next_event_time - clock.now) / tau) + 2)
        ctx = ctx0 + m * np.arange(k, dtype=np.int64)
        ends = clock.run_ends(k)
    if next_event_time != np.inf and k > 1:
        # iteration j >= 1 starts at ends[j-1]; stop before the first that starts at/after the event
        k = min(k, int(np.searchsorted(ends[: k - 1], next_event_time, side="left")) + 1)
    return DecodeRun(k, ends[:k], ctx[:k], kv_stop=(k == k_kv))
