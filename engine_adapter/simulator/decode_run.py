"""Fast-forwarding a run of identical pure-decode iterations in closed form.

When a batch is only decode steps of resident requests and nothing happens in between, the same
batch repeats: in latency mode iteration j of the run lasts
    c0 + c_decode*m + c_ctx*(ctx_0 + m*j)
(every member's context grows by one token per iteration), an arithmetic progression; in slotted
mode every iteration lasts tau. The run stops at the first event: a member finishing, the next
arrival or the plan's recheck time reached at an iteration start, or the first iteration whose
KV growth no longer fits (kv_cache.first_shortage_step).

Durations are computed with the same floating-point operations, in the same order, as the
one-iteration path (c0 + c_decode*m + c_ctx*ctx, then a running sum from the current time), so
a fast-forwarded run gives bit-identical times to stepping through it.
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
    k_done: int  # iterations until the first member finishes
    kv_stop: bool  # the run stops because the next iteration would not fit in KV


def plan_decode_run(spec: EngineSpec, clock: Clock, computed: np.ndarray, held: np.ndarray, remaining: list[int],
                    free: int, next_event_time: float) -> DecodeRun:
    """The longest run of decode iterations from now whose first iteration fits in KV.

    computed/held: members' tokens in cache and blocks held before the run; remaining: tokens
    each still has to produce; free: free blocks now; next_event_time: earliest pending arrival
    or recheck (inf if none).
    """
    m = len(remaining)
    k_done = min(remaining)
    k = k_done
    bs = spec.block_size
    k_kv = None
    # Each member takes at most one new block per `bs` iterations (plus one now): only when the
    # free blocks might not cover the whole run is the exact shortage step worth computing.
    if free < m * (k_done // bs + 2):
        after_first = computed + 1
        free_after_first = free - sum(((after_first + (bs - 1)) // bs - held).tolist())
        k_kv = first_shortage_step(after_first, free_after_first, bs)
        k = min(k, k_kv)
    now = clock.now
    if next_event_time <= now:
        k = 1
    tau = spec.slot_time
    if tau is None:
        lat = spec.latency
        base = lat.c0 + lat.c_decode * m
        ctx0 = sum(computed.tolist()) + m
        if next_event_time != np.inf and k > 1:
            first = base + lat.c_ctx * ctx0  # iterations only get longer: this bounds the count
            k = min(k, int((next_event_time - now) / first) + 2)
        ends = base + lat.c_ctx * np.arange(ctx0, ctx0 + m * k, m, dtype=np.int64)
        ends[0] = now + ends[0]
        np.add.accumulate(ends, out=ends)
    else:
        if next_event_time != np.inf and k > 1:
            k = min(k, int((next_event_time - now) / tau) + 2)
        ends = clock.run_ends(k)
    if next_event_time != np.inf and k > 1:
        # iteration j >= 1 starts at ends[j-1]; stop before the first that starts at/after the event
        k = min(k, int(ends[: k - 1].searchsorted(next_event_time, side="left")) + 1)
        ends = ends[:k]
    return DecodeRun(k, ends, k_done, kv_stop=(k == k_kv))
