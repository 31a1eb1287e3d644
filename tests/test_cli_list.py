"""`slosched list`: every accepted name with its parameters, and each listed name really resolves."""

from __future__ import annotations

import json

from experiments.cli import main
from experiments.config import load_config
from experiments.workloads.trace_loader import resolve_trace
from formulations.latency_model import load_profile
from solvers.policies.andes import AndesPolicy
from solvers.policies.registry import POLICIES, make_policy
from solvers.prediction.registry import PREDICTORS


def test_list_json_names_everything_and_each_name_resolves(capsys):
    assert main(["list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    policies = {p["name"]: p for p in doc["policies"]}
    assert set(POLICIES) <= set(policies) and set(PREDICTORS) <= {p["name"] for p in doc["predictors"]}
    assert policies["andes"]["parameters"]["horizon"] == AndesPolicy().horizon  # defaults as the class has them
    assert policies["andes"]["class"] == "solvers.policies.andes:AndesPolicy"
    noisy = next(p for p in doc["predictors"] if p["name"] == "noisy")
    assert noisy["parameters"]["sigma"] == "(required)"
    for name, p in policies.items():  # a listed policy is buildable with the listed defaults
        make_policy(name, **{k: v for k, v in p["parameters"].items() if v != "(required)"})
    assert [load_profile(p["name"]).latency.source for p in doc["profiles"]] == [p["summary"] for p in doc["profiles"]]
    assert resolve_trace(doc["traces"][0]["name"])[0].is_file()
    configs = {c["name"]: c for c in doc["configs"]}
    assert "demo.toml" in configs and load_config(configs["demo.toml"]["path"]).name == "demo"


def test_list_one_section_as_a_table(capsys):
    assert main(["list", "profiles"]) == 0
    out = capsys.readouterr().out
    assert "llama3-8b-h100" in out and "policies" not in out


def test_list_names_the_solve_examples(capsys):
    from experiments.cli import main

    assert main(["list", "examples", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["examples"]
    assert {r["name"] for r in rows} == {"mixed", "dag", "tight-kv-40x200"}
    assert next(r for r in rows if r["name"] == "tight-kv-40x200")["summary"].startswith("40 requests")
