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
from vllm.utils.hashing import get_hash_fn_by_name  # noqa: E402
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash  # noqa: E402
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec, SlidingWindowSpec  # noqa: E402
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


FULL = FullAttentionSpec(block_size=BLOCK, num_kv_heads=1, head_size=1, dtype=torch.float32)


def build(cls, model_dir: str, *, async_scheduling: bool, max_num_seqs: int = 8, budget: int = 64, blocks: int = 200,
          logits_processors=(VALIDATOR,), runner: str = "auto", prefix_caching: bool = False, kv_specs=(FULL,),
          **scheduler_kwargs):
    scheduler_config = SchedulerConfig(
        max_num_seqs=max_num_seqs, max_num_batched_tokens=budget, max_model_len=512, enable_chunked_prefill=True,
        is_encoder_decoder=False, scheduler_reserve_full_isl=False, **scheduler_kwargs)
    model_config = ModelConfig(model=model_dir, skip_tokenizer_init=True, dtype="float32", seed=0, runner=runner,
                               logits_processors=list(logits_processors))
    cache_config = CacheConfig(block_size=BLOCK, enable_prefix_caching=prefix_caching)
    vllm_config = VllmConfig(scheduler_config=scheduler_config, model_config=model_config, cache_config=cache_config,
                             additional_config={"slosched": {"policy": "fcfs"}})
    vllm_config.scheduler_config.async_scheduling = async_scheduling  # the CPU platform turned it off
    cache_config.num_gpu_blocks = blocks
    kv_cache_config = KVCacheConfig(num_blocks=blocks, kv_cache_tensors=[], kv_cache_groups=[
        KVCacheGroupSpec([f"layer{k}"], spec) for k, spec in enumerate(kv_specs)])
    return cls(vllm_config=vllm_config, kv_cache_config=kv_cache_config, block_size=BLOCK, log_stats=False,
               structured_output_manager=StructuredOutputManager(vllm_config))


def block_hasher(scheduler):
    """The block hasher EngineCore gives each request when prefix caching is on (None otherwise)."""
    if not scheduler.cache_config.enable_prefix_caching:
        return None
    hash_fn = get_hash_fn_by_name(scheduler.cache_config.prefix_caching_hash_algo)
    init_none_hash(hash_fn)
    return get_request_block_hasher(BLOCK, hash_fn)


def request(rid: str, prompt: int, max_tokens: int, slo: dict | None = None, scheduler=None) -> Request:
    """`scheduler`: the one it is for, when that one caches prefixes (its requests carry block hashes)."""
    extra = {"slosched": json.dumps(slo)} if slo is not None else None
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, extra_args=extra)
    return Request(request_id=rid, prompt_token_ids=[3 + (i % 50) for i in range(prompt)], sampling_params=params,
                   pooling_params=None, block_hasher=None if scheduler is None else block_hasher(scheduler))


def runner_output(scheduler, output, sampled: dict[str, bool]) -> ModelRunnerOutput:
    ids = list(output.num_scheduled_tokens)
    return ModelRunnerOutput(req_ids=ids, req_id_to_index={rid: i for i, rid in enumerate(ids)},
                             sampled_token_ids=[[SAMPLED_TOKEN] if sampled[rid] else [] for rid in ids])


def drive(scheduler, workload, *, overlap: bool, max_steps: int = 500) -> list[dict[str, int]]:
    """Add every request, then step until all finish; with `overlap` the next step is scheduled
    before the previous step's output is fed back (one step in flight). Returns each step's
    tokens per request."""
    for rid, prompt, max_tokens in workload:
        scheduler.add_request(request(rid, prompt, max_tokens, scheduler=scheduler))
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


SLIDING = SlidingWindowSpec(block_size=BLOCK, num_kv_heads=1, head_size=1, dtype=torch.float32, sliding_window=64)


@pytest.mark.parametrize("kv_specs", [(FULL, SLIDING), (SLIDING,)], ids=["hybrid", "sliding-only"])
@pytest.mark.parametrize("async_scheduling", [False, True])
def test_a_hybrid_kv_cache_is_refused_at_construction(model_dir, kv_specs, async_scheduling):
    """One KV cache group per kind of layer, some freeing blocks outside their window: a request's
    blocks and the free pool are not the plan's ceil(tokens / block_size) per request."""
    with pytest.raises(ValidationError) as err:
        build(SloScheduler, model_dir, async_scheduling=async_scheduling, kv_specs=kv_specs)
    message = str(err.value)
    assert "one group of full attention" in message and "SlidingWindowSpec" in message and "\n" not in message
    build(SloScheduler, model_dir, async_scheduling=async_scheduling)  # one full-attention group: accepted


