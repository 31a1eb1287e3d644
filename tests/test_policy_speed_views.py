"""benchmarks/policy_speed.py times policies on views that advance like an engine's: each one
later, decoding requests a token further, some requests gone, some new, admitted or preempted.
A benchmark that repeated one view would time a cache, not a policy; these check that the views
really change and stay views an engine could show."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.policy_speed import PROFILE, view_sequence
from formulations.engine_spec import EngineSpec


@pytest.mark.parametrize("scenario", ["busy", "light"])
@pytest.mark.parametrize("n", [64, 1024])
def test_advancing_views_change_every_call_and_stay_consistent(n: int, scenario: str) -> None:
    engine = EngineSpec.from_profile(PROFILE)
    views = view_sequence(n, n, engine, scenario, 6)
    for before, after in zip(views, views[1:], strict=False):
        assert after.now > before.now and len(after) == n
        assert len(np.unique(after.idx)) == n
        assert not np.isin(after.idx, before.idx).all()  # some requests left, others arrived
        kept = np.isin(before.idx, after.idx)
        old = {int(i): int(g) for i, g in zip(before.idx, before.generated, strict=True)}
        decoding = before.resident & (before.prefill_left == 0) & kept
        moved = [after.generated[after.idx == i][0] > old[int(i)] for i in before.idx[decoding]]
        assert moved and all(moved)  # every decoding request that stayed delivered a token
        assert np.array_equal(after.kv_blocks, np.where(after.resident, -(-after.computed // engine.block_size), 0))
        assert after.free_blocks == max(engine.kv_blocks - int(after.kv_blocks.sum()), 0)
        assert (after.prefill_left[~after.resident] > 0).all()
        assert (after.pred_quantiles >= after.generated[:, None]).all()
