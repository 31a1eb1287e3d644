"""Per-request scheduling signals derived from an `EngineView` (vectorized, shared by policies).

Everything here uses only what a policy may see: progress counters, QoE state (lag, delay area)
and predicted output lengths. The QoE projections rest on one fact from formulations/qoe.py:
the lateness of token i is a cumulative max, lateness_i = max(lateness_{i-1}, delivered_i -
ideal_i). So if the next token (index k+1) is delivered at time s and the following ones every
`t_tok` seconds, the lateness of the j-th remaining token (j = 0..m-1) is
max(L, x0 + j*(t_tok - 1/r)) with L the current lag and x0 = s - ideal_{k+1}, and the final
delay area is the current one plus the sum of those terms: a closed form, no per-token loop.
"""

from __future__ import annotations

import numpy as np

from formulations.arithmetic import ceil_div
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, blocks_to_admit
from solvers.compiled import kernel

LATENCY, THROUGHPUT, BULK = 0, 1, 2


def iteration_time(engine: EngineSpec, decode_seqs: float, decode_ctx: float, prefill_tokens: float = 0.0) -> float:
    """Duration of one iteration: the slot in slotted mode, else the latency model."""
    if engine.slot_time is not None:
        return engine.slot_time
    return engine.latency.iteration_time(prefill_tokens, decode_seqs, decode_ctx)


def typical_iteration(view: EngineView) -> float:
    """Iteration time if every resident request decodes (the pace a served stream gets)."""
    return typical_iteration_at(view.engine, *decoding_load(view.resident, view.prefill_left, view.computed,
                                                            view.prompt_len))


def typical_iteration_at(engine: EngineSpec, seqs: int, ctx: float) -> float:
    """`typical_iteration` from the view's `decoding_load` (a kernel that reads the view's columns
    for other ends too may compute it)."""
    return iteration_time(engine, max(1, min(seqs, engine.max_seqs)), ctx, 0.0)


@kernel
def decoding_load(resident, prefill_left, computed, prompt_len):
    """(requests decoding, their context tokens), or (0, the mean prompt) when none decodes: sums
    of whole numbers, so exact in any order (np.sum's and np.mean's results)."""
    seqs, ctx = 0, 0
    for i in range(len(resident)):
        if resident[i] and prefill_left[i] == 0:
            seqs += 1
            ctx += computed[i]
    if seqs or not len(prompt_len):
        return seqs, float(ctx)
    return 0, float(prompt_len.sum()) / len(prompt_len)


def engine_seconds(engine: EngineSpec, prefill: np.ndarray, decode: np.ndarray, context: np.ndarray,
                   steps: np.ndarray) -> np.ndarray:
    """Engine time a piece of work takes from a shared engine, when it is batched with others
    (`engine_seconds_at`, elementwise; the arguments broadcast)."""
    prefill, decode, context, steps = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64)
                                                            for a in (prefill, decode, context, steps)))
    return _engine_seconds_each(engine_costs(engine), prefill.ravel(), decode.ravel(), context.ravel(),
                                steps.ravel()).reshape(prefill.shape)


def _kept_for_last_engine(build):
    """`build(engine)` (a read-only array), kept for the last engine asked about: every decision
    of a run asks about the same one (EngineSpec is frozen), and building the array costs more
    than a small decision's own arithmetic."""
    last: list = [None, None]

    def kept(engine: EngineSpec) -> np.ndarray:
        if last[0] is not engine:
            value = build(engine)
            value.setflags(write=False)
            last[:] = [engine, value]
        return last[1]

    kept.__doc__ = build.__doc__
    return kept


@_kept_for_last_engine
def engine_costs(engine: EngineSpec) -> np.ndarray:
    """What `engine_seconds_at` reads of an engine, as one float vector (nan slot_time: not slotted)."""
    lat = engine.latency
    slot = np.nan if engine.slot_time is None else engine.slot_time
    return np.array([engine.block_size, engine.kv_blocks, engine.max_seqs, engine.token_budget, slot,
                     lat.c0, lat.c_prefill, lat.c_decode, lat.c_ctx], dtype=np.float64)


@_kept_for_last_engine
def kv_capacities(engine: EngineSpec) -> np.ndarray:
    """(KV blocks, token budget): the capacities of a step's knapsack over `kv_weight_columns`."""
    return np.array([engine.kv_blocks, engine.token_budget], dtype=np.float64)


