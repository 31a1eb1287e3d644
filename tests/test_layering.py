"""formulations/ states the problem and imports no solver library (solvers/ translates it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLVER_LIBRARIES = {"ortools", "pulp", "highspy"}


def _formulation_modules() -> list[str]:
    return [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted((ROOT / "formulations").rglob("*.py"))]


def test_no_solver_import_statement_in_formulations():
    offenders = []
    for path in sorted((ROOT / "formulations").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in SOLVER_LIBRARIES]
    assert offenders == []


def test_importing_every_formulation_module_loads_no_solver_library():
    """Transitively too: a fresh interpreter imports all of formulations/ and lists what got loaded."""
    modules = _formulation_modules()
    assert "formulations.exact.hindsight" in modules
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted({{n.split('.')[0] for n in sys.modules}} & set({sorted(SOLVER_LIBRARIES)!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
