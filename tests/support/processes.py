"""Services as an operator runs them: `opsat-<service> migrate`, then `api` and `worker` as real processes on
free ports, configured through OPSAT_* environment variables with the same settings the in-process harnesses
get (`settings_for_tests`). Each yields a `ServiceHarness` whose client speaks HTTP to the real API port, so
the tests' helpers (tokens, submit, answer) work the same against processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from opsat.common.service import Service
from opsat.common.settings import ServiceSettings
from opsat.common.testing.service import ServiceHarness

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, port: int, name: str, tail: Callable[[], str], timeout: float) -> None:
    """Until the process answers `/readyz` on `port`; fails with its log's tail if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited: {tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{name} not ready after {timeout:.0f}s: {tail()}")


def environment(settings: ServiceSettings) -> dict[str, str]:
    """The OPSAT_* variables that make a process read exactly `settings` (lists and maps as JSON)."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = str(value).lower()
        env[f"OPSAT_{name.upper()}"] = str(value)
    return env


class ServiceProcesses:
    """`opsat-<name> api` and `worker` of one service; logs in `logs/<name>-{api,worker}.log`."""

    def __init__(self, service: Service, settings: ServiceSettings, logs: Path) -> None:
        self.service, self.logs = service, logs
        self.settings = settings.model_copy(update={"http_port": free_port(), "worker_port": free_port()})
        self.env = {**os.environ, **environment(self.settings)}
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    def start(self) -> None:
        subprocess.run([BIN / f"opsat-{self.service.name}", "migrate"], env=self.env, check=True,
                       capture_output=True, timeout=180)
        for role in ("api", "worker"):
            with open(self.log(role), "ab") as log:
                self.procs[role] = subprocess.Popen([BIN / f"opsat-{self.service.name}", role], env=self.env,
                                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for role, port in (("api", self.settings.http_port), ("worker", self.settings.worker_port)):
            self.wait_ready(role, port)

    def log(self, role: str) -> Path:
        return self.logs / f"{self.service.name}-{role}.log"

    def tail(self, role: str, chars: int = 3000) -> str:
        path = self.log(role)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def wait_ready(self, role: str, port: int, timeout: float = 120) -> None:
        wait_ready(self.procs[role], port, f"{self.service.name} {role}", lambda: self.tail(role), timeout)

    def stop(self) -> None:
        """SIGTERM, and SIGKILL for what has not ended after 30 s; returns the exit codes."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@asynccontextmanager
async def running_processes(services: dict[str, tuple[Service, ServiceSettings, type[ServiceHarness]]],
                            logs: Path) -> AsyncIterator[dict[str, Any]]:
    """Start every service's processes (concurrently) and yield a harness per name, each with an HTTP client
    to its API; everything is stopped when the block ends."""
    logs.mkdir(parents=True, exist_ok=True)
    running = {name: ServiceProcesses(service, settings, logs) for name, (service, settings, _) in services.items()}
    async with AsyncExitStack() as stack:
        stack.callback(lambda: [p.stop() for p in running.values()])
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in running.values()))
        harnesses = {}
        for name, procs in running.items():
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=procs.api, timeout=30))
            harnesses[name] = services[name][2](service=procs.service, settings=procs.settings, client=client)
        yield harnesses