@kernel
def engine_seconds_at(costs: np.ndarray, prefill: float, decode: float, context: float, steps: float) -> float:
    """Engine time of `prefill` tokens to prefill and `decode` tokens to decode at a mean `context`,
    over `steps` iterations, when batched with others (`costs`: engine_costs).

    The per-token costs add up whatever the batch; the fixed cost of an iteration is shared by
    the requests in it, and how many share it is bounded by whichever of max_seqs, the KV cache
    (context / block_size blocks each) and the token budget binds first. In slotted mode every
    iteration costs one slot, so the share of the slots is the whole cost. Used by admission
    control and the offered load: a fixed decode-only iteration time ignores prefill and
    recompute, which under load is a third of the engine's time or more.
    """
    block_size, kv_blocks, max_seqs, budget, slot, c0, c_prefill, c_decode, c_ctx = costs
    share = max(max(context / block_size / kv_blocks, 1.0 / max_seqs), (prefill + decode) / max(steps, 1.0) / budget)
    if slot == slot:
        return steps * share * slot
    return steps * share * c0 + c_prefill * prefill + c_decode * decode + c_ctx * context * decode


@kernel
def _engine_seconds_each(costs, prefill, decode, context, steps):
    out = np.empty(len(prefill))
    for i in range(len(prefill)):
        out[i] = engine_seconds_at(costs, prefill[i], decode[i], context[i], steps[i])
    return out


def prefill_iterations(view: EngineView) -> np.ndarray:
    """Iterations needed before the next token (`prefill_iterations_at`, elementwise)."""
    return _prefill_iterations_each(view.prefill_after_hits(), view.engine.token_budget)


@kernel
def prefill_iterations_at(prefill: int, budget: int) -> int:
    """Iterations needed before the next token with `prefill` tokens left to prefill after
    prefix-cache hits: ceil(prefill / token budget), 0 if decoding. A float division: a 64-bit
    integer one per request costs three times more, and the float quotient is never rounded
    onto a whole number it is not (a remainder r >= 1 puts it at least 1/budget away from one,
    far above its rounding error for prompts below 2**31 tokens and budgets below 2**22)."""
    return int(np.ceil(prefill / budget))


@kernel
def _prefill_iterations_each(prefill, budget):
    out = np.empty(len(prefill), dtype=np.int64)
    for i in range(len(prefill)):
        out[i] = prefill_iterations_at(prefill[i], budget)
    return out


def steps_to_finish(view: EngineView, total: np.ndarray, pre: np.ndarray | None = None) -> np.ndarray:
    """Iterations to finish if run every iteration, given a predicted total output length
    (`steps_to_finish_at`, elementwise). `pre`: prefill_iterations(view), when the caller has it
    already. `total` may be (k, n): k predicted totals per request, a row each."""
    if pre is None:
        pre = prefill_iterations(view)
    total = np.asarray(total, dtype=np.float64)
    rows = np.atleast_2d(total)
    return _steps_each(rows, view.generated, pre).reshape(total.shape)


@kernel
def steps_to_finish_at(total: float, generated: int, pre: int) -> float:
    """Iterations to finish one request run every iteration: the last prefill chunk delivers a
    token, so with `pre` prefill iterations left it needs those plus (total - generated - 1)
    decodes; a decoding one (pre = 0) needs total - generated (at least one either way)."""
    tokens_left = max(total - generated, 1.0)
    return pre + tokens_left - 1.0 if pre > 0 else tokens_left


@kernel
def _steps_each(total, generated, pre):
    out = np.empty(total.shape)
    for k in range(total.shape[0]):
        for i in range(total.shape[1]):
            out[k, i] = steps_to_finish_at(total[k, i], generated[i], pre[i])
    return out


def kv_weights(view: EngineView) -> tuple[np.ndarray, np.ndarray]:
    """(blocks held after this iteration if run, tokens this iteration if run) per request
    (`kv_weight_at`, elementwise): the columns of `kv_weight_columns`."""
    weights = kv_weight_columns(view)
    return weights[:, 0], weights[:, 1]


def kv_weight_columns(view: EngineView) -> np.ndarray:
    """(n, 2): per request, blocks held after this iteration if run and tokens this iteration
    if run (`kv_weight_at`), as a knapsack's weight matrix."""
    return kv_weights_each(*kv_weight_args(view))


