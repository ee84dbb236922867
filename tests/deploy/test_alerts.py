"""The alert rules through promtool (built from the Prometheus module): they parse, and each alert's test
file (tests/deploy/alerts/<alert>.yaml) passes; a changed threshold makes its test fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "tools"))
import chart  # noqa: E402

RULES = chart.CHART / "files" / "alerts.yaml"
TESTS = sorted((REPO / "tests" / "deploy" / "alerts").glob("*.yaml"))


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chart.tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.stem)
def test_alert(path: Path):
    out = promtool("test", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_changed_threshold_fails_its_test(tmp_path):
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "OpsatHttpErrorRate"]
    rule["expr"] = rule["expr"].replace("> 0.05", "> 0.5")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules))
    test = yaml.safe_load((REPO / "tests" / "deploy" / "alerts" / "OpsatHttpErrorRate.yaml").read_text())
    test["rule_files"] = ["alerts.yaml"]
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    out = promtool("test", "rules", str(tmp_path / "test.yaml"))
    assert out.returncode != 0 and "OpsatHttpErrorRate" in out.stdout + out.stderr
