"""DAG latest-finish deadlines against hand-computed values."""

import numpy as np

from formulations.online import GroupState
from solvers.policies.dag_deadlines import GroupDeadlines, latest_finish


def _group(members, parents, deadline=100.0, done=None):
    return GroupState(id="g", members=np.array(members), parents=[np.array(p, dtype=np.int64) for p in parents],
                      deadline=deadline, prompt_len=np.full(len(members), 8),
                      done=np.zeros(len(members), bool) if done is None else np.array(done))


def test_chain_latest_finish():
    # a -> b -> c, durations 10, 20, 30, deadline 100: LF(c)=100, LF(b)=70, LF(a)=50
    group = _group([5, 6, 7], [[], [5], [6]])
    lf = GroupDeadlines().member_deadlines(group, np.array([10.0, 20.0, 30.0]))
    assert lf.tolist() == [50.0, 70.0, 100.0]


def test_fork_join_latest_finish():
    # a -> {b, c} -> d; durations a 5, b 10, c 25, d 15; deadline 100
    # LF(d)=100, LF(b)=LF(c)=85, LF(a)=min(85-10, 85-25)=60
    group = _group([0, 1, 2, 3], [[], [0], [0], [1, 2]])
    lf = GroupDeadlines().member_deadlines(group, np.array([5.0, 10.0, 25.0, 15.0]))
    assert lf.tolist() == [60.0, 85.0, 85.0, 100.0]


def test_cache_refreshes_when_a_member_finishes():
    cache = GroupDeadlines()
    group = _group([0, 1], [[], [0]])
    assert cache.member_deadlines(group, np.array([10.0, 20.0])).tolist() == [80.0, 100.0]
    # same done-set: cached even if durations are passed differently
    assert cache.member_deadlines(group, np.array([10.0, 5.0])).tolist() == [80.0, 100.0]
    group.done[0] = True
    assert cache.member_deadlines(group, np.array([0.0, 5.0])).tolist() == [95.0, 100.0]


def test_latest_finish_independent_members():
    lf = latest_finish([0, 1], [[], []], np.array([3.0, 4.0]), 9.0)
    assert lf.tolist() == [9.0, 9.0]
