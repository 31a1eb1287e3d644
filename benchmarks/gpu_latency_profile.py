"""Measure a decoder stack's iteration latency and write it as a slosched latency profile.

Standalone on purpose (torch and the standard library only): a lent GPU machine has torch but
neither vLLM nor slosched's dependencies, and cannot install packages. Copy this one file there.

It builds a Llama-style decoder with random weights (RMSNorm, GQA attention via
scaled_dot_product_attention, SwiGLU MLP, LM head on each sequence's last token) and times whole
iterations of continuous batching over a grid: prefill chunks (tokens x start position) alone,
decode batches (sequences x context) alone, and mixes of both. Then it fits the iteration latency
model of formulations/latency_model.py,

    t = c0 + c_prefill * prefill_tokens + c_prefill_ctx * prefill_pairs
           + c_decode * decode_seqs + c_ctx * decode_ctx_tokens

by non-negative least squares on relative error (steps span milliseconds to a second; an
absolute fit would ignore the short decode steps that dominate serving), and writes the
formulations/profiles/*.toml format. No paged KV cache: each layer reads its own contiguous K/V
(one buffer shared by the layers, far larger than any cache, so every layer's read is a real
memory read), which is the roofline a paged kernel approaches. No CUDA graphs either: decode
steps carry eager launch overhead, so c0 is an upper bound for a graph-captured engine.

On the lent H200 (torch only), from a checkout or with just this file:

    python benchmarks/gpu_latency_profile.py --preset llama3-8b --dtype bf16 --device cuda \\
        --name llama3-8b-h200 --out formulations/profiles/llama3-8b-h200.toml

(a few minutes; `--grid quick` for a smoke run). On CPU with the tiny shape (what the test runs):

    python benchmarks/gpu_latency_profile.py --preset tiny --device cpu --dtype fp32 --grid quick \\
        --kv-blocks 512 --name tiny-cpu --out /tmp/tiny-cpu.toml
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def kv_bytes_per_token(self, dtype: torch.dtype) -> int:
        """K and V of one token across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.finfo(dtype).bits // 8

    def weight_count(self) -> int:
        attn = self.hidden * (self.heads + 2 * self.kv_heads) * self.head_dim + self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attn + mlp + 2 * self.hidden) + 2 * self.vocab * self.hidden


PRESETS = {
    # Meta-Llama-3-8B's config.json shapes
    "llama3-8b": Shape(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256),
    "tiny": Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=256),
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Step:
    """One iteration: a prefill chunk of `prefill` tokens starting at `start` (0 = none), plus
    `decode` sequences each with `context` tokens already in KV."""

    prefill: int
    start: int
    decode: int
    context: int

    def features(self) -> tuple[float, float, float, float, float]:
        """(1, prefill_tokens, decode_seqs, decode_ctx_tokens, prefill_pairs), as the bridge logs
        them: a decode token at position `context` reads context + 1 tokens."""
        pairs = self.prefill * self.start + self.prefill * (self.prefill + 1) // 2
        return 1.0, float(self.prefill), float(self.decode), float(self.decode * (self.context + 1)), float(pairs)


GRIDS = {
    "full": dict(prefill=(32, 128, 256, 512, 1024, 2048, 4096, 8192), start=(0, 2048, 6144),
                 decode=(1, 8, 32, 64, 128, 256), context=(128, 512, 1024, 2048, 4096),
                 mixed=((256, 32, 1024), (512, 64, 1024), (1024, 128, 512), (2048, 16, 2048))),
    "quick": dict(prefill=(16, 64, 256), start=(0, 256), decode=(1, 4, 16), context=(32, 128),
                  mixed=((64, 4, 64), (128, 8, 32))),
}


def grid_steps(grid: dict, max_len: int) -> list[Step]:
    steps = [Step(p, s, 0, 0) for p, s in itertools.product(grid["prefill"], grid["start"]) if p + s <= max_len]
    steps += [Step(0, 0, b, c) for b, c in itertools.product(grid["decode"], grid["context"])]
    steps += [Step(p, 0, b, c) for p, b, c in grid["mixed"]]
    return steps


