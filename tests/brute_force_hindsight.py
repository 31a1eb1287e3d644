"""An independent brute force over all slotted-engine schedules of a tiny instance.

It enumerates, slot by slot, every plan the engine accepts (a set of resident requests to
preempt, a set of released unfinished requests to run, and which of them gets the one partial
prefill chunk), applies the engine rules of formulations/online.py directly, and memoizes on the
state that determines the future (per request: tokens delivered, tokens computed, finish slot,
and for latency requests the lateness of the last token and the delay area so far). It shares
no code with the exact model.
"""

from __future__ import annotations

import itertools

from functools import cache

from formulations.instance import Instance
from formulations.requests import RequestClass


def brute_force_attainment(instance: Instance, horizon: int, qoe_threshold: float = 0.95) -> int:
    spec = instance.engine
    tau = spec.slot_time
    reqs = instance.requests
    n = len(reqs)
    table = instance.table
    parents = [tuple(int(p) for p in table.parents[i]) for i in range(n)]
    bs = spec.block_size

    def blocks(t: int) -> int:
        return -(-t // bs)

    def lateness(i: int, j: int, slot: int) -> float:
        r = reqs[i]
        return (slot + 1) * tau - (r.arrival + r.ttft_target) - (j - 1) / r.read_rate

    def final_value(state) -> int:
        total = 0
        for i, r in enumerate(reqs):
            g, _, fin, _, area = state[i]
            if r.cls is RequestClass.LATENCY:
                whole = r.output_len * (r.output_len + 1) / (2 * r.read_rate)
                total += fin >= 0 and 1 - area / whole >= qoe_threshold
            elif r.cls is RequestClass.THROUGHPUT:
                total += fin >= 0 and (fin + 1) * tau <= instance.deadline(r) + 1e-9
        for grp in instance.groups:
            dl = instance.group_deadlines[grp.id]
            members = [instance.index[m] for m in grp.members]
            if all(state[i][2] >= 0 and (state[i][2] + 1) * tau <= dl + 1e-9 for i in members):
                total += len(members)
        return total

    def outcomes(k: int, state):
        """Every distinct next state the engine can reach from `state` in slot k."""
        resident = [i for i in range(n) if state[i][1] > 0 and state[i][2] < 0]
        seen = set()
        for npre in range(len(resident) + 1):
            for pre in itertools.combinations(resident, npre):
                cur = [list(s) for s in state]
                for i in pre:
                    cur[i][1] = 0
                ready = [i for i in range(n) if i not in pre and cur[i][2] < 0 and k * tau >= reqs[i].arrival
                         and all(0 <= state[p][2] < k for p in parents[i])]
                for size in range(min(len(ready), spec.max_seqs) + 1):
                    for run in itertools.combinations(ready, size):
                        for last in (run or (None,)):
                            nxt = _apply(cur, run, last, k)
                            if nxt is not None and nxt not in seen:
                                seen.add(nxt)
                                yield nxt

    def _apply(cur, run, last, k):
        st = [list(s) for s in cur]
        budget = spec.token_budget
        order = [i for i in run if i != last] + ([last] if last is not None else [])
        for pos, i in enumerate(order):
            r = reqs[i]
            want = r.prompt_len + st[i][0] - st[i][1]
            if budget == 0:
                return None  # this request would get nothing: the same as not running it
            chunk = min(want, budget)
            if chunk < want and pos != len(order) - 1:
                return None  # only the last one may be cut
            budget -= chunk
            st[i][1] += chunk
            if st[i][1] == r.prompt_len + st[i][0]:
                st[i][0] += 1
                if r.cls is RequestClass.LATENCY:
                    lag = max(st[i][3], lateness(i, st[i][0], k), 0.0)
                    st[i][3] = round(lag, 9)
                    st[i][4] = round(st[i][4] + lag, 9)
                if st[i][0] == r.output_len:
                    st[i][2] = k
        if sum(blocks(s[1]) for s in st) > spec.kv_blocks:
            return None
        for s in st:
            if s[2] == k:
                s[1] = 0  # blocks freed with the last token
        return tuple(tuple(s) for s in st)

    @cache
    def best(k: int, state) -> int:
        if k == horizon:
            return final_value(state)
        return max(best(k + 1, nxt) for nxt in outcomes(k, state))

    start = tuple((0, 0, -1, 0.0, 0.0) for _ in range(n))
    value = best(0, start)
    best.cache_clear()
    return value
