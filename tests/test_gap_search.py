"""The best-known schedule search: GiveUpPolicy, the give-up LNS, and the gap study at scale."""

from __future__ import annotations

import numpy as np

from engine_adapter.simulator import simulate
from experiments.config import load_config, with_overrides
from experiments.studies.gap_at_scale import GapSettings, gap_at_load
from formulations.exact.generate import random_instance
from formulations.instance import Instance
from solvers.policies.give_up import GiveUpPolicy
from solvers.policies.registry import make_policy
from solvers.search.lns import Outcome, search


def test_given_up_requests_run_only_when_the_policy_runs_nothing():
    base = random_instance(2, 5, arrival_slots=1)
    inst = Instance(base.engine.with_(slot_time=None), base.requests, base.groups)
    schedule = simulate(inst, GiveUpPolicy(make_policy("fcfs"), np.array([0])))
    others = [tl.finish for tl in schedule.timelines[1:]]
    assert schedule.timelines[0].admissions[0] >= max(others) - 1e-12
    plain = simulate(inst, GiveUpPolicy(make_policy("fcfs"), np.empty(0, dtype=np.int64)))
    reference = simulate(inst, make_policy("fcfs"))
    assert [tl.finish for tl in plain.timelines] == [tl.finish for tl in reference.timelines]


def test_search_keeps_only_strict_improvements():
    """A toy evaluate: giving up unit 3 frees room for units 1 and 2; anything else costs."""
    def evaluate(given: np.ndarray) -> Outcome:
        met = np.array([True, False, False, False, True])
        if 3 in given:
            met[[1, 2]] = True
        met[given] = False
        return Outcome(int(met.sum()), met)

    start = evaluate(np.empty(0, dtype=np.int64))
    found = search(evaluate, start, np.arange(5.0), time_limit=0.5, seed=0)
    assert start.slo_met == 2 and found.best.slo_met == 4
    assert 3 in found.given_up and found.improvements >= 1


def test_gap_study_orders_policies_best_known_and_bound():
    config = with_overrides(load_config("experiments/configs/demo.toml"), limit=80)
    gap = gap_at_load(config, 8.0, GapSettings(bound_seconds=20, search_seconds=5))
    assert max(gap.policies.values()) <= gap.best_known <= gap.bound["bound"] <= gap.requests
    for row in gap.rows():
        assert 0 <= row["gap_low"] <= row["gap_high"] <= 1


def test_gap_command_prints_json_and_report_plots_gap_vs_load(tmp_path, capsys):
    import json
    from pathlib import Path

    from experiments.cli import main
    from experiments.report import render_report

    config = tmp_path / "small.toml"
    config.write_text(Path("experiments/configs/demo.toml").read_text().replace("limit = 1000", "limit = 60"))
    results = tmp_path / "results"
    code = main(["gap", str(config), "--rate-scales", "4,8", "--bound-seconds", "10", "--search-seconds", "2",
                 "--json", "--results", str(results)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [g["rate_scale"] for g in data["loads"]] == [4.0, 8.0]
    assert {r["policy"] for r in data["loads"][0]["rows"]} == set(load_config(str(config)).policies)
    written = render_report(results)
    assert any(p.name == "demo-gap-vs-load.png" for p in written)
    assert "gap interval" in (results / "report" / "summary.md").read_text()
