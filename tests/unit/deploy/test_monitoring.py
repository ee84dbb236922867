"""Offline checks of the alerts and dashboards: they use only metrics the code exports, every metric is
on a dashboard, the committed dashboards are what the generator writes, and each alert has a promtool test
file that covers it firing and not firing (promtool itself runs in tests/deploy/test_alerts.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from prometheus_client import Counter, Gauge, Histogram

from opsat.common import observability

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "deploy" / "tools"))
import chart  # noqa: E402
import dashboards  # noqa: E402

ALERTS_FILE = chart.CHART / "files" / "alerts.yaml"
ALERT_TESTS = REPO / "tests" / "deploy" / "alerts"
METRICS = yaml.safe_load(dashboards.METRICS.read_text())
SUFFIXES = ("_bucket", "_sum", "_count")


def exported() -> dict[str, str]:
    """{metric name as scraped: type} of every opsat metric the code defines."""
    out = {}
    for value in vars(observability).values():
        if isinstance(value, Counter | Gauge | Histogram):
            name = value._name  # noqa: SLF001 - prometheus_client strips _total from counters
            kind = type(value).__name__
            out[f"{name}_total" if kind == "Counter" else name] = kind
    return out


def alerts() -> dict[str, dict]:
    return {r["alert"]: r for g in yaml.safe_load(ALERTS_FILE.read_text())["groups"] for r in g["rules"]}


def metrics_in(expr: str) -> set[str]:
    # Label names (in matchers and by/without lists) are not metrics.
    expr = re.sub(r"\{[^}]*\}|\b(by|without)\s*\([^)]*\)", " ", expr)
    names = set(re.findall(r"\b(opsat_[a-z_]+)\b", expr))
    return {next((n.removesuffix(s) for s in SUFFIXES if n.endswith(s)), n) for n in names}


def test_the_metric_list_is_what_the_code_exports():
    assert set(METRICS) == set(exported()), "add the metric to deploy/k8s/metrics.yaml (its panel and alerts)"


def test_alerts_use_only_exported_metrics_and_the_list_names_them():
    known = set(exported())
    for name, rule in alerts().items():
        used = metrics_in(rule["expr"])
        assert used <= known, f"{name}: unknown metrics {used - known}"
        for metric in used:
            assert name in METRICS[metric]["alerts"], f"metrics.yaml: {metric} does not list {name}"
    for metric, spec in METRICS.items():
        for name in spec["alerts"]:
            assert metric in metrics_in(alerts()[name]["expr"]), f"{name} does not use {metric}"


def test_every_alert_has_a_severity_and_a_summary():
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        assert name in (REPO / "deploy" / "k8s" / "README.md").read_text(), f"{name}: explain it in the README"


def test_each_alert_has_a_promtool_test_that_fires_and_stays_quiet():
    files = {p.stem: yaml.safe_load(p.read_text()) for p in ALERT_TESTS.glob("*.yaml")}
    assert set(files) == set(alerts()), "one promtool test file per alert, named after it"
    for name, doc in files.items():
        assert [str((ALERT_TESTS / f).resolve()) for f in doc["rule_files"]] == [str(ALERTS_FILE)], name
        cases = [c for t in doc["tests"] for c in t["alert_rule_test"] if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases), f"{name}: no case where it fires"
        assert any(not c["exp_alerts"] for c in cases), f"{name}: no case where it stays quiet"


def test_the_chart_ships_the_alerts_and_a_dashboard_per_service():
    objs = chart.render("prod")
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(ALERTS_FILE.read_text())
    services = yaml.safe_load((chart.CHART / "values.yaml").read_text())["services"]
    shipped = {k for o in objs if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
               for k in o["data"]}
    assert shipped == {f"{s}.json" for s in services}
    (monitor,) = [o for o in objs if o["kind"] == "PodMonitor"]
    labels = {r["targetLabel"] for e in monitor["spec"]["podMetricsEndpoints"] for r in e["relabelings"]}
    assert {"job", "opsat_service"} <= labels, "the alerts and dashboards group by these labels"


def test_committed_dashboards_are_generated():
    committed = {p.name: p.read_text() for p in dashboards.OUT.glob("*.json")}
    assert committed == dashboards.render(), "out of date: run make generate"


def test_every_metric_has_a_panel_selecting_one_service():
    (service, text), *_ = dashboards.render().items()
    doc = yaml.safe_load(text)
    panels = {p["description"]: p for p in doc["panels"]}
    assert set(panels) == set(METRICS)
    for metric, panel in panels.items():
        for target in panel["targets"]:
            assert metrics_in(target["expr"]) == {metric}, target["expr"]
            assert f'="{service.removesuffix(".json")}"' in target["expr"], target["expr"]