def kv_weight_args(view: EngineView) -> tuple:
    """What `kv_weights_each` reads of a view, for a kernel that computes the weights among other
    columns in one call."""
    # a waiting request's prefix-cache hit is in its blocks too
    in_cache = view.computed if view.cached is None else view.computed + view.cached
    engine = view.engine
    return view.resident, view.prefill_after_hits(), in_cache, engine.token_budget, engine.block_size, \
        engine.reserve_full_prompt


blocks_to_admit_at = kernel(blocks_to_admit)  # formulations.online's admission rule, compiled


@kernel
def blocks_for_at(tokens: int, block_size: int) -> int:
    """KV blocks that hold `tokens` tokens: ceil(tokens / block_size)."""
    return ceil_div(tokens, block_size)


@kernel
def kv_weight_at(resident: bool, prefill: int, in_cache: int, budget: int, block_size: int,
                 reserve_full_prompt: bool) -> tuple[float, float]:
    """(blocks held after this iteration if run, tokens this iteration if run) of one request with
    `prefill` tokens to prefill and `in_cache` in its KV. A decode step writes the KV of the
    previous token: in_cache + 1 tokens afterwards. A waiting request's blocks are those its
    admission check asks to be free (the engine's rule, `admission_blocks`): under the
    full-prompt gate its whole prompt, not just the chunk, so a batch planned within these
    weights is one the engine admits."""
    chunk = min(prefill, budget) if prefill > 0 else 1
    if resident:
        return float(blocks_for_at(in_cache + chunk, block_size)), float(chunk)
    return float(blocks_to_admit_at(in_cache, max(prefill, 1), chunk, 0, block_size, reserve_full_prompt)), float(chunk)


@kernel
def kv_weights_each(resident, prefill, in_cache, budget, block_size, reserve_full_prompt):
    """kv_weight_columns' matrix from its arguments (`kv_weight_args`)."""
    out = np.empty((len(resident), 2))
    for i in range(len(resident)):
        out[i, 0], out[i, 1] = kv_weight_at(resident[i], prefill[i], in_cache[i], budget, block_size,
                                            reserve_full_prompt)
    return out


_SHARED = ("now", "quantile_levels", "free_blocks", "engine", "groups")  # not per request


class _Rows(EngineView):
    """Some rows of a view: each column is indexed when first read (then a plain field), so
    restricting a view of thousands of requests costs only the columns a signal reads."""

    __slots__ = ("_parent", "_positions")  # outside __dict__: vars(rows) holds only fields

    def __getattr__(self, name: str) -> object:  # called only for columns not read yet
        if name.startswith("_"):
            raise AttributeError(name)
        column = getattr(self._parent, name)
        value = None if column is None else column[self._positions]
        self.__dict__[name] = value
        return value


def rows(view: EngineView, positions: np.ndarray) -> EngineView:
    """The view restricted to some live requests (in the order given): per-request signals are
    elementwise, so a policy that needs them for a few requests computes them on those only."""
    out = _Rows.__new__(_Rows)
    out.__dict__.update({name: getattr(view, name) for name in _SHARED})
    object.__setattr__(out, "_parent", view)
    object.__setattr__(out, "_positions", np.asarray(positions))
    return out


# ---- latency streams ---------------------------------------------------------------------------
@kernel
def next_token_ideal_at(arrival: float, ttft_target: float, generated: int, read_rate: float) -> float:
    """ideal_{k+1} = arrival + TTFT target + k/r for the next token (k = tokens delivered)."""
    return arrival + ttft_target + generated / read_rate


@kernel
def _maximum(a: float, b: float) -> float:
    """np.maximum of two floats, nan if either is (numba's max(a, b) is not nan when only b is)."""
    return a if a > b or a != a else b


@kernel
def _clip(x: float, lo: float, hi: float) -> float:
    """np.clip of a float between two numbers: nan stays nan."""
    return x if x != x else min(max(x, lo), hi)


@kernel
def added_area_at(lag: float, x0: float, m: float, d: float) -> float:
    """The delay area that m remaining tokens add to a stream with lag L when the next one is x0
    late and each later one d later still (d = t_tok - 1/r): the lateness of the j-th is
    max(L, x0 + j d). Terms j < j_star stay at max(L, x0), later ones grow as x0 + j d (only when
    d > 0: an engine slower than the reader); nan where d or x0 is (not a stream)."""
    flat = m * _maximum(lag, x0)
    if not d > 0:
        return flat
    j_star = 0.0 if x0 >= lag else _clip(np.floor((lag - x0) / d) + 1.0, 0.0, m)
    tail = (m - j_star) * x0 + d * (m * (m - 1) - j_star * (j_star - 1)) / 2.0
    return _maximum(j_star * lag + tail, flat)


