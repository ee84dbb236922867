"""Intake as an operator runs it, for fault injection: `opsat-intake api` and `worker` as real processes on
real ports against the local Kafka and PostgreSQL, each of which can be killed and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from opsat.common.testing.service import TEST_SIGNING_KEY
from tests.support.processes import free_port, wait_ready

BIN = Path(sys.executable).parent

# Dev-mode tokens signed with this test run's key; `ops` is the provider organisation.
AUTH_ENV = {"OPSAT_ENVIRONMENT": "test", "OPSAT_AUTH_MODE": "dev", "OPSAT_AUTH_DEV_KEY": TEST_SIGNING_KEY,
            "OPSAT_PROVIDER_ORGANISATIONS": '["ops"]'}


@dataclass
class Stack:
    database_url: str
    kafka_bootstrap: str
    namespace: str
    logs: Path
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "OPSAT_DATABASE_URL": self.database_url, "OPSAT_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "OPSAT_TOPIC_NAMESPACE": self.namespace, "OPSAT_HTTP_PORT": str(self.api_port),
                "OPSAT_RELAY_POLL_INTERVAL_S": "0.2", "OPSAT_KAFKA_REQUEST_TIMEOUT_MS": "5000",
                "OPSAT_RELAY_DELIVERY_TIMEOUT_S": "5", "OPSAT_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "OPSAT_DATABASE_POOL_SIZE": "16", "OPSAT_LOG_JSON": "false", **AUTH_ENV, **extra}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def migrate(self) -> None:
        subprocess.run([BIN / "opsat-intake", "migrate"], env=self.env(), check=True, capture_output=True, timeout=120)

    def start(self, name: str, *, instance_id: str | None = None) -> None:
        """Start `api` or a worker (any name starting with `worker`); waits until it is ready."""
        role = "api" if name == "api" else "worker"
        port = self.api_port if role == "api" else self.ports.setdefault(name, free_port())
        extra = {"OPSAT_WORKER_PORT": str(port)}
        if instance_id:
            extra["OPSAT_KAFKA_GROUP_INSTANCE_ID"] = instance_id
        log = open(self.logs / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([BIN / "opsat-intake", role], env=self.env(**extra), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_ready(name, port)

    def wait_ready(self, name: str, port: int, timeout: float = 60) -> None:
        wait_ready(self.procs[name], port, name, lambda: self.tail(name), timeout)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, in-flight work is cut off."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for name, proc in list(self.procs.items()):
            proc.send_signal(signal.SIGTERM)
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self.procs.pop(name)

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def worker_metric(self, name: str, metric: str) -> str:
        text = httpx.get(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5).text
        return "\n".join(line for line in text.splitlines() if line.startswith(metric))
