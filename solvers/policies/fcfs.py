"""First come, first served: vLLM 0.32's default scheduler (SchedulingPolicy.FCFS).

vLLM keeps two queues. `running` holds resident requests in admission order and is served
first; under KV pressure it preempts the last one (the most recently admitted). `waiting` is
served next, in queue order: a new request joins at the back, a preempted one is put at the
front (each victim prepended in turn, so the victims of one step keep their running order,
ahead of earlier victims). This policy rebuilds both orders from what it observes between
decisions (residency and each request's preemption count) and lists every live request, running
ones first, so the engine's rules (formulations/online.py) evict from the end as vLLM does.
tests/test_vllm_default.py checks it against vLLM's own scheduler step by step.
"""

from __future__ import annotations

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan, Policy
from solvers.compiled import kernel
from solvers.policies.per_request import grown, index_bound
from solvers.stable_sort import argsort_in_kernel

_UNSET = np.iinfo(np.int64).min


class FCFSPolicy(Policy):
    name = "fcfs"

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, engine: EngineSpec | None) -> None:
        self._admitted = np.full(1024, -1, dtype=np.int64)  # per request index: running order; -1: not resident
        self._queue = np.full(1024, _UNSET, dtype=np.int64)  # per request index: waiting-queue position key
        self._preempted = np.zeros(1024, dtype=np.int64)  # per request index: preemption count last seen
        self._counters = np.zeros(3, dtype=np.int64)  # next admission number, back key, front key

    def decide(self, view: EngineView) -> Plan:
        idx = view.idx
        if len(idx) == 0:
            return Plan(run=idx)
        size = index_bound(idx)
        if size > len(self._admitted):
            self._admitted = grown(self._admitted, size, fill=-1)
            self._queue = grown(self._queue, size, fill=_UNSET)
            self._preempted = grown(self._preempted, size)
        return Plan(run=idx[_run_order(idx, view.resident, view.arrival, view.preemptions, self._admitted,
                                       self._queue, self._preempted, self._counters)])


@kernel
def _run_order(idx, resident, arrival, preemptions, admitted, queue_of, preempted, counters):
    """Both queues brought up to date with what happened since the last decision, and the live
    requests (view positions) in run order: running ones in admission order, then waiting ones
    in queue order. Arrivals join the back of the waiting queue in arrival order; requests
    preempted since then go to its front (`_requeue_victims`); requests admitted since then get
    admission numbers in waiting-queue order. Updates the per-request state (`admitted`,
    `queue_of`, `preempted`: by request index) and `counters` in place."""
    seq, queue = admitted[idx], queue_of[idx]
    new = np.flatnonzero(queue == _UNSET)
    if len(new):  # arrivals join the back of the waiting queue, in arrival order
        new = new[argsort_in_kernel(arrival[new], (idx[new],))]
        for j in range(len(new)):
            queue[new[j]] = counters[_BACK] + j
            queue_of[idx[new[j]]] = queue[new[j]]
        counters[_BACK] += len(new)
    waiting = np.flatnonzero(~resident)
    if len(waiting):
        _requeue_victims(idx, waiting, preemptions, seq, queue, queue_of, preempted, counters)
        admitted[idx[waiting]] = -1
    fresh = np.flatnonzero(resident & (seq < 0))
    if len(fresh):  # admitted since the last decision, in waiting-queue order
        fresh = fresh[argsort_in_kernel(queue[fresh], (queue[fresh],))]
        for j in range(len(fresh)):
            seq[fresh[j]] = counters[_ADMISSION] + j
            admitted[idx[fresh[j]]] = seq[fresh[j]]
        counters[_ADMISSION] += len(fresh)
    running = np.flatnonzero(resident)  # running ones in admission order, then waiting ones in queue order
    return np.concatenate((running[argsort_in_kernel(seq[running], (seq[running],))],
                           waiting[argsort_in_kernel(queue[waiting], (queue[waiting],))]))


@kernel
def _requeue_victims(idx, waiting, preemptions, seq, queue, queue_of, preempted, counters):
    """Requests preempted since the last decision go to the front of the waiting queue, in the
    running order they had. (A request's count only grows by preemption, and only a preemption
    makes a request wait, so comparing counts of waiting requests suffices.)"""
    victims = waiting[preemptions[waiting] > preempted[idx[waiting]]]
    if not len(victims):
        return
    # running order: known admission numbers first; requests admitted and preempted between two
    # decisions were admitted after all of them, in their queue order
    known = seq[victims]
    victims = victims[argsort_in_kernel(np.where(known >= 0, known, _NEVER_ADMITTED), (queue[victims],))]
    counters[_FRONT] -= len(victims)
    for j in range(len(victims)):
        queue[victims[j]] = counters[_FRONT] + j
        queue_of[idx[victims[j]]] = queue[victims[j]]
        preempted[idx[victims[j]]] = preemptions[victims[j]]


_ADMISSION, _BACK, _FRONT = range(3)  # FCFSPolicy._counters
_NEVER_ADMITTED = np.iinfo(np.int64).max  # sorts after every admission number
