"""A real vLLM OpenAI server process for tests: a free loopback port, a bounded wait until it
answers, and a stop that always reaps it (shared by the server-recipe and bench tests)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path, ready_url: str,
                   start_seconds: float) -> Iterator[subprocess.Popen]:
    """Start `cmd`, wait (at most `start_seconds`) until `ready_url` answers 200, yield the
    process; on exit SIGINT it (vLLM's clean shutdown), then kill it if it lingers."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_seconds
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the vLLM server exited with {proc.returncode}: {log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"the vLLM server was not ready within {start_seconds:.0f} s; see {log_path}")
                try:
                    if httpx.get(ready_url, timeout=5.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
