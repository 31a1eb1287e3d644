"""What a policy remembers between decisions to decide faster must not change what it decides.

`slo` starts its sorts from the last decision's rankings (ranking.WarmSort). Driven over views
that change arbitrarily between calls (time moves on, tokens, arrivals, finishes, admissions,
preemptions; rows shuffled; a subset of the requests; an unrelated view), it must give exactly
the plans of the same policy with that memory wiped before every decision.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.policy_speed import PROFILE, advanced, synthetic_view
from formulations.engine_spec import EngineSpec
from formulations.online import EngineView, Plan
from solvers.policies.give_up import restrict
from solvers.policies.slo import SloPolicy


def changing_views(n: int, seed: int, length: int) -> list[EngineView]:
    engine = EngineSpec.from_profile(PROFILE)
    rng = np.random.default_rng(seed)
    views = [synthetic_view(n, seed, engine)]
    while len(views) < length:
        last = views[-1]
        change = rng.integers(4)
        if change == 0:  # the same requests in another row order
            view = restrict(last, np.ones(len(last), dtype=bool))
            perm = rng.permutation(len(last))
            view = EngineView(**{**vars(view), **{k: v[perm] for k, v in vars(view).items()
                                                  if isinstance(v, np.ndarray) and v.ndim and len(v) == len(last)}})
        elif change == 1:  # some requests gone
            view = restrict(last, rng.random(len(last)) < 0.7)
        elif change == 2:  # an unrelated view, later
            view = synthetic_view(n + int(rng.integers(-50, 50)), int(rng.integers(1 << 20)), engine)
        else:
            view = advanced(last, rng, int(last.idx.max()) + 1)
        views.append(view)
    return views


def same_plan(a: Plan, b: Plan) -> bool:
    return (np.array_equal(a.run, b.run) and np.array_equal(a.preempt, b.preempt)
            and np.array_equal(a.reject, b.reject) and a.recheck_at == b.recheck_at)


@pytest.mark.parametrize("selection", ["auto", "priority"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_slo_decides_the_same_with_its_sorts_wiped_before_every_decision(seed: int, selection: str) -> None:
    views = changing_views(700, seed, 10)
    engine = views[0].engine
    warm, cold = SloPolicy(selection=selection), SloPolicy(selection=selection)
    warm.reset(engine)
    cold.reset(engine)
    for view in views:
        for sort in cold._sorts.values():
            sort.clear()
        assert same_plan(warm.decide(view), cold.decide(view))
