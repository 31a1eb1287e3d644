"""The example instances under examples/: regenerated exactly by their script, solved by `solve --example`."""

from __future__ import annotations

import importlib.util
import json

import pytest

from experiments.cli import main
from experiments.cli.solve import EXAMPLES_DIR, example_names
from formulations.instance import Instance


def _make_examples_module():
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES_DIR / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_files_are_what_the_script_makes():
    made = _make_examples_module().EXAMPLES
    assert sorted(made) == example_names() == ["dag", "mixed", "tight-kv-40x200"]
    for name, make in made.items():
        shipped = json.loads((EXAMPLES_DIR / f"{name}.json").read_text())
        assert shipped == json.loads(json.dumps(make().to_dict())), f"examples/{name}.json is stale"


def test_the_examples_are_what_their_names_say():
    load = {n: Instance.from_json(EXAMPLES_DIR / f"{n}.json") for n in example_names()}
    assert {r.cls.value for r in load["mixed"].requests} == {"latency", "throughput"}
    assert load["dag"].groups and load["dag"].groups[0].edges
    tight = load["tight-kv-40x200"]
    assert len(tight.requests) == 40 and tight.engine.slot_time is not None


def test_solve_example_is_the_same_as_solving_its_file(capsys):
    argv = ["--backend", "highs", "--time-limit", "30", "--no-secondary", "--json"]
    assert main(["solve", "--example", "dag", *argv]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main(["solve", str(EXAMPLES_DIR / "dag.json"), *argv]) == 0
    by_path = json.loads(capsys.readouterr().out)
    assert by_name["requests"] == 10 and by_name["status"] == by_path["status"] == "optimal"
    assert by_name["objective"] == by_path["objective"] == by_path["bound"]


@pytest.mark.parametrize("argv, message", [
    (["--example", "tiny"], "--example 'tiny': no such example; valid: dag, mixed, tight-kv-40x200"),
    ([], "give an instance JSON file or --example NAME"),
    (["x.json", "--example", "dag"], "give an instance JSON file or --example NAME (one of them"),
])
def test_a_wrong_example_is_one_line_listing_the_names(argv, message, capsys):
    assert main(["solve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
