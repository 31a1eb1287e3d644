"""The bridge at scheduler level, as vLLM's own scheduler unit tests drive a scheduler: built from a
VllmConfig without a model runner, fed `ModelRunnerOutput`s by hand.

That is the only way to test async scheduling here: vLLM's CPU platform forces
`async_scheduling` off when a real engine starts, so these tests switch it on in the config after
vLLM has validated it (what a GPU platform leaves on) and overlap steps themselves: step N+1 is
scheduled before step N's output is fed back, as EngineCore's batch queue does.
"""

from __future__ import annotations

import json
from collections import deque

import pytest

from vllm_required import require_vllm  # noqa: E402

require_vllm()

import torch  # noqa: E402
from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig  # noqa: E402
from vllm.exceptions import VLLMValidationError  # noqa: E402
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.v1.core.sched.async_scheduler import AsyncScheduler  # noqa: E402
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec  # noqa: E402
from vllm.v1.outputs import ModelRunnerOutput  # noqa: E402
from vllm.v1.request import Request  # noqa: E402
from vllm.v1.structured_output import StructuredOutputManager  # noqa: E402

from engine_adapter.tiny_model import write_tiny_llama  # noqa: E402
from engine_adapter.vllm_async import AsyncSloScheduler  # noqa: E402
from engine_adapter.vllm_checks import VALIDATOR, SloArgsValidator  # noqa: E402
from engine_adapter.vllm_scheduler import SloScheduler  # noqa: E402
from formulations.requests import ValidationError  # noqa: E402

BLOCK = 16
SAMPLED_TOKEN = 7


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(write_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))


def build(cls, model_dir: str, *, async_scheduling: bool, max_num_seqs: int = 8, budget: int = 64, blocks: int = 200,
          logits_processors=(VALIDATOR,), runner: str = "auto", **scheduler_kwargs):
    scheduler_config = SchedulerConfig(
        max_num_seqs=max_num_seqs, max_num_batched_tokens=budget, max_model_len=512, enable_chunked_prefill=True,
        is_encoder_decoder=False, scheduler_reserve_full_isl=False, **scheduler_kwargs)
    model_config = ModelConfig(model=model_dir, skip_tokenizer_init=True, dtype="float32", seed=0, runner=runner,
                               logits_processors=list(logits_processors))
    cache_config = CacheConfig(block_size=BLOCK, enable_prefix_caching=False)
    vllm_config = VllmConfig(scheduler_config=scheduler_config, model_config=model_config, cache_config=cache_config,
                             additional_config={"slosched": {"policy": "fcfs"}})
    vllm_config.scheduler_config.async_scheduling = async_scheduling  # the CPU platform turned it off
    cache_config.num_gpu_blocks = blocks
    kv_cache_config = KVCacheConfig(num_blocks=blocks, kv_cache_tensors=[], kv_cache_groups=[
        KVCacheGroupSpec(["layer"], FullAttentionSpec(block_size=BLOCK, num_kv_heads=1, head_size=1,
                                                       dtype=torch.float32))])
    return cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config, block_size=BLOCK, log_stats=False,
               structured_output_manager=StructuredOutputManager(vllm_config))


def request(rid: str, prompt: int, max_tokens: int, slo: dict | None = None) -> Request:
    extra = {"slosched": json.dumps(slo)} if slo is not None else None
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, extra_args=extra)
    return Request(request_id=rid, prompt_token_ids=[3 + (i % 50) for i in range(prompt)], sampling_params=params,
                   pooling_params=None)


def runner_output(scheduler, output, sampled: dict[str, bool]) -> ModelRunnerOutput:
    ids = list(output.num_scheduled_tokens)
    return ModelRunnerOutput(req_ids=ids, req_id_to_index={rid: i for i, rid in enumerate(ids)},
                             sampled_token_ids=[[SAMPLED_TOKEN] if sampled[rid] else [] for rid in ids])


def drive(scheduler, workload, *, overlap: bool, max_steps: int = 500) -> list[dict[str, int]]:
    """Add every request, then step until all finish; with `overlap` the next step is scheduled
    before the previous step's output is fed back (one step in flight). Returns each step's
    tokens per request."""
    for rid, prompt, max_tokens in workload:
        scheduler.add_request(request(rid, prompt, max_tokens))
    in_flight: deque = deque()
    steps = []
    while scheduler.has_unfinished_requests() or in_flight:
        assert len(steps) < max_steps, "no progress"
        if scheduler.has_unfinished_requests():
            output = scheduler.schedule()
            # a step samples a token for every request whose scheduled tokens reach the end of its prompt
            sampled = {rid: not scheduler.requests[rid].is_prefill_chunk for rid in output.num_scheduled_tokens}
            in_flight.append((output, sampled))
            steps.append(dict(output.num_scheduled_tokens))
        if len(in_flight) > int(overlap) or not scheduler.has_unfinished_requests():
            output, sampled = in_flight.popleft()
            scheduler.update_from_output(output, runner_output(scheduler, output, sampled))
    return steps


# prompts longer than the budget (chunked), short and long outputs, more requests than fit at once
WORKLOAD = [("a", 64, 3), ("b", 100, 5), ("c", 20, 1), ("d", 70, 4), ("e", 33, 6), ("f", 90, 2)]


def test_async_scheduling_builds_the_async_bridge(model_dir):
    assert isinstance(build(SloScheduler, model_dir, async_scheduling=True), AsyncSloScheduler)
    plain = build(SloScheduler, model_dir, async_scheduling=False)
    assert type(plain) is SloScheduler and not isinstance(plain, AsyncScheduler)


