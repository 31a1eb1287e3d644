"""`andes`: the QoE-aware knapsack scheduler of Andes (Liu et al., arXiv 2404.16283).

Taken from the paper:
- every request is a text stream, and a stream decoding far faster than its user reads builds a
  buffer of unread tokens: pausing it costs no QoE until the buffer drains, while a waiting
  stream loses QoE every second. So the scheduler maximizes the total QoE gain over a short
  horizon dt: value_i = QoE_i(served now) - QoE_i(paused for dt), weight_i = its KV context,
  capacity = the KV cache, solved greedily by value/weight;
- the token delivery speed depends on the batch size B, so the knapsack is solved for several B
  between a lower bound (below it every served stream already gets tokens at least as fast as the
  fastest reader reads: smaller batches cannot raise QoE) and an upper bound (the most requests
  that fit in KV, smallest contexts first, capped by max_seqs), keeping the best total gain;
- the knapsack runs only when it can matter: when not everything fits in KV (or the iteration
  time exceeds the strictest reading pace 1/max(r)); otherwise every request runs, FCFS as vLLM;
- streams with a full buffer are PREEMPTED (their KV freed, recomputed later) so that starving
  streams can be admitted, and re-admitted before their buffer runs dry: the engine is asked
  again (`recheck_at`) when the next paused stream's buffer would drain within dt;
- preemption throttling: a cap on the average number of preemptions per request seen, and the
  overhead-aware refinement (an admission that evicts someone is kept only if its QoE gain beats
  the QoE its prefill stall costs every running stream).

What differs: QoE is docs/DESIGN.md's definition (delay area over the ideal area), projected in
closed form from (lag, delay area) instead of the paper's sampled token timeline; the QoE after
dt is projected to completion (with the predicted median output length) rather than truncated at
dt; B is searched on a geometric grid of at most `batch_grid` values rather than every integer.
Ours: a hysteresis against thrashing under recompute preemption (a resident is evicted only if
its buffer still covers `evict_buffer` seconds of reading beyond dt, largest buffer first, since
every eviction costs a recompute of its whole context), and the zero-gain requests fill the room
the knapsack leaves (residents with the least buffer first, then waiting ones by first-token due
time), so the KV cache stays full and no work is idle.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EMPTY, EngineView, Plan, Policy, quantile_column
from solvers.compiled import kernel, numpy_sum
from solvers.knapsack.greedy import densities_of
from solvers.knapsack.greedy import walk as greedy_walk
from solvers.policies import batching, ranking, signals
from solvers.policies.per_request import index_bound
from solvers.stable_sort import argsort_in_kernel, small_stable_argsort


@lru_cache(maxsize=1024)
def batch_grid(lower: int, upper: int, points: int) -> np.ndarray:
    """At most `points` batch sizes from lower to upper on a geometric grid (cached: np.geomspace
    costs more than a decision's arithmetic, and the bounds repeat from one decision to the next)."""
    grid = np.unique(np.geomspace(lower, upper, points).round().astype(np.int64))
    grid.flags.writeable = False
    return grid


@lru_cache(maxsize=16)
def _quantile_column(levels: tuple[float, ...], level: float) -> int:
    """view.predicted_output's column (quantile_column, cached: it costs a few numpy calls, and
    the levels repeat from one decision to the next)."""
    return quantile_column(levels, level)


@kernel
def _fastest_pace(read_rate: np.ndarray) -> float:
    """The strictest reading pace, 1/max(r) seconds per token over the finite rates (the others'
    rate is nan), inf without streams."""
    top = -np.inf
    for rate in read_rate:
        if np.isfinite(rate) and rate > top:
            top = rate
    return 1.0 / top if top > -np.inf else np.inf


@kernel
def _scan(resident, prefill, in_cache, budget, block_size, reserve_full_prompt, kv_blocks, idx, read_rate,
          decoding):
    """What every decision reads first, in one compiled call: `_weights`, the request index bound
    (per_request.index_bound), the strictest reading pace (`_fastest_pace`) and the decoding load
    (signals.decoding_load of `decoding`: resident, prefill_left, computed, prompt_len)."""
    blocks, growth, need, held = _weights(resident, prefill, in_cache, budget, block_size, reserve_full_prompt,
                                          kv_blocks)
    return blocks, growth, need, held, index_bound(idx), _fastest_pace(read_rate), signals.decoding_load(*decoding)


@kernel
def _weights(resident, prefill, in_cache, budget, block_size, reserve_full_prompt, kv_blocks):
    """The blocks each request holds after this iteration if run (`signals.kv_weight_at`), the
    blocks it allocates if run (a resident holds kv_blocks of them already), their sum and the
    blocks the residents hold, in one pass (the weights' first column is all a decision reads):
    whole numbers, so the sums are exact in any order."""
    n = len(resident)
    blocks, growth = np.empty(n), np.empty(n)
    need, held = 0.0, 0.0
    for i in range(n):
        blocks[i] = signals.kv_weight_at(resident[i], prefill[i], in_cache[i], budget, block_size,
                                         reserve_full_prompt)[0]
        growth[i] = blocks[i] - kv_blocks[i] if resident[i] else blocks[i]
        need += growth[i]
        if resident[i]:
            held += kv_blocks[i]
    return blocks, growth, need, held


@kernel
def _projections(pred_quantiles, column, generated, prefill, budget, computed, arrival, ttft_target, read_rate, lag,
                 now):
    """What the knapsack reads of every request, in one pass: the predicted total output (the
    quantile `column`; at least one token more than generated, nan if the prediction is, as
    np.maximum), the iterations before its next token (at least one), its buffer (`buffer_at`),
    and the context tokens of all (an integer sum: exact)."""
    n = len(generated)
    total, pre_iters, buffer = np.empty(n), np.empty(n, dtype=np.int64), np.empty(n)
    context = 0
    for i in range(n):
        floor, predicted = generated[i] + 1.0, pred_quantiles[i, column]
        total[i] = predicted if predicted > floor or predicted != predicted else floor
        pre_iters[i] = max(signals.prefill_iterations_at(prefill[i], budget), 1)
        buffer[i] = buffer_at(arrival[i], ttft_target[i], generated[i], read_rate[i], lag[i], now)
        context += computed[i]
    return total, pre_iters, buffer, context


@kernel
def buffer_at(arrival: float, ttft_target: float, generated: int, read_rate: float, lag: float, now: float) -> float:
    """Seconds until a stream's reader needs its next token (negative: already starving).

    The next token is read at ideal_{k+1} + lag at the earliest (read times are paced by 1/r); a
    request that is not a stream has an infinite buffer."""
    if not np.isfinite(read_rate):
        return np.inf
    return signals.next_token_ideal_at(arrival, ttft_target, generated, read_rate) + lag - now


@kernel
def _buffer_each(arrival, ttft_target, generated, read_rate, lag, now):
    out = np.empty(len(arrival))
    for i in range(len(arrival)):
        out[i] = buffer_at(arrival[i], ttft_target[i], generated[i], read_rate[i], lag[i], now)
    return out


@kernel
def _chosen_evictable(taken: np.ndarray, resident: np.ndarray, buffer: np.ndarray, pre_iters: np.ndarray,
                      t_tok: float, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """The knapsack's choice as a mask, and the unchosen residents whose buffer, once their
    prefill iterations (of t_tok each) are spent, still covers `keep` seconds (dt plus the
    eviction hysteresis), in one call."""
    chosen = np.zeros(len(resident), dtype=np.bool_)
    chosen[taken] = True
    evictable = np.empty(len(resident), dtype=np.bool_)
    for i in range(len(resident)):
        evictable[i] = resident[i] and not chosen[i] and buffer[i] - pre_iters[i] * t_tok > keep
    return chosen, evictable


@kernel
def _split_taken(chosen: np.ndarray, resident: np.ndarray, values: np.ndarray, blocks: np.ndarray,
                 arrival: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chosen waiting requests, lowest value density first (ties by arrival, then index:
    `small_stable_argsort`, np.lexsort's order), and the chosen residents in position order, in
    one compiled call: the few numpy steps this takes cost more than the arithmetic at a few
    hundred chosen rows."""
    admitted = np.empty(len(chosen), dtype=np.int64)
    running = np.empty(len(chosen), dtype=np.int64)
    a, r = 0, 0
    for i in range(len(chosen)):
        if chosen[i]:
            if resident[i]:
                running[r] = i
                r += 1
            else:
                admitted[a] = i
                a += 1
    admitted = admitted[:a]
    density, arrivals, indices = np.empty(a), np.empty(a), np.empty(a)
    for j in range(a):
        i = admitted[j]
        weight = blocks[i] if blocks[i] > 1.0 or blocks[i] != blocks[i] else 1.0  # np.maximum(blocks, 1.0)
        density[j], arrivals[j], indices[j] = values[i] / weight, arrival[i], idx[i]
    return admitted[small_stable_argsort(density, (arrivals, indices))], running[:r]


@kernel
def _stall_loss(rows, arrival, ttft_target, generated, read_rate, delay_area, lag, now, step, t_tok, total):
    """signals.qoe_gain of some rows with a horizon of `step` and the next token after t_tok (the
    QoE each loses to a stall of `step` seconds), read from the whole view's columns instead of
    a copy of each."""
    out = np.empty(len(rows))
    for j in range(len(rows)):
        i = rows[j]
        out[j] = signals.qoe_gain_at(arrival[i], ttft_target[i], generated[i], read_rate[i], delay_area[i], lag[i],
                                     now + t_tok, step, t_tok, total[i])
    return out


@kernel
def _paying(admitted: np.ndarray, values: np.ndarray, prefill: np.ndarray, c_prefill: float, loss_per_s: float,
            chosen: np.ndarray) -> np.ndarray:
    """The admissions whose value beats the QoE their prefill stall costs (loss_per_s times
    c_prefill times their prefill tokens), in order; the others are unchosen (in place)."""
    keep = np.empty(len(admitted), dtype=np.int64)
    k = 0
    for i in admitted:
        if values[i] > loss_per_s * (c_prefill * prefill[i]):
            keep[k] = i
            k += 1
        else:
            chosen[i] = False
    return keep[:k]


@kernel
def _chosen_sum(column: np.ndarray, chosen: np.ndarray) -> float:
    """The sum of a column of whole numbers over the chosen rows (exact in any order)."""
    total = 0.0
    for i in range(len(chosen)):
        if chosen[i]:
            total += column[i]
    return total


@kernel
def _needs(admitted: np.ndarray, growth: np.ndarray, chosen: np.ndarray, free_blocks: float) -> np.ndarray:
    """The blocks to free before each try of `_afford` (try j has dropped the first j
    admissions): whole numbers, exact in any order."""
    need = np.empty(len(admitted))
    if len(admitted):
        need[0] = _chosen_sum(growth, chosen) - free_blocks
    for j in range(1, len(admitted)):
        need[j] = need[j - 1] - growth[admitted[j - 1]]
    return need


@kernel
def _first_affordable(need: np.ndarray, freed: np.ndarray, ranked: np.ndarray, evictable: np.ndarray,
                      budget: float) -> int:
    """The first try whose victims (the first of `ranked` that free its need, all if none do)
    are within the preemption budget and all evictable; len(need) if none is."""
    protected = len(ranked)  # victims before the first resident that is not evictable
    for t in range(len(ranked)):
        if not evictable[ranked[t]]:
            protected = t
            break
    for j in range(len(need)):
        count = batching.enough_count(freed, need[j]) if need[j] > 0 else 0
        if count <= budget and count <= protected:
            return j
    return len(need)


@kernel
def _eviction_head(resident: np.ndarray, chosen: np.ndarray, evictable: np.ndarray, kv_blocks: np.ndarray,
                   need: float, idx: np.ndarray, arrival: np.ndarray,
                   buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unchosen residents in eviction order, evictable ones first, largest buffer first (they can
    wait longest before they must be recomputed), and the blocks the first k free; only as many
    are ranked as it takes to free `need` blocks (all of them if that is not enough). When the
    evictable ones hold enough, only they are ranked: the others all come after them, and the
    head that frees `need` blocks is theirs. In one compiled call: the candidates (only the
    evictable unchosen residents when they hold `need` blocks), a row of keys each (index,
    arrival, -buffer, then whether it is not evictable unless all are: a constant primary key
    orders nothing, and each comparison skips it; exact as floats), the head of their ranking
    that frees `need` (ranking.walk_to_sum) and the blocks its first k free."""
    held_evictable = 0
    for i in range(len(resident)):
        if resident[i] and not chosen[i] and evictable[i]:
            held_evictable += kv_blocks[i]
    only_evictable = not held_evictable < need
    cand = np.empty(len(resident), dtype=np.int64)
    m = 0
    for i in range(len(resident)):
        if resident[i] and not chosen[i] and (evictable[i] or not only_evictable):
            cand[m] = i
            m += 1
    cand = cand[:m]
    keys = np.empty((m, 3 if only_evictable else 4))
    for j in range(m):
        i = cand[j]
        keys[j, 0], keys[j, 1], keys[j, 2] = idx[i], arrival[i], -buffer[i]
        if not only_evictable:
            keys[j, 3] = not evictable[i]
    held = kv_blocks[cand]
    first = ranking.walk_to_sum(keys, held, need, ranking.FIRST_HEAD)
    return cand[first], np.cumsum(held[first])


@kernel
def _fill_rows(chosen: np.ndarray, release: np.ndarray, runnable_by: float, resident: np.ndarray, waiting: bool,
               evictable: np.ndarray, idx: np.ndarray, arrival: np.ndarray, buffer: np.ndarray) -> tuple:
    """The unchosen requests `_filled` may take in one pass (runnable, waiting or resident as
    `waiting` says), those that are not evictable first, each group in position order; how many
    are not evictable; and their ranking keys (buffer, arrival, index as a float), in one pass."""
    rows, tail = np.empty(len(chosen), dtype=np.int64), np.empty(len(chosen), dtype=np.int64)
    kept, m = 0, 0
    for i in range(len(chosen)):
        if not chosen[i] and release[i] <= runnable_by and resident[i] != waiting:
            if evictable[i]:
                tail[m] = i
                m += 1
            else:
                rows[kept] = i
                kept += 1
    rows[kept:kept + m] = tail[:m]
    m += kept
    rows = rows[:m]
    buf, arr, ind = np.empty(m), np.empty(m), np.empty(m)
    for j in range(m):
        i = rows[j]
        buf[j], arr[j], ind[j] = buffer[i], arrival[i], idx[i]
    return rows, kept, buf, arr, ind


@kernel
def _useful(values: np.ndarray, blocks: np.ndarray, arrival: np.ndarray, idx: np.ndarray) -> tuple:
    """The requests worth taking (value > 0), their values, their weights as a knapsack's (m, 1)
    matrix, and their tiebreaks (arrival, index as a float), in one pass."""
    useful = np.flatnonzero(values > 0)
    m = len(useful)
    vals, weights, arr, ind = np.empty(m), np.empty((m, 1)), np.empty(m), np.empty(m)
    for j in range(m):
        i = useful[j]
        vals[j], weights[j, 0], arr[j], ind[j] = values[i], blocks[i], arrival[i], idx[i]
    return useful, vals, weights, arr, ind


@kernel
def _still_enough(ranked: np.ndarray, chosen: np.ndarray, kv_blocks: np.ndarray,
                  need: float) -> tuple[np.ndarray, bool]:
    """The first of `ranked` still unchosen that free `need` blocks (batching.enough of them:
    blocks are not negative, so the first prefix that reaches `need` is searchsorted's), and
    whether they do (False, none, when all of them together do not)."""
    kept = np.empty(len(ranked), dtype=np.int64)
    m, freed = 0, 0
    for i in ranked:
        if not chosen[i]:
            kept[m] = i
            m += 1
            freed += kv_blocks[i]
            if freed >= need:
                return kept[:m], True
    return kept[:0], False


@kernel
def _fill_room(chosen: np.ndarray, blocks: np.ndarray, resident: np.ndarray, kv_blocks: np.ndarray,
               capacity: float, waiting: bool) -> np.ndarray:
    """The room the fill may use: the capacity less the chosen requests' blocks and, for waiting
    requests, the blocks the unchosen residents keep (whole numbers: exact in any order)."""
    taken, held = 0.0, 0
    for i in range(len(chosen)):
        if chosen[i]:
            taken += blocks[i]
        elif waiting and resident[i]:
            held += kv_blocks[i]
    room = np.empty(1)
    room[0] = capacity - taken - held if waiting else capacity - taken - 0.0
    return room


@kernel
def _run_keys(chosen: np.ndarray, values: np.ndarray, blocks: np.ndarray, buffer: np.ndarray,
              arrival: np.ndarray, idx: np.ndarray, read_rate: np.ndarray, release: np.ndarray,
              runnable_by: float) -> tuple:
    """The chosen positions and their run-order keys (-value density, buffer, arrival, index as
    a float), and whether a stream that could run (released by `runnable_by`) is left out with
    the least buffer of those (nan if one is nan, as np.min), in one pass."""
    run = np.empty(len(chosen), dtype=np.int64)
    m, out, least, nan = 0, False, np.inf, False
    for i in range(len(chosen)):
        if chosen[i]:
            run[m] = i
            m += 1
        elif np.isfinite(read_rate[i]) and release[i] <= runnable_by:
            out = True
            if buffer[i] != buffer[i]:
                nan = True
            else:
                least = min(least, buffer[i])
    run = run[:m]
    key, buf, arr, ind = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    for j in range(m):
        i = run[j]
        weight = blocks[i] if blocks[i] > 1.0 or blocks[i] != blocks[i] else 1.0  # np.maximum(blocks, 1.0)
        key[j], buf[j], arr[j], ind[j] = -(values[i] / weight), buffer[i], arrival[i], idx[i]
    return run, (key, buf, arr, ind), out, np.nan if nan else least


@kernel
def _most_that_fit(blocks: np.ndarray, seats: int, capacity: float) -> int:
    """How many of the smallest contexts fit in `capacity`, at most `seats`, in one compiled call.
    Any `seats` of them fitting means the smallest do: then one sum settles it, not a partition
    of every request; else only the `seats` smallest can matter (whole numbers of blocks: the
    sums are exact in any order)."""
    if len(blocks) >= seats:
        first = 0.0
        for i in range(seats):
            first += blocks[i]
        if first <= capacity:
            return seats
    smallest = np.sort(np.partition(blocks, seats - 1)[:seats]) if len(blocks) > seats else np.sort(blocks)
    total = 0.0
    for k in range(len(smallest)):  # the prefix sums are not decreasing: searchsorted(side="right")'s count
        total += smallest[k]
        if total > capacity:
            return k
    return len(smallest)


@kernel
def _knapsack_at(arrival, ttft_target, generated, read_rate, delay_area, lag, now, horizon, t_tok, total,
                 pre_iters, blocks, idx, capacity, batch):
    """One batch size's knapsack in one compiled call: every request's value (signals.qoe_gain_at,
    its first token after its prefill iterations of t_tok each: 0 unless a stream), the positions
    the greedy takes (KV blocks, at most `batch` items) by value density, ties by (arrival,
    index), never by view column, whose order differs between engines, and their values in the
    order taken (numpy sums them, as the plans were pinned with)."""
    values = np.empty(len(arrival))
    for i in range(len(arrival)):
        values[i] = signals.qoe_gain_at(arrival[i], ttft_target[i], generated[i], read_rate[i], delay_area[i],
                                        lag[i], now + pre_iters[i] * t_tok, horizon, t_tok, total[i])
    useful, vals, weights, arr, ind = _useful(values, blocks, arrival, idx)
    caps = np.empty(1)
    caps[0] = capacity
    # a whole ranking (the packed stable sort above a few hundred rows) costs less than a partial
    # quicksort of its head, and a walk of the whole ranking is the walk
    order = argsort_in_kernel(-densities_of(vals, weights, caps), (arr, ind))
    taken = useful[greedy_walk(vals, weights, caps, batch, order)]
    return values, taken, values[taken]


@kernel
def _admitted(taken, resident, buffer, pre_iters, keep, values, blocks, arrival, idx, refine, ttft_target,
              generated, read_rate, delay_area, lag, now, step, t_tok, total):
    """The knapsack's choice and the evictable residents (`_chosen_evictable`), its admissions
    (`_split_taken`) and, with `refine` and admissions, the QoE each running stream loses to a
    stall of `step` seconds (`_stall_loss`; numpy sums it, as the plans were pinned with)."""
    chosen, evictable = _chosen_evictable(taken, resident, buffer, pre_iters, t_tok, keep)
    admitted, running = _split_taken(chosen, resident, values, blocks, arrival, idx)
    if not refine or not len(admitted):
        return chosen, evictable, admitted, np.empty(0)
    return chosen, evictable, admitted, _stall_loss(running, arrival, ttft_target, generated, read_rate, delay_area,
                                                    lag, now, step, t_tok, total)


@kernel
def _afford(chosen, admitted, values, prefill, c_prefill, loss_per_s, refine, growth, free_blocks, resident,
            evictable, kv_blocks, idx, arrival, buffer, budget):
    """Drop chosen admissions (lowest value density first) until the blocks they need can be
    freed from evictable residents within the preemption `budget`; with `refine`, first those
    whose QoE gain does not pay for the stall their prefill causes every running stream
    (`_paying`: `loss_per_s` is what the running streams lose per second of stall). Dropping a
    waiting request leaves the eviction candidates (the unchosen residents) as they are and
    shrinks the blocks needed by its own: one ranking serves every try: the need before each
    drop (`_needs`), the head of the eviction ranking that frees the first (`_eviction_head`),
    the first try within the cap whose victims are all evictable (`_first_affordable`).
    Returns the choice, that head and whether one was ranked."""
    chosen = chosen.copy()
    if refine:
        admitted = _paying(admitted, values, prefill, c_prefill, loss_per_s, chosen)
    if not len(admitted):
        return chosen, np.empty(0, dtype=np.int64), False
    need = _needs(admitted, growth, chosen, free_blocks)
    if need[0] > 0:
        ranked, freed = _eviction_head(resident, chosen, evictable, kv_blocks, need[0], idx, arrival, buffer)
    else:
        ranked, freed = np.empty(0, dtype=np.int64), np.cumsum(kv_blocks[:0])
    tries = _first_affordable(need, freed, ranked, evictable, budget)
    chosen[admitted[:tries]] = False
    return chosen, ranked, need[0] > 0


@kernel
def _filled(chosen, evictable, buffer, blocks, capacity, resident, kv_blocks, release, runnable_by, idx, arrival,
            max_seqs):
    """Zero-gain work fills what the knapsack leaves: residents first (least buffer first;
    evictable ones last, they may have to make room), then waiting requests by due time, in room
    that needs no eviction (`_fill_room`: a stream that can still wait dt is not worth one).
    Residents that are not evictable rank first: when they fill every seat, only they are ranked
    (the walk of a head of the ranking that takes every seat is the whole walk). A ranking is
    whole (argsort_in_kernel): of a few hundred rows it costs less than the partial quicksort of
    a head, and its walk is greedy_in_ranking's."""
    chosen = chosen.copy()
    for w in range(2):
        waiting = w == 1
        seats = max_seqs - np.count_nonzero(chosen)
        if seats <= 0:
            break
        room = _fill_room(chosen, blocks, resident, kv_blocks, capacity, waiting)
        rows, kept, buf, arr, ind = _fill_rows(chosen, release, runnable_by, resident, waiting, evictable, idx,
                                               arrival, buffer)
        ones, weights = np.ones(len(rows)), np.empty((len(rows), 1))
        for j in range(len(rows)):
            weights[j, 0] = blocks[rows[j]]
        order = argsort_in_kernel(buf[:kept], (arr[:kept], ind[:kept]))
        more = greedy_walk(ones, weights, room, seats, order)
        if len(more) < seats and kept < len(rows):  # the evictable ones rank after the others
            tail = argsort_in_kernel(buf[kept:], (arr[kept:], ind[kept:]))
            more = greedy_walk(ones, weights, room, seats, np.concatenate((order, kept + tail)))
        chosen[rows[more]] = True
    return chosen


@kernel
def _victims_at(chosen, growth, free_blocks, ranked, walked, resident, evictable, kv_blocks, idx, arrival, buffer):
    """Unchosen residents to evict so the chosen fit (`_eviction_head`'s first ones).

    `ranked` (`walked`: one was ranked): a head of the eviction ranking for a choice with no
    fewer residents chosen (`_afford`'s). Its rows still unchosen are the head of this choice's
    ranking (the same keys, fewer candidates), so when they free enough they are the ranking
    needed."""
    need = _chosen_sum(growth, chosen) - free_blocks
    if need <= 0:
        return np.empty(0, dtype=np.int64)
    if walked:
        victims, enough = _still_enough(ranked, chosen, kv_blocks, need)
        if enough:
            return victims
    ranked, freed = _eviction_head(resident, chosen, evictable, kv_blocks, need, idx, arrival, buffer)
    return ranked[:batching.enough_count(freed, need)]


@kernel
def _run_order(chosen, values, blocks, buffer, arrival, idx, read_rate, release, runnable_by):
    """The chosen requests' indices in run order (`_run_keys`' keys, np.lexsort's order: the
    index as a float, exact below 2**53, so the tiebreaks share one dtype) and `_run_keys`' flag
    and least buffer, in one compiled call."""
    run, keys, out, least = _run_keys(chosen, values, blocks, buffer, arrival, idx, read_rate, release, runnable_by)
    key, buf, arr, ind = keys
    return idx[run[argsort_in_kernel(key, (buf, arr, ind))]], out, least


@kernel
def _finish(chosen, evictable, admitted, afford, fill, values, blocks, buffer, growth, resident, kv_blocks, idx,
            arrival, free_blocks, runnable_by):
    """From the knapsack's choice to the plan in one compiled call (a dispatch per stage cost
    more than a small decision's arithmetic): `_afford` (if anything was admitted), `_filled`,
    `_victims_at`, `_run_order`. `afford`: (prefill, c_prefill, loss_per_s, refine, budget);
    `fill`: (capacity, release, max_seqs, read_rate). Returns the run order and the victims
    (request indices) and `_run_order`'s flag and least buffer."""
    prefill, c_prefill, loss_per_s, refine, budget = afford
    capacity, release, max_seqs, read_rate = fill
    ranked, walked = np.empty(0, dtype=np.int64), False
    if len(admitted):
        chosen, ranked, walked = _afford(chosen, admitted, values, prefill, c_prefill, loss_per_s, refine, growth,
                                         free_blocks, resident, evictable, kv_blocks, idx, arrival, buffer, budget)
    chosen = _filled(chosen, evictable, buffer, blocks, capacity, resident, kv_blocks, release, runnable_by, idx,
                     arrival, max_seqs)
    victims = _victims_at(chosen, growth, free_blocks, ranked, walked, resident, evictable, kv_blocks, idx, arrival,
                          buffer)
    run, out, least = _run_order(chosen, values, blocks, buffer, arrival, idx, read_rate, release, runnable_by)
    return run, idx[victims], out, least


STALL_STEP = 1e-3  # s: the stall over which running streams' QoE loss is measured (finite difference)


@kernel
def _plan_at_sizes(sizes, t_toks, columns, request, idx, capacity, resident, kv_blocks, keep, afford, fill,
                   free_blocks, runnable_by):
    """A triggered decision from the candidate batch sizes to the plan, in one compiled call: the
    knapsack at each size (`_knapsack_at`, iterations of `t_toks` seconds); the size whose taken
    values sum highest wins (the first when it is alone, and on ties); its choice and admissions
    (`_admitted`), the QoE per second the running streams lose to an admission's stall, and
    `_finish`. Sums are numpy's (`numpy_sum`), as the plans were pinned with. `columns`: the
    requests' (arrival, ttft_target, generated, read_rate, delay_area, lag, now, horizon);
    `request`: their (total, pre_iters, buffer, blocks, growth); `afford`: (prefill, c_prefill,
    refine, preemption budget); `fill`: (capacity, release, max_seqs, read_rate)."""
    arrival, ttft_target, generated, read_rate, delay_area, lag, now, horizon = columns
    total, pre_iters, buffer, blocks, growth = request
    prefill, c_prefill, refine, budget = afford
    best_values, best_taken, gains = _knapsack_at(arrival, ttft_target, generated, read_rate, delay_area, lag, now,
                                                  horizon, t_toks[0], total, pre_iters, blocks, idx, capacity,
                                                  sizes[0])
    best_t = t_toks[0]
    if len(sizes) > 1:
        best_gain = numpy_sum(gains)
        for k in range(1, len(sizes)):
            values, taken, gains = _knapsack_at(arrival, ttft_target, generated, read_rate, delay_area, lag, now,
                                                horizon, t_toks[k], total, pre_iters, blocks, idx, capacity, sizes[k])
            gain = numpy_sum(gains)
            if gain > best_gain:
                best_gain, best_values, best_taken, best_t = gain, values, taken, t_toks[k]
    chosen, evictable, admitted, loss = _admitted(best_taken, resident, buffer, pre_iters, keep, best_values, blocks,
                                                  arrival, idx, refine, ttft_target, generated, read_rate, delay_area,
                                                  lag, now, STALL_STEP, best_t, total)
    loss_per_s = numpy_sum(loss) / STALL_STEP if refine and len(admitted) else 0.0
    return _finish(chosen, evictable, admitted, (prefill, c_prefill, loss_per_s, refine, budget), fill, best_values,
                   blocks, buffer, growth, resident, kv_blocks, idx, arrival, free_blocks, runnable_by)


class AndesPolicy(Policy):
    name = "andes"

    def __init__(
        self,
        horizon: float = 0.5,
        evict_buffer: float = 40.0,
        preemption_cap: float = 3.0,
        refine: bool = True,
        batch_grid: int = 4,
        quantile: float = 0.5,
    ) -> None:
        if horizon <= 0:
            raise ValueError(f"andes: horizon={horizon} must be > 0 (seconds)")
        if evict_buffer < 0:
            raise ValueError(f"andes: evict_buffer={evict_buffer} must be >= 0 (seconds)")
        if preemption_cap < 0:
            raise ValueError(f"andes: preemption_cap={preemption_cap} must be >= 0")
        if batch_grid < 1:
            raise ValueError(f"andes: batch_grid={batch_grid} must be >= 1")
        if not 0 < quantile < 1:
            raise ValueError(f"andes: quantile={quantile} must be in (0, 1)")
        self.horizon = horizon
        self.evict_buffer = evict_buffer
        self.preemption_cap = preemption_cap
        self.refine = refine
        self.batch_grid = batch_grid
        self.quantile = quantile
        self._seen = 0  # highest request index + 1 seen (requests seen so far)
        self._preempted = 0

    def reset(self, engine: EngineSpec) -> None:
        self._seen = 0
        self._preempted = 0

    # ---- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _fcfs(view: EngineView) -> Plan:
        order = np.lexsort((view.idx, view.arrival, ~view.resident))
        return Plan(run=view.idx[order])

    @staticmethod
    def _triggered(view: EngineView, growth_sum: float, t_iter: float, pace: float) -> bool:
        return bool(growth_sum > view.free_blocks or len(view) > view.engine.max_seqs or t_iter > pace)

    @staticmethod
    def _pace(view: EngineView) -> float:
        """The strictest reading pace (`_fastest_pace`)."""
        return _fastest_pace(view.read_rate)

    def _batch_sizes(self, view: EngineView, blocks: np.ndarray, ctx_mean: float, capacity: float,
                     pace: float | None = None) -> np.ndarray:
        """`pace`: self._pace(view), when the caller has it already."""
        engine = view.engine
        upper = max(1, min(engine.max_seqs, _most_that_fit(blocks, engine.max_seqs, float(capacity)), len(view)))
        if pace is None:
            pace = self._pace(view)
        lower = 1
        if engine.slot_time is None:
            lat = engine.latency
            per_seq = lat.c_decode + lat.c_ctx * ctx_mean
            lower = int(min((pace - lat.c0) / per_seq, upper)) if per_seq > 0 else upper
        elif engine.slot_time <= pace:
            lower = upper
        return batch_grid(min(max(int(lower), 1), upper), upper, self.batch_grid)  # scalars: no np.clip

    @staticmethod
    def buffer(view: EngineView) -> np.ndarray:
        """`buffer_at` of every request."""
        return _buffer_each(view.arrival, view.ttft_target, view.generated, view.read_rate, view.lag, float(view.now))

    # ---- decision ------------------------------------------------------------------------------
    def decide(self, view: EngineView) -> Plan:
        n = len(view)
        if n == 0:
            return Plan(run=EMPTY)
        engine = view.engine
        blocks, growth, growth_sum, held, bound, pace, (seqs, ctx) = _scan(
            *signals.kv_weight_args(view), view.kv_blocks, view.idx, view.read_rate,
            (view.resident, view.prefill_left, view.computed, view.prompt_len))
        self._seen = max(self._seen, bound)
        t_now = signals.typical_iteration_at(engine, seqs, ctx)
        if not self._triggered(view, growth_sum, t_now, pace):
            return self._fcfs(view)

        prefill = view.prefill_after_hits()
        total, pre_iters, buffer, context = _projections(
            view.pred_quantiles, _quantile_column(tuple(view.quantile_levels), self.quantile), view.generated,
            prefill, engine.token_budget, view.computed, view.arrival, view.ttft_target, view.read_rate, view.lag,
            float(view.now))
        ctx_mean = context / n + 1.0  # np.mean's float: the integer sum is exact
        # the KV cache in the units of the weights: a block that several residents share (prefix
        # caching) is in each one's weight, so it counts once per holder here too (the engine's
        # size when nothing is shared): against that size residents that fit would look as if they did not
        capacity = float(view.free_blocks + held)
        sizes = self._batch_sizes(view, blocks, ctx_mean, capacity, pace)
        # Python ints: exact, and no numpy scalar arithmetic
        t_toks = np.array([signals.iteration_time(engine, batch, batch * ctx_mean) for batch in map(int, sizes)])
        refine = self.refine and engine.slot_time is None
        run, victims, out, least = _plan_at_sizes(
            sizes, t_toks, (view.arrival, view.ttft_target, view.generated, view.read_rate, view.delay_area, view.lag,
                            float(view.now), float(self.horizon)),
            (total, pre_iters, buffer, blocks, growth), view.idx, capacity, view.resident, view.kv_blocks,
            self.horizon + self.evict_buffer,
            (prefill, float(engine.latency.c_prefill) if refine else 0.0, refine,
             float(self.preemption_cap * self._seen - self._preempted)),
            (capacity, view.release, engine.max_seqs, view.read_rate), float(view.free_blocks), view.now + 1e-12)
        self._preempted += len(victims)
        # ask again before the next stream left out starts losing QoE (it needs dt of notice)
        recheck = None
        if out:
            recheck = view.now + max(least - self.horizon, self.horizon / 4.0)
        return Plan(run=run, preempt=victims, recheck_at=recheck)