@kernel
def projected_qoe_at(ideal: float, generated: int, read_rate: float, delay_area: float, lag: float,
                     start: float, t_tok: float, total: float) -> float:
    """QoE at completion (clipped to [0, 1]) of a stream with `total` output tokens whose next
    token (ideal time `ideal`) comes at `start` and each later one every t_tok: the projected
    delay area (`added_area_at`) over the ideal one, total (total + 1) / 2r."""
    m = _maximum(total - generated, 1.0)
    area = delay_area + added_area_at(lag, start - ideal, m, t_tok - 1.0 / read_rate)
    whole = total * (total + 1.0) / (2.0 * read_rate)
    return _clip(1.0 - area / whole, 0.0, 1.0)


def projected_qoe(view: EngineView, start: np.ndarray, t_tok: float, total: np.ndarray) -> np.ndarray:
    """`projected_qoe_at` of every request (nan where it is not a stream)."""
    return _qoe_each(view.arrival, view.ttft_target, view.generated, view.read_rate, view.delay_area, view.lag,
                     np.asarray(start, dtype=np.float64), float(t_tok), np.asarray(total, dtype=np.float64))


@kernel
def _qoe_each(arrival, ttft_target, generated, read_rate, delay_area, lag, start, t_tok, total):
    out = np.empty(len(arrival))
    for i in range(len(arrival)):
        ideal = next_token_ideal_at(arrival[i], ttft_target[i], generated[i], read_rate[i])
        out[i] = projected_qoe_at(ideal, generated[i], read_rate[i], delay_area[i], lag[i], start[i], t_tok, total[i])
    return out


def qoe_gain(view: EngineView, horizon: float, t_tok: float, total: np.ndarray, t_first: np.ndarray) -> np.ndarray:
    """Andes' value: projected QoE if served now (next token after t_first, then one per t_tok)
    minus if paused for `horizon` seconds first; 0 where it is not a stream (no projection)."""
    t_first = np.asarray(t_first, dtype=np.float64)
    if t_first.ndim == 0:  # one for all (np.full: a broadcast view costs more than it saves)
        t_first = np.full(len(view), t_first)
    return _gain_each(view.arrival, view.ttft_target, view.generated, view.read_rate, view.delay_area, view.lag,
                      float(view.now), float(horizon), float(t_tok), np.asarray(total, dtype=np.float64), t_first)


@kernel
def _gain_each(arrival, ttft_target, generated, read_rate, delay_area, lag, now, horizon, t_tok, total, t_first):
    out = np.empty(len(arrival))
    for i in range(len(arrival)):
        out[i] = qoe_gain_at(arrival[i], ttft_target[i], generated[i], read_rate[i], delay_area[i], lag[i],
                             now + t_first[i], horizon, t_tok, total[i])
    return out


@kernel
def qoe_gain_at(arrival: float, ttft_target: float, generated: int, read_rate: float, delay_area: float, lag: float,
                start: float, horizon: float, t_tok: float, total: float) -> float:
    """`qoe_gain` of one request whose next token comes at `start` if served now: projected QoE
    then minus `horizon` seconds later; 0 where it is not a stream (its projections are nan, or
    0 at an infinite rate)."""
    if not np.isfinite(read_rate):
        return 0.0
    ideal = next_token_ideal_at(arrival, ttft_target, generated, read_rate)
    gain = (projected_qoe_at(ideal, generated, read_rate, delay_area, lag, start, t_tok, total)
            - projected_qoe_at(ideal, generated, read_rate, delay_area, lag, start + horizon, t_tok, total))
    return gain if gain == gain else 0.0


