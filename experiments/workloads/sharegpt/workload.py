"""The `sharegpt` workload: real ShareGPT prompts (text and token counts) and response lengths,
with the same class mix, SLO and arrival options as the trace workloads.

ShareGPT has no timestamps, so arrivals must come from a synthetic process
(`workload.arrivals` = poisson / gamma / bursts, with `workload.rate`). Requests are a seeded
random sample (stream independent of the builder's) of first-turn pairs; trace names pick the
side of the fixed train/test split (split.py):

    sharegpt        the held-out test side: what the learned predictor never saw (use this)
    sharegpt-train  the side the predictor is trained on
    sharegpt-all    both

Pairs longer than MAX_CONTEXT tokens (prompt + response; Llama-3-8B's context) are left out and
counted in meta["sharegpt"]["excluded_over_context"]. The rest is exp's `build_instance`, fed a
`Trace` of the sampled pairs; each request then gets its prompt text back via the trace line
(line k = k-th sampled pair).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from experiments.errors import ConfigError
from experiments.workloads.sharegpt.data import load_pairs
from experiments.workloads.sharegpt.split import select
from experiments.workloads.trace_loader import Trace
from experiments.workloads import WorkloadConfig, build_instance
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance

TRACE_SPLITS = {"sharegpt": "test", "sharegpt-train": "train", "sharegpt-all": "all"}
MAX_CONTEXT = 8192
_SAMPLE_STREAM = 101  # rng([seed, 101]): disjoint from the builder's streams 0..4


def is_sharegpt(trace: str) -> bool:
    return trace in TRACE_SPLITS


def sharegpt_trace(trace: str, limit: int | None, seed: int) -> tuple[Trace, list[str], dict]:
    """A Trace (arrivals all 0: the config supplies them) of sampled pairs, their prompts, meta."""
    if trace not in TRACE_SPLITS:
        raise ConfigError(f"sharegpt trace {trace!r}; valid: {', '.join(TRACE_SPLITS)}")
    pairs = select(load_pairs("first"), TRACE_SPLITS[trace])
    fits = np.flatnonzero(pairs.prompt_len + pairs.output_len <= MAX_CONTEXT)
    n = len(fits) if limit is None else limit
    if n > len(fits):
        raise ConfigError(f"workload.limit={limit} but {trace!r} has only {len(fits)} usable pairs")
    chosen = fits[np.random.default_rng([seed, _SAMPLE_STREAM]).permutation(len(fits))[:n]]
    data = Trace(source=f"sharegpt:{TRACE_SPLITS[trace]}", arrival=np.zeros(n),
                 prompt_len=pairs.prompt_len[chosen].copy(), output_len=pairs.output_len[chosen].copy(),
                 line=np.arange(1, n + 1, dtype=np.int64))
    meta = {"split": TRACE_SPLITS[trace], "pairs_available": len(pairs),
            "excluded_over_context": int(len(pairs) - len(fits)), "max_context": MAX_CONTEXT,
            "conversations": [pairs.conversation[i] for i in chosen], "tokenizer": pairs.meta.get("tokenizer")}
    return data, [pairs.prompt_text[i] for i in chosen], meta


def require_synthetic_arrivals(config: WorkloadConfig) -> None:
    if config.arrivals == "trace":
        raise ConfigError(f"workload.trace={config.trace!r} has no arrival times: set workload.arrivals to "
                          "poisson, gamma or bursts (and workload.rate)")
    if config.rate is None:
        raise ConfigError(f"workload.trace={config.trace!r} has no arrival times: set workload.rate (req/s)")


def build_sharegpt_instance(config: WorkloadConfig, engine: EngineSpec, seed: int) -> Instance:
    require_synthetic_arrivals(config)
    trace, texts, meta = sharegpt_trace(config.trace, config.limit, seed)
    base = build_instance(config, engine, seed, trace=trace)
    lines = base.meta["trace_lines"]
    requests = tuple(replace(r, prompt_text=texts[line - 1]) for r, line in zip(base.requests, lines, strict=True))
    return Instance(engine=engine, requests=requests, groups=base.groups, meta={**base.meta, "sharegpt": meta})
