"""Renders the chart with the real helm (built by tools.sh into the cache) for the deployment tests.

    python deploy/tools/chart.py dev      print what `helm template` renders for overlays/dev
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
CHART = K8S / "opsat"
TOOLS = REPO / "deploy" / "tools" / "tools.sh"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "values.yaml").is_file())


@functools.cache
def tool(name: str) -> str:
    """Path of a tool from the cache, built first when missing (minutes, once per version)."""
    subprocess.run([str(TOOLS), "build", name], check=True)
    return subprocess.run([str(TOOLS), "path", name], check=True, capture_output=True, text=True).stdout.strip()


def namespace(overlay: str) -> str:
    return yaml.safe_load((K8S / "overlays" / overlay / "namespace.yaml").read_text())["metadata"]["name"]


def template(overlay: str, *extra_values: Path, chart: Path = CHART) -> str:
    command = [tool("helm"), "template", "opsat", str(chart), "--namespace", namespace(overlay),
               "-f", str(K8S / "overlays" / overlay / "values.yaml")]
    for values in extra_values:
        command += ["-f", str(values)]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def render(overlay: str, *extra_values: Path, chart: Path = CHART) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(template(overlay, *extra_values, chart=chart)) if doc]


if __name__ == "__main__":
    sys.stdout.write(template(sys.argv[1]))
