"""Dependency shapes for bulk groups, as (parent, child) edges between member positions 0..k-1.

Each shape is a common multi-call LLM job: `independent` (a batch of unrelated prompts),
`chain` (each call refines the previous answer), `map_reduce` (a planner fans out to k-2
workers whose answers one reducer combines), `tree_of_thought` (every thought expands into
`branching` children). Edges always point from a lower to a higher position, so every shape is
acyclic by construction and position order is a topological order.
"""

from __future__ import annotations

Edges = list[tuple[int, int]]


def independent(k: int) -> Edges:
    return []


def chain(k: int) -> Edges:
    return [(i, i + 1) for i in range(k - 1)]


def map_reduce(k: int) -> Edges:
    """Planner 0 -> workers 1..k-2 -> reducer k-1; with k <= 2 it degenerates to a chain."""
    if k <= 2:
        return chain(k)
    workers = range(1, k - 1)
    return [(0, w) for w in workers] + [(w, k - 1) for w in workers]


def tree_of_thought(k: int, branching: int = 2) -> Edges:
    """A complete `branching`-ary tree in breadth-first order: node i's parent is (i-1)//branching."""
    return [((i - 1) // branching, i) for i in range(1, k)]


SHAPES = {"independent": independent, "chain": chain, "map_reduce": map_reduce, "tree_of_thought": tree_of_thought}


def shape_edges(shape: str, k: int, branching: int = 2) -> Edges:
    if shape == "tree_of_thought":
        return tree_of_thought(k, branching)
    return SHAPES[shape](k)
