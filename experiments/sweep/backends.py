"""Where sweep cells run: in this process, on a local process pool, or on a Ray cluster.

Every backend has one method, `run(fn, items, on_done)`: it calls `fn(item)` for every item and
hands each result to `on_done(index, result)` *in the calling process* as soon as it is ready
(completion order, not item order). The driver therefore writes results itself, whichever
machine computed them, and a cell whose result reached `on_done` is never lost.

When a cell fails, the backend stops starting new cells and then raises `CellFailed` naming the
failed item; the local pool still delivers the cells already running (Ray interrupts them). With
`keep_going` it runs every other cell first and then raises for the first failure, counting the
rest. Either way a rerun only has to compute what never reached `on_done`.

`fn` and the items must be picklable: `fn` a module-level function (the process pool uses the
"spawn" start method, which re-imports it in a fresh interpreter; Ray ships it by reference).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from experiments.errors import CellFailed, ConfigError

OnDone = Callable[[int, Any], None]
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class SequentialBackend:
    """Runs cells one after another in this process (debugging, tiny sweeps, profiling)."""

    name = "sequential"

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], on_done: OnDone, keep_going: bool = False) -> None:
        failures: list[CellFailed] = []
        for i, item in enumerate(items):
            try:
                result = fn(item)
            except Exception as err:
                failures.append(CellFailed(i, item, err))
                if not keep_going:
                    break
                continue
            on_done(i, result)
        failure = CellFailed.first_of(failures)
        if failure is not None:
            raise failure from failure.cause


class LocalBackend:
    """A pool of worker processes on this machine (the default backend)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: need at least 1 worker process")
        self.workers = workers or os.cpu_count() or 1

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], on_done: OnDone, keep_going: bool = False) -> None:
        if not items:
            return
        workers = min(self.workers, len(items))
        ctx = multiprocessing.get_context("spawn")  # safe with threads and Ray in the parent
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_setup,
                                   initargs=(os.getpid(),))
        failures: list[CellFailed] = []
        try:
            index_of: dict[Future, int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
            pending = set(index_of)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=index_of.__getitem__):
                    if fut.cancelled():
                        continue
                    i = index_of[fut]
                    err = fut.exception()
                    if err is not None:
                        failures.append(CellFailed(i, items[i], err))
                        if not keep_going:
                            for other in pending:
                                other.cancel()  # not started yet: never runs
                        continue
                    on_done(i, fut.result())
        except BaseException:  # Ctrl-C or a failed write: stop now, not after the running cells
            pool.shutdown(wait=False, cancel_futures=True)
            for process in (getattr(pool, "_processes", None) or {}).values():
                process.terminate()
            raise
        pool.shutdown(wait=True)
        failure = CellFailed.first_of(sorted(failures, key=lambda f: f.index))
        if failure is not None:
            raise failure from failure.cause


def _worker_setup(parent: int) -> None:
    """In each pool worker: die with the parent, and leave Ctrl-C to it.

    A terminal's Ctrl-C reaches the whole process group; the parent stops the pool itself, so a
    worker ignores SIGINT (no traceback per worker). If the parent is killed (SIGKILL, the OOM
    killer) Linux's PR_SET_PDEATHSIG sends the worker SIGKILL, so no orphan keeps computing.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


class RayBackend:
    """Ray tasks, one per cell, on a local Ray instance or the cluster at `address`.

    Ray is imported only here, so the rest of slosched works without it. If Ray is already
    initialised (a notebook, a test) that session is used and left running; otherwise this
    backend starts/joins one and shuts it down when the sweep ends.
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any], on_done: OnDone, keep_going: bool = False) -> None:
        if not items:
            return
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray backend needs Ray: pip install 'slosched[sweep]'") from None
        started = not ray.is_initialized()
        if started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is not None:
                kwargs["address"] = self.address
            elif self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                ray.shutdown()  # a half-started session must not be reused by a later init
                where = f"at --address {self.address}" if self.address else "locally"
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ConfigError(f"could not start or join Ray {where}: {first} (start a cluster with "
                                  "`ray start --head`, or leave out --address for a local one)") from None
        try:
            task = ray.remote(num_cpus=1)(fn)
            index_of = {task.remote(item): i for i, item in enumerate(items)}
            pending = list(index_of)
            failures: list[CellFailed] = []
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index_of[ref]
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.TaskCancelledError:
                        continue
                    except ray.exceptions.RayTaskError as err:
                        failures.append(CellFailed(i, items[i], err.as_instanceof_cause()))
                        if not keep_going and len(failures) == 1:
                            for other in pending:
                                ray.cancel(other)  # queued ones never start; running ones are interrupted
                        continue
                    on_done(i, result)
            failure = CellFailed.first_of(sorted(failures, key=lambda f: f.index))
            if failure is not None:
                raise failure from failure.cause
        finally:
            if started:
                ray.shutdown()


BACKENDS = ("local", "sequential", "ray")


def make_backend(name: str, *, workers: int | None = None, address: str | None = None) -> Any:
    """The backend called `name`; `workers` sizes the local pool (and a fresh local Ray)."""
    if name == "local":
        return LocalBackend(workers)
    if name == "sequential":
        return SequentialBackend()
    if name == "ray":
        return RayBackend(address=address, num_cpus=workers)
    raise ValueError(f"backend={name!r}; valid: {', '.join(BACKENDS)}")
