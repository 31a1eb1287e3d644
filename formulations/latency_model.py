"""Iteration latency model: how long one continuous-batching iteration takes.

    t = c0 + c_prefill * prefill_tokens + c_prefill_ctx * prefill_context_pairs
           + c_decode * decode_seqs + c_ctx * decode_context_tokens

`prefill_context_pairs` counts (prefill token, earlier token) attention pairs: a chunk of c tokens
starting at position p has c*p + c*(c+1)/2 of them. That quadratic term matters for long prompts
(about 20% of an 8k-token prefill on an 8B model) and is negligible below 1k tokens.

Named profiles live as TOML files in `formulations/profiles/` (each cites where its numbers come
from); users load their own with `load_profile(path)`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from formulations.requests import ValidationError

PROFILE_DIR = resources.files("formulations") / "profiles"


@dataclass(frozen=True)
class LatencyModel:
    c0: float  # seconds per iteration (weights read, launch overhead)
    c_prefill: float  # seconds per prefill token
    c_decode: float  # seconds per decoding sequence
    c_ctx: float  # seconds per context token read by decode attention
    c_prefill_ctx: float = 0.0  # seconds per prefill attention pair
    name: str = "custom"
    source: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "source"):
                continue
            if isinstance(value, bool) or not isinstance(value, float | int) or not math.isfinite(value) or value < 0:
                raise ValidationError(f"latency model {self.name!r}: {f.name}={value!r} must be a number >= 0")

    def iteration_time(
        self,
        prefill_tokens: float,
        decode_seqs: float,
        decode_ctx_tokens: float,
        prefill_ctx_pairs: float = 0.0,
    ) -> float:
        return (
            self.c0
            + self.c_prefill * prefill_tokens
            + self.c_prefill_ctx * prefill_ctx_pairs
            + self.c_decode * decode_seqs
            + self.c_ctx * decode_ctx_tokens
        )


def prefill_pairs(start: int, chunk: int) -> int:
    """Attention pairs of a prefill chunk of `chunk` tokens starting at position `start`."""
    return chunk * start + chunk * (chunk + 1) // 2


@dataclass(frozen=True)
class Profile:
    """A named hardware/model profile: latency coefficients plus the engine defaults it implies."""

    latency: LatencyModel
    kv_blocks: int
    block_size: int
    token_budget: int
    max_seqs: int
    swap_time_per_block: float


def available_profiles() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in PROFILE_DIR.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a built-in profile by name, or a user's TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text = path.read_text()
        name = path.stem
    else:
        name = str(name_or_path)
        candidate = PROFILE_DIR / f"{name}.toml"
        if not candidate.is_file():
            raise ValidationError(
                f"unknown latency profile {name!r}; valid: {', '.join(available_profiles())} or a path to a .toml file"
            )
        text = candidate.read_text()
    data = tomllib.loads(text)
    try:
        lat = data["latency"]
        eng = data["engine"]
        latency = LatencyModel(
            c0=float(lat["c0"]),
            c_prefill=float(lat["c_prefill"]),
            c_decode=float(lat["c_decode"]),
            c_ctx=float(lat["c_ctx"]),
            c_prefill_ctx=float(lat.get("c_prefill_ctx", 0.0)),
            name=name,
            source=str(data.get("source", "")),
        )
        return Profile(
            latency=latency,
            kv_blocks=int(eng["kv_blocks"]),
            block_size=int(eng["block_size"]),
            token_budget=int(eng["token_budget"]),
            max_seqs=int(eng["max_seqs"]),
            swap_time_per_block=float(eng.get("swap_time_per_block", 0.0)),
        )
    except KeyError as missing:
        raise ValidationError(f"latency profile {name!r}: missing key {missing}") from None
