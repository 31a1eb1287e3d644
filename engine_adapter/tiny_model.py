"""A tiny random-weight Llama written to a local directory, for tests and CPU demos.

Nothing is downloaded: the directory holds only a `config.json` and vLLM loads it with
`load_format="dummy"` (random weights). Token-id prompts and `skip_tokenizer_init` mean no
tokenizer is needed either. Any local Hugging Face model directory works the same way on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

# 2 layers, hidden 128: a step costs ~2 ms on one CPU core, so tests run thousands of steps.
TINY_LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 32,
    "max_position_embeddings": 2048,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def write_tiny_llama(directory: str | Path) -> Path:
    """Write the tiny model's config to `directory` (created if needed) and return it."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(TINY_LLAMA_CONFIG, indent=1))
    return path


if __name__ == "__main__":  # python -m engine_adapter.tiny_model DIR (the README's server recipe)
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m engine_adapter.tiny_model DIRECTORY")
    print(write_tiny_llama(sys.argv[1]))