class Decoder:
    """Random-weight Llama layers; `iteration` runs one mixed batch through all of them."""

    def __init__(self, shape: Shape, dtype: torch.dtype, device: str, max_kv_tokens: int, seed: int) -> None:
        gen = torch.Generator(device=device).manual_seed(seed)
        self.shape, self.dtype, self.device = shape, dtype, device

        def weight(*size: int) -> torch.Tensor:
            return (torch.randn(*size, generator=gen, device=device, dtype=torch.float32) * 0.02).to(dtype)

        d, hd = shape.hidden, shape.head_dim
        self.layers = [dict(qkv=weight(d, (shape.heads + 2 * shape.kv_heads) * hd), o=weight(shape.heads * hd, d),
                            gate_up=weight(d, 2 * shape.intermediate), down=weight(shape.intermediate, d),
                            norm1=torch.ones(d, device=device, dtype=dtype), norm2=torch.ones(d, device=device, dtype=dtype))
                       for _ in range(shape.layers)]
        self.embed = weight(shape.vocab, d)
        self.lm_head = weight(d, shape.vocab)
        # one K/V buffer the layers share: (2, kv_heads, tokens, head_dim)
        self.kv = weight(2, shape.kv_heads, max_kv_tokens, hd)

    def iteration(self, step: Step) -> torch.Tensor:
        s = self.shape
        n = step.prefill + step.decode
        ids = torch.randint(0, s.vocab, (n,), device=self.device)
        x = self.embed[ids]
        for layer in self.layers:
            h = F.rms_norm(x, (s.hidden,), layer["norm1"])
            q, k, v = (h @ layer["qkv"]).split([s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], -1)
            x = x + self._attention(step, q, k, v) @ layer["o"]
            h = F.rms_norm(x, (s.hidden,), layer["norm2"])
            gate, up = (h @ layer["gate_up"]).chunk(2, -1)
            x = x + (F.silu(gate) * up) @ layer["down"]
        last = [step.prefill - 1] if step.prefill else []
        rows = torch.tensor(last + list(range(step.prefill, n)), device=self.device)
        return (x[rows] @ self.lm_head).argmax(-1)  # greedy sampling of each sequence's next token

    def _attention(self, step: Step, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        s, hd = self.shape, self.shape.head_dim
        out = []
        if step.prefill:
            p, start = step.prefill, step.start
            qp = q[:p].view(p, s.heads, hd).transpose(0, 1).unsqueeze(0)
            cached_k, cached_v = self.kv[0, :, :start], self.kv[1, :, :start]
            kp = torch.cat([cached_k, k[:p].view(p, s.kv_heads, hd).transpose(0, 1)], 1).unsqueeze(0)
            vp = torch.cat([cached_v, v[:p].view(p, s.kv_heads, hd).transpose(0, 1)], 1).unsqueeze(0)
            # causal with an offset: query i (position start + i) sees keys 0 .. start + i
            mask = torch.ones(p, start + p, dtype=torch.bool, device=self.device).tril(start)
            out.append(F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, enable_gqa=True)
                       .squeeze(0).transpose(0, 1).reshape(p, s.heads * hd))
        if step.decode:
            b, c = step.decode, step.context
            qd = q[step.prefill:].view(b, s.heads, 1, hd)
            kd = self.kv[0, :, : b * c].view(s.kv_heads, b, c, hd).transpose(0, 1)
            vd = self.kv[1, :, : b * c].view(s.kv_heads, b, c, hd).transpose(0, 1)
            out.append(F.scaled_dot_product_attention(qd, kd, vd, enable_gqa=True).reshape(b, s.heads * hd))
        return torch.cat(out) if len(out) > 1 else out[0]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def measure(model: Decoder, steps: list[Step], warmup: int, repeats: int, progress=print) -> list[float]:
    """Median seconds of each step (each timed `repeats` times after `warmup` untimed runs)."""
    seconds = []
    for i, step in enumerate(steps):
        for _ in range(warmup):
            model.iteration(step)
        synchronize(model.device)
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            model.iteration(step)
            synchronize(model.device)
            times.append(time.perf_counter() - began)
        seconds.append(statistics.median(times))
        progress(f"[{i + 1}/{len(steps)}] {step} {1e3 * seconds[-1]:.3f} ms")
    return seconds


def nnls(rows: list[tuple[float, ...]], y: list[float]) -> list[float]:
    """Non-negative least squares, exact for a handful of columns: the best unconstrained fit over
    every subset of columns, keeping the subsets whose coefficients are all >= 0 (the optimum is
    the unconstrained fit on its own support). Columns are scaled to [0, 1] for a stable solve."""
    a = torch.tensor(rows, dtype=torch.float64)
    b = torch.tensor(y, dtype=torch.float64).unsqueeze(1)
    scale = a.abs().max(0).values.clamp_min(1e-300)
    a = a / scale
    best, best_err = torch.zeros(a.shape[1], dtype=torch.float64), float(b.square().sum())
    for size in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), size):
            sub = a[:, list(cols)]
            coef = torch.linalg.lstsq(sub, b, driver="gelsd").solution.squeeze(1)
            if bool((coef < 0).any()):
                continue
            err = float((sub @ coef.unsqueeze(1) - b).square().sum())
            if err < best_err - 1e-15 * max(best_err, 1.0):
                best_err = err
                best = torch.zeros(a.shape[1], dtype=torch.float64)
                best[list(cols)] = coef
    return (best / scale).tolist()


