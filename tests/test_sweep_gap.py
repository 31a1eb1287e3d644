"""The gap study as a sweep: config validation, pooled tables and histograms from stored batches."""

from __future__ import annotations

import pytest

from experiments.errors import ConfigError
from experiments.report.gap import gap_table, pooled, step_gap_lines
from experiments.report.render import render_report
from experiments.studies.gap_sweep import GapCell, load_gap_cells
from experiments.sweep.store import ResultStore, cell_key


def write(tmp_path, text):
    path = tmp_path / "g.toml"
    path.write_text(text)
    return path


def test_cells_are_seed_by_noise_and_quick_shrinks(tmp_path):
    path = write(tmp_path, 'name = "g"\nstudy = "gap"\n[gap]\ninstances = 30\nseeds = [0, 1]\nnoise = [0.0, 0.5]\n'
                           'time_limit = 90\npolicies = ["fcfs"]\n')
    name, cells = load_gap_cells(path)
    assert name == "g" and [(c.seed, c.noise) for c in cells] == [(0, 0.0), (1, 0.0), (0, 0.5), (1, 0.5)]
    assert all(c.instances == 30 and c.time_limit == 90.0 and c.policies == ("fcfs",) for c in cells)
    qname, quick = load_gap_cells(path, quick=True)
    assert qname == "g-quick" and len(quick) == 1 and quick[0].instances == 8 and quick[0].time_limit == 20.0


@pytest.mark.parametrize("body, message", [
    ("instance = 3", "unknown key 'instance'"),
    ("instances = 0", "gap.instances = 0"),
    ("seeds = []", "gap.seeds"),
    ("noise = [-1]", "gap.noise"),
    ("policies = ['nope']", "unknown policy 'nope'"),
])
def test_bad_gap_config_is_a_clear_error(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_gap_cells(write(tmp_path, f'study = "gap"\n[gap]\n{body}\n'))


def inst(seed, optimum, met):
    return {"seed": seed, "load": 1.0, "requests": 6, "optimum": optimum, "optimal_qoe": 0.8, "proven": True,
            "met": met, "qoe": {p: 0.8 * m / max(optimum, 1) for p, m in met.items()}}


def batch(seed, noise, instances, gaps):
    cell = GapCell("g", len(instances), seed, noise, 60.0, ("fcfs", "slo"))
    result = {"summary": {"unproven": 1 if seed == 1 else 0}, "instances": instances, "step_gaps": gaps,
              "step_steps": len(gaps)}
    return {"key": cell_key(cell.to_dict()), "cell": cell.to_dict(), "result": result}


RECORDS = [
    batch(0, 0.0, [inst(0, 4, {"fcfs": 2, "slo": 4}), inst(1, 5, {"fcfs": 5, "slo": 4})], [0.0, 0.1]),
    batch(1, 0.0, [inst(2, 0, {"fcfs": 0, "slo": 0})], [0.0]),
]


def test_pooled_table_over_batches_is_hand_checked():
    pools = pooled(RECORDS)
    assert list(pools) == [0.0] and len(pools[0.0]["instances"]) == 3 and pools[0.0]["unproven"] == 1
    md = gap_table(pools)
    # slo: ratios 1, 0.8, 1 -> mean 0.9333, worst 0.8, optimal on 2/3; fcfs: 0.5, 1, 1 -> 0.8333
    assert "| slo | 0 | 3 | 0.9333 | 0.8 | 66.7% |" in md
    assert "| fcfs | 0 | 3 | 0.8333 | 0.5 | 66.7% |" in md
    assert md.index("| slo |") < md.index("| fcfs |")  # best first
    lines = "\n".join(step_gap_lines(pools))
    assert "3 contended steps" in lines and "mean gap 3.333%" in lines and "max 10.00%" in lines
    assert "1 instance(s) not proven optimal" in lines


def test_report_renders_gap_histograms_and_table(tmp_path):
    store = ResultStore(tmp_path)
    for rec in RECORDS:
        store.write(rec["key"], rec["cell"], rec["result"])
    names = sorted(p.name for p in render_report(tmp_path))
    assert names == ["g-gap.png", "summary.md"]
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "## g: heuristics vs the hindsight optimum" in md and "| slo | 0 | 3 | 0.9333 |" in md
