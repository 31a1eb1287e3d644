"""Per-request arrays that grow as requests show up."""

import numpy as np

from solvers.policies.per_request import grown


def test_grown_keeps_values_fills_the_rest_and_doubles():
    values = np.array([3, 1, 2], dtype=np.int64)
    out = grown(values, 4, fill=-1)
    assert out.dtype == np.int64
    assert out.tolist() == [3, 1, 2, -1, -1, -1]  # doubled: 6 >= 4 entries
    assert grown(values, 10, fill=-1).tolist() == [3, 1, 2] + [-1] * 7  # beyond double: exactly size


def test_grown_returns_the_same_array_when_long_enough():
    values = np.zeros(5, dtype=bool)
    assert grown(values, 5, fill=False) is values
    assert grown(np.zeros(0, dtype=bool), 0).size == 0
