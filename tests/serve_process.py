"""A real ``fastsynth serve`` subprocess on a free local port, for the tests that drive it."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

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
