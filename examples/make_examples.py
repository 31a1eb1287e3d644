"""Regenerate the example instances in this folder: `python examples/make_examples.py`.

Each is a seeded slotted instance of formulations/exact/generate.py, written as instance JSON
(formulations/instance.py), and solved by `slosched solve --example NAME`.
"""

from __future__ import annotations

from pathlib import Path

from formulations.exact.generate import random_instance, scale_instance

HERE = Path(__file__).resolve().parent
EXAMPLES = {
    # latency (streamed, QoE) and throughput (deadline) requests competing for a small KV cache
    "mixed": lambda: random_instance(1, 8, classes=("latency", "throughput"), kv_tightness=0.5),
    # the same classes plus one bulk group whose root feeds three members (a fork DAG)
    "dag": lambda: random_instance(2, 10, dag_group=4, kv_tightness=0.5),
    # the exact oracle's scaling target: 40 requests over ~200 slots, KV at 12% of the peak demand
    "tight-kv-40x200": lambda: scale_instance(0, 40, 200, kv_tightness=0.12),
}


def main() -> None:
    for name, make in EXAMPLES.items():
        path = HERE / f"{name}.json"
        make().to_json(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
