"""A policy or predictor defined outside slosched runs by `module:Class` and by an installed
package's entry point, in `run` (in process and in spawned sweep workers), `compare`, `report`
and `list`; the plugin's results equal simulating its class directly."""

from __future__ import annotations

import json
import textwrap

import pytest

from engine_adapter.simulator import simulate
from experiments.cli import main
from experiments.config import load_config
from experiments.runner import build_cell_instance, expand_cells
from formulations.metrics import score
from formulations.requests import ValidationError
from solvers.policies.registry import make_policy, policy_names
from solvers.prediction.registry import make_predictor, predictor_names

PLUGIN = textwrap.dedent('''
    """Outside slosched: shortest prompt first, and an oracle that over-predicts."""
    import numpy as np

    from formulations.online import Plan, Policy
    from solvers.prediction.oracle import OraclePredictor


    class ShortestPromptFirst(Policy):
        name = "spf"

        def __init__(self, longest_first: bool = False) -> None:
            self.longest_first = longest_first

        def decide(self, view):
            key = -view.prompt_len if self.longest_first else view.prompt_len
            return Plan(run=view.idx[np.lexsort((view.idx, key))])


    class DoubleOracle(OraclePredictor):
        name = "double"

        def predict(self, requests):
            return 2 * super().predict(requests)
''')
CONFIG = """
name = "plug"
seed = 1
policies = ["fcfs"]
[workload]
limit = 40
rate_scale = 20.0
[engine]
kv_blocks = 300
"""
MODULE = "slosched_plugin_spf"
POLICY = f"{MODULE}:ShortestPromptFirst"


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """The plugin module in a folder on sys.path (spawned workers inherit sys.path)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.fixture
def installed_plugin(plugin_dir):
    """A tiny installed distribution: a dist-info folder whose entry points name the plugin."""
    info = plugin_dir / "slosched_plugin_spf-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: slosched-plugin-spf\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[slosched.policies]\nspf = {MODULE}:ShortestPromptFirst\n\n[slosched.predictors]\ndouble = {MODULE}:DoubleOracle\n")
    return plugin_dir


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_module_class_runs_in_run_and_equals_the_class_simulated_directly(plugin_dir, tmp_path, capsys):
    config = tmp_path / "plug.toml"
    config.write_text(CONFIG)
    code, out, err = cli(capsys, "run", str(config), "--policies", f"fcfs,{POLICY}", "--json",
                         "--out", str(tmp_path / "o"))
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"fcfs", POLICY}
    from slosched_plugin_spf import ShortestPromptFirst

    instance = build_cell_instance(expand_cells(load_config(config))[0])
    direct = score(instance, simulate(instance, ShortestPromptFirst(), make_predictor("oracle")))
    assert doc[POLICY]["slo_met"] == direct.slo_met and doc[POLICY]["mean_qoe"] == pytest.approx(direct.mean_qoe)
    assert doc[POLICY]["mean_qoe"] != doc["fcfs"]["mean_qoe"]  # it really scheduled differently from fcfs
    assert (tmp_path / "o" / f"schedule-{POLICY}.jsonl.gz").is_file()


def test_policy_params_reach_a_plugin_and_bad_ones_are_one_line_errors(plugin_dir, tmp_path, capsys):
    config = tmp_path / "plug.toml"
    config.write_text(CONFIG.replace('["fcfs"]', f'["{POLICY}"]') + f'[policy_params."{POLICY}"]\nlongest_first = true\n')
    code, out, err = cli(capsys, "run", str(config), "--json", "--out", str(tmp_path / "o"))
    assert code == 0, err
    from slosched_plugin_spf import ShortestPromptFirst

    instance = build_cell_instance(expand_cells(load_config(config))[0])
    direct = score(instance, simulate(instance, ShortestPromptFirst(longest_first=True), make_predictor("oracle")))
    assert json.loads(out)[POLICY]["slo_met"] == direct.slo_met
    config.write_text(CONFIG.replace('["fcfs"]', f'["{POLICY}"]') + f'[policy_params."{POLICY}"]\nshortest = 1\n')
    code, out, err = cli(capsys, "run", str(config), "--json", "--out", str(tmp_path / "o2"))
    assert code == 2 and err.count("\n") == 1 and "unknown parameter(s) ['shortest']; valid: ['longest_first']" in err


def test_unimportable_names_are_one_line_errors(plugin_dir, tmp_path, capsys):
    for name, message in [("nosuchmodule:X", "cannot import 'nosuchmodule:X'"),
                          (f"{MODULE}:Missing", "cannot import"), (f"{MODULE}:np", "is not a class")]:
        code, _, err = cli(capsys, "run", "--policies", name, "--limit", "5", "--json", "--out", str(tmp_path / "o"))
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_local_sweep_with_spawned_workers_then_report(plugin_dir, tmp_path, capsys):
    config = tmp_path / "plug.toml"
    config.write_text(CONFIG)
    single = cli(capsys, "run", str(config), "--policies", POLICY, "--json", "--out", str(tmp_path / "one"))
    code, out, err = cli(capsys, "run", str(config), "--policies", f"fcfs,{POLICY}", "--json",
                         "--backend", "local", "--workers", "2", "--out", str(tmp_path / "sweep"))
    assert code == 0, err
    swept = json.loads(out)[POLICY]
    assert swept["slo_met"] == json.loads(single[1])[POLICY]["slo_met"]  # the spawned worker ran the plugin
    cells = [json.loads(p.read_text()) for p in (tmp_path / "sweep" / "cells").glob("*.json")]
    assert sorted(c["cell"]["policy"] for c in cells) == ["fcfs", POLICY]
    code, out, err = cli(capsys, "report", str(tmp_path / "sweep"))
    assert code == 0, err
    assert (tmp_path / "sweep" / "report" / "summary.md").is_file() and POLICY in (
        tmp_path / "sweep" / "report" / "summary.md").read_text()


def test_compare_runs_a_plugin_policy(plugin_dir, tmp_path, capsys):
    code, out, err = cli(capsys, "compare", "--instances", "2", "--policies", "fcfs", POLICY,
                         "--time-limit", "5", "--json", "--out", str(tmp_path / "cmp"))
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary["policies"]) == {"fcfs", POLICY}
    assert 0 < summary["policies"][POLICY]["mean_ratio"] <= 1


def test_entry_points_of_an_installed_package(installed_plugin, tmp_path, capsys):
    assert "spf" in policy_names() and "double" in predictor_names()
    assert type(make_policy("spf", longest_first=True)).__name__ == "ShortestPromptFirst"
    config = tmp_path / "plug.toml"
    config.write_text(CONFIG + '[predictor]\nname = "double"\n')
    code, out, err = cli(capsys, "run", str(config), "--policies", f"spf,{POLICY}", "--json", "--out", str(tmp_path / "o"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["spf"] == doc[POLICY]  # the entry point and module:Class name the same class
    code, out, err = cli(capsys, "list")
    assert code == 0 and "spf" in out and "longest_first" in out and "double" in out


def test_unknown_plain_name_lists_installed_plugins(installed_plugin):
    with pytest.raises(ValidationError, match="valid: fcfs, .*spf or package.module:Class"):
        make_policy("lifo")


def test_the_vllm_bridge_resolves_the_same_names(installed_plugin):
    from engine_adapter.bridge_config import BridgeConfig

    by_path = BridgeConfig(policy=POLICY, params={"longest_first": True}, predictor=f"{MODULE}:DoubleOracle")
    assert type(by_path.make_policy()).__name__ == "ShortestPromptFirst" and by_path.make_policy().longest_first
    assert type(by_path.make_predictor()).__name__ == "DoubleOracle"
    by_entry_point = BridgeConfig(policy="spf", predictor="double")
    assert type(by_entry_point.make_policy()) is type(by_path.make_policy())
    with pytest.raises(ValidationError, match="cannot import 'nosuch:X'"):
        BridgeConfig(policy="nosuch:X").make_policy()
