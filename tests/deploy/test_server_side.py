"""Every overlay applied with `kubectl apply --dry-run=server` to a real kube-apiserver with the operators'
CRDs installed: core schemas, CRD schemas and strict field validation judge every object. Strimzi's CRDs
are not available from any module registry, so its kinds are checked offline (tests/unit/deploy)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "tools"))
import chart  # noqa: E402

STRIMZI = "kafka.strimzi.io/v1"


@pytest.fixture(scope="module")
def server(cluster):
    crds = subprocess.run([str(chart.TOOLS), "crds"], check=True, capture_output=True, text=True).stdout.strip()
    cluster.kubectl("apply", "--server-side", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
    for overlay in chart.OVERLAYS:  # namespaced objects need their namespace, even in a dry run
        cluster.kubectl("apply", "-f", str(chart.K8S / "overlays" / overlay / "namespace.yaml"))
    return cluster


def dry_run(server, objs: list[dict]) -> subprocess.CompletedProcess:
    return server.kubectl("apply", "--dry-run=server", "--validate=strict", "-o", "yaml", "-f", "-",
                          input=yaml.safe_dump_all(objs), check=False)


def validated(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["apiVersion"] != STRIMZI]


@pytest.mark.parametrize("overlay", chart.OVERLAYS)
def test_every_object_passes_the_api_server(server, overlay):
    objs = chart.render(overlay)
    assert {o["kind"] for o in objs if o["apiVersion"] == STRIMZI} == {"Kafka", "KafkaNodePool", "KafkaTopic"}
    out = dry_run(server, validated(objs))
    assert out.returncode == 0, out.stderr
    accepted = yaml.safe_load(out.stdout)
    accepted = accepted["items"] if accepted.get("kind") == "List" else [accepted]
    ids = sorted((o["kind"], o["metadata"]["name"]) for o in accepted)
    assert ids == sorted((o["kind"], o["metadata"]["name"]) for o in validated(objs))
    # The server filled in its defaults: proof that it decoded each object, not just echoed it.
    deployment = next(o for o in accepted if o["kind"] == "Deployment")
    assert deployment["spec"]["revisionHistoryLimit"] == 10


def test_a_second_service_passes_the_api_server_too(server, tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"services": {"sla_monitor": {"consumers": ["breaches"]}}}))
    objs = validated(chart.render("dev", extra))
    assert any(o["metadata"]["name"] == "sla-monitor-db" for o in objs)
    out = dry_run(server, objs)
    assert out.returncode == 0, out.stderr


def break_replicas(o):
    o["spec"]["replicas"] = -1


def break_probe_field(o):
    o["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}


def break_pdb(o):
    o["spec"]["minAvailable"] = 1  # beside maxUnavailable: one or the other


def break_hpa(o):
    o["spec"]["minReplicas"] = 0


def break_cluster(o):
    o["spec"]["instances"] = 0  # CloudNativePG's CRD: minimum 1


def break_rule(o):
    o["spec"]["groups"][0]["rules"][0]["exprr"] = o["spec"]["groups"][0]["rules"][0].pop("expr")


def break_pod_monitor(o):
    o["spec"]["podMetricsEndpoints"][0]["interval"] = "thirty seconds"  # CRD pattern for durations


BREAKAGES = {  # id: (kind, breakage, what the refusal names)
    "replicas": ("Deployment", break_replicas, "spec.replicas"),
    "unknown-field": ("Deployment", break_probe_field,
                      'unknown field "spec.template.spec.containers[0].readinessProbe.httpGett"'),
    "pdb": ("PodDisruptionBudget", break_pdb, "minAvailable"),
    "hpa": ("HorizontalPodAutoscaler", break_hpa, "spec.minReplicas"),
    "cnpg": ("Cluster", break_cluster, "spec.instances"),
    "rule": ("PrometheusRule", break_rule, 'unknown field "spec.groups[0].rules[0].exprr"'),
    "pod-monitor": ("PodMonitor", break_pod_monitor, "interval"),
}


@pytest.mark.parametrize("case", BREAKAGES)
def test_a_broken_object_is_refused(server, case):
    kind, breakage, message = BREAKAGES[case]
    good = next(o for o in chart.render("dev") if o["kind"] == kind)
    assert dry_run(server, [good]).returncode == 0
    bad = copy.deepcopy(good)
    breakage(bad)
    out = dry_run(server, [bad])
    assert out.returncode != 0, f"the API server accepted a broken {kind}"
    assert message in out.stderr, out.stderr
