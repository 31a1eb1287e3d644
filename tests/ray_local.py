"""A local 2-CPU Ray instance whose workers can import from extra folders (tests only)."""

from __future__ import annotations

import os
from pathlib import Path


def init_local_ray(*folders: str) -> None:
    """ray.init with `folders`, tests/ and the repository on the workers' PYTHONPATH: Ray workers
    import cell functions and plugin classes by name, and inherit PYTHONPATH from this process
    when ray.init starts the local instance (on a cluster, code is installed on each node)."""
    import ray

    tests = Path(__file__).resolve().parent
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*folders, str(tests), str(tests.parent), *filter(None, [old])])
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
