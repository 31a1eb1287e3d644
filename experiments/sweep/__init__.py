"""Sweeps: run many experiment cells in parallel (process pool or Ray) with per-cell resume."""

from experiments.sweep.backends import BACKENDS, CellFailed, make_backend
from experiments.sweep.store import ResultStore, cell_key
from experiments.sweep.sweep import SweepOutcome, run_sweep

__all__ = ["BACKENDS", "CellFailed", "ResultStore", "SweepOutcome", "cell_key", "make_backend", "run_sweep"]
