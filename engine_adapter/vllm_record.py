"""SloScheduler that also writes what it delivered: one JSON line per finished request.

    --scheduler-cls engine_adapter.vllm_record.RecordingSloScheduler
    --additional-config '{"slosched": {...}, "slosched_record": "/path/record.jsonl"}'

Each line: the request's slosched `id`, `index`, `class` and `deadline` (as the scheduler
parsed them from vllm_xargs), `arrival`, `release`, `token_times`,
`finish` (seconds on the scheduler's clock), `preemptions`, and `clock_origin`, the
`time.perf_counter()` value at which that clock read 0. perf_counter is the system-wide monotonic
clock on Linux, so a client on the same host (e.g. `slosched bench`) can put the server's token
times next to the ones it stamped on arrival. A server is the only place that knows when a token
was produced; this is the ground truth the bench client is checked against.
"""

from __future__ import annotations

import json

from engine_adapter.vllm_scheduler import SloScheduler
from formulations.requests import CLASS_BY_CODE, ValidationError

RECORD_KEY = "slosched_record"


class RecordingSloScheduler(SloScheduler):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        path = (self.vllm_config.additional_config or {}).get(RECORD_KEY)
        if not isinstance(path, str) or not path:
            raise ValidationError(f"RecordingSloScheduler needs additional_config[{RECORD_KEY!r}] = a file path")
        self.record_file = open(path, "a", buffering=1)  # line-buffered: a reader sees whole lines

    def update_from_output(self, scheduler_output, model_runner_output):
        outputs = super().update_from_output(scheduler_output, model_runner_output)
        book = self.book
        for index, finish in self.newly_finished:
            row = book.row(index)
            self.record_file.write(json.dumps({
                "id": book.ids[row], "index": index, "class": CLASS_BY_CODE[int(book.cls[row])].value,
                "deadline": float(book.deadline[row]), "arrival": float(book.arrival[row]),
                "release": float(book.release[row]), "token_times": book.token_times[row], "finish": finish,
                "preemptions": int(book.preemption_count[row]), "clock_origin": self.origin,
            }) + "\n")
        self.newly_finished.clear()  # nobody else takes them in a server
        return outputs