COEFFICIENTS = ("c0", "c_prefill", "c_decode", "c_ctx", "c_prefill_ctx")  # the order of Step.features()


def fit(steps: list[Step], seconds: list[float]) -> tuple[dict[str, float], float, float]:
    """Coefficients minimizing the squared *relative* error; returns them, the median and the p90
    relative error over the measured steps."""
    rows = [tuple(f / t for f in s.features()) for s, t in zip(steps, seconds, strict=True)]
    coef = nnls(rows, [1.0] * len(rows))
    errors = sorted(abs(sum(c * f for c, f in zip(coef, s.features(), strict=True)) - t) / t
                    for s, t in zip(steps, seconds, strict=True))
    p90 = errors[min(len(errors) - 1, math.ceil(0.9 * len(errors)) - 1)]
    return dict(zip(COEFFICIENTS, coef, strict=True)), statistics.median(errors), p90


def swap_seconds_per_block(block_bytes: int, device: str, dtype: torch.dtype) -> float:
    """One KV block each way between device and (pinned) host memory, timed over 64 blocks."""
    if not device.startswith("cuda"):
        return 0.0
    count = 64
    on_device = torch.empty(count * block_bytes // (torch.finfo(dtype).bits // 8), dtype=dtype, device=device)
    host = torch.empty(on_device.shape, dtype=dtype, pin_memory=True)
    host.copy_(on_device)
    synchronize(device)
    began = time.perf_counter()
    host.copy_(on_device)
    on_device.copy_(host)
    synchronize(device)
    return (time.perf_counter() - began) / (2 * count)


def kv_blocks_available(shape: Shape, dtype: torch.dtype, device: str, block_bytes: int, requested: int | None) -> int:
    """What a vLLM-like engine would get at gpu_memory_utilization 0.9: 90% of the device memory
    minus the weights and a 4 GiB activation reserve."""
    if requested is not None:
        return requested
    if not device.startswith("cuda"):
        raise SystemExit("--kv-blocks is required off CUDA (no device memory to size the KV pool from)")
    total = torch.cuda.get_device_properties(device).total_memory
    weights = shape.weight_count() * torch.finfo(dtype).bits // 8
    return int((0.9 * total - weights - 4 * 2**30) // block_bytes)


def toml_text(name: str, source: str, coef: dict[str, float], engine: dict[str, float | int], comments: list[str]) -> str:
    lines = [f"# {c}" for c in comments] + [f"source = {source!r}".replace("'", '"'), "", "[latency]"]
    lines += [f"{k} = {coef[k]:.6e}" for k in COEFFICIENTS]
    lines += ["", "[engine]"] + [f"{k} = {v!r}" if isinstance(v, int) else f"{k} = {v:.6e}" for k, v in engine.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="llama3-8b")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--max-seqs", type=int, default=256)
    parser.add_argument("--kv-blocks", type=int, default=None, help="KV pool size (default on CUDA: sized from memory)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True, help="the profile's name (formulations/profiles/<name>.toml)")
    parser.add_argument("--out", required=True, help="where to write the TOML profile")
    args = parser.parse_args(argv)

    shape, dtype = PRESETS[args.preset], DTYPES[args.dtype]
    grid = GRIDS[args.grid]
    steps = grid_steps(grid, max_len=args.token_budget + max(grid["start"]))
    max_kv = max(max(s.start for s in steps), max(s.decode * s.context for s in steps))
    torch.manual_seed(args.seed)
    model = Decoder(shape, dtype, args.device, max_kv, args.seed)
    seconds = measure(model, steps, args.warmup, args.repeats, progress=lambda m: print(m, file=sys.stderr))
    coef, median_err, p90_err = fit(steps, seconds)
    block_bytes = args.block_size * shape.kv_bytes_per_token(dtype)
    engine = dict(kv_blocks=kv_blocks_available(shape, dtype, args.device, block_bytes, args.kv_blocks),
                  block_size=args.block_size, token_budget=args.token_budget, max_seqs=args.max_seqs,
                  swap_time_per_block=swap_seconds_per_block(block_bytes, args.device, dtype))
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    comments = [f"{args.preset} shapes {shape}, random weights, {args.dtype}, on {device_name} (torch {torch.__version__}).",
                f"Measured by benchmarks/gpu_latency_profile.py --preset {args.preset} --dtype {args.dtype} "
                f"--grid {args.grid}: {len(steps)} iteration shapes, median of {args.repeats} runs each.",
                f"Relative-error NNLS fit: median {median_err:.1%}, p90 {p90_err:.1%} over the measured steps.",
                "Eager PyTorch (no CUDA graphs, contiguous KV): c0 is an upper bound for a graph-captured engine."]
    text = toml_text(args.name, f"measured: {args.preset} {args.dtype} on {device_name}", coef, engine, comments)
    with open(args.out, "w") as out:
        out.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
