"""What the vLLM bridge refuses, and the frontend check that keeps one bad request from killing a server.

Two kinds of failure must never reach vLLM's engine core, where any exception is fatal (the core
process exits, every client gets EngineDeadError):
- engine settings under which the plan's token and KV accounting cannot hold: refused when the
  scheduler is built (`unsupported_settings`), one line naming each setting;
- a malformed per-request SLO: refused in the *frontend*, before the request is sent to the core,
  by `SloArgsValidator.validate_params`. vLLM 0.32 runs every custom logits processor's
  `validate_params` on each request's SamplingParams in its input processor (the same path for the
  OpenAI server and the offline `LLM`/`LLMEngine`) and turns the ValueError into HTTP 400. That is
  why this check is a logits processor: it is the one per-request hook that vLLM runs before the
  engine core and maps to a client error; an ASGI `--middleware` would re-parse HTTP bodies and
  cover the server only. It changes no logits (argmax-invariant, `apply` returns its input).
  The scheduler refuses to start without it, so the check cannot be forgotten.
"""

from __future__ import annotations

import torch
from vllm.config import VllmConfig
from vllm.exceptions import VLLMValidationError
from vllm.sampling_params import SamplingParams
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, MLAAttentionSpec, UniformTypeKVCacheSpecs
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor

from engine_adapter.slo_args import parse_slo_args
from formulations.requests import ValidationError

VALIDATOR = "engine_adapter.vllm_checks:SloArgsValidator"  # --logits-processors / EngineArgs(logits_processors=[...])


class SloArgsValidator(LogitsProcessor):
    """Rejects a request whose `extra_args["slosched"]` is malformed before it reaches the engine."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        try:
            # the id and clock are the scheduler's; only the entry's shape is checked here
            parse_slo_args(sampling_params.extra_args, "<frontend>", 0.0)
        except ValidationError as err:
            raise VLLMValidationError(str(err)) from None

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        pass

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def is_argmax_invariant(self) -> bool:
        return True

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        pass


def _validator_installed(vllm_config: VllmConfig) -> bool:
    for proc in vllm_config.model_config.logits_processors or ():
        if proc is SloArgsValidator or proc == VALIDATOR:
            return True
    return False


def unsupported_settings(vllm_config: VllmConfig) -> list[str]:
    """Settings beyond those of the synchronous bridge's own checks that the plan cannot honour."""
    problems = []
    model = vllm_config.model_config
    sched = vllm_config.scheduler_config
    if model.runner_type == "pooling":
        problems.append("pooling runners are not supported (requests carry no sampling, the plan decodes)")
    if not sched.enable_chunked_prefill:
        problems.append("enable_chunked_prefill must be True (the plan chunks prefills)")
    if sched.prefill_schedule_interval > 1:
        problems.append(f"prefill_schedule_interval={sched.prefill_schedule_interval} must be 1: DP prefill throttling "
                        "defers prefills the plan has admitted")
    if vllm_config.parallel_config.pipeline_parallel_size > 1:
        problems.append("pipeline parallelism is not supported (decode cadence across micro-batches is not modelled)")
    if model.runner_type != "pooling" and not _validator_installed(vllm_config):
        problems.append(f"add --logits-processors {VALIDATOR} (it rejects a malformed per-request SLO with HTTP 400 "
                        "before the engine core, which would otherwise die on it)")
    return problems



# the KV specs whose blocks follow the plan's rule: ceil(tokens in cache / block_size) per request,
# all kept until the request leaves (FullAttentionSpec's subclasses that evict or add blocks differ)
_PLAIN_SPECS = (FullAttentionSpec, MLAAttentionSpec)


def _spec_names(spec) -> list[str]:
    if isinstance(spec, UniformTypeKVCacheSpecs):
        return sorted({name for inner in spec.kv_cache_specs.values() for name in _spec_names(inner)})
    return [type(spec).__name__]


def kv_cache_problems(kv_cache_config: KVCacheConfig) -> list[str]:
    """A KV cache whose block accounting is not the plan's: anything but one group of full
    attention. A hybrid model (sliding-window, chunked-local or Mamba layers beside full
    attention) gets one group per kind of layer, each holding its own blocks per request and
    freeing some early, so neither a request's blocks nor the free pool match the plan's counts."""
    groups = kv_cache_config.kv_cache_groups
    names = [_spec_names(g.kv_cache_spec) for g in groups]
    if len(groups) == 1 and all(n in {c.__name__ for c in _PLAIN_SPECS} for n in names[0]):
        return []
    found = ", ".join("+".join(n) for n in names) or "none"
    return [f"the KV cache must be one group of full attention, found {len(groups)} group(s) ({found}): a hybrid or "
            "attention-free model's KV blocks per request are not the plan's ceil(tokens / block_size)"]