# with prefix caching: every prompt is 3, 4, ..., so any two share their leading full blocks
# (a hit is at most prompt - 1 tokens: vLLM recomputes the last prompt token)
SHARED = [("a", 64, 4), ("b", 80, 3), ("c", 40, 5), ("d", 100, 2), ("e", 64, 6), ("f", 20, 3)]


def hit_tokens(workload, steps) -> int:
    """Prompt tokens never scheduled (prefix-cache hits), when nothing was preempted."""
    return sum(p + m - 1 for _, p, m in workload) - sum(sum(s.values()) for s in steps)


@pytest.mark.parametrize("budget", [64, 128])
def test_async_fcfs_with_prefix_caching_schedules_exactly_what_vllms_async_scheduler_does(model_dir, budget):
    ours = build(SloScheduler, model_dir, async_scheduling=True, budget=budget, prefix_caching=True)
    theirs = build(AsyncScheduler, model_dir, async_scheduling=True, budget=budget, prefix_caching=True)
    our_steps = drive(ours, SHARED, overlap=True)
    assert our_steps == drive(theirs, SHARED, overlap=True)
    assert ours.plan_deviations == 0 and ours.engine_preemptions == 0
    assert hit_tokens(SHARED, our_steps) >= 5 * 16, "later requests must hit the shared prefix"
    for rid, _, max_tokens in SHARED:  # no phantom or lost token: exactly max_tokens each
        assert len(ours.book.token_times[ours.book.ids.index(rid)]) == max_tokens


def test_async_with_prefix_caching_keeps_the_synchronous_schedule(model_dir):
    """Ample KV: overlapping steps change when outputs come back, not what each step runs (a
    prompt in flight decodes next step either way, and its blocks are cached when allocated)."""
    sync = drive(build(SloScheduler, model_dir, async_scheduling=False, prefix_caching=True), SHARED, overlap=False)
    overlapped = build(SloScheduler, model_dir, async_scheduling=True, prefix_caching=True)
    # plus one empty step at the end: e's last token is in flight and nothing is left to schedule
    assert drive(overlapped, SHARED, overlap=True) == sync + [{}]
    assert overlapped.plan_deviations == 0
    assert hit_tokens(SHARED, sync) > 0


def test_a_prefix_in_flight_is_hit_and_its_owner_decodes(model_dir):
    """a's 64-token prompt (4 blocks) fills step 1; b, sharing those 4 blocks, arrives before a's
    output comes back. Step 2: a decodes its in-flight token (no phantom prefill) and b hits the
    blocks step 1 allocated, prefilling only its last 16 tokens, as vLLM's AsyncScheduler does."""
    steps = []
    for cls in (SloScheduler, AsyncScheduler):
        sched = build(cls, model_dir, async_scheduling=True, budget=64, prefix_caching=True)
        sched.add_request(request("a", 64, 4, scheduler=sched))
        first = sched.schedule()
        sched.add_request(request("b", 80, 4, scheduler=sched))
        second = sched.schedule()
        steps.append((first.num_scheduled_tokens, second.num_scheduled_tokens))
        if cls is SloScheduler:
            assert sched.plan_deviations == 0
    assert steps[0] == steps[1] == ({"a": 64}, {"a": 1, "b": 16})


@pytest.mark.parametrize("blocks", [8, 12])
def test_async_with_prefix_caching_under_kv_pressure_matches_vllm(model_dir, blocks):
    """Few blocks: requests wait for KV while others are in flight, requests finish in flight
    (their blocks return only when the output comes back: vLLM then runs an empty step), a request
    is preempted and recomputed, hitting blocks still cached; the bridge's fcfs plan does all of it
    as vLLM's AsyncScheduler does."""
    ours = build(SloScheduler, model_dir, async_scheduling=True, budget=64, blocks=blocks, prefix_caching=True)
    theirs = build(AsyncScheduler, model_dir, async_scheduling=True, budget=64, blocks=blocks, prefix_caching=True)
    our_steps = drive(ours, SHARED, overlap=True)
    assert our_steps == drive(theirs, SHARED, overlap=True)
    assert ours.plan_deviations == 0 and ours.engine_preemptions == 0
    ample = drive(build(SloScheduler, model_dir, async_scheduling=True, budget=64, prefix_caching=True), SHARED,
                  overlap=True)
    assert our_steps != ample, "KV must change the schedule"
    assert sum(map(len, ours.book.preemptions)) > 0, "a request must be preempted and recomputed"
    for rid, _, max_tokens in SHARED:
        assert len(ours.book.token_times[ours.book.ids.index(rid)]) == max_tokens
