"""`mlflow models serve` as the tests start it: a free port, the server in its own process group, the wait for
/ping, and JSON posts to /invocations."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served(model: str, env_manager: str, env: dict, port: int, cwd: Path | None = None, seconds: float = 120):
    """Serve `model` on 127.0.0.1:`port` until the block ends; fails with the server's output if it dies or does
    not answer /ping within `seconds`."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", env_manager]
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=environment,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + seconds
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).status == 200:
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(server.stdout.read().decode()[-3000:])
                if time.time() > deadline:
                    pytest.fail(f"the server did not answer /ping within {seconds:.0f} s")
                time.sleep(1)
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def post(port: int, rows: list[dict]) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps({"dataframe_records": rows}).encode(),
        headers={"Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=60).read())
