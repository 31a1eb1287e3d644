"""`slosched report`: renders every expected file from a small results dir, with the right numbers.

The results dir is written through the real sweep store with outcomes scored by the real
`summarize`; each cell's QoE is set by hand so the capacity in the summary is hand-computable.
"""

from __future__ import annotations

import numpy as np

from pathlib import Path

import pytest

from experiments.report import render_report
from experiments.sweep.store import ResultStore, cell_key
from formulations.metrics import RequestOutcome, summarize

SCALES = (1.0, 2.0, 4.0)
# mean QoE per rate scale: fcfs crosses 0.95 halfway between scale 1 and 2 -> capacity 1.5 req/s;
# slo between 2 and 4 at 0.95 = 0.99 - (0.99 - 0.79) * 0.2 -> capacity 2.4 req/s (1.6x fcfs).
QOE = {"fcfs": (1.0, 0.9, 0.4), "slo": (1.0, 0.99, 0.79)}
N = 21  # arrivals 1/scale s apart: offered load = scale req/s exactly


def outcome(i: int, scale: float, q: float, policy: str) -> RequestOutcome:
    arrival = i / scale
    latency = i % 2 == 0
    start = arrival + (0.2 if policy == "slo" else 0.2 * scale * (i % 5))
    tokens = [start + 0.05 * k for k in range(20)]
    met = q >= 0.95 if latency else (policy == "slo" or i % 3 == 0)
    return RequestOutcome(
        id=f"r{i}", cls="latency" if latency else "throughput", group=None, arrival=arrival, release=arrival,
        prompt_len=100, output_len=20, ttft_target=1.0 if latency else None, read_rate=4.8 if latency else None,
        deadline=None if latency else arrival + 5.0, token_times=tokens, preemptions=0, finish=tokens[-1],
        qoe=q if latency else None, slo_met=met,
    )


def write_results(root: Path) -> None:
    store = ResultStore(root)
    for policy, qoes in QOE.items():
        for scale, q in zip(SCALES, qoes, strict=True):
            for seed in (0, 1):
                outs = [outcome(i, scale, q, policy) for i in range(N)]
                cell = {"experiment": "toy", "policy": policy, "rate_scale": scale, "seed": seed, "config": {}}
                result = {"metrics": summarize(outs).to_dict(), "outcomes": [o.to_dict() for o in outs]}
                store.write(cell_key(cell), cell, result)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("results")
    write_results(root)
    return root, render_report(root)


def test_renders_every_expected_file(report):
    root, written = report
    names = sorted(p.name for p in written)
    assert names == ["summary.md", "toy-attainment.png", "toy-classes.png", "toy-latency-cdf.png", "toy-qoe.png",
                     "toy-timeline.png"]
    for p in written:
        assert p.parent == root / "report" and p.stat().st_size > 1000
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_has_capacity_and_highest_load_tables(report):
    root, _ = report
    md = (root / "report" / "summary.md").read_text()
    assert "| fcfs | 1.5 | 1x |" in md
    assert "| slo | 2.4 | 1.6x |" in md
    # at scale 4: fcfs attains latency 0/11 and throughput 3/10 (i = 3, 9, 15: odd, i % 3 == 0)
    # -> 3/21; slo meets all throughput: 10/21 -> 3.33x fcfs
    assert "| fcfs | 14.3% | 0.0% | 30.0% |" in md
    assert "| slo | 47.6% | 0.0% | 100.0% |" in md and "| 3.33x |" in md
    for image in ("toy-qoe.png", "toy-attainment.png", "toy-classes.png", "toy-timeline.png", "toy-latency-cdf.png"):
        assert f"({image})" in md


def test_missing_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cell results"):
        render_report(tmp_path)


def test_ttft_and_tbt_samples_come_from_token_times():
    from experiments.report.latency_cdf import tbts, ttfts

    outcomes = [{"arrival": 1.0, "token_times": [1.5, 1.7, 2.2]},
                {"arrival": 2.0, "token_times": [4.0]},
                {"arrival": 3.0, "token_times": []}]  # never served: no TTFT sample
    assert ttfts(outcomes).tolist() == [0.5, 2.0]
    assert np.allclose(tbts(outcomes), [0.2, 0.5])
