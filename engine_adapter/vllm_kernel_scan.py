"""Keep vLLM 0.32's CPU kernel rebinding from tripping over llvmlite.

On a CPU without Triton, vLLM's platform rebinds its Triton kernels to C++ fallbacks
(`vllm.triton_utils.dispatcher.register_kernels`) by scanning the namespace of every loaded
module and calling `vars(value).get("kernel")` on each value that has a `__dict__`. llvmlite,
numba's backend, which slosched's compiled policy rules load (solvers/compiled.py), holds a
library proxy whose attribute lookup answers any name, `__dict__` included, with a function
wrapper, so the scan raises and the engine never starts. The kernels vLLM rebinds live in its own
modules, so `skip_llvmlite_in_kernel_scan` hides llvmlite's modules from that one scan.
"""

from __future__ import annotations

import sys
from typing import Any


def skip_llvmlite_in_kernel_scan() -> None:
    """Wrap vLLM's kernel scan so it does not see llvmlite's modules (idempotent)."""
    from vllm.triton_utils import dispatcher

    scan = dispatcher._rebind_kernels
    if getattr(scan, "skips_llvmlite", False):
        return

    def rebind_without_llvmlite(overrides: Any) -> None:
        hidden = {name: sys.modules.pop(name) for name in list(sys.modules)
                  if name == "llvmlite" or name.startswith("llvmlite.")}
        try:
            scan(overrides)
        finally:
            sys.modules.update(hidden)

    rebind_without_llvmlite.skips_llvmlite = True  # type: ignore[attr-defined]
    dispatcher._rebind_kernels = rebind_without_llvmlite
