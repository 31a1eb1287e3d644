"""A conversation's turns as closed-loop requests, with content ids that realize the sharing.

Turn k+1's prompt is turn k's prompt and answer plus a new message (`prompts` must grow that
way), so its content ids repeat turn k's for every full `block` of turn k's prompt + answer and
continue with fresh ids (`fresh`: an iterator of unused ids). `first_ids` lead the first turn's
ids (e.g. a system prompt shared by many conversations). Turn k+1 is released think_times[k+1]
seconds after turn k finishes (formulations/turns.py; think_times[0] is unused).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from formulations.requests import Request, RequestClass
from formulations.arithmetic import ceil_div


def conversation_turns(name: str, prompts: Sequence[int], answers: Sequence[int], start: float,
                       think_times: Sequence[float], block: int, fresh: Iterator[int], *,
                       ttft_targets: Sequence[float], read_rate: float, texts: Sequence[str | None] | None = None,
                       first_ids: tuple[int, ...] = ()) -> list[Request]:
    """Requests `<name>t0`, `<name>t1`, ... (latency class, arrival `start`)."""
    turns: list[Request] = []
    shared = first_ids
    for k, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        total = int(prompt) + int(answer)
        ids = shared + tuple(next(fresh) for _ in range(ceil_div(total, block) - len(shared)))
        turns.append(Request(
            id=f"{name}t{k}", cls=RequestClass.LATENCY, arrival=start, prompt_len=int(prompt),
            output_len=int(answer), ttft_target=float(ttft_targets[k]), read_rate=read_rate,
            prompt_text=texts[k] if texts else None, content_ids=ids, content_block=block,
            after=turns[-1].id if turns else None, think_time=float(think_times[k]) if turns else None))
        shared = ids[: total // block]
    return turns
