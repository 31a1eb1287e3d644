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
from solvers.policies.per_request import grown, index_bound

_UNSET = np.iinfo(np.int64).min
_WAITING_OFFSET = 1 << 61  # sorts every waiting queue key after every admission number


class FCFSPolicy(Policy):
    name = "fcfs"

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, engine: EngineSpec | None) -> None:
        self._admitted = np.full(1024, -1, dtype=np.int64)  # running order; -1: not resident
        self._queue = np.full(1024, _UNSET, dtype=np.int64)  # waiting-queue position key
        self._preempted = np.zeros(1024, dtype=np.int64)  # preemption count last seen
        self._admit_counter = 0
        self._back = 0  # next key at the back of the waiting queue
        self._front = 0  # the key at the front (keys below go further front)

    def decide(self, view: EngineView) -> Plan:
        idx = view.idx
        if len(idx) == 0:
            return Plan(run=idx)
        size = index_bound(idx)
        if size > len(self._admitted):
            self._admitted = grown(self._admitted, size, fill=-1)
            self._queue = grown(self._queue, size, fill=_UNSET)
            self._preempted = grown(self._preempted, size)
        seq, queue = self._admitted[idx], self._queue[idx]
        resident = view.resident
        new = (queue == _UNSET).nonzero()[0]
        if len(new):  # arrivals join the back of the waiting queue, in arrival order
            new = new[np.lexsort((idx[new], view.arrival[new]))]
            queue[new] = self._back + np.arange(len(new))
            self._back += len(new)
            self._queue[idx[new]] = queue[new]
        waiting = (~resident).nonzero()[0]
        if len(waiting):
            self._requeue_victims(view, waiting, seq, queue)
            self._admitted[idx[waiting]] = -1
        fresh = (resident & (seq < 0)).nonzero()[0]
        if len(fresh):  # admitted since the last decision, in waiting-queue order
            fresh = fresh[np.argsort(queue[fresh], kind="stable")]
            seq[fresh] = self._admit_counter + np.arange(len(fresh))
            self._admit_counter += len(fresh)
            self._admitted[idx[fresh]] = seq[fresh]
        # running (admission order) first, then waiting (queue order): one sort on one key
        key = np.where(resident, seq, queue + _WAITING_OFFSET)
        return Plan(run=idx[np.argsort(key, kind="stable")])

    def _requeue_victims(self, view: EngineView, waiting: np.ndarray, seq: np.ndarray, queue: np.ndarray) -> None:
        """Requests preempted since the last decision go to the front of the waiting queue, in
        the running order they had. (A request's count only grows by preemption, and only a
        preemption makes a request wait, so comparing counts of waiting requests suffices.)"""
        idx = view.idx
        counts = view.preemptions[waiting]
        victims = waiting[counts > self._preempted[idx[waiting]]]
        if len(victims):
            # running order: known admission numbers first; requests admitted and preempted
            # between two decisions were admitted after all of them, in their queue order
            known = seq[victims]
            order = np.lexsort((queue[victims], np.where(known >= 0, known, np.iinfo(np.int64).max)))
            victims = victims[order]
            self._front -= len(victims)
            queue[victims] = self._front + np.arange(len(victims))
            self._queue[idx[victims]] = queue[victims]
            self._preempted[idx[victims]] = view.preemptions[victims]
