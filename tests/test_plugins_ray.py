"""A `module:Class` policy from outside slosched runs in Ray tasks (a local 2-CPU Ray instance)
and gives exactly the sequential backend's results."""

from __future__ import annotations

import sys

import pytest
import ray

from experiments.config import load_config, with_overrides
from experiments.runner import expand_cells
from experiments.sweep.cells import execute_cells
from ray_local import init_local_ray
from test_plugins import CONFIG, MODULE, PLUGIN, POLICY



@pytest.fixture(scope="module")
def plugin_on_ray(tmp_path_factory):
    """The plugin module in a folder that this process and the Ray workers find."""
    folder = tmp_path_factory.mktemp("site")
    (folder / f"{MODULE}.py").write_text(PLUGIN)
    init_local_ray(str(folder))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    ray.shutdown()


def test_plugin_policy_on_ray_matches_sequential(plugin_on_ray, tmp_path):
    config_path = tmp_path / "plug.toml"
    config_path.write_text(CONFIG)
    config = with_overrides(load_config(config_path), policies=["fcfs", POLICY])
    cells = expand_cells(config)
    on_ray = execute_cells(cells, tmp_path / "ray", backend="ray")
    here = execute_cells(cells, tmp_path / "seq", backend="sequential")
    assert [r.policy for r in on_ray] == ["fcfs", POLICY]
    assert [r.metrics for r in on_ray] == [r.metrics for r in here]
    assert on_ray[0].metrics != on_ray[1].metrics  # the plugin scheduled differently from fcfs
