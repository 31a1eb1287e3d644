"""Request content ids: JSON round trip, validation, and block keys that share exactly what the
tokens they describe share."""

from __future__ import annotations

import random

import pytest

from engine_adapter.simulator.content_keys import ContentKeys
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.requests import Request, RequestClass, ValidationError

ENGINE = EngineSpec(kv_blocks=1000, latency=LatencyModel(c0=0.01, c_prefill=0.0, c_decode=0.0, c_ctx=0.0), block_size=4)


def request(rid: str, prompt: int, output: int, ids=None, block=None) -> Request:
    return Request(id=rid, cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=prompt, output_len=output,
                   slack_ratio=2.0, content_ids=ids, content_block=block)


def test_json_round_trip_keeps_content_and_omits_it_when_absent(tmp_path) -> None:
    inst = Instance(ENGINE, (request("a", 10, 3, (7, 8, 9), 5), request("b", 4, 2)))
    path = tmp_path / "i.json"
    inst.to_json(path)
    back = Instance.from_json(path)
    assert back.requests == inst.requests
    assert "content_ids" not in inst.to_dict()["requests"][1]


@pytest.mark.parametrize("ids, block, match", [
    ((1, 2), None, "go together"),
    (None, 4, "go together"),
    ((1, 2), 0, "content_block=0"),
    ((1, "x"), 4, "tuple of integers"),
    ((1, 2, 3, 4), 4, "at most 3 blocks"),
])
def test_bad_content_is_rejected_naming_the_field(ids, block, match) -> None:
    with pytest.raises(ValidationError, match=match):
        Instance(ENGINE, (request("a", 8, 4, ids, block),))


def token_keys(tokens: list[int], bs: int, table: dict) -> list[int]:
    """vLLM's rule: chained keys of full blocks of tokens."""
    keys, prev = [], -1
    for j in range(len(tokens) // bs):
        prev = table.setdefault((prev, tuple(tokens[j * bs:(j + 1) * bs])), len(table))
        keys.append(prev)
    return keys


@pytest.mark.parametrize("seed", range(20))
def test_keys_share_exactly_what_the_described_tokens_share(seed: int) -> None:
    """Tokens realizing the ids (token = f(id, offset); uncovered tokens unique) give equal
    token-chain keys exactly where ContentKeys gives equal keys, for any content block size."""
    rng = random.Random(seed)
    bs, per_id = rng.choice([(4, 4), (4, 8), (4, 6), (8, 4), (4, 1)])
    roots = [[rng.randrange(5) for _ in range(rng.randint(0, 6))] for _ in range(3)]
    requests, tokens, counter = [], [], iter(range(10**6, 10**7))
    for i in range(8):
        total = rng.randint(1, 40)
        ids = tuple((rng.choice(roots) + [rng.randrange(5) for _ in range(8)])[: rng.randint(0, -(-total // per_id))])
        requests.append(request(f"r{i}", max(total - 3, 1), total - max(total - 3, 1) or 1, ids, per_id))
        total = requests[-1].prompt_len + requests[-1].output_len
        toks = [ids[t // per_id] * 1000 + t % per_id if t < len(ids) * per_id else next(counter) for t in range(total)]
        tokens.append(toks)
    keys = ContentKeys(tuple(requests), bs)
    table: dict = {}
    expect = [token_keys(t, bs, table) for t in tokens]
    got = [keys.of(i) for i in range(len(requests))]
    pairs = [(a, j, b, k) for a in range(8) for b in range(8) for j in range(len(got[a])) for k in range(len(got[b]))]
    assert all(len(g) == len(e) for g, e in zip(got, expect, strict=True))
    for a, j, b, k in pairs:
        assert (got[a][j] == got[b][k]) == (expect[a][j] == expect[b][k]), (a, j, b, k)
