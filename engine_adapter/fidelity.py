"""Timed fidelity: how far the simulator's per-request times are from a real engine's.

For each request of one instance run twice (on the engine, and in the simulator with a latency
model calibrated on a *different* run), the relative error |simulated - real| / real of
- TTFT: first token - arrival,
- TBT: mean time between tokens, (last - first) / (tokens - 1), requests with >= 2 tokens,
- JCT: last token - arrival,
summarized by its median and 90th percentile; `{metric}_bias` is the median *signed* error
(simulated - real) / real, negative when the simulator is faster: a bias near the median error
points at something systematic (an unmodelled cost), one near 0 at noise. Requests either run left unfinished are counted
(`unfinished`), not scored. No engine import: it compares two `Schedule`s.
"""

from __future__ import annotations

import numpy as np

from formulations.instance import Instance
from formulations.schedule import Schedule

METRICS = ("ttft", "tbt", "jct")


def per_request_times(instance: Instance, schedule: Schedule) -> dict[str, np.ndarray]:
    """TTFT, TBT and JCT of every request (nan where undefined: unfinished, or one token for TBT)."""
    n = len(instance.requests)
    out = {m: np.full(n, np.nan) for m in METRICS}
    for i, (req, tl) in enumerate(zip(instance.requests, schedule.timelines, strict=True)):
        times = tl.token_times
        if tl.finish is None or len(times) == 0:
            continue
        out["ttft"][i] = times[0] - req.arrival
        out["jct"][i] = times[-1] - req.arrival
        if len(times) > 1:
            out["tbt"][i] = (times[-1] - times[0]) / (len(times) - 1)
    return out


def timed_fidelity(instance: Instance, real: Schedule, simulated: Schedule) -> dict[str, float | int]:
    """{metric}_median / {metric}_p90 relative errors of `simulated` against `real` (the same
    requests, the same arrivals), plus how many requests each metric scored."""
    mine, truth = per_request_times(instance, simulated), per_request_times(instance, real)
    summary: dict[str, float | int] = {"requests": len(instance.requests),
                                       "unfinished": int(np.isnan(mine["jct"]).sum() + np.isnan(truth["jct"]).sum())}
    for m in METRICS:
        ok = np.isfinite(mine[m]) & np.isfinite(truth[m]) & (truth[m] > 0)
        signed = (mine[m][ok] - truth[m][ok]) / truth[m][ok]
        err = np.abs(signed)
        summary[f"{m}_scored"] = int(ok.sum())
        summary[f"{m}_bias"] = float(np.median(signed)) if len(err) else float("nan")
        summary[f"{m}_median"] = float(np.median(err)) if len(err) else float("nan")
        summary[f"{m}_p90"] = float(np.quantile(err, 0.9)) if len(err) else float("nan")
    return summary


FIDELITY_COLUMNS = tuple(f"{m.upper()} {q}" for m in METRICS for q in ("median", "p90"))


def fidelity_cells(summary: dict[str, float | int]) -> tuple[str, ...]:
    """The relative errors in FIDELITY_COLUMNS order, as printed."""
    return tuple(f"{summary[f'{m}_{q}']:.1%}" for m in METRICS for q in ("median", "p90"))
