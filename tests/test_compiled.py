"""The compiled rules' cache is keyed by every source a kernel can reach: numba checks a cached
kernel against its own file only, so an edit to a rule in another file must start a new cache."""

from __future__ import annotations

from pathlib import Path

import numba

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