def latest_next_token(view: EngineView, t_tok: float, total: np.ndarray, threshold: float,
                      share: float | tuple[float, ...] = 1.0) -> np.ndarray:
    """Latest delivery time of the next token that still allows final QoE >= threshold
    (`latest_next_token_at`, elementwise). `total` may be (k, n), k totals per request, with one
    `share` per row (a tuple): every variant in one pass."""
    total = np.asarray(total, dtype=np.float64)
    rows = np.atleast_2d(total)
    shares = np.broadcast_to(np.asarray(share, dtype=np.float64), (rows.shape[0],)).copy()
    return _latest_each(view.arrival, view.ttft_target, view.generated, view.read_rate, view.delay_area, view.lag,
                        float(t_tok), rows, float(threshold), shares).reshape(total.shape)


@kernel
def latest_next_token_at(ideal: float, generated: int, read_rate: float, delay_area: float, lag: float,
                         t_tok: float, total: float, threshold: float, share: float) -> float:
    """Latest delivery time of a stream's next token (ideal time `ideal`) that still allows final
    QoE >= threshold when it has `total` output tokens and later tokens come every `t_tok`.

    With m tokens left: S_delay = A + m*max(L, x0) + growth, where the growth term d*m(m-1)/2
    (d = t_tok - 1/r > 0 only) bounds the lateness added by a slow engine. -inf where the
    threshold is already out of reach (A + m*L + growth > allowed; also where a value is nan:
    not a stream). `share` < 1 plans to spend only that share of the allowed delay area (a
    safety margin).
    """
    m = max(total - generated, 1.0)
    whole = total * (total + 1.0) / (2.0 * read_rate)
    d = max(t_tok - 1.0 / read_rate, 0.0)
    budget = share * (1.0 - threshold) * whole - delay_area - d * m * (m - 1.0) / 2.0
    per_token = budget / m
    return ideal + per_token if per_token >= lag - 1e-12 else -np.inf


@kernel
def _latest_each(arrival, ttft_target, generated, read_rate, delay_area, lag, t_tok, total, threshold, shares):
    out = np.empty(total.shape)
    for i in range(total.shape[1]):
        ideal = next_token_ideal_at(arrival[i], ttft_target[i], generated[i], read_rate[i])
        for k in range(total.shape[0]):
            out[k, i] = latest_next_token_at(ideal, generated[i], read_rate[i], delay_area[i], lag[i], t_tok,
                                             total[k, i], threshold, shares[k])
    return out


def tightest_total(view: EngineView, lo: np.ndarray, hi: np.ndarray, threshold: float,
                   share: float | tuple[float, ...] = 1.0) -> np.ndarray:
    """The total output length in [lo, hi] that leaves a stream the least room to wait
    (`tightest_total_at`, elementwise). A tuple `share` gives one row per share, (k, n)."""
    scales = np.atleast_1d(np.asarray(share, dtype=np.float64)) * (1.0 - threshold)
    out = _tightest_each(view.generated, view.read_rate, view.delay_area, np.asarray(lo, dtype=np.float64),
                         np.asarray(hi, dtype=np.float64), scales)
    return out if np.ndim(share) else out[0]


@kernel
def tightest_total_at(generated: int, read_rate: float, delay_area: float, lo: float, hi: float,
                      scale: float) -> float:
    """The total output length in [lo, hi] that leaves one stream the least room to wait, for
    scale = share (1 - threshold).

    The per-token budget of `latest_next_token_at` is (c T(T+1) - A) / (T - g) for a total T, with
    g tokens delivered, A the delay area and c = scale / (2r): it explodes when T is just above g
    (one token left: being late costs little) and grows again for long streams (a larger allowed
    area), so its minimum is inside the range at T* = g + sqrt(g^2 + g - A/c) (zero derivative).
    Planning with the shortest likely length alone would be wrong for a stream that is predicted
    to be nearly done but is not: it would look almost free to pause. The engine-speed growth
    term is left out of this choice (it only matters when the engine is slower than the reader).
    No delay allowed (scale <= 0) or not a stream (nan): `lo`.
    """
    top = max(hi, lo)
    if scale <= 0:
        return lo
    area_per_c = delay_area * (2.0 * read_rate / scale)  # A / c
    if area_per_c != area_per_c:
        return lo
    star = generated + np.sqrt(max(generated * generated + generated - area_per_c, 0.0))
    return min(max(star, lo), top)


@kernel
def _tightest_each(generated, read_rate, delay_area, lo, hi, scales):
    out = np.empty((len(scales), len(lo)))
    for k in range(len(scales)):
        for i in range(len(lo)):
            out[k, i] = tightest_total_at(generated[i], read_rate[i], delay_area[i], lo[i], hi[i], scales[k])
    return out
