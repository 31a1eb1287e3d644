"""Time of one `decide()` per policy with 64/256/1024/4096 live requests, as a ratio to the
simulated iteration time of the default latency profile (llama3-8b-h100) for that batch.

docs/DESIGN.md target: < 1 ms at 1024 live requests for `slo` and `andes`, < 5% of an engine step;
issue 15: every policy < 1 ms at 4,096 live requests and < 0.1 ms at 64.
Two scenarios of synthetic views (mixed latency/throughput classes, noisy length quantiles):
`busy`: half resident, long contexts, KV nearly full, so not everything fits and the policies
rank and pack (the hard case); `light`: every request resident and decoding with short contexts,
so at most max_seqs live requests all fit and policies with an all-fit path take it (above
max_seqs even `light` needs a choice). Two modes: `advancing` (the default) hands every timed
call a fresh view one iteration later than the previous one (time moves on, decoding requests
deliver a token, a few requests finish, arrive, are admitted or preempted), so a policy that
keeps state across decisions is timed on the work it really does per decision; `static` repeats
one view (as a policy is asked again without change; a cache keyed on "nothing changed" would
make this one meaningless, which is why `advancing` is the measure). Times are the best and the
median of the timed calls in one run, over `--rounds` replays of the view sequence in which the
policies take turns (the machine is shared and its speed drifts by up to 2x over seconds: turns
give every policy the same machine states, and the minimum is the least disturbed; ratios, not
absolute claims). `--replay` also times every policy on the views a real simulation
asked its policy (the demo config, experiments/configs/demo.toml, driven by fcfs and recorded),
in their order: the mean and the largest decide() time over that run.

    PYTHONPATH=. python benchmarks/policy_speed.py [--policies slo andes] [--repeat 50] [--rounds 5] [--scenarios busy]
        [--modes advancing static] [--replay]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import numpy as np

from formulations.engine_spec import EngineSpec
from formulations.online import EngineView
from formulations.online import Plan, Policy
from solvers.policies.registry import POLICIES, make_policy
from formulations.arithmetic import ceil_div

SIZES = (64, 256, 1024, 4096)
PROFILE = "llama3-8b-h100"


def synthetic_view(n: int, seed: int, engine: EngineSpec, scenario: str = "busy") -> EngineView:
    """n live requests, mixed classes, noisy length quantiles; `busy`: half resident with long
    prompts (KV nearly full), `light`: all resident and decoding with short prompts."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, 2, n).astype(np.int8)
    light = scenario == "light"
    prompt = rng.integers(16, 128 if light else 2048, n)
    generated = rng.integers(1 if light else 0, 400, n)
    resident = np.ones(n, dtype=bool) if light else rng.random(n) < 0.5
    computed = np.where(resident, prompt + np.maximum(generated - 1, 0), 0)
    prefill_left = np.where(resident & (generated > 0), 0, np.where(generated == 0, prompt - computed,
                                                                    prompt + generated - 1))
    kv = ceil_div(computed, engine.block_size)
    latency = cls == 0
    preds = generated[:, None] + np.array([5.0, 100.0, 400.0])[None, :]
    return EngineView(
        now=60.0, idx=np.arange(n, dtype=np.int64), cls=cls, arrival=rng.uniform(0, 50, n),
        release=rng.uniform(0, 50, n), prompt_len=prompt, generated=generated, computed=computed,
        prefill_left=prefill_left, resident=resident, kv_blocks=kv,
        ttft_target=np.where(latency, 1.0, np.nan), read_rate=np.where(latency, rng.uniform(3, 10, n), np.nan),
        lag=np.where(latency, rng.uniform(0, 2, n), 0.0), delay_area=np.where(latency, rng.uniform(0, 50, n), 0.0),
        deadline=np.where(latency, np.nan, rng.uniform(50, 200, n)), group=np.full(n, -1, dtype=np.int64),
        preemptions=np.zeros(n, dtype=np.int64), pred_quantiles=preds, quantile_levels=(0.1, 0.5, 0.9),
        free_blocks=int(max(engine.kv_blocks - kv.sum(), 0)), engine=engine,
    )


