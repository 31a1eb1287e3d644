"""The compiled rules' cache is keyed by every source a kernel can reach: numba checks a cached
kernel against its own file only, so an edit to a rule in another file must start a new cache."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import compiled


def test_the_cache_directory_follows_the_sources(tmp_path, monkeypatch) -> None:
    solvers, formulations = tmp_path / "solvers", tmp_path / "formulations"
    solvers.mkdir()
    formulations.mkdir()
    (solvers / "slo.py").write_text("x = 1\n")
    (formulations / "online.py").write_text("y = 1\n")
    monkeypatch.setattr(compiled, "_SOURCES", (solvers, formulations))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    first = compiled._cache_dir()
    first.mkdir(parents=True)
    assert compiled._cache_dir() == first  # unchanged sources: the same cache
    (formulations / "online.py").write_text("y = 2\n")  # a rule another file's kernel inlines
    second = compiled._cache_dir()
    assert second != first and second.parent == first.parent
    assert not first.exists()  # the stale cache is gone


def test_kernels_use_a_keyed_cache() -> None:
    used = Path(numba.config.CACHE_DIR)
    assert used.name.startswith("numba-") and len(used.name) == len("numba-") + 16


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), max_size=600),
       st.integers(min_value=0, max_value=12))
def test_numpy_sum_is_numpys_sum_bit_for_bit(values: list[float], scale: int) -> None:
    # the lengths cross every branch: under 8, one block of up to 128, and halves split at multiples of 8
    a = np.array(values, dtype=np.float64) * 10.0 ** -scale
    assert compiled.numpy_sum(a) == a.sum()


def test_numpy_sum_differs_from_a_plain_loop_somewhere() -> None:
    # what the pairwise tree is for: a left-to-right loop rounds differently on some input
    rng = np.random.default_rng(3)
    a = rng.standard_normal(1000) * 10.0 ** rng.integers(-6, 9, size=1000)
    loop = 0.0
    for x in a:
        loop += x
    assert compiled.numpy_sum(a) == a.sum() != loop
