"""One Grafana dashboard per service from deploy/k8s/metrics.yaml and the services in the chart's values.

    python deploy/tools/dashboards.py           write deploy/k8s/opsat/dashboards/<service>.json
    python deploy/tools/dashboards.py --check   exit 1 when a committed dashboard differs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
METRICS = REPO / "deploy" / "k8s" / "metrics.yaml"
VALUES = REPO / "deploy" / "k8s" / "opsat" / "values.yaml"
OUT = REPO / "deploy" / "k8s" / "opsat" / "dashboards"


def selector(service: str, metric: str) -> str:
    # HTTP series carry the service as a metric label; worker series get opsat_service from the PodMonitor.
    label = "service" if metric.startswith("opsat_http_") else "opsat_service"
    return f'{{namespace="$namespace", {label}="{service}"}}'


def dashboard(service: str, metrics: dict) -> dict:
    panels = []
    for i, (metric, spec) in enumerate(metrics.items()):
        panel = spec["panel"]
        exprs = [panel[k] for k in ("expr", "expr2") if k in panel]
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": panel["title"],
            "description": metric,
            "datasource": {"type": "prometheus", "uid": "$datasource"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": panel["unit"]}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + j), "expr": e.replace("{SERVICE}", selector(service, metric))}
                        for j, e in enumerate(exprs)],
        })
    return {
        "uid": f"opsat-{service.replace('_', '-')}",
        "title": f"opsat {service}",
        "tags": ["opsat"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "namespace", "type": "query", "datasource": {"type": "prometheus", "uid": "$datasource"},
             "query": f'label_values(up{{job="opsat", opsat_service="{service}"}}, namespace)', "refresh": 2},
        ]},
        "panels": panels,
    }


def render(values: Path = VALUES) -> dict[str, str]:
    """{file name: content} for every service in the values."""
    metrics = yaml.safe_load(METRICS.read_text())
    services = yaml.safe_load(values.read_text())["services"]
    return {f"{s}.json": json.dumps(dashboard(s, metrics), indent=2, sort_keys=True) + "\n" for s in services}


def main() -> int:
    wanted = render()
    if "--check" in sys.argv:
        current = {p.name: p.read_text() for p in OUT.glob("*.json")}
        if current != wanted:
            print("dashboards are out of date: run make generate", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for stale in set(p.name for p in OUT.glob("*.json")) - set(wanted):
        (OUT / stale).unlink()
    for name, text in wanted.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
