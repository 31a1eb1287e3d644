"""The sweep options of `slosched run`: backend, workers, Ray address, --quick.

Kept here so the run command stays about experiments and this module about where cells run.
"""

from __future__ import annotations

import argparse

from experiments.sweep.backends import BACKENDS


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "sweep", "Cells (rate scale x seed x policy) are stored one file each under OUT/cells/; rerunning with "
                 "the same --out reuses every finished cell (delete OUT to recompute after changing code).")
    g.add_argument("--backend", choices=BACKENDS, default="local",
                   help="where cells run: local (process pool, default), sequential (this process), ray")
    g.add_argument("--workers", type=int, help="local worker processes (default: CPU count)")
    g.add_argument("--address", help="Ray cluster address for --backend ray (e.g. auto, ray://head:10001); "
                                     "default: start a local Ray instance")
    g.add_argument("--quick", action="store_true",
                   help="smaller preset for CI: 300 requests, 4 rate scales, one seed (experiment name gets -quick)")
