"""A real ``fastsynth serve`` subprocess on a free local port, and the helpers of the tests
that drive it (its /health counters, waiting until it is idle, an ``openai`` client)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

CLI = [sys.executable, "-c", "import sys; from fastsynth.cli import main; sys.exit(main())"]
# Spinning OpenMP workers in the server would starve the test process on 2 cores.
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(batch_size: int, start_timeout_s: float = 180,
                   extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start ``fastsynth serve`` (``extra_args`` appended to its command line), wait for
    /health, yield its ``.../v1`` base URL, stop it."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--batch-size", str(batch_size),
                             *extra_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + start_timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"fastsynth serve did not start: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.5)
    try:
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(30)


def health(base_url: str) -> dict[str, Any]:
    """The server's /health counters (``base_url``: the ``.../v1`` URL)."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health") as r:
        return json.load(r)


def wait_idle(base_url: str, timeout: float = 60) -> dict[str, Any]:
    """Poll /health until no row decodes, waits or is admitted (cancelled rows leave at the
    next step); return those counters, or fail after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = health(base_url)
        if h["decoding"] == 0 and h["waiting"] == 0 and h["admitted"] == 0:
            return h
        time.sleep(0.05)
    raise AssertionError(f"server still busy: {health(base_url)}")


def openai_client(base_url: str, timeout: float) -> Any:
    """The real ``openai`` client on the server, without retries (a test sees every error)."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=timeout)
