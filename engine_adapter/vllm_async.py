"""The bridge on vLLM's AsyncScheduler: what changes when steps overlap.

With async scheduling (vLLM's default where the executor supports it, i.e. on GPUs) step N+1 is
scheduled while step N runs, so at schedule time a request may have output tokens scheduled but
not yet returned (`num_output_placeholders`); `num_computed_tokens` already counts their inputs.
The plan must see such a request as vLLM does:
- a request whose last prompt chunk is in flight is *decoding* (its next step feeds the token on
  its way), not a request with a phantom token left to prefill;
- a request whose in-flight tokens already reach `max_tokens` gets no further step from vLLM, so
  it is kept out of the plan (it still holds its KV, which `free_blocks` reflects), leaving its
  seat and budget to requests that can run.
The policy is asked at the same events as without async (engine_adapter/events.py), but a
completion is seen when its step's output comes back, i.e. after the next step was scheduled.
`SloScheduler` is built as this class automatically when `scheduler_config.async_scheduling` is on.
"""

from __future__ import annotations

import numpy as np
from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.request import Request

from engine_adapter.vllm_scheduler import SloScheduler


def finishes_in_flight(request: Request) -> bool:
    """vLLM's own test (Scheduler.schedule) for a request its in-flight step already completes."""
    return (request.num_output_placeholders > 0
            and request.num_computed_tokens + 2 - request.num_output_placeholders
            >= request.num_prompt_tokens + request.max_tokens)


class AsyncSloScheduler(SloScheduler, AsyncScheduler):
    """SloScheduler with in-flight steps accounted for (vLLM's AsyncScheduler underneath)."""

    def _resident(self) -> list[Request]:
        return [r for r in self.running if not finishes_in_flight(r)]

    def _in_flight(self, live: list[Request]) -> np.ndarray:
        return np.fromiter((r.num_output_placeholders for r in live), dtype=np.int64, count=len(live))
