"""Offline checks of deploy/k8s: the real `helm template` renders the chart with each overlay's values,
then assertions catch the mistakes a cluster would only reveal at deploy time (a selector that matches
nothing, a typo in an OPSAT_* key, a probe on the wrong port, a topic name the code never uses...).

Besides dev and prod, every check also runs on "dev+extra": dev with a throwaway second service entry,
which proves that another service is one entry in values.yaml. Server-side validation against a real
kube-apiserver is in tests/deploy/.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest
import yaml
from described import described

from opsat.common.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "deploy" / "tools"))
import chart  # noqa: E402

K8S = REPO / "deploy" / "k8s"
VALUES = yaml.safe_load((chart.CHART / "values.yaml").read_text())
OVERLAYS = chart.OVERLAYS
# A second service that exists only in this test: no code, just an entry.
EXTRA = {"sla_monitor": {"consumers": ["breaches", "escalation_scheduler"], "eventPartitions": 3}}
RENDERS = [*OVERLAYS, "dev+extra"]

POD_KINDS = {"Deployment", "Job"}
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def dns(service: str) -> str:
    return service.replace("_", "-")


def has_code(service: str) -> bool:
    return described(service) is not None


def settings_class(service: str) -> type[ServiceSettings]:
    """The service's own settings class (from its description): it may add OPSAT_* fields."""
    found = described(service)
    return found.settings if found is not None else ServiceSettings


def known_settings(service: str) -> set[str]:
    return {f"OPSAT_{name.upper()}" for name in settings_class(service).model_fields}


def topics_the_worker_creates(service: str, settings: ServiceSettings) -> dict[str, int]:
    """{topic: partitions} that `opsat-<service> worker` creates at start (from the service's description)."""
    return described(service).topics(settings)


def topics_the_entry_declares(service: str, entry: dict, namespace: str = "opsat") -> dict[str, int]:
    """For a service without code yet: the convention the worker follows (events + one DLQ per consumer)."""
    topics = {f"{namespace}.{service}.events": entry["eventPartitions"]}
    return topics | {f"{namespace}.{service}.{consumer}.dlq": 1 for consumer in entry["consumers"]}


def render(name: str, tmp_path: Path) -> list[dict]:
    if name == "dev+extra":
        extra = tmp_path / "extra.yaml"
        extra.write_text(yaml.safe_dump({"services": EXTRA}))
        return chart.render("dev", extra)
    return chart.render(name)


# --- helpers over a rendered overlay ---------------------------------------------------------------------

def obj_id(obj: dict) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are checked here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"]["labels"]


