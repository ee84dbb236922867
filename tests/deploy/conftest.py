"""A real kube-apiserver (with etcd) on free ports, built from their Go modules by deploy/tools/tools.sh.
Nothing runs pods: it validates what is applied (schemas, defaults, admission) and keeps it in etcd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "tools"))
import chart  # noqa: E402

TOKEN = "opsat-deploy-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args], input=input,
                             capture_output=True, text=True, timeout=180)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out


def start(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    etcd, apiserver = chart.tool("etcd"), chart.tool("kube-apiserver")
    tmp = tmp_path_factory.mktemp("apiserver")
    client, peer, secure = free_port(), free_port(), free_port()
    subprocess.run(["openssl", "genrsa", "-out", str(tmp / "sa.key"), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(tmp / "sa.key"), "-pubout", "-out", str(tmp / "sa.pub")],
                   check=True, capture_output=True)
    (tmp / "tokens.csv").write_text(f"{TOKEN},admin,admin-uid,system:masters\n")
    processes = [start([etcd, "--data-dir", str(tmp / "etcd"),
                        "--listen-client-urls", f"http://127.0.0.1:{client}",
                        "--advertise-client-urls", f"http://127.0.0.1:{client}",
                        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                        "--initial-cluster", f"default=http://127.0.0.1:{peer}"], tmp / "etcd.log")]
    try:
        processes.append(start([apiserver, f"--etcd-servers=http://127.0.0.1:{client}",
                                f"--secure-port={secure}", "--bind-address=127.0.0.1",
                                "--advertise-address=127.0.0.1", f"--cert-dir={tmp / 'certs'}",
                                f"--service-account-key-file={tmp / 'sa.pub'}",
                                f"--service-account-signing-key-file={tmp / 'sa.key'}",
                                "--service-account-issuer=https://kubernetes.default.svc",
                                f"--token-auth-file={tmp / 'tokens.csv'}", "--authorization-mode=RBAC",
                                "--service-cluster-ip-range=10.96.0.0/24"], tmp / "apiserver.log"))
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: test, cluster: {{server: "https://127.0.0.1:{secure}", insecure-skip-tls-verify: true}}}}]
users: [{{name: admin, user: {{token: {TOKEN}}}}}]
contexts: [{{name: test, context: {{cluster: test, user: admin}}}}]
current-context: test
""")
        cluster = Cluster(kubeconfig)
        deadline = time.monotonic() + 90
        while cluster.kubectl("get", "--raw", "/readyz", check=False).returncode != 0:
            assert all(p.poll() is None for p in processes), f"etcd or kube-apiserver exited; logs in {tmp}"
            assert time.monotonic() < deadline, f"kube-apiserver not ready in 90 s; logs in {tmp}"
            time.sleep(1)
        yield cluster
    finally:
        for process in reversed(processes):
            stop(process)
