"""The closed-form QoE projection against token-by-token scoring (formulations/qoe.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formulations.arithmetic import ceil_div
from formulations.qoe import qoe, token_lateness
from solvers.policies import signals
from policy_views import make_view

ARRIVAL, TTFT, RATE = 1.0, 0.5, 4.0


def _state(delivered: np.ndarray) -> dict:
    late = token_lateness(delivered, ARRIVAL, TTFT, RATE)
    return dict(cls=0, arrival=ARRIVAL, ttft_target=TTFT, read_rate=RATE, generated=len(delivered),
                lag=float(late[-1]) if len(late) else 0.0, delay_area=float(late.sum()), resident=True,
                computed=8 + max(len(delivered) - 1, 0))


@pytest.mark.parametrize("t_tok", [0.1, 0.25, 0.4, 0.9])
@pytest.mark.parametrize("start", [1.2, 2.0, 3.7, 6.0])
@pytest.mark.parametrize("history", [[], [1.4], [1.6, 1.7, 2.9], [1.5, 1.75, 2.0, 2.25, 2.5]])
def test_projected_qoe_matches_token_by_token(history, start, t_tok):
    total = 12
    delivered = np.array(history, dtype=float)
    start = max(start, delivered[-1] if len(delivered) else 0.0)
    view = make_view([dict(**_state(delivered), pred=float(total))], now=start - 0.05)
    future = start + t_tok * np.arange(total - len(delivered))
    expected = qoe(np.concatenate([delivered, future]), total, ARRIVAL, TTFT, RATE)
    got = signals.projected_qoe(view, np.array([start]), t_tok, np.array([float(total)]))[0]
    assert got == pytest.approx(expected, abs=1e-9)


def test_latest_next_token_is_the_threshold_crossing():
    total, threshold = 20, 0.95
    delivered = np.array([1.6, 1.8, 2.0])
    view = make_view([dict(**_state(delivered), pred=float(total))], now=2.1)
    t_tok = 0.2  # faster than reading (1/r = 0.25): the bound is exact
    latest = signals.latest_next_token(view, t_tok, np.array([float(total)]), threshold)[0]
    at = signals.projected_qoe(view, np.array([latest]), t_tok, np.array([float(total)]))[0]
    later = signals.projected_qoe(view, np.array([latest + 0.01]), t_tok, np.array([float(total)]))[0]
    assert at == pytest.approx(threshold, abs=1e-9)
    assert later < threshold


def test_latest_next_token_is_minus_inf_when_out_of_reach():
    view = make_view([dict(cls=0, arrival=0.0, generated=5, lag=30.0, delay_area=150.0, resident=True,
                           computed=12, pred=10.0)], now=40.0)
    assert signals.latest_next_token(view, 0.1, np.array([10.0]), 0.95)[0] == -np.inf


def test_qoe_gain_zero_with_full_buffer_and_positive_when_starving():
    # A: 10 tokens delivered long before they are needed (next ideal at 1 + 0.5 + 10/4 = 4.0 s)
    # B: waiting since 0, its first token was needed at 0.5 s
    view = make_view([
        dict(cls=0, arrival=1.0, generated=10, resident=True, computed=17, pred=30.0),
        dict(cls=0, arrival=0.0, generated=0, pred=30.0),
    ], now=1.1)
    gain = signals.qoe_gain(view, horizon=1.0, t_tok=0.1, total=np.array([30.0, 30.0]),
                            t_first=np.array([0.1, 0.1]))
    assert gain[0] == pytest.approx(0.0)
    assert gain[1] > 0.05


def test_qoe_gain_is_zero_for_a_request_that_is_not_a_stream():
    view = make_view([dict(cls=1, arrival=0.0, generated=0, pred=30.0),
                      dict(cls=0, arrival=0.0, generated=0, pred=30.0)], now=1.1)
    gain = signals.qoe_gain(view, horizon=1.0, t_tok=0.1, total=np.array([30.0, 30.0]), t_first=0.1)
    assert gain[0] == 0.0 and gain[1] > 0.05


def test_steps_to_finish_counts_prefill_iterations():
    view = make_view([dict(cls=1, prompt_len=130, pred=5.0), dict(cls=1, generated=2, resident=True, computed=9,
                                                                    pred=5.0)])
    # 130 tokens at budget 64: 3 prefill iterations (the last yields token 1) + 4 decodes
    assert signals.steps_to_finish(view, np.array([5.0, 5.0])).tolist() == [7.0, 3.0]


def test_tightest_total_is_the_brute_force_minimum_of_the_latest_next_token():
    # over random stream states, the latest next-token time at tightest_total equals the minimum
    # over a fine grid of totals in [lo, hi] (engine faster than the reader: no growth term)
    rng = np.random.default_rng(0)
    for _ in range(200):
        gen = int(rng.integers(0, 400))
        lo = gen + 1.0 + rng.integers(0, 50)
        hi = lo + rng.integers(0, 800)
        row = dict(cls=0, ttft_target=1.0, read_rate=float(rng.choice([3.3, 4.8])), generated=gen,
                   delay_area=float(rng.uniform(0, 5)), pred=(lo, lo, hi), arrival=0.0)
        view = make_view([row], now=5.0)
        share = float(rng.choice([0.2, 1.0]))
        tight = signals.tightest_total(view, np.array([lo]), np.array([hi]), 0.95, share)[0]
        assert lo - 1e-9 <= tight <= hi + 1e-9
        at = signals.latest_next_token(view, 0.01, np.array([tight]), 0.95, share)[0]
        grid = np.linspace(lo, hi, 2001)
        views = make_view([dict(row, pred=(t, t, t)) for t in grid], now=5.0)
        brute = signals.latest_next_token(views, 0.01, grid, 0.95, share)
        assert at <= brute.min() + 1e-9 or (at == -np.inf)
        assert at >= brute.min() - 1e-3 * max(1.0, abs(brute.min())) or brute.min() == -np.inf


@settings(max_examples=500, deadline=None)
@given(prefill=st.integers(-(2**31) + 1, 2**31 - 1), budget=st.integers(1, 2**22 - 1))
def test_prefill_iterations_float_division_is_the_integer_ceiling(prefill: int, budget: int) -> None:
    assert signals.prefill_iterations_at(prefill, budget) == -(-prefill // budget)
    near = (prefill // budget) * budget  # a multiple of the budget and its neighbours
    for p in (near - 1, near, near + 1):
        assert signals.prefill_iterations_at(p, budget) == -(-p // budget)


@settings(max_examples=300, deadline=None)
@given(tokens=st.integers(0, 2**62), block=st.integers(1, 2**31))
def test_one_ceiling_division_in_python_numpy_and_kernels(tokens: int, block: int) -> None:
    """formulations' ceil_div is the rule; kernels compile that same function (solvers/compiled.py):
    all three agree with the exact ceiling, also where a float quotient would round."""
    exact = tokens // block + (tokens % block > 0)
    assert ceil_div(tokens, block) == exact
    assert signals.blocks_for_at(tokens, block) == exact
    assert ceil_div(np.array([tokens], dtype=np.int64), block)[0] == exact
