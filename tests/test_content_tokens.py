"""Prompt tokens realizing content ids: equal ids give equal tokens, a later turn repeats the
earlier turn's generated tokens, and asking for them before that turn finished is an error."""

from __future__ import annotations

import pytest

from engine_adapter.content_tokens import ContentTokens
from formulations.engine_spec import EngineSpec
from formulations.instance import Instance
from formulations.latency_model import LatencyModel
from formulations.requests import Request, RequestClass

ENGINE = EngineSpec(kv_blocks=100, latency=LatencyModel(c0=0.01, c_prefill=0.0, c_decode=0.0, c_ctx=0.0), block_size=4)


def req(rid, prompt, output, ids=None):
    return Request(id=rid, cls=RequestClass.THROUGHPUT, arrival=0.0, prompt_len=prompt, output_len=output,
                   slack_ratio=2.0, content_ids=ids, content_block=4 if ids else None)


def test_prompts_share_exactly_the_id_covered_tokens_and_repeat_generated_ones() -> None:
    a = req("a", 6, 4, (1, 2, 3))  # tokens 0-9: ids 1, 2 cover prompt and 2 outputs, id 3 the last 2
    b = req("b", 14, 2, (1, 2, 3, 9))  # repeats a's 10 tokens (and 2 more under id 3), then its own
    c = req("c", 5, 1, (1,))  # shares a's first 4 tokens only
    tokens = ContentTokens(Instance(ENGINE, (a, b, c)), vocab=1024, seed=0)
    pa, pc = tokens.prompt(0), tokens.prompt(2)
    assert pa[:4] == pc[:4] and pa[4] != pc[4]
    with pytest.raises(ValueError, match="'a', which has not finished"):
        tokens.prompt(1)
    tokens.finished(0, [901, 902, 903, 904])
    pb = tokens.prompt(1)
    assert pb[:6] == pa and pb[6:10] == [901, 902, 903, 904]
    assert all(3 <= t < 1000 for t in pa + pc)


def test_requests_without_ids_get_their_own_seeded_tokens() -> None:
    inst = Instance(ENGINE, (req("x", 40, 1), req("y", 40, 1)))
    one, two = ContentTokens(inst, 1024, seed=0), ContentTokens(inst, 1024, seed=0)
    assert one.prompt(0) == two.prompt(0) and one.prompt(0) != one.prompt(1)
