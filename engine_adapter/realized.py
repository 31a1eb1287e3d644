"""The instance a real engine actually ran: its arrivals on the run's clock and its engine.

`realize` maps a workload onto an engine run (arrivals scaled, the engine's capacities);
`with_engine` swaps the engine model (e.g. a latency model fitted to the run, or a slotted
approximation for the exact oracle) while keeping every absolute deadline: deadlines are derived
from T_alone under the engine model, so the slack ratios are rescaled instead. Then the vLLM
run, its simulator replay and the oracle are all scored against the same SLOs.
"""

from __future__ import annotations

from dataclasses import replace

from formulations.deadlines import t_alone, t_alone_group
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.requests import Group, RequestClass


def realize(instance: Instance, engine: EngineSpec, time_scale: float = 1.0) -> Instance:
    """The instance as `engine` runs it: every arrival (and a later turn's think time) times
    `time_scale`."""
    if not time_scale > 0:
        raise ValueError(f"time_scale={time_scale} must be > 0")
    requests = tuple(replace(r, arrival=r.arrival * time_scale,
                             think_time=None if r.think_time is None else r.think_time * time_scale)
                     for r in instance.requests)
    groups = tuple(replace(g, arrival=g.arrival * time_scale) for g in instance.groups)
    return Instance(engine, requests, groups, {**instance.meta, "time_scale": time_scale})


def with_engine(instance: Instance, engine: EngineSpec) -> Instance:
    """Same requests and the same absolute deadlines on another engine model."""
    requests = []
    for r in instance.requests:
        if r.cls is RequestClass.THROUGHPUT:
            alone = t_alone(engine, r.prompt_len, r.output_len)
            r = replace(r, slack_ratio=(instance.deadline(r) - r.arrival) / alone)
        requests.append(r)
    by_id = {r.id: r for r in requests}
    groups = []
    for g in instance.groups:
        alone = t_alone_group(engine, g, by_id)
        groups.append(Group(id=g.id, members=g.members, arrival=g.arrival, edges=g.edges,
                            slack_ratio=(instance.group_deadlines[g.id] - g.arrival) / alone))
    return Instance(engine, tuple(requests), tuple(groups), dict(instance.meta))
