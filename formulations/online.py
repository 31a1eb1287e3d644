"""The online decision problem: what a policy sees (`EngineView`) and answers (`Plan`).

A policy never touches engine objects: the simulator and the vLLM bridge both build an
`EngineView` (plain numpy columns, one entry per live request) and apply the `Plan` with the
same rules, so one policy object runs unchanged in both. The rules (engine_adapter implements
them, the exact models encode them):

0. `plan.reject` requests are finished at once, unserved: they free their KV blocks, score as
   SLO missed (counted as rejected, not as served late) and the client is told now (the vLLM
   bridge aborts them). A rejected bulk member's descendants are rejected with it. Rejection is
   a policy's choice, so the exact models never reject (a request they do not serve is late).
1. `plan.preempt` requests lose their KV blocks first (recompute: their prompt and generated
   tokens are prefilled again on resume; swap: a transfer time is charged instead).
2. `plan.run` is walked in order. A request with prefill left gets a chunk of
   min(prefill_left, budget left) tokens, a decoding one gets 1 token, until the token budget or
   `max_seqs` is used. A request that needs more KV blocks than are free:
   - if it is resident, the engine preempts victims until it fits: resident requests absent from
     `run` (most recently admitted first), then those later in `run` (lowest priority first);
     if none is left it is preempted itself;
   - if it is waiting, it is skipped and no further waiting request is admitted this iteration
     (head-of-line blocking, as vLLM does).
   A waiting request is admitted only if it passes vLLM 0.32's admission check
   (allocate_slots): with `engine.reserve_full_prompt` (vLLM's scheduler_reserve_full_isl, the
   default) the blocks for its whole known sequence (prompt + generated tokens: a preempted
   request recomputes its outputs too) must be free, not just its first chunk's; while any
   request holds KV, `engine.watermark_blocks` more must stay free. Its chunk still takes only
   its chunk's blocks. (vLLM also caps that sequence at max_model_len; a live request never
   exceeds it, since vLLM rejects longer prompts and stops generation there.)
   Once the engine has evicted a victim for lack of KV in an iteration, no waiting request is
   admitted in it (vLLM admits nothing in a step that preempted).
3. Resident requests absent from `run` keep their KV blocks and pause for this iteration.
4. The engine asks again at the next event (arrival, release, completion, prefill end, an
   eviction by rule 2, KV exhaustion, an iteration that runs nothing) or at `plan.recheck_at`,
   whichever comes first, and re-applies the plan's run set in between (both engines:
   engine_adapter/events.py); between events the simulator may fast-forward several identical
   decode iterations. A policy that wants to be asked sooner sets `recheck_at`.
A plan naming a request that is not live, or one request in two of run / preempt / reject, is a
bug and raises `PlanError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.arithmetic import ceil_div

EMPTY = np.empty(0, dtype=np.int64)


@lru_cache(maxsize=64)
def quantile_column(levels: tuple[float, ...], level: float) -> int:
    """Index of the quantile level nearest `level` (cached: policies ask for the same few)."""
    return int(np.argmin(np.abs(np.asarray(levels) - level)))


def admission_blocks(computed, want, chunk, held, spec: EngineSpec):
    """Free blocks a waiting request needs to be admitted with a first chunk of `chunk` tokens
    (rule 2's admission check: vLLM's allocate_slots for a WAITING/PREEMPTED request).

    With `reserve_full_prompt` (vLLM's scheduler_reserve_full_isl) the blocks for its whole known
    sequence (request.num_tokens: prompt plus the outputs a resumed request recomputes, here
    computed + want) must be free, otherwise only those of the first chunk; `held`: blocks it
    holds already (prefix-cache hits). The watermark comes on top. Elementwise on arrays too: the
    plan rules and the policies that price a waiting request's KV share this one rule.
    """
    return blocks_to_admit(computed, want, chunk, held, spec.block_size, spec.reserve_full_prompt)


def blocks_to_admit(computed, want, chunk, held, block_size, reserve_full_prompt):
    """`admission_blocks` on plain numbers (scalars or arrays), so compiled code can run the same
    rule (solvers/policies/batching.py compiles this function)."""
    tokens = computed + (want if reserve_full_prompt else chunk)
    return ceil_div(tokens, block_size) - held


class PlanError(ValueError):
    """A plan that the engine cannot apply (it names a request that is not live, ...)."""


@dataclass
class GroupState:
    """A bulk group as policies see it: the whole DAG, including members not yet released."""

    id: str
    members: np.ndarray  # request indices
    parents: list[np.ndarray]  # per member (aligned with `members`): request indices of its parents
    deadline: float
    prompt_len: np.ndarray  # per member
    done: np.ndarray  # per member, bool; updated by the engine


@dataclass(frozen=True)
class EngineView:
    """Snapshot at one decision point. Column k describes live request `idx[k]`."""

    now: float
    idx: np.ndarray  # int64 request index
    cls: np.ndarray  # int8 class code: 0 latency, 1 throughput, 2 bulk
    arrival: np.ndarray
    release: np.ndarray  # when it became runnable (DAG children: last parent's finish)
    prompt_len: np.ndarray
    generated: np.ndarray  # output tokens delivered so far
    computed: np.ndarray  # tokens whose KV is in cache
    prefill_left: np.ndarray  # tokens to (re)prefill before its next token; 0 when decoding
    resident: np.ndarray  # bool: holds KV blocks
    kv_blocks: np.ndarray  # blocks held
    ttft_target: np.ndarray  # nan unless latency
    read_rate: np.ndarray  # nan unless latency
    lag: np.ndarray  # latency: read_k - ideal_k of its last delivered token (s); 0 otherwise
    delay_area: np.ndarray  # latency: S_delay of the tokens delivered so far
    deadline: np.ndarray  # throughput: its deadline; bulk: its group's; nan for latency
    group: np.ndarray  # group index (into `groups`), -1 if none
    preemptions: np.ndarray
    pred_quantiles: np.ndarray  # (n, Q): predicted total output length, conditioned on >= generated+1
    quantile_levels: tuple[float, ...]
    free_blocks: int
    engine: EngineSpec
    groups: list[GroupState] = field(default_factory=list)
    # tokens of a waiting request found in the prefix cache: its prefill skips them (prefill_left
    # counts them); 0 for resident requests; None where the engine reports no prefix caching
    cached: np.ndarray | None = None

    def prefill_after_hits(self) -> np.ndarray:
        """Tokens each request still has to prefill once its prefix-cache hit is taken."""
        return self.prefill_left if self.cached is None else self.prefill_left - self.cached

    def __len__(self) -> int:
        return len(self.idx)

    def predicted_output(self, level: float = 0.5) -> np.ndarray:
        """The predicted total output length at one quantile level (nearest level available)."""
        return self.pred_quantiles[:, quantile_column(tuple(self.quantile_levels), level)]


@dataclass(frozen=True)
class Plan:
    run: np.ndarray  # request indices in priority order
    preempt: np.ndarray = field(default_factory=lambda: EMPTY)
    reject: np.ndarray = field(default_factory=lambda: EMPTY)  # request indices told now they will not be served
    recheck_at: float | None = None  # absolute time by which to decide again


class Policy(ABC):
    """An online scheduling policy. Subclasses set `name` and implement `decide`."""

    name: str = "policy"

    def reset(self, engine: EngineSpec) -> None:
        """Forget all state before a new run on `engine`."""

    @abstractmethod
    def decide(self, view: EngineView) -> Plan:
        """Which live requests run this iteration (in priority order), which to preempt and which to reject."""
