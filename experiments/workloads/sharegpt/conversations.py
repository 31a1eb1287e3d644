"""The `multi-turn` workload: real ShareGPT conversations replayed as closed loops.

Each sampled conversation sends its turns one at a time. Turn k+1's prompt is the whole context
so far (every earlier prompt and answer) plus its new message, so its token count is
P_{k+1} = P_k + O_k + m_{k+1} (m: the new message's tokens, O: the answer's, both counted with
the ShareGPT tokenizer), and its content ids repeat turn k's for every full block of turn k's
prompt and answer: with prefix caching on, the engine finds that context cached. Turn k+1 is
released `think` seconds after turn k finishes (formulations/turns.py).

Conversations start by the workload's arrival process (`rate` conversations/s, divided by
`rate_scale`); `limit` is the number of conversations. Every turn is latency class: TTFT targets
from its prompt by `workload.latency`, one reading rate per conversation (one user).

A conversation is cut before its first turn whose context would exceed MAX_CONTEXT or the KV
cache, or whose previous pair is missing (an empty message in the data); one with fewer than
`min_turns` turns left is not used. Both are counted in meta["multi_turn"].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from experiments.errors import ConfigError
from experiments.workloads.builder import draw_arrivals
from experiments.workloads.sharegpt.data import Pairs, load_pairs
from experiments.workloads.sharegpt.split import select
from experiments.workloads.sharegpt.workload import MAX_CONTEXT, TRACE_SPLITS, require_synthetic_arrivals
from experiments.workloads.spec import WorkloadConfig
from experiments.workloads.turns import conversation_turns
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.requests import Request

# rng([seed, k]) streams, disjoint from the builder's 0..4 and the first-turn sample's 101
_SAMPLE, _ARRIVALS, _THINK, _READ = 201, 202, 203, 204


@dataclass(frozen=True)
class Conversation:
    """One conversation's usable turns: new-message and answer tokens, message texts."""

    id: str
    message: tuple[int, ...]
    answer: tuple[int, ...]
    text: tuple[str, ...]

    def prompts(self) -> np.ndarray:
        """P_k: everything before turn k's answer (earlier prompts and answers, its message)."""
        msg, ans = np.array(self.message), np.array(self.answer)
        return np.cumsum(msg) + np.concatenate(([0], np.cumsum(ans)[:-1]))


def conversations(pairs: Pairs, max_turns: int, max_tokens: int) -> tuple[list[Conversation], dict[str, int]]:
    """Pairs grouped into conversations (file order), each cut as the module docstring says."""
    starts = np.flatnonzero(np.r_[True, np.array(pairs.conversation[1:]) != np.array(pairs.conversation[:-1])])
    ends = np.r_[starts[1:], len(pairs)]
    found: list[Conversation] = []
    cut = {"cut_at_missing_turn": 0, "cut_at_context": 0, "cut_at_max_turns": 0}
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        keep = hi - lo
        gaps = np.flatnonzero(pairs.turn[lo:hi] != np.arange(keep))
        if len(gaps):
            keep = int(gaps[0])
            cut["cut_at_missing_turn"] += 1
        if keep > max_turns:
            keep = max_turns
            cut["cut_at_max_turns"] += 1
        conv = Conversation(pairs.conversation[lo], tuple(pairs.prompt_len[lo:lo + keep].tolist()),
                            tuple(pairs.output_len[lo:lo + keep].tolist()), tuple(pairs.prompt_text[lo:lo + keep]))
        over = np.flatnonzero(conv.prompts() + np.array(conv.answer, dtype=np.int64) > max_tokens)
        if len(over):
            k = int(over[0])
            conv = Conversation(conv.id, conv.message[:k], conv.answer[:k], conv.text[:k])
            cut["cut_at_context"] += 1
        if conv.message:
            found.append(conv)
    return found, cut


def build_multi_turn_instance(config: WorkloadConfig, engine: EngineSpec, seed: int) -> Instance:
    if config.trace not in TRACE_SPLITS:
        raise ConfigError(f"workload.trace={config.trace!r}: kind multi-turn replays ShareGPT conversations; "
                          f"valid: {', '.join(TRACE_SPLITS)}")
    require_synthetic_arrivals(config)
    spec = config.multi_turn
    capacity = min(MAX_CONTEXT, engine.kv_blocks * engine.block_size)
    found, cut = conversations(select(load_pairs("all"), TRACE_SPLITS[config.trace]), spec.max_turns, capacity)
    usable = [c for c in found if len(c.message) >= spec.min_turns]
    n = len(usable) if config.limit is None else config.limit
    if n > len(usable):
        raise ConfigError(f"workload.limit={config.limit} but {config.trace!r} has only {len(usable)} conversations "
                          f"with >= {spec.min_turns} turns")
    chosen = [usable[k] for k in np.random.default_rng([seed, _SAMPLE]).permutation(len(usable))[:n]]
    starts = np.sort(draw_arrivals(config, np.zeros(n), np.random.default_rng([seed, _ARRIVALS]))) / config.rate_scale
    read_rates = config.latency.read_rate.sample(np.random.default_rng([seed, _READ]), n)
    think = np.random.default_rng([seed, _THINK])
    fresh = iter(range(1, 2**62))  # content ids: each new block of tokens gets the next one
    requests: list[Request] = []
    for j, (conv, start, rate) in enumerate(zip(chosen, starts.tolist(), read_rates.tolist(), strict=True)):
        requests.extend(conversation_turns(
            f"c{j}", conv.prompts(), conv.answer, start, spec.think.sample(think, len(conv.message)),
            engine.block_size, fresh, ttft_targets=config.latency.targets(conv.prompts()), read_rate=rate,
            texts=conv.text))
    meta = {"workload": asdict(config), "seed": seed, "multi_turn": {
        "split": TRACE_SPLITS[config.trace], "conversations_available": len(found),
        "conversations_with_min_turns": len(usable), **cut, "conversations": [c.id for c in chosen],
        "turns": len(requests), "max_context": capacity, "think_time_s": asdict(spec.think)}}
    return Instance(engine=engine, requests=tuple(requests), meta=meta)
