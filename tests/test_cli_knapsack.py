"""`slosched knapsack FILE --json` on the shipped OR-Library style file."""

import json
from pathlib import Path

from experiments.cli import main

DATA = Path(__file__).parent / "data" / "mknap_small.txt"


def test_knapsack_cli_json(capsys):
    assert main(["knapsack", str(DATA), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["optimum"] for r in rows] == [17, 22, 24]
    assert [r["greedy"] for r in rows] == [15, 16, 24]
    assert rows[0]["greedy_gap"] == 2 / 17
    assert all(r["status"] == "optimal" and r["bound"] == r["best"] for r in rows)
    assert set(rows[0]) >= {"optimum", "best", "bound", "status", "greedy", "greedy_gap", "seconds"}


def test_knapsack_cli_missing_file(capsys):
    assert main(["knapsack", "no/such/file.txt"]) == 2
    assert "no/such/file.txt" in capsys.readouterr().err
