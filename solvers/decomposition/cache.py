"""What the feasibility checks have proven so far, by monotonicity (formulations/exact/met_units.py):
a subset of a set that can be met can be met (with the superset's schedule, the others dropped),
and a superset of a set that cannot (a core) cannot."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SubsetCache:
    feasible: list[tuple[frozenset[int], dict[int, list[int]]]] = field(default_factory=list)  # set, token slots
    cores: list[frozenset[int]] = field(default_factory=list)
    hits: int = 0

    def schedule_of(self, units: frozenset[int]) -> dict[int, list[int]] | None:
        """Token slots (by request index) of a proven schedule meeting a superset of `units`, or None."""
        for known, slots in self.feasible:
            if units <= known:
                self.hits += 1
                return slots
        return None

    def core_in(self, units: frozenset[int]) -> frozenset[int] | None:
        """A proven core inside `units`, or None."""
        for core in self.cores:
            if core <= units:
                self.hits += 1
                return core
        return None

    def add_feasible(self, units: frozenset[int], slots: dict[int, list[int]]) -> None:
        self.feasible.append((units, slots))

    def add_core(self, core: frozenset[int]) -> None:
        self.cores.append(core)
