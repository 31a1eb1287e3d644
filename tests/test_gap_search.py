"""The best-known schedule at scale: GiveUpPolicy and the gap study (the window search: test_window_search.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine_adapter.simulator import simulate
from experiments.config import load_config, with_overrides
from experiments.studies.gap_at_scale import GapSettings, gap_at_load
from formulations.exact.generate import random_instance
from formulations.instance import Instance
from solvers.policies.give_up import GiveUpPolicy
from solvers.policies.registry import make_policy


def test_given_up_requests_run_only_when_the_policy_runs_nothing():
    base = random_instance(2, 5, arrival_slots=1)
    inst = Instance(base.engine.with_(slot_time=None), base.requests, base.groups)
    schedule = simulate(inst, GiveUpPolicy(make_policy("fcfs"), np.array([0])))
    others = [tl.finish for tl in schedule.timelines[1:]]
    assert schedule.timelines[0].admissions[0] >= max(others) - 1e-12
    plain = simulate(inst, GiveUpPolicy(make_policy("fcfs"), np.empty(0, dtype=np.int64)))
    reference = simulate(inst, make_policy("fcfs"))
    assert [tl.finish for tl in plain.timelines] == [tl.finish for tl in reference.timelines]


def test_gap_study_orders_policies_best_known_and_bound():
    """A small KV cache, so the policies miss SLOs and the window search has work to do."""
    config = with_overrides(load_config("experiments/configs/demo.toml"), limit=120, policies=["fcfs", "edf", "sjf"])
    config = replace(config, engine=replace(config.engine, overrides={**config.engine.overrides, "kv_blocks": 300}))
    gap = gap_at_load(config, 8.0, GapSettings(bound_seconds=20, search_seconds=8))
    assert max(gap.policies.values()) <= gap.search["start"] <= gap.best_known <= gap.bound["bound"] <= gap.requests
    assert gap.search["start"] < gap.requests and gap.search["evaluations"] >= 1
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
