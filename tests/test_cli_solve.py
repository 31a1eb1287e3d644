"""`slosched solve INSTANCE.json`: JSON result, schedule file, hint."""

import json

from experiments.cli import main
from formulations.exact.generate import random_instance, scale_instance


def test_solve_cli_json_and_schedule(tmp_path, capsys):
    inst = random_instance(4, 5, prompt=(2, 6), output=(1, 3), arrival_slots=2, block_size=2, kv_tightness=0.35,
                           token_budget=5, max_seqs=3, dag_group=2, slack=(1.0, 1.5), ttft_slots=(1, 2))
    path = tmp_path / "inst.json"
    inst.to_json(path)
    out = tmp_path / "sched.jsonl"
    assert main(["solve", str(path), "--backend", "highs", "--json", "--hint", "fcfs", "--schedule-out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "optimal" and result["objective"] == result["bound"] == 4
    assert result["hint_attainment"] <= result["objective"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(line.get("slo_met", False) for line in lines[:-1]) == 4
    assert len(lines[-1]["assignment"]["run"]) == result["horizon"]


def test_solve_cli_rejects_unslotted(tmp_path, capsys):
    inst = random_instance(0, 3)
    data = inst.to_dict()
    data["engine"]["slot_time"] = None
    path = tmp_path / "inst.json"
    path.write_text(json.dumps(data))
    assert main(["solve", str(path)]) == 2
    assert "slot_time" in capsys.readouterr().err


def test_solve_cli_decomposition(tmp_path, capsys):
    """`--method decomposition` prints the same result fields, proven optimal on a small tight
    instance, and refuses a backend other than cpsat in one line."""
    path = tmp_path / "inst.json"
    scale_instance(3, 8, 30, kv_tightness=0.12).to_json(path)
    assert main(["solve", str(path), "--method", "decomposition", "--json", "--hint", "edf"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "optimal" and result["objective"] == result["bound"]
    assert result["stats"]["model"] == "decomposition" and result["stats"]["checks"] >= 1
    assert result["hint_attainment"] <= result["objective"] == round(result["attainment"] * 8)
    assert main(["solve", str(path), "--method", "decomposition", "--backend", "highs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method decomposition" in err[0]
