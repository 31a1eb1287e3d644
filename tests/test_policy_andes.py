"""`andes` on hand-built situations."""

import pytest

from formulations.engine_spec import EngineSpec
from solvers.policies.andes import AndesPolicy
from policy_views import make_view

# latency mode, tiny KV: 8 blocks of 4 tokens
ENGINE = EngineSpec.from_profile("llama3-8b-h100", kv_blocks=10, block_size=4, max_seqs=4)


def _decide(view, **params):
    policy = AndesPolicy(**params)
    policy.reset(view.engine)
    return policy.decide(view)


def test_preempts_full_buffer_stream_for_a_starving_one():
    # A: resident, 25 tokens delivered to a slow reader (0.5 tok/s): its next token is due at
    # 0 + 0.5 + 25/0.5 = 50.5 s, a 48.5 s buffer at now = 2 s; it holds 8 of the 10 blocks (9 after a step)
    # B: waiting since t=0, its first token was due at 0.5 s; it needs 3 blocks (2 are free)
    rows = [dict(cls=0, arrival=0.0, read_rate=0.5, ttft_target=0.5, generated=25, resident=True, computed=32,
                 pred=60.0),
            dict(cls=0, arrival=0.0, read_rate=4.0, ttft_target=0.5, prompt_len=12, pred=60.0)]
    plan = _decide(make_view(rows, engine=ENGINE, now=2.0), evict_buffer=40.0, horizon=0.5)
    assert plan.run.tolist() == [1]
    assert plan.preempt.tolist() == [0]


def test_no_preemption_once_the_cap_is_spent():
    rows = [dict(cls=0, arrival=0.0, read_rate=0.5, ttft_target=0.5, generated=25, resident=True, computed=32,
                 pred=60.0),
            dict(cls=0, arrival=0.0, read_rate=4.0, ttft_target=0.5, prompt_len=12, pred=60.0)]
    plan = _decide(make_view(rows, engine=ENGINE, now=2.0), preemption_cap=0.0)
    assert plan.preempt.tolist() == []
    assert plan.run.tolist() == [0]  # the resident keeps running


def test_no_preemption_of_a_stream_whose_buffer_is_short():
    # same, but A's reader is fast (4 tok/s): next token due at 0.5 + 25/4 = 6.75 s, a 4.75 s buffer:
    # evicting it would cost a recompute soon after; B waits
    rows = [dict(cls=0, arrival=0.0, read_rate=4.0, ttft_target=0.5, generated=25, resident=True, computed=32,
                 pred=60.0),
            dict(cls=0, arrival=0.0, read_rate=4.0, ttft_target=0.5, prompt_len=12, pred=60.0)]
    plan = _decide(make_view(rows, engine=ENGINE, now=2.0), evict_buffer=40.0, horizon=0.5)
    assert plan.preempt.tolist() == []
    assert plan.run.tolist() == [0]
    assert plan.recheck_at is not None and plan.recheck_at > 2.0


def test_fcfs_when_no_trigger():
    # plenty of KV, iteration far faster than reading: vLLM-like FCFS (residents, then by arrival)
    engine = EngineSpec.from_profile("llama3-8b-h100", max_seqs=4)
    rows = [dict(cls=0, arrival=0.3, pred=10.0), dict(cls=0, arrival=0.1, pred=10.0),
            dict(cls=0, arrival=0.2, generated=2, resident=True, computed=9, pred=10.0)]
    plan = _decide(make_view(rows, engine=engine, now=0.4))
    assert plan.run.tolist() == [2, 1, 0]
    assert plan.preempt.tolist() == []


def test_batch_size_bounds_within_limits():
    policy = AndesPolicy(batch_grid=5)
    rows = [dict(cls=0, arrival=0.0, pred=10.0, prompt_len=4) for _ in range(6)]
    view = make_view(rows, engine=ENGINE, now=0.0)
    sizes = policy._batch_sizes(view, blocks=view.prompt_len / 4.0 + 1, ctx_mean=5.0, capacity=ENGINE.kv_blocks)
    assert sizes.min() >= 1 and sizes.max() <= ENGINE.max_seqs


def test_residents_sharing_prefix_blocks_that_fit_all_run():
    # A and B share 2 prefix blocks (prefix caching): they hold 6 + 5 blocks of the 10, 9 distinct,
    # 1 free; B's next token starts a block, which the free one covers. A waiting request that
    # does not fit triggers the knapsack, whose weights count the shared blocks in both
    # residents (6 + 6): against the pool's 10 blocks one of them would be paused for no reason.
    rows = [dict(cls=1, arrival=0.0, generated=3, prompt_len=21, resident=True, computed=23, pred=50.0),
            dict(cls=1, arrival=0.1, generated=3, prompt_len=18, resident=True, computed=20, pred=50.0),
            dict(cls=1, arrival=0.2, prompt_len=30, pred=50.0)]
    view = make_view(rows, engine=ENGINE, now=1.0, free_blocks=1)
    assert int(view.kv_blocks.sum()) + view.free_blocks == ENGINE.kv_blocks + 2
    plan = _decide(view)
    assert sorted(plan.run.tolist()) == [0, 1]
    assert plan.preempt.tolist() == []


def test_buffer_is_infinite_unless_a_stream():
    # a stream: next token due at 0.5 + 25/0.5 = 50.5 s, lag 1 s: read at 51.5 s at the earliest
    rows = [dict(cls=0, arrival=0.0, ttft_target=0.5, generated=25, lag=1.0, read_rate=0.5, resident=True, computed=30,
                 pred=50.0),
            dict(cls=1, arrival=0.0, pred=50.0)]
    buffer = AndesPolicy.buffer(make_view(rows, engine=ENGINE, now=2.0))
    assert buffer.tolist() == [pytest.approx(49.5), float("inf")]


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="horizon"):
        AndesPolicy(horizon=0)
    with pytest.raises(ValueError, match="evict_buffer"):
        AndesPolicy(evict_buffer=-1.0)