def service_of(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/name"]


def settings_maps(objs: list[dict]) -> list[dict]:
    return [o for o in of_kind(objs, "ConfigMap") if "grafana_dashboard" not in o["metadata"]["labels"]]


def services_in(objs: list[dict]) -> set[str]:
    return {service_of(d) for d in of_kind(objs, "Deployment")}


def container_env(objs: list[dict], container: dict) -> tuple[dict[str, str], dict[str, dict]]:
    """(plain values incl. ConfigMaps pulled in with envFrom, secret references) of one container."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"{container['name']}: only configMapRef envFrom: {source}"
        values.update(one(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    secrets = {}
    for var in container.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]
            assert set(ref) == {"secretKeyRef"}, f"{var['name']}: only secretKeyRef is expected: {ref}"
            secrets[var["name"]] = ref["secretKeyRef"]
    return values, secrets


def settings_from(values: dict[str, str], service: str | None = None) -> ServiceSettings:
    """Build the settings exactly as the service would from this environment (no other OPSAT_* leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSAT_")} | values
    # A dev-mode key lives in the Secret, which the manifests do not hold: stand in for it.
    env.setdefault("OPSAT_AUTH_DEV_KEY", "stand-in-for-the-secret-" + "0" * 40)
    with mock.patch.dict(os.environ, env, clear=True):
        return settings_class(service)() if service else ServiceSettings()


def port_number(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"{container['name']}: no port named {port!r}"
    return named[port]


def dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    return int(users[-1].split(":")[0])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    tmp = tmp_path_factory.mktemp("values")
    return {name: render(name, tmp) for name in RENDERS}


@pytest.fixture(params=RENDERS)
def overlay(request, rendered) -> tuple[str, list[dict]]:
    return request.param, copy.deepcopy(rendered[request.param])


# --- the chart -------------------------------------------------------------------------------------------

def test_overlays_dev_and_prod_exist():
    assert {"dev", "prod"} <= set(OVERLAYS)


@pytest.mark.parametrize("name", OVERLAYS)
def test_chart_lints_clean(name):
    out = subprocess.run([chart.tool("helm"), "lint", "--strict", str(chart.CHART),
                          "-f", str(K8S / "overlays" / name / "values.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_objects_are_unique_and_in_the_overlay_namespace(overlay):
    name, objs = overlay
    namespace = chart.namespace(name.split("+")[0])
    ids = [obj_id(o) for o in objs]
    assert len(ids) == len(set(ids)), f"duplicate objects: {sorted(i for i in ids if ids.count(i) > 1)}"
    for obj in objs:
        assert obj["metadata"].get("namespace") == namespace, obj_id(obj)
        assert DNS_SUBDOMAIN.fullmatch(obj["metadata"]["name"]), f"{obj_id(obj)}: invalid name"


def shape(objs: list[dict], service: str) -> list[tuple[str, str]]:
    """(kind, name with the service written <svc>) of the service's objects, topics aside."""
    out = []
    for obj in objs:
        if obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") != service or obj["kind"] == "KafkaTopic":
            continue
        name = obj["metadata"]["name"].replace(dns(service), "<svc>", 1)
        out.append((obj["kind"], re.sub(r"-[0-9a-f]{8}$", "-<hash>", name) if obj["kind"] == "Job" else name))
    return sorted(out)


def test_adding_a_service_is_one_entry(rendered):
    """The throwaway entry gets everything intake gets, named after it, and nothing else changes."""
    dev, extra = rendered["dev"], rendered["dev+extra"]
    (service,) = EXTRA
    # The dashboard ConfigMap comes from the committed, generated dashboard file (`make generate`).
    assert shape(extra, service) == [k for k in shape(dev, "intake") if k != ("ConfigMap", "<svc>-dashboard")]
    assert shape(extra, service) == sorted([
        ("ServiceAccount", "<svc>"), ("ConfigMap", "<svc>-config"), ("Deployment", "<svc>-api"),
        ("Deployment", "<svc>-worker"), ("Service", "<svc>-api"), ("HorizontalPodAutoscaler", "<svc>-api"),
        ("PodDisruptionBudget", "<svc>-api"), ("PodDisruptionBudget", "<svc>-worker"),
        ("NetworkPolicy", "<svc>-egress"), ("NetworkPolicy", "<svc>-api-ingress"),
        ("NetworkPolicy", "<svc>-worker-ingress"), ("Job", "<svc>-migrate-<hash>"), ("Cluster", "<svc>-db")])
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(extra, "KafkaTopic")
              if service_of(t) == service}
    assert topics == topics_the_entry_declares(service, EXTRA[service])
    assert [o for o in extra if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") != service] == dev


# --- workloads -------------------------------------------------------------------------------------------

def check_probes_and_resources(objs: list[dict]) -> None:
    deployments = of_kind(objs, "Deployment")
    assert deployments
    for dep in deployments:
        spec = pod_spec(dep)
        for c in spec["containers"]:
            where = f"{dep['metadata']['name']}/{c['name']}"
            assert c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", where
            assert c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", where
            assert c.get("startupProbe", {}).get("httpGet", {}).get("path") == "/healthz", where
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = port_number(c, c[probe]["httpGet"]["port"])
                assert port in {p["containerPort"] for p in c["ports"]}, f"{where}: {probe} on undeclared port"
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        for c in containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: no requests"
            assert resources.get("limits", {}).get("memory"), f"{where}: no memory limit"


def test_deployments_have_probes_and_every_container_requests_and_limits(overlay):
    _, objs = overlay
    check_probes_and_resources(objs)


@pytest.mark.parametrize("breakage", ["readinessProbe", "livenessProbe", "startupProbe", "limits", "requests"])
def test_the_check_refuses_a_container_without_probes_or_limits(rendered, breakage):
    for kind in ("Deployment", "Job"):
        if kind == "Job" and breakage.endswith("Probe"):
            continue
        objs = copy.deepcopy(rendered["dev"])
        container = pod_spec(of_kind(objs, kind)[0])["containers"][0]
        if breakage.endswith("Probe"):
            del container[breakage]
        else:
            del container["resources"][breakage]
        with pytest.raises(AssertionError):
            check_probes_and_resources(objs)


def test_pods_shut_down_gracefully(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        spec = pod_spec(dep)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        for c in spec["containers"]:
            drain = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            assert grace > drain, f"{dep['metadata']['name']}: the preStop pause eats the whole grace period"
            if pod_labels(dep)["app.kubernetes.io/component"] == "api":
                # Endpoints go away asynchronously: without a pause, requests still arrive after SIGTERM.
                assert drain >= 1, dep["metadata"]["name"]
        if pod_labels(dep)["app.kubernetes.io/component"] == "api":
            assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_a_config_change_restarts_the_pods(rendered, tmp_path):
    """Pods read the ConfigMap at start: its checksum in the pod template rolls them when it changes."""
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({"config": {"OPSAT_LOG_LEVEL": "DEBUG"}}))
    before = {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(rendered["dev"], "Deployment")}
    after = {d["metadata"]["name"]: d["spec"]["template"] for d in of_kind(chart.render("dev", changed), "Deployment")}
    for name, template in after.items():
        assert template["metadata"]["annotations"]["checksum/config"] != \
            before[name]["metadata"]["annotations"]["checksum/config"], name
    jobs = [{j["metadata"]["name"] for j in of_kind(objs, "Job")} for objs in (rendered["dev"], chart.render("dev", changed))]
    assert not jobs[0] & jobs[1], "a changed Job template must get a new name (its template is immutable)"


def test_pods_run_non_root_read_only_without_privileges(overlay):
    _, objs = overlay
    uid = dockerfile_uid()
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        spec = pod_spec(obj)
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", obj_id(obj)
        mounts_tmp = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(obj):
            sc = {**pod_sc, **c.get("securityContext", {})}
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser", uid) == uid != 0, f"{where}: uid differs from the image's USER {uid}"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            # Read-only root: /tmp must be a writable emptyDir.
            assert any(m["mountPath"] == "/tmp" and m["name"] in mounts_tmp for m in c.get("volumeMounts", [])), where


def test_pods_use_a_tokenless_service_account(overlay):
    _, objs = overlay
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        spec = pod_spec(obj)
        account = one(objs, "ServiceAccount", spec["serviceAccountName"])
        assert account.get("automountServiceAccountToken") is False
        assert spec.get("automountServiceAccountToken") is False, obj_id(obj)


def test_each_component_runs_its_service_command(overlay):
    _, objs = overlay
    expected = {"api": "api", "worker": "worker", "migrate": "migrate"}
    seen = set()
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        component = pod_labels(obj)["app.kubernetes.io/component"]
        (c,) = pod_spec(obj)["containers"]
        assert c["command"] == [f"opsat-{service_of(obj)}"], obj_id(obj)
        assert c["args"] == [expected[component]], obj_id(obj)
        seen.add((service_of(obj), obj["kind"], component))
    for service in {s for s, _, _ in seen}:
        assert {(service, "Deployment", "api"), (service, "Deployment", "worker"), (service, "Job", "migrate")} <= seen


def test_migrate_job_runs_once_to_completion(overlay):
    _, objs = overlay
    for job in of_kind(objs, "Job"):
        assert pod_spec(job)["containers"][0]["args"] == ["migrate"]
        assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
        assert job["spec"].get("ttlSecondsAfterFinished") is not None, "an immutable Job must go before the next apply"


# --- configuration ---------------------------------------------------------------------------------------

def test_env_keys_are_known_settings_with_valid_values(overlay):
    _, objs = overlay
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        for c in containers(obj):
            values, secrets = container_env(objs, c)
            where = f"{obj['metadata']['name']}/{c['name']}"
            unknown = (set(values) | set(secrets)) - known_settings(service_of(obj))
            assert not unknown, f"{where}: not fields of the service's settings (typo?): {sorted(unknown)}"
            settings = settings_from(values, service_of(obj))  # raises on a value the service would reject
            assert settings.service_name == service_of(obj), where
            assert settings.http_host == "0.0.0.0", f"{where}: must listen on all interfaces in a pod"
            ports = {p["containerPort"] for p in c.get("ports", [])}
            component = pod_labels(obj)["app.kubernetes.io/component"]
            if component == "api":
                assert ports == {settings.http_port}, where
            if component == "worker":
                assert ports == {settings.worker_port}, where


def test_secrets_are_referenced_never_stored(overlay):
    _, objs = overlay
    assert not [o for o in of_kind(objs, "Secret") if o.get("data") or o.get("stringData")]
    for obj in (o for o in objs if o["kind"] in POD_KINDS):
        _, secrets = container_env(objs, pod_spec(obj)["containers"][0])
        assert "OPSAT_DATABASE_URL" in secrets, obj_id(obj)
        for name, ref in secrets.items():
            assert ref["name"] == f"{dns(service_of(obj))}-secrets" and ref["key"] == name, (obj_id(obj), ref)
            assert not ref.get("optional"), f"{name}: a missing secret must stop the pod, not use a default"
    for obj in settings_maps(objs):
        assert not {"OPSAT_DATABASE_URL", "OPSAT_AUTH_DEV_KEY"} & set(obj["data"]), "secret in a ConfigMap"


def test_every_secret_setting_of_a_service_comes_from_its_secret(overlay):
    """A setting typed SecretStr (the dev key, feedback's token key and SMTP password, ...) reaches the service's
    api and worker from `<service>-secrets`: a prod pod without it must not start on a default."""
    _, objs = overlay
    for obj in of_kind(objs, "Deployment"):
        service = service_of(obj)
        fields = settings_class(service).model_fields.items()
        wanted = {f"OPSAT_{name.upper()}" for name, field in fields if "SecretStr" in str(field.annotation)}
        values, secrets = container_env(objs, pod_spec(obj)["containers"][0])
        assert wanted <= set(secrets), f"{obj_id(obj)}: not from {dns(service)}-secrets: {sorted(wanted - set(secrets))}"
        assert not wanted & set(values), f"{obj_id(obj)}: a secret setting in plain configuration"

# --- selectors and scaling -------------------------------------------------------------------------------

def test_services_pdbs_and_network_policies_select_existing_pods(overlay):
    _, objs = overlay
    pods = [o for o in objs if o["kind"] in POD_KINDS]
    deployments = of_kind(objs, "Deployment")
    for svc in of_kind(objs, "Service"):
        targets = [d for d in deployments if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(d))]
        assert targets, f"Service {svc['metadata']['name']} selects no Deployment"
        for port in svc["spec"]["ports"]:
            for dep in targets:  # a named targetPort must exist in the pods it selects
                port_number(pod_spec(dep)["containers"][0], port["targetPort"])
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        assert [d for d in deployments if selects(pdb["spec"]["selector"], pod_labels(d))], pdb["metadata"]["name"]
    for policy in of_kind(objs, "NetworkPolicy"):
        assert [p for p in pods if selects(policy["spec"]["podSelector"], pod_labels(p))], policy["metadata"]["name"]
    for dep in deployments:
        assert selects(dep["spec"]["selector"], pod_labels(dep)), f"{dep['metadata']['name']}: selector vs template"


def test_every_deployment_has_a_pdb_that_never_blocks_a_drain(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        pdbs = [p for p in of_kind(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"], pod_labels(dep))]
        assert len(pdbs) == 1, dep["metadata"]["name"]
        spec = pdbs[0]["spec"]
        if "minAvailable" in spec:
            assert spec["minAvailable"] < dep["spec"]["replicas"], "minAvailable >= replicas blocks every eviction"
        else:
            assert spec["maxUnavailable"] >= 1


def test_hpa_targets_the_api_with_cpu_requests(overlay):
    _, objs = overlay
    hpas = of_kind(objs, "HorizontalPodAutoscaler")
    apis = {d["metadata"]["name"] for d in of_kind(objs, "Deployment")
            if pod_labels(d)["app.kubernetes.io/component"] == "api"}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} >= apis
    for hpa in hpas:
        spec = hpa["spec"]
        dep = one(objs, spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"])
        assert 1 <= spec["minReplicas"] <= dep["spec"]["replicas"] <= spec["maxReplicas"], hpa["metadata"]["name"]
        assert "cpu" in [m["resource"]["name"] for m in spec["metrics"]]
        for c in pod_spec(dep)["containers"]:  # CPU utilisation is measured against the request
            assert "cpu" in c["resources"]["requests"], dep["metadata"]["name"]


# --- network policies ------------------------------------------------------------------------------------

def allowed_ports(objs: list[dict], pod: dict, direction: str) -> list[tuple[int, list[dict]]]:
    """(port, peers) opened for this pod's labels by all policies of a direction ('ingress'/'egress')."""
    rules = []
    for policy in of_kind(objs, "NetworkPolicy"):
        spec = policy["spec"]
        if direction.capitalize() in spec["policyTypes"] and selects(spec["podSelector"], pod_labels(pod)):
            for rule in spec.get(direction, []):
                peers = rule.get("to" if direction == "egress" else "from", [])
                rules += [(p["port"], peers) for p in rule.get("ports", [])]
    return rules


def test_ingress_is_only_the_http_port(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        ports = {p for p, _ in allowed_ports(objs, dep, "ingress")}
        declared = {p["containerPort"] for p in pod_spec(dep)["containers"][0]["ports"]}
        assert ports == declared, f"{dep['metadata']['name']}: ingress {ports} vs container ports {declared}"


def test_egress_reaches_own_database_kafka_and_dns(overlay):
    _, objs = overlay
    kafka_names = {k["metadata"]["name"] for k in of_kind(objs, "Kafka")}
    for pod in (o for o in objs if o["kind"] in POD_KINDS):
        rules = allowed_ports(objs, pod, "egress")
        db_peers = [peer for port, peers in rules if port == 5432 for peer in peers]
        db_clusters = {peer["podSelector"]["matchLabels"].get("cnpg.io/cluster") for peer in db_peers}
        assert db_clusters == {f"{dns(service_of(pod))}-db"}, f"{obj_id(pod)}: egress to its own database only"
        one(objs, "Cluster", f"{dns(service_of(pod))}-db")
        kafka_peers = [peer for port, peers in rules if port == 9092 for peer in peers]
        assert {p["podSelector"]["matchLabels"]["strimzi.io/cluster"] for p in kafka_peers} <= kafka_names
        assert kafka_peers, obj_id(pod)
        assert {53} <= {port for port, _ in rules}, f"{obj_id(pod)}: no DNS"


def test_oidc_api_may_fetch_the_jwks(overlay):
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        values, _ = container_env(objs, pod_spec(dep)["containers"][0])
        settings = settings_from(values)
        if settings.auth_mode == "oidc" and pod_labels(dep)["app.kubernetes.io/component"] == "api":
            jwks = urlparse(settings.auth_jwks_url)
            assert jwks.scheme == "https" and settings.auth_issuer.startswith("https://")
            assert 443 in {port for port, _ in allowed_ports(objs, dep, "egress")}, "JWKS fetch is blocked"


# --- Kafka (Strimzi) and PostgreSQL (CloudNativePG) ------------------------------------------------------

def topics_the_services_need(objs: list[dict]) -> dict[str, int]:
    """{topic: partitions}: from the worker's code when the service has code, else from its entry."""
    expected: dict[str, int] = {}
    for service in services_in(objs):
        settings = settings_from(one(objs, "ConfigMap", f"{dns(service)}-config")["data"], service)
        assert settings.topic(service) == ServiceSettings().topic(service), "topic namespace differs from default"
        if has_code(service):
            expected |= topics_the_worker_creates(service, settings)
        else:
            expected |= topics_the_entry_declares(service, EXTRA[service])
    return expected


def check_topics(objs: list[dict]) -> None:
    topics = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in of_kind(objs, "KafkaTopic")}
    # Same names and partition counts: whoever creates a topic first (Strimzi or the worker), it is right.
    assert {name: t["spec"]["partitions"] for name, t in topics.items()} == topics_the_services_need(objs)
    for service in services_in(objs):
        events = topics[ServiceSettings().topic(service)]["spec"]
        # Projections are rebuilt by replaying: the events must never expire nor be compacted by key.
        assert int(events["config"]["retention.ms"]) == -1
        assert "compact" not in str(events["config"].get("cleanup.policy", "delete"))


def test_topics_are_the_ones_the_worker_needs(overlay):
    _, objs = overlay
    check_topics(objs)


def test_the_check_refuses_a_missing_or_misnamed_topic(rendered):
    for name in ("opsat.intake.requests.dlq", "opsat.intake.auto_close_scheduler.dlq", "opsat.intake.events"):
        objs = [o for o in copy.deepcopy(rendered["dev"]) if o["kind"] != "KafkaTopic" or o["spec"]["topicName"] != name]
        with pytest.raises(AssertionError):
            check_topics(objs)
    objs = copy.deepcopy(rendered["dev"])
    of_kind(objs, "KafkaTopic")[0]["spec"]["partitions"] += 1
    with pytest.raises(AssertionError):
        check_topics(objs)


def test_the_events_topic_is_the_asyncapi_channel(rendered):
    """Where the events go, as the service documents it (what `opsat-<service> asyncapi` prints)."""
    objs = rendered["dev"]
    topics = {t["spec"]["topicName"] for t in of_kind(objs, "KafkaTopic")}
    for service in services_in(objs):
        description = described(service)
        doc = description.registry().asyncapi(description.topic(ServiceSettings()))
        addresses = {channel["address"] for channel in doc["channels"].values()}
        assert addresses and addresses <= topics, f"{service}: {addresses - topics} has no KafkaTopic"


def test_topics_fit_the_kafka_cluster(overlay):
    _, objs = overlay
    kafkas = {k["metadata"]["name"]: k for k in of_kind(objs, "Kafka")}
    pools = of_kind(objs, "KafkaNodePool")
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] in kafkas
    for name, kafka in kafkas.items():
        mine = [p for p in pools if p["metadata"]["labels"]["strimzi.io/cluster"] == name]
        brokers = sum(p["spec"]["replicas"] for p in mine if "broker" in p["spec"]["roles"])
        controllers = sum(p["spec"]["replicas"] for p in mine if "controller" in p["spec"]["roles"])
        assert brokers >= 1 and controllers % 2 == 1, f"{name}: KRaft needs brokers and an odd controller quorum"
        config = kafka["spec"]["kafka"]["config"]
        assert int(config["min.insync.replicas"]) <= int(config["default.replication.factor"]) <= brokers
        assert int(config["offsets.topic.replication.factor"]) <= brokers
        for topic in of_kind(objs, "KafkaTopic"):
            if topic["metadata"]["labels"]["strimzi.io/cluster"] != name:
                continue
            replicas = topic["spec"]["replicas"]
            min_isr = int(topic["spec"].get("config", {}).get("min.insync.replicas", config["min.insync.replicas"]))
            assert replicas <= brokers, f"{topic['metadata']['name']}: {replicas} replicas, {brokers} brokers"
            # acks=all with min ISR == replicas (> 1) stops all writes when a single broker restarts.
            assert min_isr <= replicas and (replicas == 1 or min_isr < replicas), topic["metadata"]["name"]
    assert {t["metadata"]["labels"]["strimzi.io/cluster"] for t in of_kind(objs, "KafkaTopic")} <= set(kafkas)


def test_kafka_bootstrap_points_at_a_plain_listener(overlay):
    _, objs = overlay
    for configmap in settings_maps(objs):
        host, port = settings_from(configmap["data"]).kafka_bootstrap.split(":")
        cluster = host.removesuffix("-kafka-bootstrap")
        listeners = one(objs, "Kafka", cluster)["spec"]["kafka"]["listeners"]
        assert [lst for lst in listeners if lst["port"] == int(port) and lst["tls"] is False], configmap["metadata"]


def test_each_service_has_its_own_database(overlay):
    _, objs = overlay
    clusters = {c["metadata"]["name"]: c for c in of_kind(objs, "Cluster")}
    for service in {service_of(d) for d in of_kind(objs, "Deployment")}:
        initdb = clusters[f"{dns(service)}-db"]["spec"]["bootstrap"]["initdb"]
        assert initdb["database"] == service and initdb["owner"] == service


def test_kafka_and_postgres_versions_match_compose():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    objs = chart.render("prod")
    (kafka,) = of_kind(objs, "Kafka")
    assert compose["kafka"]["image"] == f"apache/kafka:{kafka['spec']['kafka']['version']}"
    for cluster in of_kind(objs, "Cluster"):
        major = cluster["spec"]["imageName"].rsplit(":", 1)[1].split(".")[0]
        assert compose["postgres"]["image"] == f"postgres:{major}"


# --- production ------------------------------------------------------------------------------------------

def test_prod_uses_oidc_a_pinned_image_and_more_replicas(rendered):
    prod, dev = rendered["prod"], rendered["dev"]
    for configmap in settings_maps(prod):
        settings = settings_from(configmap["data"])
        assert (settings.environment, settings.auth_mode) == ("prod", "oidc")
        assert settings.auth_jwks_url
    for obj in (o for o in prod if o["kind"] in POD_KINDS):
        for c in containers(obj):
            name, _, tag = c["image"].rpartition(":")
            assert "/" in name, f"{c['image']}: prod pulls from a registry"
            assert tag and tag not in {"latest", "dev"}, f"{c['image']}: pin an immutable tag"
    for dep in of_kind(prod, "Deployment"):
        assert dep["spec"]["replicas"] > one(dev, "Deployment", dep["metadata"]["name"])["spec"]["replicas"]


def test_workers_do_not_outnumber_partitions(overlay):
    # Every worker joins the same consumer groups: replicas beyond the partition count sit idle.
    _, objs = overlay
    for dep in of_kind(objs, "Deployment"):
        if pod_labels(dep)["app.kubernetes.io/component"] == "worker":
            topic = ServiceSettings().topic(service_of(dep))
            (events,) = [t for t in of_kind(objs, "KafkaTopic") if t["spec"]["topicName"] == topic]
            assert dep["spec"]["replicas"] <= events["spec"]["partitions"], dep["metadata"]["name"]


# --- Strimzi kinds, offline: their CRDs are not available to the server-side tests -----------------------

QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?")
STRIMZI_SPEC_FIELDS = {  # top-level spec fields of kafka.strimzi.io/v1 (a typo here is silently ignored)
    "KafkaTopic": {"topicName", "partitions", "replicas", "config"},
    "KafkaNodePool": {"replicas", "storage", "roles", "resources", "jvmOptions", "template"},
    "Kafka": {"kafka", "entityOperator", "cruiseControl", "kafkaExporter", "clusterCa", "clientsCa",
              "maintenanceTimeWindows", "jmxTrans"},
}


def test_strimzi_resources_have_what_the_operator_requires(overlay):
    _, objs = overlay
    for obj in (o for o in objs if o["apiVersion"] == "kafka.strimzi.io/v1"):
        where, spec = obj_id(obj), obj["spec"]
        assert set(spec) <= STRIMZI_SPEC_FIELDS[obj["kind"]], f"{where}: unknown fields {set(spec) - STRIMZI_SPEC_FIELDS[obj['kind']]}"
        if obj["kind"] == "KafkaTopic":
            assert obj["metadata"]["labels"]["strimzi.io/cluster"], where
            assert re.fullmatch(r"[a-zA-Z0-9._-]{1,249}", spec["topicName"]), where
            assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1, where
            assert isinstance(spec["replicas"], int) and 1 <= spec["replicas"] <= 32767, where
            assert all(isinstance(v, str | int | bool) for v in spec.get("config", {}).values()), where
        elif obj["kind"] == "KafkaNodePool":
            assert isinstance(spec["replicas"], int) and spec["replicas"] >= 0, where
            assert spec["roles"] and set(spec["roles"]) <= {"controller", "broker"}, where
            assert spec["storage"]["type"] in {"jbod", "ephemeral", "persistent-claim"}, where
            volumes = spec["storage"].get("volumes", [])
            assert len({v["id"] for v in volumes}) == len(volumes), where
            for volume in volumes:
                assert volume["type"] in {"persistent-claim", "ephemeral"}, where
                assert QUANTITY.fullmatch(str(volume.get("size", "1Gi"))), where
        elif obj["kind"] == "Kafka":
            kafka = spec["kafka"]
            assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", kafka["version"]), where
            names = [lst["name"] for lst in kafka["listeners"]]
            ports = [lst["port"] for lst in kafka["listeners"]]
            assert len(set(names)) == len(names) and len(set(ports)) == len(ports), where
            for listener in kafka["listeners"]:
                assert re.fullmatch(r"[a-z0-9]{1,11}", listener["name"]), where
                assert listener["port"] >= 9092 and listener["port"] not in {9404, 9999}, where  # reserved
                assert listener["type"] in {"internal", "route", "loadbalancer", "nodeport", "ingress",
                                            "cluster-ip"}, where
                assert isinstance(listener["tls"], bool), where


@pytest.mark.parametrize("entry", [{"consumer": ["breaches"]}, {"eventPartitions": 0}, {"consumers": ["Bad-Name"]}])
def test_a_misspelt_service_entry_is_refused(tmp_path, entry):
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"services": {"sla_monitor": entry}}))
    with pytest.raises(subprocess.CalledProcessError) as refused:
        chart.template("dev", extra)
    assert "values don't meet the specifications of the schema" in refused.value.stderr
