"""The bridge's per-request book: QoE state from token times, and timelines back out."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine_adapter.request_book import RequestBook
from engine_adapter.slo_args import GroupSpec, SloArgs
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView
from formulations.qoe import token_lateness


def args(index, cls=0, arrival=0.0, group=None):
    return SloArgs(index=index, id=f"r{index}", cls=cls, arrival=arrival, release=arrival, ttft_target=0.3,
                   read_rate=10.0, deadline=np.nan if cls == 0 else 5.0, group=group, parents=(), pred=None,
                   levels=None)


def test_lag_and_delay_area_match_the_closed_form_qoe():
    rng = np.random.default_rng(1)
    book = RequestBook((0.5,))
    row = book.row(book.register(args(3, arrival=1.0), prompt_len=20, pred=np.array([40.0])))
    times = np.sort(rng.uniform(1.0, 5.0, 40))
    chunks = np.split(times, [5, 6, 20, 33])  # tokens arrive in groups with equal times
    expected_lag = token_lateness(times, 1.0, 0.3, 10.0)
    for chunk in chunks:
        for t in chunk:
            book.tokens(row, 1, float(t))
    assert book.lag[row] == expected_lag[-1]
    np.testing.assert_allclose(book.delay_area[row], expected_lag.sum())
    # the vectorized one-token-per-request path agrees with the scalar one
    twin = book.row(book.register(args(5, arrival=1.0), prompt_len=20, pred=np.array([40.0])))
    thr = book.row(book.register(args(6, cls=1), prompt_len=20, pred=np.array([40.0])))
    for t in times:
        book.one_token_each(np.array([twin, thr]), float(t))
    assert book.delay_area[twin] == book.delay_area[row] and book.lag[twin] == book.lag[row]
    assert book.token_times[thr] == list(times) and book.delay_area[thr] == 0 and book.delivered[thr] == 40
    # a burst of k tokens at one time equals k single deliveries
    other = book.row(book.register(args(4, arrival=1.0), prompt_len=20, pred=np.array([40.0])))
    book.tokens(other, 3, 2.0)
    np.testing.assert_allclose(book.delay_area[other], token_lateness(np.full(3, 2.0), 1.0, 0.3, 10.0).sum())


def test_groups_fresh_indices_view_and_schedule():
    book = RequestBook((0.1, 0.9))
    spec = GroupSpec(id="g", members=(0, 1), parents=((), (0,)), prompt_len=(5, 6), deadline=9.0)
    a = book.register(args(0, cls=2, group=spec), 5, np.array([3.0, 8.0]))
    b = book.register(args(1, cls=2, group=spec), 6, np.array([3.0, 8.0]))
    c = book.register(args(None, cls=1), 7, np.array([2.0, 4.0]))
    assert (a, b, c) == (0, 1, 2) and len(book.groups) == 1
    book.admitted(book.row(a), 0.1)
    book.tokens(book.row(a), 2, 0.5)
    book.finished(book.row(a), 0.5)
    assert book.groups[0].done.tolist() == [True, False]
    rows = np.array([book.row(b), book.row(c)])
    v = book.view(now=1.0, rows=rows, generated=np.array([0, 1]), computed=np.array([0, 7]),
                  prefill_left=np.array([6, 0]), resident=np.array([False, True]), kv_blocks=np.array([0, 1]),
                  preemptions=np.zeros(2, dtype=np.int64),
                  refine_rows=lambda table, rows, g: np.maximum(table[rows], (g + 1)[:, None]),
                  free_blocks=3, engine=EngineSpec.from_profile("llama3-8b-h100"))
    assert v.idx.tolist() == [1, 2] and v.group.tolist() == [0, -1] and v.prompt_len.tolist() == [6, 7]
    assert v.deadline.tolist() == [5.0, 5.0]
    assert v.pred_quantiles.tolist() == [[3.0, 8.0], [2.0, 4.0]]  # refined on first read (c generated 1)
    assert v.lag.tolist() == [0.0, 0.0] and v.delay_area.tolist() == [0.0, 0.0]
    rebuilt = EngineView(**{f.name: getattr(v, f.name) for f in dataclasses.fields(EngineView)})
    assert isinstance(v, EngineView) and vars(v).keys() == vars(rebuilt).keys()  # once read, a full view
    s = book.schedule(["r0", "r1"], iterations=4, meta={})
    assert s.timelines[0].token_times.tolist() == [0.5, 0.5] and s.timelines[0].finish == 0.5
    assert s.timelines[1].finish is None and s.iterations == 4


def test_deliver_updates_each_row_skips_unknown_ones_and_keeps_a_bounded_backlog():
    """`deliver` (a whole step's outputs in one call) does what per-row `tokens` calls do, skips
    rows marked -1 (not this book's), and folds its pending token times into the per-row lists
    every FOLD_EVERY deliveries, so a server that never reads them does not pile them up."""
    from engine_adapter.request_book import FOLD_EVERY

    one, each = RequestBook((0.5,)), RequestBook((0.5,))
    for book in (one, each):
        for i in range(3):
            book.register(args(i, arrival=0.5 * i, cls=i % 2), prompt_len=10, pred=np.array([50.0]))
    rng = np.random.default_rng(4)
    for step in range(FOLD_EVERY + 7):
        t = 1.0 + 0.05 * step
        counts = rng.integers(0, 3, 3)
        rows = np.array([0, -1, 1, 2], dtype=np.int64)
        one.deliver(rows, np.concatenate([counts[:1], [5], counts[1:]]), t)
        for row in range(3):
            if counts[row]:
                each.tokens(row, int(counts[row]), t)
        assert len(one._stamps) < FOLD_EVERY
    for name in ("lag", "delay_area", "run_max", "delivered"):
        assert getattr(one, name)[:3].tolist() == getattr(each, name)[:3].tolist()
    assert one.token_times[:3] == each.token_times[:3]
    assert one.delivered[:3].sum() == sum(len(times) for times in one.token_times[:3]) > 0
    assert one.delivered[3:].sum() == 0 and not one.lag[3:].any()  # the -1 rows touched nothing