def advanced(view: EngineView, rng: np.random.Generator, first_idx: int, scenario: str = "busy") -> EngineView:
    """The view one iteration later: time moves on by one iteration, decoding residents deliver a
    token, a few waiting requests are admitted (their prompt prefilled), a few residents are
    preempted, a few finish and as many new ones arrive (indices from `first_idx` on, waiting)."""
    engine = view.engine
    n = len(view)
    cols = {f.name: getattr(view, f.name) for f in dataclasses.fields(view)}
    cols = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
    decoding = cols["resident"] & (cols["prefill_left"] == 0)
    cols["generated"] = cols["generated"] + decoding
    cols["computed"] = cols["computed"] + decoding
    cols["pred_quantiles"] = np.maximum(cols["pred_quantiles"], cols["generated"][:, None] + 1.0)
    events = max(1, n // 128)
    waiting, resident = np.flatnonzero(~cols["resident"]), np.flatnonzero(cols["resident"])
    admit = rng.choice(waiting, min(events, len(waiting)), replace=False) if len(waiting) else waiting
    cols["resident"][admit] = True
    cols["computed"][admit] = cols["prompt_len"][admit] + np.maximum(cols["generated"][admit] - 1, 0)
    cols["generated"][admit] = np.maximum(cols["generated"][admit], 1)
    cols["prefill_left"][admit] = 0
    preempt = rng.choice(resident, min(events // 2, len(resident)), replace=False)
    cols["resident"][preempt] = False
    cols["computed"][preempt] = 0
    cols["prefill_left"][preempt] = cols["prompt_len"][preempt] + cols["generated"][preempt] - 1
    cols["preemptions"][preempt] += 1
    cols["kv_blocks"] = np.where(cols["resident"], ceil_div(cols["computed"], engine.block_size), 0)
    keep = np.ones(n, dtype=bool)
    keep[rng.choice(np.flatnonzero(cols["resident"]), events, replace=False)] = False
    arrivals = synthetic_view(events, int(rng.integers(1 << 30)), engine, scenario)
    now = view.now + iteration_seconds(view)
    joined = {}
    for f in dataclasses.fields(view):
        old, new = cols[f.name], getattr(arrivals, f.name)
        joined[f.name] = np.concatenate([old[keep], new]) if isinstance(old, np.ndarray) else old
    fresh = slice(n - events, n)
    joined["idx"][fresh] = first_idx + np.arange(events)
    joined["arrival"][fresh] = joined["release"][fresh] = now
    if scenario == "busy":  # arrivals wait for admission
        joined["resident"][fresh] = False
        joined["computed"][fresh] = joined["kv_blocks"][fresh] = joined["generated"][fresh] = 0
        joined["prefill_left"][fresh] = joined["prompt_len"][fresh]
        joined["pred_quantiles"][fresh] = np.array([5.0, 100.0, 400.0])[None, :]
    joined["deadline"][fresh] = np.where(joined["cls"][fresh] == 0, np.nan, now + rng.uniform(10, 150, events))
    joined.update(now=now, free_blocks=int(max(engine.kv_blocks - joined["kv_blocks"].sum(), 0)))
    return EngineView(**joined)


def view_sequence(n: int, seed: int, engine: EngineSpec, scenario: str, length: int) -> list[EngineView]:
    """`length` views, each one `advanced` from the one before."""
    rng = np.random.default_rng(seed + 1)
    views = [synthetic_view(n, seed, engine, scenario)]
    next_idx = n
    while len(views) < length:
        views.append(advanced(views[-1], rng, next_idx, scenario))
        next_idx = int(views[-1].idx.max()) + 1
    return views


class Recorder(Policy):
    """`inner`, keeping a copy of every view it is asked about."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.views = inner, []
        self.name = inner.name

    def reset(self, engine: EngineSpec) -> None:
        self.inner.reset(engine)

    def decide(self, view: EngineView) -> Plan:
        columns = {f.name: getattr(view, f.name).copy() for f in dataclasses.fields(view)
                   if isinstance(getattr(view, f.name), np.ndarray)}  # the engine updates its arrays in place
        self.views.append(dataclasses.replace(view, groups=copy.deepcopy(view.groups), **columns))
        return self.inner.decide(view)


def recorded_views(limit: int | None) -> list[EngineView]:
    """Every view the simulator asks fcfs on the demo config (first `limit` decisions)."""
    from engine_adapter.simulator import simulate
    from experiments.config import load_config
    from experiments.workloads import build_instance
    from solvers.prediction.registry import make_predictor

    config = load_config("experiments/configs/demo.toml")
    instance = build_instance(config.workload, config.engine.build(), config.seed)
    recorder = Recorder(make_policy("fcfs"))
    simulate(instance, recorder, make_predictor(config.predictor.name, **config.predictor.params))
    return recorder.views[:limit]


def iteration_seconds(view: EngineView) -> float:
    """Simulated time of a decode iteration over the residents the engine could batch."""
    engine = view.engine
    seqs = min(int(view.resident.sum()), engine.max_seqs)
    ctx = float(np.sort(view.computed[view.resident])[:seqs].sum())
    return engine.latency.iteration_time(0, seqs, ctx)


def decide_times(name: str, views: list[EngineView]) -> list[float]:
    """Seconds of each decide() over views[1:] by a fresh policy (views[0] warms it up)."""
    policy = make_policy(name)
    policy.reset(views[0].engine)
    policy.decide(views[0])
    times = []
    for view in views[1:]:
        start = time.perf_counter()
        policy.decide(view)
        times.append(time.perf_counter() - start)
    return times


def time_decide(names: list[str], views: list[EngineView], rounds: int) -> dict[str, tuple[float, float]]:
    """Best and median seconds of decide() per policy over `rounds` replays of `views`, the
    policies taking turns within each round: this machine's speed drifts by up to 2x over
    seconds, so turns give every policy the same spread of machine states, and the best of
    several rounds is the least disturbed."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            times[name].extend(decide_times(name, views))
    return {name: (float(np.min(t)), float(np.median(t))) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="*", default=sorted(POLICIES))
    parser.add_argument("--repeat", type=int, default=30, help="decisions per round (views in the sequence)")
    parser.add_argument("--rounds", type=int, default=5, help="replays of the sequence, policies taking turns")
    parser.add_argument("--sizes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--scenarios", nargs="*", default=["busy", "light"], choices=["busy", "light"])
    parser.add_argument("--modes", nargs="*", default=["advancing"], choices=["advancing", "static"])
    parser.add_argument("--replay", action="store_true", help="also time the views of a recorded demo run")
    parser.add_argument("--replay-limit", type=int, default=None, help="only the first N recorded views")
    args = parser.parse_args()
    engine = EngineSpec.from_profile(PROFILE)
    if args.replay:
        views = recorded_views(args.replay_limit)
        live = np.array([len(v) for v in views])
        print(f"replay: {len(views)} decisions of the demo run, live requests mean {live.mean():.0f}, max {live.max()}")
        print(f"{'policy':<14}{'mean ms':>9}{'max ms':>9}")
        for name in args.policies:
            policy = make_policy(name)
            policy.reset(views[0].engine)
            times = []
            for view in views:
                start = time.perf_counter()
                policy.decide(view)
                times.append(time.perf_counter() - start)
            print(f"{name:<14}{np.mean(times) * 1e3:>9.3f}{np.max(times) * 1e3:>9.3f}")
    print(f"{'mode':<10}{'scenario':<9}{'policy':<14}{'live':>6}{'best ms':>9}{'median ms':>11}{'iter ms':>9}"
          f"{'ratio':>8}")
    for mode in args.modes:
        for scenario in args.scenarios:
            for n in args.sizes:
                if mode == "advancing":
                    views = view_sequence(n, n, engine, scenario, args.repeat + 1)
                else:
                    views = [synthetic_view(n, seed=n, engine=engine, scenario=scenario)] * (args.repeat + 1)
                step = iteration_seconds(views[0])
                for name, (best, median) in time_decide(args.policies, views, args.rounds).items():
                    print(f"{mode:<10}{scenario:<9}{name:<14}{n:>6}{best * 1e3:>9.3f}{median * 1e3:>11.3f}"
                          f"{step * 1e3:>9.2f}{best / step:>8.3f}")


if __name__ == "__main__":
    main()