@pytest.mark.parametrize("budget", [64, 128])
def test_async_fcfs_schedules_exactly_what_vllms_async_scheduler_does(model_dir, budget):
    ours = build(SloScheduler, model_dir, async_scheduling=True, budget=budget)
    theirs = build(AsyncScheduler, model_dir, async_scheduling=True, budget=budget)
    our_steps = drive(ours, WORKLOAD, overlap=True)
    their_steps = drive(theirs, WORKLOAD, overlap=True)
    assert our_steps == their_steps
    assert ours.plan_deviations == 0 and ours.engine_preemptions == 0
    # every request got exactly max_tokens tokens, stamped by the bridge
    for rid, _, max_tokens in WORKLOAD:
        assert len(ours.book.token_times[ours.book.row(ours.book.slot_of[ours.book.ids.index(rid)])]) == max_tokens


def test_a_request_whose_prompt_is_in_flight_decodes_next_step(model_dir):
    """a's whole prompt fills step 1; step 2 is scheduled before a's first token comes back. vLLM
    gives a its next decode token and b the rest of the budget; the plan must see a as decoding
    (no phantom prefill token) and fill the step the same way."""
    sched = build(SloScheduler, model_dir, async_scheduling=True, budget=64)
    sched.add_request(request("a", 64, 4))
    sched.add_request(request("b", 80, 4))
    first = sched.schedule()
    assert first.num_scheduled_tokens == {"a": 64}
    second = sched.schedule()
    assert second.num_scheduled_tokens == {"a": 1, "b": 63}
    assert sched.plan_deviations == 0


def test_a_request_finishing_in_flight_leaves_the_plan(model_dir):
    """c's only token is in flight: vLLM will not schedule c again, so the plan must not count
    it (it would take a seat and a token the step never runs)."""
    sched = build(AsyncSloScheduler, model_dir, async_scheduling=True, budget=64, max_num_seqs=2)
    sched.add_request(request("c", 20, 1))
    sched.add_request(request("d", 30, 3))
    sched.add_request(request("e", 30, 3))
    assert sched.schedule().num_scheduled_tokens == {"c": 20, "d": 30}
    second = sched.schedule()  # c is done in flight: d decodes and e takes the free seat
    assert second.num_scheduled_tokens == {"d": 1, "e": 30}
    assert sched.plan_deviations == 0


def test_async_step_log_counts_each_step_once(model_dir):
    sched = build(SloScheduler, model_dir, async_scheduling=True, budget=64)
    steps = [s for s in drive(sched, WORKLOAD, overlap=True) if s]  # a step may run nothing: no log row
    log = sched.log.arrays()
    assert len(sched.log) == len(steps)
    assert log["tokens"].tolist() == [sum(s.values()) for s in steps]
    assert int(log["prefill_tokens"].sum()) == sum(p for _, p, _ in WORKLOAD)
    # every output token after a request's first comes from a one-token decode step
    assert int(log["decode_seqs"].sum()) == sum(m - 1 for _, _, m in WORKLOAD)
    assert (log["end"] >= log["start"]).all()


def test_sync_bridge_fed_without_overlap_matches_vllm(model_dir):
    ours = drive(build(SloScheduler, model_dir, async_scheduling=False), WORKLOAD, overlap=False)
    theirs = drive(build(Scheduler, model_dir, async_scheduling=False), WORKLOAD, overlap=False)
    assert ours == theirs


@pytest.mark.parametrize(("kwargs", "named"), [
    (dict(prefill_schedule_interval=2), "prefill_schedule_interval=2"),
    (dict(logits_processors=()), VALIDATOR),
    (dict(runner="pooling"), "pooling runners"),
])
def test_unsupported_settings_are_refused_at_construction(model_dir, kwargs, named):
    with pytest.raises(ValidationError) as err:
        build(SloScheduler, model_dir, async_scheduling=False, **kwargs)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_vllm_033_interface(model_dir):
    sched = build(SloScheduler, model_dir, async_scheduling=True)
    sched.add_request(request("a", 20, 2))
    assert sched.has_request("a") and not sched.has_request("zz")
    assert sched.schedule(False).num_scheduled_tokens == {"a": 20}  # throttle_prefills, positional


def test_update_from_output_ignores_a_request_the_bridge_never_registered(model_dir):
    sched = build(SloScheduler, model_dir, async_scheduling=False)
    Scheduler.add_request(sched, request("stranger", 20, 2))  # bypasses the bridge's add_request
    output = Scheduler.schedule(sched)
    sched.update_from_output(output, runner_output(sched, output, {"stranger": True}))
    assert sched.requests["stranger"].num_output_tokens == 1
    assert sched.book.ids == []


@pytest.mark.parametrize(("slo", "named"), [
    ({"class": "latncy"}, "class='latncy'"),
    ({"class": "latency", "ttft_target": -1, "read_rate": 5}, "ttft_target=-1"),
    ({"class": "throughput"}, "deadline"),
    ("{not json", "not JSON"),
])
def test_validator_rejects_malformed_slos_before_the_engine(slo, named):
    raw = slo if isinstance(slo, str) else json.dumps(slo)
    with pytest.raises(VLLMValidationError, match=named.replace("(", r"\(")):
        SloArgsValidator.validate_params(SamplingParams(extra_args={"slosched": raw}))
    SloArgsValidator.validate_params(SamplingParams(extra_args={"slosched": json.dumps(
        {"class": "latency", "ttft_target": 1.0, "read_rate": 5.0})}))
    SloArgsValidator.validate_params(SamplingParams())  # no SLO: an unmanaged request
